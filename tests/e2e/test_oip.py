"""The Open Inference Protocol (KServe v2) routes, driven by the real Triton HTTP client library."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from ..conftest import DOG
from ..server_process import ServerProcess

KEY = "oip-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess("--api-key", KEY, "--workers", "1", log=tmp_path_factory.mktemp("oip") / "server.log")
    yield srv
    assert srv.stop(), srv.log()


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120.0)
    yield c
    c.close()


def infer_bytes(client, data: bytes, binary: bool = True, **parameters):
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([data], dtype=np.object_))  # raw bytes travel binary only
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("boxes", "scores", "class_ids", "labels")]
    return client.infer("yolov4-tiny", [image], outputs=outputs, headers=dict(AUTH), parameters=parameters or None)


def labels(result) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("labels").tolist()]


def test_health_and_metadata(client):
    assert client.is_server_live(headers=AUTH)
    assert client.is_server_ready(headers=AUTH)
    assert client.is_model_ready("yolov4-tiny", headers=AUTH)
    meta = client.get_model_metadata("yolov4-tiny", headers=AUTH)
    assert meta["name"] == "yolov4-tiny"
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image": "BYTES", "pixels": "UINT8"}
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "class_ids", "labels"]
    assert client.get_server_metadata(headers=AUTH)["name"] == "hebbian-mirror"
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("nope", headers=AUTH)


def test_dog_bicycle_truck_as_tensors_match_the_native_api(server, client):
    result = infer_bytes(client, DOG.read_bytes())
    boxes, scores, ids = result.as_numpy("boxes"), result.as_numpy("scores"), result.as_numpy("class_ids")
    assert boxes.dtype == np.float32 and boxes.shape == (len(scores), 4)
    assert scores.dtype == np.float32 and ids.dtype == np.int32
    assert {"dog", "bicycle", "truck"} <= set(labels(result))
    native = httpx.post(
        server.url + "/v1/detect", content=DOG.read_bytes(), headers=AUTH | {"Content-Type": "image/jpeg"}
    ).json()["detections"]
    assert [d["label"] for d in native] == labels(result)
    np.testing.assert_allclose(boxes, [d["box"] for d in native], atol=0.01)
    np.testing.assert_allclose(scores, [d["score"] for d in native], atol=1e-4)
    assert ids.tolist() == [d["class_id"] for d in native]


def test_json_tensors_pixels_and_parameters(client):
    json_result = infer_bytes(client, DOG.read_bytes(), binary=False, conf=0.6)
    assert {"dog", "truck"} <= set(labels(json_result))
    assert (json_result.as_numpy("scores") >= 0.6).all()
    pixels = np.asarray(Image.open(DOG).convert("RGB"))
    tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    result = client.infer("yolov4-tiny", [tensor], headers=dict(AUTH))  # the client adds to the dict
    assert {"dog", "bicycle", "truck"} <= set(labels(result))
    np.testing.assert_allclose(result.as_numpy("boxes"), infer_bytes(client, DOG.read_bytes()).as_numpy("boxes"), 1)


def post(server, doc: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(server.url + "/v2/models/yolov4-tiny/infer", json=doc, headers=AUTH | (headers or {}), timeout=60)


def test_plain_json_with_base64_and_bad_requests(server):
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(DOG.read_bytes()).decode()]}
    r = post(server, {"id": "42", "inputs": [image]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "42" and body["model_name"] == "yolov4-tiny"
    assert "dog" in next(o for o in body["outputs"] if o["name"] == "labels")["data"]
    bad = [
        ({"inputs": [image | {"datatype": "FP32"}]}, 400, "must be BYTES"),
        ({"inputs": [image | {"data": ["not base64!"]}]}, 400, "base64"),
        ({"inputs": [image | {"data": [base64.b64encode(b"garbage").decode()]}]}, 400, "image"),
        ({"inputs": [image | {"data": [image["data"][0]] * 2, "shape": [2]}]}, 400, "one image per request"),
        ({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [2, 2, 3], "data": [1, 2]}]}, 400, "shape"),
        ({"inputs": []}, 400, "one input"),
        ({"nothing": 1}, 400, "inputs"),
        ({"inputs": [image], "parameters": {"conf": "high"}}, 422, "conf"),
        ({"inputs": [image], "outputs": [{"name": "masks"}]}, 400, "unknown output"),
        ({"inputs": [image | {"data": ["é"]}]}, 400, "base64"),
        ({"inputs": [image], "parameters": {"max_det": 0}}, 422, "max_det"),
        ({"inputs": [image], "parameters": [1]}, 400, "parameters"),
        ({"inputs": [image | {"parameters": [1]}]}, 400, "parameters"),
        ({"inputs": [image], "outputs": 5}, 400, "outputs"),
        ({"inputs": [image], "outputs": [{"name": "boxes", "parameters": [1]}]}, 400, "parameters"),
    ]
    for doc, status, words in bad:
        r = post(server, doc)
        assert r.status_code == status, (doc if len(str(doc)) < 300 else words, r.text)
        assert words in r.json()["error"]
    assert post(server, {"inputs": [image]}, {"X-API-Key": "wrong"}).status_code == 401
    r = httpx.post(server.url + "/v2/models/nope/infer", json={"inputs": [image]}, headers=AUTH)
    assert r.status_code == 404 and "unknown model" in r.json()["error"]
    huge = json.dumps({"inputs": [image]})[:-1] + ', "parameters": {"max_det": 1e999}}'  # infinity
    r = httpx.post(server.url + "/v2/models/yolov4-tiny/infer", content=huge, headers=AUTH)
    assert r.status_code == 422 and "max_det" in r.json()["error"]
    nested = b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}"  # deeper than Python's JSON parser goes
    r = httpx.post(server.url + "/v2/models/yolov4-tiny/infer", content=nested, headers=AUTH)
    assert r.status_code == 400 and "malformed" in r.json()["error"]
    r = httpx.post(
        server.url + "/v2/models/yolov4-tiny/infer",
        content=b'{"inputs": []}',
        headers=AUTH | {"Inference-Header-Content-Length": "999"},
    )
    assert r.status_code == 400 and "outside the body" in r.json()["error"]


def test_pixel_tensors_count_against_the_servers_pixel_budget(tmp_path):
    """UINT8 pixels skip decoding but not the budget of decoded pixels in flight: with room for one image at a
    time, concurrent pixel requests all answer and the held pixels never exceed one image's."""
    import re
    import threading

    pixels = np.asarray(Image.open(DOG).convert("RGB"))
    size = pixels.shape[0] * pixels.shape[1]
    srv = ServerProcess(
        "--workers", "1", "--max-pixels", str(size), "--max-pixels-in-flight", str(size), log=tmp_path / "server.log"
    )
    seen: list[int] = []
    codes: list[object] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            text = httpx.get(srv.url + "/metrics", timeout=10).text
            seen.append(int(float(re.search(r"^hm_decoded_pixels (\S+)$", text, re.M).group(1))))

    def infer() -> None:
        c = triton.InferenceServerClient(srv.url.removeprefix("http://"), network_timeout=120.0)
        tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        try:
            for _ in range(3):
                try:
                    codes.append(labels(c.infer("yolov4-tiny", [tensor])))
                except InferenceServerException as exc:
                    codes.append(exc)
        finally:
            c.close()

    try:
        scraper = threading.Thread(target=scrape)
        scraper.start()
        clients = [threading.Thread(target=infer) for _ in range(4)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(120)
        done.set()
        scraper.join(30)
    finally:
        assert srv.stop(), srv.log()
    assert len(codes) == 12 and all(isinstance(c, list) and "dog" in c for c in codes), codes
    assert max(seen) == size, "pixel requests were not counted"
    assert set(seen) <= {0, size}, sorted(set(seen))
