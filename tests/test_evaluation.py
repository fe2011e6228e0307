"""COCO evaluation: agreement with an OpenCV DNN + pycocotools evaluation, dataset formats, hand-computed AP."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hebbian_mirror.datasets import Box, DetectionDataset, Sample, load_dataset
from hebbian_mirror.errors import DatasetError
from hebbian_mirror.evaluation import coco_ground_truth, coco_metrics, evaluate

from .conftest import COCO_VAL, SHARED, WEIGHTS, detector
from .opencv_reference import OpenCVYolo

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


def test_bad_datasets(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not a COCO detection json"):
        load_dataset(bad)
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text("names: [a]\nval: missing/images\n")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(yaml_file)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "classes.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(tmp_path / "empty")


def test_hand_computed_average_precision():
    """2 ground-truth boxes; detections ranked TP (0.9), FP (0.8), TP (0.7).

    Precision envelope: 1 for recall ≤ 0.5, 2/3 above; COCO's 101 recall points give
    AP = (51·1 + 50·2/3) / 101 = 0.83498 at every IoU threshold (matches are exact).
    """
    ds = DetectionDataset(
        ["thing"],
        [
            Sample(
                image=__import__("pathlib").Path("a.jpg"),
                width=640,
                height=480,
                image_id=1,
                boxes=[Box((10, 10, 210, 210), 0), Box((300, 100, 500, 300), 0)],
            )
        ],
        "constructed",
    )
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 200, 200], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [400, 350, 150, 120], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [300, 100, 200, 200], "score": 0.7},
    ]
    expected = (51 + 50 * 2 / 3) / 101
    report = coco_metrics(coco_ground_truth(ds), dets)
    assert report["AP"] == pytest.approx(expected, abs=1e-6)
    assert report["AP50"] == pytest.approx(expected, abs=1e-6)
    assert report["AR100"] == pytest.approx(1.0)
    assert report["per_class"]["thing"]["AP"] == pytest.approx(expected, abs=1e-6)


def test_precision_recall_and_confusion_at_threshold(tmp_path):
    """One image: a dog found as a dog, a cat found as a dog (confusion), a missed cat, a false positive."""
    from hebbian_mirror.evaluation import at_threshold
    from hebbian_mirror.plots import write_plots

    gt = {
        "images": [{"id": 1, "width": 500, "height": 500}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 1e4, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [200, 0, 100, 100], "area": 1e4, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [0, 300, 100, 100], "area": 1e4, "iscrowd": 0},
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 100, 100], "score": 0.9},  # dog → dog
        {"image_id": 1, "category_id": 1, "bbox": [200, 2, 98, 100], "score": 0.8},  # cat → dog
        {"image_id": 1, "category_id": 2, "bbox": [400, 400, 50, 50], "score": 0.7},  # nothing there
        {"image_id": 1, "category_id": 2, "bbox": [0, 300, 100, 100], "score": 0.1},  # below the threshold
    ]
    r = at_threshold(gt, results, conf=0.25)
    assert r["confusion_matrix"]["labels"] == ["dog", "cat", "background"]
    assert r["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 3)
    assert r["per_class"]["dog"] == {"precision": 0.5, "recall": 1.0}
    assert r["per_class"]["cat"] == {"precision": 0.0, "recall": 0.0}
    report = coco_metrics(gt, results) | {"at_threshold": r, "model": "test"}
    for png in write_plots(report, tmp_path):
        assert png.stat().st_size > 5000


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
