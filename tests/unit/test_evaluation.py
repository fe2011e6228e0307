"""COCO evaluation on constructed data: bad datasets refused, AP and precision/recall computed by hand (the
OpenCV + pycocotools agreement on real weights: tests/models/test_evaluation.py)."""

from __future__ import annotations

import pytest

from hebbian_mirror.datasets import Box, DetectionDataset, Sample, load_dataset
from hebbian_mirror.errors import DatasetError
from hebbian_mirror.evaluation import coco_ground_truth, coco_metrics


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
