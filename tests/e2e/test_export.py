"""ONNX export: onnxruntime against PyTorch on real images, and .onnx files wherever a model is taken."""

from __future__ import annotations

import httpx
import numpy as np
import onnx
import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.export import export_onnx
from hebbian_mirror.families import family
from hebbian_mirror.images import decode_image
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.onnx.detector import load_onnx

from ..conftest import COCO_VAL, DOG, KNIFE, PHOTOS, detector
from ..server_process import ServerProcess

IMAGES = [
    DOG,
    KNIFE,
    *sorted((PHOTOS / "darknet-samples").glob("*.jpg"))[:3],
    *sorted((COCO_VAL / "images").glob("*.jpg"))[:3],
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return {
        "dynamic": export_onnx(detector("yolov4-tiny"), out / "yolov4-tiny.onnx"),
        "static": export_onnx(detector("yolov3-tiny"), out / "yolov3-tiny.onnx", dynamic_batch=False),
        "half": export_onnx(detector("yolo-fastest-1.1"), out / "yolo-fastest-1.1-fp16.onnx", half=True),
    }


@pytest.mark.parametrize(
    ("key", "name", "tol"),
    [("dynamic", "yolov4-tiny", 1.0), ("static", "yolov3-tiny", 1.0), ("half", "yolo-fastest-1.1", 1.0)],
)
def test_onnxruntime_matches_pytorch(exported, key, name, tol):
    ours, onnx_det = detector(name), load_onnx(exported[key], device="cpu")
    assert onnx_det.class_names == ours.class_names and onnx_det.letterbox == ours.letterbox
    images = [decode_image(p) for p in IMAGES]
    options = DetectOptions(conf=0.3)
    compared = 0
    for a, b in zip(ours.detect(images, options), onnx_det.detect(images, options), strict=True):  # one batch of 8
        a = [d for d in a if d.score > 0.32]
        b = [d for d in b if d.score > 0.32]
        assert [d.label for d in a] == [d.label for d in b]
        for da, db in zip(a, b, strict=True):
            assert np.abs(np.array(da.box) - np.array(db.box)).max() < tol
            assert abs(da.score - db.score) < (0.01 if key == "half" else 1e-3)
        compared += len(a)
    assert compared > 10


def test_onnx_files_work_in_predict_evaluate_and_serve(exported, cli, tmp_path):
    path = exported["dynamic"]
    code, stdout, stderr = cli("predict", DOG, "--model", path, "--json")
    assert code == 0 and '"dog"' in stdout and '"bicycle"' in stdout, stderr
    code, stdout, stderr = cli(
        "evaluate",
        "--model",
        path,
        "--data",
        COCO_VAL / "instances_val2017_subset.json",
        "--images",
        COCO_VAL / "images",
        "--out",
        tmp_path / "eval",
    )
    assert code == 0, stderr
    import json

    assert json.loads((tmp_path / "eval" / "report.json").read_text())["AP50"] == pytest.approx(0.476, abs=0.005)
    # the server's merge and augment apply where the model has them: an ONNX file merges, and cannot augment
    srv = ServerProcess("--model", str(path), "--merge", "--augment", "--workers", "1", log=tmp_path / "server.log")
    try:
        r = httpx.post(srv.url + "/v1/detect", content=DOG.read_bytes(), timeout=60)
        assert r.status_code == 200 and "dog" in {d["label"] for d in r.json()["detections"]}
        unmerged = httpx.post(srv.url + "/v1/detect?merge=false", content=DOG.read_bytes(), timeout=60).json()
        assert [d["box"] for d in unmerged["detections"]] != [d["box"] for d in r.json()["detections"]]
        model = httpx.get(srv.url + "/v1/models").json()["models"][0]
        assert (model["family"], model["refines"], model["augments"]) == ("onnx", True, False)
    finally:
        assert srv.stop(), srv.log()


def test_onnx_models_merge_but_cannot_augment(exported):
    """Box voting is selection only; test-time augmentation needs a second input size, which an ONNX file lacks."""
    det = load_onnx(exported["dynamic"], device="cpu")
    img = decode_image(DOG)
    plain, merged = (det.detect([img], DetectOptions(merge=m))[0] for m in (False, True))
    assert [(d.label, d.score) for d in merged] == [(d.label, d.score) for d in plain] and merged != plain
    with pytest.raises(ValueError, match="one fixed input size"):
        det.detect([img], DetectOptions(augment=True))
    assert (det.info()["refines"], det.info()["augments"]) == (True, False)
    declared = family("onnx").capabilities  # what the family declares is what its detectors do
    assert (det.refines, det.augments) == (declared.merge, declared.augment)


def test_exported_files_are_self_contained(exported):
    """One .onnx file per export, the weights inside it: no external-data file left beside it."""
    folder = exported["dynamic"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in exported.values())
    for path in exported.values():
        model = onnx.load(str(path), load_external_data=False)
        assert model.graph.initializer
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer), path


def test_export_cli_verifies_and_bad_files_are_clear(cli, tmp_path):
    out = tmp_path / "exported" / "f.onnx"
    code, stdout, stderr = cli("export", "yolo-fastest-1.1", "--out", out, "--verify", DOG)
    assert code == 0 and "largest box difference" in stdout, stderr
    assert [p.name for p in out.parent.iterdir()] == ["f.onnx"]
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(out))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(ModelFormatError, match="not exported by"):
        load_detector(str(plain), load_settings(device="cpu"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFormatError, match="cannot load ONNX model"):
        load_onnx(junk)


@pytest.mark.parametrize("where", ["--offline", "--online"])
def test_export_refuses_torchvision_models_before_loading_them(cli, tmp_path, where):
    """The documented refusal, offline and online alike: nothing is loaded or downloaded first."""
    empty = tmp_path / "no-weights"
    code, _, stderr = cli(
        "export", "fasterrcnn-resnet50-fpn", "--out", tmp_path / "x.onnx", "--weights-dir", empty, where
    )
    flat = " ".join(stderr.split())
    assert code == 1 and "ONNX export supports Darknet models only" in flat, stderr
    assert "fasterrcnn-resnet50-fpn is a torchvision model" in flat
    assert "weights cache" not in flat and "download" not in flat
    assert not (tmp_path / "x.onnx").exists() and not empty.exists()
