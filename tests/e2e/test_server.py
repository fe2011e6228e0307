"""The server as a client sees it: a real `hebbian-mirror serve` process on loopback with yolov4-tiny."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from ..conftest import COCO_VAL, DOG, KNIFE, SHARED, WEIGHTS
from ..helpers import huge_png
from ..server_process import ServerProcess

KEY = "s3cret"
AUTH = {"X-API-Key": KEY}
IMAGES = sorted((COCO_VAL / "images").glob("*.jpg"))[:10]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(
        "--api-key",
        KEY,
        "--max-upload-mb",
        "1",
        "--max-batch-size",
        "8",
        "--request-timeout",  # this module tests correctness, not speed: a busy machine must not cause 504s
        "180",
        log=tmp_path_factory.mktemp("server") / "server.log",
    )
    yield srv
    assert srv.stop(), srv.log()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


def detect(client, path, **params):
    r = client.post("/v1/detect", params=params, files={"image": (path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


# ----------------------------------------------------------------------------------------------- routes


def test_health_ready_models_docs(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json() == {"ready": True, "models": {"yolov4-tiny": "ready"}}
    (model,) = client.get("/v1/models").json()["models"]
    assert model["name"] == "yolov4-tiny" and model["default"] and model["device"] == "cpu"
    assert model["input_size"] == [416, 416] and len(model["classes"]) == 80
    assert (model["refines"], model["augments"]) == (True, True)  # a Darknet model in PyTorch: merge and augment
    assert list(model["display_names"].items()) == [(c, c) for c in model["classes"]]  # COCO names read as is
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/detect", "/v1/vision/detection", "/recognition/object/boxes", "/predict"} <= set(paths)


def test_docs_work_offline_and_the_root_points_at_them(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        refs = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assert refs and not [r for r in refs if re.match(r"(https?:)?//", r)], refs  # nothing from another host
        for ref in refs:
            assert client.get(ref).status_code == 200, ref  # the scripts and styles are served here
    root = client.get("/", follow_redirects=True)
    assert root.status_code == 200 and "text/html" in root.headers["content-type"]
    assert 'href="docs"' in root.text and "yolov4-tiny" in root.text


def test_native_detect_shape_and_params(client):
    body = detect(client, DOG)
    assert body["model"] == "yolov4-tiny" and body["image"] == {"width": 768, "height": 576}
    labels = {d["label"] for d in body["detections"]}
    assert {"dog", "bicycle", "truck"} <= labels
    for d in body["detections"]:
        assert set(d) == {"box", "score", "class_id", "label"} and len(d["box"]) == 4
    assert set(body["timing"]) >= {"queue_ms", "inference_ms", "total_ms"}
    assert body["timing"]["total_ms"] >= body["timing"]["inference_ms"]
    only_dog = detect(client, DOG, classes="dog", conf=0.5)
    assert [d["label"] for d in only_dog["detections"]] == ["dog"]
    raw = client.post("/v1/detect", content=DOG.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["detections"] == body["detections"]
    assert len(detect(client, DOG, max_det=1, conf=0.01)["detections"]) == 1
    merged = detect(client, DOG, merge="true")["detections"]  # box voting: the same objects and scores, moved boxes
    assert [(d["label"], d["score"]) for d in merged] == [(d["label"], d["score"]) for d in body["detections"]]
    assert [d["box"] for d in merged] != [d["box"] for d in body["detections"]]


def test_annotated_routes_return_jpeg(client):
    for r in (
        client.post("/v1/detect/annotated", files={"image": ("dog.jpg", DOG.read_bytes(), "image/jpeg")}),
        client.post("/recognition/object/image", content=DOG.read_bytes()),
    ):
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(r.content)).size == (768, 576)


def test_hebbian_mirror_routes(client):
    names = client.get("/recognition/object/boxes_names").json()
    assert len(names) == 80 and names[16] == "dog"
    per_class = client.post("/recognition/object/boxes", content=DOG.read_bytes()).json()
    assert len(per_class) == 80 and per_class[16]
    for box in per_class[16]:
        assert set(box) == {"xmin", "ymin", "xmax", "ymax", "confidence", "class_confidence"}
        assert 0 <= box["xmin"] < box["xmax"] <= 768 and 0 <= box["ymin"] < box["ymax"] <= 576
    demo = client.post("/predict", files={"file": ("knife.jpg", KNIFE.read_bytes(), "image/jpeg")}).json()
    assert set(demo) == {"boxes", "labels", "scores"} and "person" in demo["labels"]
    assert len(demo["boxes"]) == len(demo["labels"]) == len(demo["scores"])


def test_dangerous_detections_say_who_holds_them(client):
    photo = {"image": ("knife.jpg", KNIFE.read_bytes(), "image/jpeg")}
    native = client.post("/v1/detect", params={"conf": 0.03}, files=photo).json()["detections"]
    deepstack = client.post("/v1/vision/detection", data={"min_confidence": "0.03"}, files=photo).json()
    for found in (native, deepstack["predictions"]):
        knife = next(d for d in found if d["label"] == "knife")  # COCO's yolov4-tiny: 0.05
        assert found[knife["held_by"]]["label"] == "person"
        assert all("held_by" not in d for d in found if d["label"] != "knife")  # only dangerous classes have it


def test_deepstack_routes(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:  # DeepStack clients send the key as a form field
        r = c.post(
            "/v1/vision/detection",
            files={"image": ("dog.jpg", DOG.read_bytes(), "image/jpeg")},
            data={"api_key": KEY, "min_confidence": "0.5"},
        )
        body = r.json()
        assert r.status_code == 200 and body["success"] is True
        for key in ("predictions", "count", "inferenceMs", "processMs", "moduleId", "command"):
            assert key in body
        assert body["count"] == len(body["predictions"])
        assert "dog" in {p["label"] for p in body["predictions"]}
        for p in body["predictions"]:
            assert p["confidence"] >= 0.5
            assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        custom = c.post(
            "/v1/vision/custom/yolov4-tiny", files={"image": ("d.jpg", DOG.read_bytes())}, data={"api_key": KEY}
        )
        assert custom.status_code == 200 and custom.json()["predictions"]
        listing = c.post("/v1/vision/custom/list", data={"api_key": KEY}).json()
        assert listing["success"] and listing["models"] == ["yolov4-tiny"]
        missing = c.post("/v1/vision/custom/nope", files={"image": ("d.jpg", DOG.read_bytes())}, data={"api_key": KEY})
        assert missing.status_code == 404 and missing.json()["success"] is False and "nope" in missing.json()["error"]


# ------------------------------------------------------------------------------------------ bad input


def truncated_jpeg() -> bytes:
    data = DOG.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "words"),
    [
        (b"", "image/jpeg", 400, "empty"),
        (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "image/jpeg", 400, "not a recognised"),
        (None, "image/jpeg", 400, "could not be decoded"),  # truncated JPEG
        (b"just some text\n" * 50, "image/jpeg", 400, "not a recognised"),
        (huge_png(100_000, 100_000), "image/png", 413, "over the limit"),
        (b"x" * 1_500_000, "image/jpeg", 413, "upload limit"),
        (b"hello", "text/plain", 415, "unsupported media type"),
        (b"{}", "application/json", 415, "unsupported media type"),
    ],
    ids=["empty", "random", "truncated", "text", "huge-dimensions", "over-byte-limit", "text-plain", "json"],
)
def test_bad_input_matrix(client, payload, content_type, status, words):
    payload = truncated_jpeg() if payload is None else payload
    for route in ("/v1/detect", "/recognition/object/boxes"):
        r = client.post(route, content=payload, headers={"Content-Type": content_type})
        assert r.status_code == status, (route, r.text)
        assert r.headers["content-type"] == "application/json" and words in r.json()["error"]
    if content_type.startswith("image/"):
        r = client.post("/v1/vision/detection", files={"image": ("x", payload, content_type)}, data={"api_key": KEY})
        assert r.status_code == status and r.json()["success"] is False and words in r.json()["error"]


def test_over_limit_streamed_without_length_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"\xff" * 65536  # 2.6 MB in chunks, no Content-Length

    r = client.post("/v1/detect", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413 and "upload limit" in r.json()["error"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"conf": "2"}, "conf"),
        ({"iou": "-1"}, "iou"),
        ({"max_det": "0"}, "max_det"),
        ({"conf": "abc"}, "conf"),
        ({"classes": "unicorn"}, "unknown class"),
        ({"merge": "maybe"}, "merge"),
    ],
)
def test_bad_parameters_are_422(client, params, words):
    r = client.post("/v1/detect", params=params, content=DOG.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 422 and words in r.json()["error"]


def test_deepstack_bad_parameters_and_media(client):
    r = client.post(
        "/v1/vision/detection",
        files={"image": ("d.jpg", DOG.read_bytes())},
        data={"api_key": KEY, "min_confidence": "lots"},
    )
    assert r.status_code == 422 and r.json()["success"] is False
    r = client.post("/v1/vision/detection", content=DOG.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 415 and r.json()["success"] is False
    r = client.post("/v1/vision/detection", files={"picture": ("d.jpg", DOG.read_bytes())}, data={"api_key": KEY})
    assert r.status_code == 400 and "'image'" in r.json()["error"]


def test_unknown_model_and_route(client):
    r = client.post("/v1/detect", params={"model": "yolov9"}, content=DOG.read_bytes())
    assert r.status_code == 404 and "yolov9" in r.json()["error"]
    assert client.get("/no/such/route").status_code == 404


def test_api_key_required(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            r = c.post("/v1/detect", content=DOG.read_bytes(), headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "missing or wrong API key"
        r = c.post("/v1/vision/detection", files={"image": ("d.jpg", DOG.read_bytes())}, data={"api_key": "nope"})
        assert r.status_code == 401 and r.json()["success"] is False
        ok = c.post("/v1/detect", content=DOG.read_bytes(), headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200  # probes stay open


# ------------------------------------------------------------------------------------------ concurrency


def test_200_concurrent_requests_get_their_own_results(server, client):
    """The original server sent every reply down one shared channel; here each reply must be its own."""
    singles = {p.name: detect(client, p)["detections"] for p in IMAGES}
    signatures = {json.dumps(sorted((d["label"], round(d["box"][0])) for d in v)) for v in singles.values()}
    assert len(signatures) == len(IMAGES), "the test images must give distinguishable results"
    order = [IMAGES[i % len(IMAGES)] for i in range(200)]
    np.random.default_rng(7).shuffle(order)

    async def fire():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120, limits=limits) as ac:

            async def one(path):
                r = await ac.post("/v1/detect", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
                return path, r

            return await asyncio.gather(*(one(p) for p in order))

    results = asyncio.run(fire())
    batch_sizes = []
    for path, r in results:
        assert r.status_code == 200, r.text
        got, want = r.json()["detections"], singles[path.name]
        assert [d["label"] for d in got] == [d["label"] for d in want], path.name
        for g, w in zip(got, want, strict=True):
            assert np.allclose(g["box"], w["box"], atol=0.5) and abs(g["score"] - w["score"]) < 1e-3
        batch_sizes.append(r.json()["timing"]["batch_size"])
    assert max(batch_sizes) > 1  # they really were batched together
    metrics = client.get("/metrics").text
    assert 'hm_requests_total{route="/v1/detect",status="200"}' in metrics
    for name in (
        "hm_queue_wait_seconds_bucket",
        "hm_inference_seconds_bucket",
        "hm_batch_size_bucket",
        "hm_queue_depth",
        "hm_images_per_second",
        "hm_request_duration_seconds_bucket",
    ):
        assert name in metrics


# ------------------------------------------------------------------------------ overload, timeouts, shutdown


def post_all(url: str, count: int, timeout: float = 120) -> list[httpx.Response]:
    async def fire():
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as ac:
            return await asyncio.gather(
                *(
                    ac.post("/v1/detect", content=IMAGES[i % 10].read_bytes(), headers={"Content-Type": "image/jpeg"})
                    for i in range(count)
                )
            )

    return asyncio.run(fire())


def test_tiny_queue_overloaded_answers_503_then_recovers(tmp_path):
    srv = ServerProcess("--max-queue", "2", "--max-batch-size", "1", log=tmp_path / "server.log")
    try:
        responses = post_all(srv.url, 40)
        codes = [r.status_code for r in responses]
        assert codes.count(503) > 0 and codes.count(200) > 0, codes
        assert set(codes) <= {200, 503}, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"].isdigit() and "busy" in busy.json()["error"]
        assert httpx.post(srv.url + "/v1/detect", content=DOG.read_bytes(), timeout=30).status_code == 200
    finally:
        assert srv.stop(), srv.log()


def test_request_timeout_504_and_disconnect_dropped(tmp_path):
    srv = ServerProcess("--max-batch-size", "1", "--request-timeout", "0.25", log=tmp_path / "server.log")
    try:
        codes = [r.status_code for r in post_all(srv.url, 30)]
        assert 504 in codes and set(codes) <= {200, 504}, codes
        time.sleep(1.0)  # queued jobs whose clients gave up are discarded, not run
        # a client that sends a request and hangs up at once
        body = DOG.read_bytes()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                s.sendall(
                    b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = httpx.get(srv.url + "/metrics").text
            if 'status="499"' in metrics:
                break
            time.sleep(0.2)
        assert 'hm_requests_total{route="/v1/detect",status="499"}' in metrics
        dropped = [line for line in metrics.splitlines() if line.startswith("hm_dropped_requests_total")]
        assert dropped and float(dropped[0].split()[-1]) >= 1  # timed-out jobs left the queue unrun
        assert httpx.post(srv.url + "/v1/detect", content=DOG.read_bytes(), timeout=30).status_code in (200, 504)
    finally:
        assert srv.stop(), srv.log()


def test_clean_shutdown_finishes_requests_in_flight(tmp_path):
    srv = ServerProcess("--max-batch-size", "2", log=tmp_path / "server.log")
    (model,) = httpx.get(srv.url + "/v1/models").json()["models"]
    worker = model["workers"][0]["pid"]

    async def scenario():
        async with httpx.AsyncClient(base_url=srv.url, timeout=60, limits=httpx.Limits(max_connections=16)) as ac:
            tasks = [
                asyncio.ensure_future(
                    ac.post("/v1/detect", content=IMAGES[i % 10].read_bytes(), headers={"Content-Type": "image/jpeg"})
                )
                for i in range(16)
            ]
            await asyncio.sleep(0.3)  # all sent, most still queued
            srv.terminate()
            os.kill(worker, signal.SIGTERM)  # as a signal to the whole process group would: the worker drains too
            return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
        statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results]
        assert statuses == [200] * 16, statuses
        srv.proc.wait(30)
        assert not os.path.exists(f"/proc/{worker}")  # stopped by its server, not left behind
    finally:
        assert srv.stop(), srv.log()


def test_served_models_have_names_in_urls_and_answers(tmp_path):
    weapons = WEIGHTS / "weapons4-yolov4-tiny.pt"
    srv = ServerProcess(
        "--model", "dogs=yolov4-tiny", "--model", str(weapons), "--workers", "1", log=tmp_path / "server.log"
    )
    try:
        models = httpx.get(srv.url + "/v1/models").json()["models"]
        assert [m["name"] for m in models] == ["dogs", "weapons4-yolov4-tiny"] and models[0]["default"]
        coco, trained = models  # display names: the trained checkpoint's for people ("Pistol"), every class listed
        assert trained["classes"] == ["pistol", "airpods", "phone", "wallet"]
        assert trained["display_names"] == {
            "pistol": "Pistol",
            "airpods": "airpods",
            "phone": "phone",
            "wallet": "wallet",
        }
        assert coco["display_names"]["cell phone"] == "cell phone" and len(coco["display_names"]) == 80
        r = httpx.post(srv.url + "/v1/detect", params={"model": "dogs"}, content=DOG.read_bytes(), timeout=60)
        assert r.status_code == 200 and r.json()["model"] == "dogs"
        pistol = next((SHARED / "data" / "weapons" / "pistols" / "valid" / "images").glob("*.jpg"))
        files = {"image": (pistol.name, pistol.read_bytes(), "image/jpeg")}
        r = httpx.post(srv.url + "/v1/vision/custom/weapons4-yolov4-tiny", files=files, timeout=60)
        body = r.json()
        assert r.status_code == 200 and body["success"], body
        assert body["moduleName"] == "Hebbian Mirror (weapons4-yolov4-tiny)"  # no server path in the answer
        listed = httpx.post(srv.url + "/v1/vision/custom/list").json()["models"]
        assert listed == ["dogs", "weapons4-yolov4-tiny"]
    finally:
        assert srv.stop(), srv.log()
    log = srv.log()
    assert "model dogs (yolov4-tiny) ready" in log and f"model weapons4-yolov4-tiny ({weapons}) ready" in log


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("nosuch", "unknown model 'nosuch'"),  # not in the zoo, not a file: refused before listening
        ("broken=BROKEN", "could not load broken"),  # a file that fails to load: the server stops
    ],
)
def test_a_model_that_cannot_be_served_stops_the_server_with_an_error(tmp_path, model, words):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--port", "0", "--device", "cpu"]
    cmd += ["--model", model.replace("BROKEN", str(broken))]
    env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), HEBBIAN_MIRROR_OFFLINE="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert words in done.stderr
