"""YOLO selection's refinements: ``merge`` (box voting) and ``augment`` (test-time augmentation), on constructed
boxes, real photos and the COCO subset, and refused where a detector has no such selection."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch
from torchvision.ops import box_iou

from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image

from ..conftest import COCO_VAL, DOG, KNIFE, detector


def _match(a, b, iou: float) -> list[bool]:
    """For each detection of ``a``: does ``b`` have one of the same class overlapping it by at least ``iou``?"""
    if not a or not b:
        return [False] * len(a)
    overlap = box_iou(torch.tensor([d.box for d in a]), torch.tensor([d.box for d in b]))
    same = torch.tensor([[x.label == y.label for y in b] for x in a])
    return ((overlap >= iou) & same).any(dim=1).tolist()


def test_augment_finds_what_plain_finds_adds_nothing_out_of_place_and_is_mirror_symmetric():
    det = detector("yolov4-tiny")
    img = decode_image(DOG)
    plain = det.detect([img], DetectOptions(conf=0.25))[0]
    loose = det.detect([img], DetectOptions(conf=0.05))[0]
    other = decode_image(KNIFE)
    # in one batch, each image gets its own: the plain request exactly the plain answer, the other its views
    mixed, augmented = det.detect([other, img], [DetectOptions(), DetectOptions(augment=True)])
    assert mixed == det.detect([other])[0] and augmented == det.detect([img], DetectOptions(augment=True))[0]
    # with no suppression (no IoU is above 1) every view's candidates come back: the plain view's exactly
    everything = DetectOptions(conf=0.2, iou=1.0, max_det=10_000)
    alone = det.detect([img], everything)[0]
    views = det.detect([img], replace(everything, augment=True))[0]
    assert set(alone) < set(views) and len(views) > 2 * len(alone)
    assert {"dog", "bicycle", "truck"} <= {d.label for d in augmented}
    assert all(_match(plain, augmented, 0.5))
    # the flipped and smaller views' boxes are mapped back onto the image: each confident one lies on an object
    # the plain pass sees too (the dog is on the left: a view left flipped would put one on the right)
    sure = [d for d in augmented if d.score >= 0.4]
    assert sure and all(_match(sure, loose, 0.5))
    # the views of a mirrored image are the mirrored views: the same answer, mirrored
    width = img.shape[1]
    mirrored = det.detect([np.ascontiguousarray(img[:, ::-1])], DetectOptions(augment=True))[0]
    back = [
        type(d)((width - d.box[2], d.box[1], width - d.box[0], d.box[3]), d.score, d.class_id, d.label)
        for d in mirrored
    ]
    assert all(_match(sure, back, 0.9)) and all(_match([d for d in back if d.score >= 0.4], augmented, 0.9))


def test_merge_and_augment_raise_coco_ap_in_evaluate(cli, tmp_path):
    """The CLI's --merge --augment, on the 82-image COCO subset: measured 0.476 AP50 plain, 0.509 with both."""
    reports = {}
    for name, flags in (("plain", ()), ("refined", ("--merge", "--augment"))):
        data = COCO_VAL / "instances_val2017_subset.json"
        code, _, stderr = cli("evaluate", "--model", "yolov4-tiny", "--data", data, "--out", tmp_path / name, *flags)
        assert code == 0, stderr
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert (reports["plain"]["merge"], reports["plain"]["augment"]) == (False, False)
    assert (reports["refined"]["merge"], reports["refined"]["augment"]) == (True, True)
    assert reports["refined"]["AP50"] > reports["plain"]["AP50"] + 0.02
    assert reports["refined"]["AP"] > reports["plain"]["AP"] + 0.02


def test_predict_takes_the_flags(cli):
    code, stdout, stderr = cli("predict", DOG, "--model", "yolov4-tiny", "--merge", "--augment", "--json")
    assert code == 0, stderr
    assert {"dog", "bicycle", "truck"} <= {d["label"] for d in json.loads(stdout)["detections"]}
