"""Model zoo metadata, weights cache, downloader (over loopback HTTP) and the offline error."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.errors import ChecksumError, ModelNotFoundError, WeightsNotFoundError
from hebbian_mirror.models.cache import ensure_weights, fetch, is_cached, sha256_of
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.models.registry import RemoteFile, get_spec, registry

from ..conftest import WEIGHTS

TORCHVISION = {
    "fasterrcnn-resnet50-fpn",
    "fasterrcnn-resnet50-fpn-v2",
    "fasterrcnn-mobilenet-v3-large-fpn",
    "fasterrcnn-mobilenet-v3-large-320-fpn",
    "retinanet-resnet50-fpn",
    "retinanet-resnet50-fpn-v2",
    "fcos-resnet50-fpn",
    "ssd300-vgg16",
    "ssdlite320-mobilenet-v3-large",
}


def test_zoo_names_and_metadata():
    names = set(registry())
    assert {"yolov3", "yolov3-tiny", "yolov4-tiny", "yolo-fastest-1.1", "yolo-fastest-1.1-xl"} <= names
    assert names >= TORCHVISION
    for spec in registry().values():
        assert len(spec.classes) == 80 and spec.published and spec.files
        for f in spec.files:
            assert f.url.startswith("https://") and f.url.endswith(f.name)
    assert get_spec("yolov3-tiny").letterbox and not get_spec("yolov4-tiny").letterbox
    assert get_spec("fcos-resnet50-fpn").published["AP"] == pytest.approx(39.2)


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov4-tiny", "yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def test_published_sha256_matches_shared_files(name):
    spec = get_spec(name)
    assert is_cached(spec, WEIGHTS)
    for f in spec.files:
        assert sha256_of(WEIGHTS / f.name) == f.sha256


def test_offline_missing_weights_names_file_url_and_folder(tmp_path):
    settings = load_settings(weights_dir=tmp_path, offline=True)
    with pytest.raises(WeightsNotFoundError) as info:
        load_detector("yolov4-tiny", settings)
    msg = str(info.value)
    assert "yolov4-tiny.weights" in msg and str(tmp_path) in msg
    assert "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights" in msg


def test_unknown_model_and_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="yolov4-tiny"):
        load_detector("yolov9-huge")
    with pytest.raises(WeightsNotFoundError, match="model file not found"):
        load_detector(str(tmp_path / "missing.cfg"))


@pytest.fixture
def http_files(tmp_path):
    """A static file server on loopback."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_sha256(http_files, tmp_path):
    root, base = http_files
    payload = (WEIGHTS / "yolo-fastest-1.1.cfg").read_bytes()
    (root / "model.cfg").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"

    bad = RemoteFile("model.cfg", f"{base}/model.cfg", "0" * 64)
    with pytest.raises(ChecksumError, match="expected"):
        fetch(bad, cache)
    assert not (cache / "model.cfg").exists() and not list(cache.glob("*.part"))

    good = RemoteFile("model.cfg", f"{base}/model.cfg", digest)
    path = fetch(good, cache)
    assert path == cache / "model.cfg" and path.read_bytes() == payload
    assert fetch(good, cache, offline=True) == path  # cached now

    prefix = RemoteFile("model.cfg", f"{base}/model.cfg", digest[:8])  # torchvision-style prefix
    assert fetch(prefix, tmp_path / "other").read_bytes() == payload


def test_download_failure_is_clear(http_files, tmp_path):
    _, base = http_files
    missing = RemoteFile("gone.weights", f"{base}/gone.weights", None)
    with pytest.raises(WeightsNotFoundError, match=r"gone\.weights.*could not be downloaded \(HTTP 404"):
        fetch(missing, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


def test_every_file_that_cannot_be_downloaded_is_named_in_one_error(http_files, tmp_path):
    _, base = http_files  # an empty server: every download is a 404
    spec = dataclasses.replace(
        get_spec("yolov4-tiny"),
        files=tuple(RemoteFile(f.name, f"{base}/{f.name}", f.sha256) for f in get_spec("yolov4-tiny").files),
    )
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(spec, tmp_path / "cache")
    msg = str(info.value)
    assert "yolov4-tiny.weights" in msg and "yolov4-tiny.cfg" in msg and msg.count("HTTP 404") == 2
