"""Interpolating an extended model with its base (hebbian-mirror interpolate): exact at both ends, a sweep that
measures both sides and chooses, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from hebbian_mirror.classes import COCO_CLASSES
from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights, read_cfg
from hebbian_mirror.darknet.heads import head_convs, resize_heads
from hebbian_mirror.datasets import load_dataset, write_splits
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.meta import ModelMeta
from hebbian_mirror.models import checkpoint
from hebbian_mirror.network import Network
from hebbian_mirror.train.interpolate import interpolate
from hebbian_mirror.train.loop import TrainConfig, train

from ..conftest import COCO_VAL, DOG, WEIGHTS


def coco() -> Network:
    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    load_darknet_weights(net, WEIGHTS / "yolov4-tiny.weights")
    return Network("darknet", net.eval(), ModelMeta("yolov4-tiny", tuple(COCO_CLASSES), (416, 416)))


@pytest.fixture(scope="module")
def pair():
    """The base model, and a stand-in for its fine-tuned extension: 3 classes appended, every weight moved."""
    base = coco()
    torch.manual_seed(0)
    tuned = resize_heads(base.module, 83, keep=80).eval()
    with torch.no_grad():
        for v in tuned.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.randn_like(v) * 0.05 * (v.std() if v.numel() > 1 else 1))
    meta = ModelMeta("tuned", (*COCO_CLASSES, "pistol", "airpods", "wallet"), (416, 416))
    return base, Network("darknet", tuned, meta)


def test_both_ends_are_exact_and_the_middle_is_the_midpoint(pair):
    base, tuned = pair
    heads = tuple(f"layers.{i}." for i in head_convs(tuned.module))
    start = resize_heads(base.module, 83, keep=80).state_dict()
    t = tuned.module.state_dict()
    one, zero, half = (interpolate(tuned, base, a).module.state_dict() for a in (1.0, 0.0, 0.5))
    for key, value in t.items():
        if not value.is_floating_point():
            continue
        assert torch.equal(one[key], value), key
        if key.startswith(heads):
            for a in range(3):  # per anchor: box, objectness and COCO's 80 from the base, the 3 new as tuned
                rows = slice(a * 88, a * 88 + 85)
                assert torch.equal(zero[key][rows], start[key][rows]), key
                assert torch.equal(zero[key][a * 88 + 85 : (a + 1) * 88], value[a * 88 + 85 : (a + 1) * 88]), key
        else:
            assert torch.equal(zero[key], start[key]), key
            assert torch.allclose(half[key], (value + start[key]) / 2, atol=1e-6), key


def test_at_alpha_zero_the_base_classes_are_answered_as_the_base_model_does(pair):
    from hebbian_mirror.families import family
    from hebbian_mirror.images import decode_image

    base, tuned = pair
    image = decode_image(DOG)
    found = {}
    for name, net in (("base", base), ("tuned", tuned), ("alpha 0", interpolate(tuned, base, 0.0))):
        dets = family("darknet").detector(net, torch.device("cpu")).detect([image])[0]
        found[name] = [(d.label, round(d.score, 4), tuple(round(x, 1) for x in d.box)) for d in dets if d.class_id < 80]
    assert found["base"] and found["alpha 0"] == found["base"]
    assert found["tuned"] != found["base"]  # the stand-in really moved


def test_a_model_that_does_not_extend_the_base_is_refused(pair):
    base, _ = pair
    other = checkpoint.from_record(checkpoint.read(WEIGHTS / "weapons4-yolov4-tiny.pt"))
    with pytest.raises(ModelFormatError, match="does not extend yolov4-tiny"):
        interpolate(other, base, 0.5)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        interpolate(pair[1], base, 1.5)


def test_the_sweep_measures_each_alpha_and_chooses(cli, tiny, tmp_path):
    options = {"epochs": 1, "batch": 4, "device": "cpu", "loader_workers": 0, "max_steps": 3, "lr": 0.02}
    summary = train(
        TrainConfig(data=str(tiny), out=str(tmp_path / "run"), keep_classes=True, **options), load_settings()
    )
    coco = load_dataset(COCO_VAL / "instances_val2017_subset.json")
    coco.samples = coco.samples[:20]  # a small retention set: 20 COCO images
    annotations = write_splits({"val": coco}, tmp_path / "kept", "yolo")
    out = tmp_path / "merged.pt"
    args = ("interpolate", summary["last"], "--base", "yolov4-tiny", "--out", out, "--device", "cpu")
    sweep = ("--data", tiny, "--retention-data", annotations, "--alphas", "1,0.5,0")
    code, stdout, stderr = cli(*args, *sweep, "--min-retention", "0.9")
    assert code == 0, stdout + stderr
    rows = json.loads((tmp_path / "merged-sweep.json").read_text())
    assert [r["alpha"] for r in rows] == [1, 0.5, 0]
    # α 0: the base model's own scores for its classes; only the new classes' boxes, competing for the 100
    # detections an image keeps, move its AP50 a little
    assert rows[-1]["retention"] == pytest.approx(1.0, abs=0.05)
    assert all(
        0 <= r["AP50"] <= 1 and r["per_class"] and set(r["per_class"]) <= {"airpods", "phone", "wallet"} for r in rows
    )
    chosen = max((r for r in rows if r["retention"] >= 0.9), key=lambda r: r["AP50"])
    record = checkpoint.read(out)
    assert record["interpolation"]["alpha"] == chosen["alpha"]
    assert (tmp_path / "merged-tradeoff.png").stat().st_size > 10_000
    code, stdout, stderr = cli("predict", DOG, "--model", out, "--json")
    assert code == 0 and '"dog"' in stdout, stdout + stderr
    bad = [
        ((*args,), "give either --alpha, or --data with --retention-data"),
        ((*args, "--alpha", "0.5", *sweep), "give either --alpha"),
        ((*args, *sweep[:4], "--alphas", "a,b"), "--alphas takes numbers between 0 and 1"),
        ((*args, *sweep[:4], "--alphas", "1.5"), "--alphas takes numbers between 0 and 1"),
        ((*args[:4], "--out", tmp_path / "merged.onnx", "--alpha", "1"), "--out is a checkpoint: a .pt file"),
        (
            ("interpolate", WEIGHTS / "weapons4-yolov4-tiny.pt", "--base", "yolov4-tiny", "--out", out, "--alpha", "1"),
            "does not extend yolov4-tiny",
        ),
    ]
    for given, message in bad:
        code, stdout, stderr = cli(*given)
        assert code != 0 and message in stdout + stderr and "Traceback" not in stdout + stderr, (given, stdout + stderr)
