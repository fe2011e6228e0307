"""Checkpoints written by earlier versions keep loading: ../shared/weights/weapons4-yolov4-tiny.pt was written by
`hebbian-mirror train` on 2026-11-21 (before ModelMeta existed)."""

from __future__ import annotations

import torch

from hebbian_mirror.config import load_settings
from hebbian_mirror.images import decode_image
from hebbian_mirror.meta import Resize
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector, load_network

from ..conftest import SHARED, WEIGHTS

OLD = WEIGHTS / "weapons4-yolov4-tiny.pt"
PISTOLS = sorted((SHARED / "data" / "weapons" / "pistols" / "valid" / "images").glob("*.jpg"))[:6]


def test_old_checkpoint_loads_and_finds_pistols():
    det = load_detector(OLD, load_settings(device="cpu"))
    assert det.class_names == ["pistol", "airpods", "phone", "wallet"]
    assert det.display_names["pistol"] == "Pistol" and det.meta.resize is Resize.STRETCH
    assert det.input_size == (416, 416) and det.family == "darknet"
    found = [d.label for dets in det.detect([decode_image(p) for p in PISTOLS]) for d in dets]
    assert found.count("pistol") >= 4, found


def test_old_checkpoint_resaved_is_the_same_model(tmp_path):
    network = load_network(OLD, load_settings(device="cpu"))
    path = tmp_path / "again.pt"
    checkpoint.save(checkpoint.to_record(network), path)
    old, new = checkpoint.read(OLD), checkpoint.read(path)
    assert new["format"] == old["format"] and new["class_names"] == old["class_names"]
    assert new["cfg"] == old["cfg"]
    for key, value in old["state_dict"].items():
        assert torch.equal(value, new["state_dict"][key]), key
    image = decode_image(PISTOLS[0])
    a = load_detector(OLD, load_settings(device="cpu")).detect([image])[0]
    b = load_detector(path, load_settings(device="cpu")).detect([image])[0]
    assert [(d.label, d.box, d.score) for d in a] == [(d.label, d.box, d.score) for d in b]
