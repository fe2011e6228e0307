"""The HTTP API in-process (Starlette's TestClient over the real app, lifespan included), with the fake detector:
the routes, their JSON shapes and their errors, where the model is not the point."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from PIL import Image

from hebbian_mirror.config import load_settings
from hebbian_mirror.server.app import create_app

from ..fakes import FakeDetector
from ..helpers import encode, huge_png

W, H = 200, 100


def jpeg(width: int = W, height: int = H) -> bytes:
    return encode(Image.new("RGB", (width, height), (120, 90, 60)), "JPEG")


@pytest.fixture
def serve():
    """``serve(**settings)``: a TestClient on an app serving a fresh fake detector; closed after the test."""
    opened: list[TestClient] = []

    def start(**flags) -> tuple[TestClient, FakeDetector]:
        fake = FakeDetector()
        settings = load_settings(models=["fake"], workers=0, **flags)
        client = TestClient(create_app(settings, detectors={"fake": fake}))
        client.__enter__()  # runs the lifespan: the model's batcher starts
        opened.append(client)
        deadline = time.monotonic() + 10  # the model is in hand; the events store opens beside it
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/ready").status_code == 200
        return client, fake

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def test_native_detect_answers_the_detectors_boxes_in_image_pixels(serve):
    client, fake = serve()
    r = client.post("/v1/detect", content=jpeg())
    assert r.status_code == 200, r.text
    body = r.json()
    expected = [d for d in FakeDetector.expected(W, H) if d.score >= 0.25]  # the server's default conf
    assert [d["label"] for d in body["detections"]] == [d.label for d in expected]
    assert body["detections"][0]["box"] == pytest.approx(list(expected[0].box))
    assert fake.calls == 1


def test_request_thresholds_and_classes_apply(serve):
    client, _ = serve()
    r = client.post("/v1/detect?conf=0.5&classes=knife,person", content=jpeg())
    assert [d["label"] for d in r.json()["detections"]] == ["person", "knife"]
    r = client.post("/v1/detect?classes=0", content=jpeg())
    assert [d["label"] for d in r.json()["detections"]] == ["person"]


@pytest.mark.parametrize(
    ("query", "words"),
    [("conf=2", "conf"), ("classes=spoon", "unknown class"), ("merge=true", "merge"), ("max_det=0", "max_det")],
)
def test_bad_parameters_are_422_in_words(serve, query, words):
    client, fake = serve()
    r = client.post(f"/v1/detect?{query}", content=jpeg())
    assert r.status_code == 422 and words in r.text, r.text
    assert fake.calls == 0


def test_bad_images_are_400_or_413_and_never_reach_the_model(serve):
    client, fake = serve(max_pixels=50_000)
    assert client.post("/v1/detect", content=b"").status_code == 400
    assert client.post("/v1/detect", content=b"not an image at all").status_code == 400
    assert client.post("/v1/detect", content=huge_png(40_000, 40_000)).status_code == 413
    assert client.post("/v1/detect", content=jpeg(300, 300)).status_code == 413  # 90,000 > 50,000 pixels
    assert fake.calls == 0
    assert client.post("/v1/detect", content=jpeg()).status_code == 200


def test_deepstack_and_legacy_routes_speak_their_shapes(serve):
    client, _ = serve()
    r = client.post("/v1/vision/detection", files={"image": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.status_code == 200 and r.json()["success"] is True
    first = r.json()["predictions"][0]
    assert first["label"] == "person" and {"x_min", "y_min", "x_max", "y_max", "confidence"} <= set(first)
    per_class = client.post("/recognition/object/boxes", content=jpeg()).json()
    assert [len(boxes) for boxes in per_class] == [1, 1, 1]  # one list per class, in class order
    assert client.get("/recognition/object/boxes_names").json() == ["person", "knife", "dog"]


def test_models_lists_the_fake_with_its_display_names(serve):
    client, _ = serve()
    (model,) = client.get("/v1/models").json()["models"]
    assert model["name"] == "fake" and model["classes"] == ["person", "knife", "dog"]
    assert model["display_names"] == {"person": "person", "knife": "Knife", "dog": "dog"}
    assert model["refines"] is False and model["augments"] is False


def test_an_unknown_model_is_404(serve):
    client, _ = serve()
    r = client.post("/v1/detect?model=nope", content=jpeg())
    assert r.status_code == 404 and "fake" in r.text


def test_api_key_guards_detection(serve):
    client, _ = serve(api_key="s3cret")
    assert client.post("/v1/detect", content=jpeg()).status_code == 401
    r = client.post("/v1/detect", content=jpeg(), headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ["/v1/detect/annotated", "/recognition/object/image"])
def test_annotated_image_is_drawn_on_the_one_decode(serve, route):
    """With the pixels in flight capped at one image's worth, an annotated request must not wait on its own
    reservation (it once reserved the image's pixels a second time to decode it again, and waited until 503)."""
    client, fake = serve(max_pixels=W * H, max_pixels_in_flight=W * H, request_timeout=5)
    r = client.post(route, content=jpeg())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    drawn = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert drawn.shape == (H, W, 3)
    plain = np.asarray(Image.open(io.BytesIO(jpeg())).convert("RGB"))
    assert np.abs(drawn.astype(int) - plain.astype(int)).max() > 100  # boxes were drawn on it
    assert fake.calls == 1
    assert client.post(route, content=jpeg()).status_code == 200  # the reservation was given back


def test_a_new_api_family_is_one_module_and_one_registration(monkeypatch):
    """A toy API family (its router, its error shape) registered as a new module's SPEC is: its route answers
    through the one pipeline, and its errors, even before routing, take its shape."""
    from hebbian_mirror.server import app as app_module
    from hebbian_mirror.server import specs
    from hebbian_mirror.server.bodies import raw_image_body
    from hebbian_mirror.server.openapi import APISpec
    from hebbian_mirror.server.pipeline import Inputs, run

    router = APIRouter()

    async def count(request: Request, out) -> dict:
        return {"objects": len(out.result.detections)}

    @router.post("/toy/count")
    async def toy(request: Request) -> dict:
        return await run(request, Inputs(lambda _: raw_image_body(request)), count)

    spec = APISpec("toy", router, prefixes=("/toy/",), error_body=lambda status, message: {"toy_error": message})
    registered = (*specs.SPECS, spec)  # what its one line in specs/__init__.py does
    monkeypatch.setattr(specs, "SPECS", registered)
    monkeypatch.setattr(app_module, "SPECS", registered)
    fake = FakeDetector()
    settings = load_settings(models=["fake"], workers=0)
    with TestClient(create_app(settings, detectors={"fake": fake})) as client:
        assert client.post("/toy/count", content=jpeg()).json() == {"objects": 3}
        bad = client.post("/toy/count", content=b"not an image")
        assert bad.status_code == 400 and set(bad.json()) == {"toy_error"}


def test_every_route_declares_its_scope():
    """Only the probes, the landing page, the docs and /v1/auth (which needs a key, of any scope) are open."""
    from fastapi.routing import APIRoute

    def scopes(dependant) -> set[str]:
        found = {getattr(dependant.call, "scope", None)} - {None}
        return found.union(*(scopes(d) for d in dependant.dependencies))

    app = create_app(load_settings(environ={}, api_key="k" * 16), detectors={"fake": FakeDetector()})
    open_routes = {"/", "/health", "/ready", "/v1/auth", "/docs", "/docs/oauth2-redirect", "/redoc"}
    declared = {}

    def walk(routes) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router (FastAPI ≥ 0.160)
                walk(route.original_router.routes)
            elif isinstance(route, APIRoute) and route.path not in open_routes:
                declared[(route.path, *sorted(route.methods))] = scopes(route.dependant)

    walk(app.routes)
    assert declared and all(len(s) == 1 for s in declared.values()), {k: v for k, v in declared.items() if len(v) != 1}
    assert declared[("/v1/streams", "POST")] == {"admin"} and declared[("/v1/events", "GET")] == {"view"}
    assert declared[("/v1/detect", "POST")] == {"detect"} and declared[("/metrics", "GET")] == {"view"}
