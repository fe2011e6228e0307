"""The verifier stage on real weights and images: ``train-verifier`` on a small pistol subset with the shared
weapons checkpoint, the verified model it writes (served scores, ``--no-verify``, export), and the mined negatives
checked against the labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hebbian_mirror.boxes import inside_share, iou
from hebbian_mirror.config import load_settings
from hebbian_mirror.datasets import load_splits, write_splits
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector, load_network
from hebbian_mirror.verify.mining import NEGATIVE_IOU, mined_crops
from hebbian_mirror.verify.verifier import VerifiedDetector

from ..conftest import SHARED, WEIGHTS

WEAPONS4 = WEIGHTS / "weapons4-yolov4-tiny.pt"
PISTOLS = SHARED / "data" / "weapons" / "pistols"


@pytest.fixture(scope="module")
def pistols(tmp_path_factory):
    """24 training and 12 validation images of the Granada pistols, as YOLO."""
    splits = load_splits(PISTOLS / "data.yaml")
    splits = {"train": splits["train"], "val": splits["val"]}
    splits["train"].samples = splits["train"].samples[::80][:24]
    splits["val"].samples = splits["val"].samples[::40][:12]
    return write_splits(splits, tmp_path_factory.mktemp("pistols") / "data", "yolo")


@pytest.fixture(scope="module")
def stage(pistols, tmp_path_factory):
    """The stage run once through the command line: 1 epoch."""
    from typer.testing import CliRunner

    from hebbian_mirror.cli import app

    out = tmp_path_factory.mktemp("verifier")
    args = ["train-verifier", "--model", str(WEAPONS4), "--data", str(pistols), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--class", "pistol", "--epochs", "1"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return out, result.stdout


def test_the_stage_reports_and_writes_one_model_to_serve(stage):
    out, stdout = stage
    report = json.loads((out / "verifier.json").read_text())
    assert report["crops"]["train"]["pistol"]["labelled"] > 0 and report["crops"]["train"]["background"]["mined"] > 0
    assert set(report["val_AP50"]) == {"plain", "verified"} and "pistol" in report["val_AP50"]["verified"]
    assert len(report["combination"]["pistol"]["weights"]) == 3
    assert set(report["val_AP50_held_out"]) == {"plain", "verified"} and "halves: verified" in stdout
    assert "validation AP50" in stdout and f"serve it: hebbian-mirror serve --model {out / 'verified.pt'}" in stdout
    assert isinstance(load_detector(out / "verified.pt", load_settings(device="cpu")), VerifiedDetector)
    network = load_network(out / "verified.pt")  # training, export, combine: the detector alone
    assert network.meta.classes == checkpoint.load(WEAPONS4).meta.classes


def test_verified_scores_and_no_verify_reproduces_the_detector(stage):
    out, _ = stage
    image = decode_image(next((PISTOLS / "valid" / "images").iterdir()))
    options = DetectOptions(conf=0.05)
    (own,) = load_detector(WEAPONS4, load_settings(device="cpu")).detect([image], options)
    (unverified,) = load_detector(out / "verified.pt", load_settings(device="cpu", verify=False)).detect(
        [image], options
    )
    assert np.array_equal(unverified.data, own.data) and unverified.verified is None
    (verified,) = load_detector(out / "verified.pt", load_settings(device="cpu")).detect(
        [image], DetectOptions(conf=0.0)
    )
    pistols = [d for d in verified if d.label == "pistol" and d.verifier_score is not None]
    assert pistols, "the pistol candidates were looked at again"
    by_box = {tuple(np.round(d.box, 3)): d.score for d in own}
    for d in pistols:  # each keeps the detector's own score beside the verifier's
        assert by_box[tuple(np.round(d.box, 3))] == pytest.approx(d.detector_score)
        assert 0.0 <= d.verifier_score <= 1.0 and d.score != d.detector_score


def test_export_says_the_verifier_is_not_in_the_onnx_file(stage, cli, tmp_path):
    out, _ = stage
    code, stdout, _ = cli("export", str(out / "verified.pt"), "--out", str(tmp_path / "v.onnx"))
    assert code == 0, stdout
    assert "verifier stage (pistol) is not exported" in " ".join(stdout.split())
    assert (tmp_path / "v.onnx").is_file()


def test_mined_negatives_show_no_labelled_weapon(pistols):
    val = load_splits(pistols)["val"]
    detector = load_detector(WEAPONS4, load_settings(device="cpu"))
    mined = mined_crops(detector, val, ("background", "pistol"), conf=0.01)
    negatives = [c for c in mined if c.label == 0]
    assert negatives and any(c.label == 1 for c in mined)
    truths = {s.image: [b.xyxy for b in s.boxes] for s in val.samples}
    for crop in negatives:
        for truth in truths[crop.image]:
            assert iou(crop.box, truth) < NEGATIVE_IOU and inside_share(truth, crop.box) < 0.5
