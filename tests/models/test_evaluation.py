"""COCO evaluation: agreement with an OpenCV DNN + pycocotools evaluation, dataset formats, hand-computed AP."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hebbian_mirror.datasets import DetectionDataset, load_dataset
from hebbian_mirror.evaluation import evaluate

from ..conftest import COCO_VAL, SHARED, WEIGHTS, detector
from ..opencv_reference import OpenCVYolo

ANNOTATIONS = COCO_VAL / "instances_val2017_subset.json"


def opencv_ap50(tmp_path) -> float:
    """The same evaluation, independently: OpenCV DNN preprocessing and inference, pycocotools."""
    ref = OpenCVYolo(WEIGHTS / "yolov4-tiny.cfg", WEIGHTS / "yolov4-tiny.weights", tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ANNOTATIONS))
    cat_ids = sorted(gt.getCatIds())  # COCO's 80 categories in id order = Darknet's class order
    results = []
    for img in gt.loadImgs(gt.getImgIds()):
        bgr = cv2.imread(str(COCO_VAL / "images" / img["file_name"]))
        for (x1, y1, x2, y2), score, cls in ref.detect_bgr(bgr, (416, 416), 0.001, 0.45, 100):
            results.append(
                {"image_id": img["id"], "category_id": cat_ids[cls], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def test_evaluate_cli_agrees_with_opencv(cli, tmp_path):
    out = tmp_path / "eval"
    code, stdout, stderr = cli(
        "evaluate",
        "--model",
        "yolov4-tiny",
        "--data",
        ANNOTATIONS,
        "--images",
        COCO_VAL / "images",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    for key in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "per_class"):
        assert key in report
    assert report["images"] == 82 and len(report["per_class"]) == 80
    assert report["per_class"]["person"]["instances"] > 0
    assert "AP50" in stdout and "person" in stdout
    reference = opencv_ap50(tmp_path)
    assert abs(report["AP50"] - reference) <= 0.005, (report["AP50"], reference)
    assert 0.3 < report["AP50"] < 0.7  # a working yolov4-tiny, not a degenerate run


def test_yolo_folder_and_yaml_datasets(tmp_path):
    ds = load_dataset(SHARED / "data" / "weapons" / "handheld" / "data.yaml", split="val")
    assert ds.classes == ["airpods", "phone", "wallet"] and len(ds.samples) == 32
    assert sum(len(s.boxes) for s in ds.samples) >= 32
    test = load_dataset(SHARED / "data" / "weapons" / "handheld" / "data.yaml", split="test")
    assert len(test.samples) == 23


def test_yolo_dataset_evaluates_with_coco_names(tmp_path):
    """A YOLO folder (coco val labels, COCO names) through the same evaluation."""
    ds = load_dataset(COCO_VAL)
    assert len(ds.samples) >= 128 and ds.classes[0] == "person"
    small = DetectionDataset(ds.classes, ds.samples[:16], ds.source)
    report = evaluate(detector("yolov4-tiny"), small, progress=False)
    assert report["images"] == 16 and 0.2 < report["AP50"] <= 1.0


def test_a_coco_json_finds_its_images_folder_and_unreadable_images_are_an_error(cli, tmp_path):
    """``instances.json`` beside ``images/`` needs no --images; a json whose images are all missing is a clear error,
    not a table of zeros."""
    ds = load_dataset(ANNOTATIONS)
    assert len(ds.samples) == 82 and all(s.image.is_file() for s in ds.samples)
    alone = tmp_path / "alone.json"
    alone.write_text(ANNOTATIONS.read_text())
    code, stdout, stderr = cli("evaluate", "--model", "yolov4-tiny", "--data", alone, "--device", "cpu")
    assert code != 0 and "none of the 82 images could be read" in stdout + stderr, stdout + stderr
    assert "Traceback" not in stdout + stderr


def test_evaluate_renames_a_datasets_class_to_the_models_name(cli):
    """The hand-held set calls COCO's `cell phone` `phone`: without --rename a COCO model knows none of its
    classes, with it the phones are scored as the model's own class; a bad --rename is a clear error."""
    handheld = SHARED / "data" / "weapons" / "handheld" / "data.yaml"
    args = ("evaluate", "--model", "yolov4-tiny", "--data", handheld, "--split", "test", "--device", "cpu")
    code, stdout, stderr = cli(*args)  # COCO's yolov4-tiny knows no airpods, phone or wallet
    assert code != 0 and "none of the dataset's classes (airpods, phone, wallet" in stdout + stderr
    code, stdout, stderr = cli(*args, "--rename", "phone=cell phone")
    assert code == 0, stdout + stderr
    row = next(line for line in stdout.splitlines() if "cell phone" in line)
    instances = int(row.split("│")[2])
    test = load_dataset(handheld, split="test")
    assert instances == sum(test.classes[b.class_id] == "phone" for s in test.samples for b in s.boxes) > 0
    for bad in ("phone", "=cell phone", "knife=dagger"):
        code, stdout, stderr = cli(*args, "--rename", bad)
        assert code != 0 and "Traceback" not in stdout + stderr
        assert ("OLD=NEW" if "knife" not in bad else "cannot rename knife") in stdout + stderr, stdout + stderr
