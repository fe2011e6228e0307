"""What each family declares is what its detectors do: a Darknet and a torchvision detector made by their family
merge and augment exactly as its capabilities say (the ONNX family's: tests/e2e/test_export.py)."""

from __future__ import annotations

from hebbian_mirror.classes import COCO_CLASSES
from hebbian_mirror.families import family
from hebbian_mirror.meta import ModelMeta, Resize
from hebbian_mirror.network import Network
from hebbian_mirror.torchvision.detector import build

from ..conftest import detector


def test_each_familys_detectors_do_what_it_declares():
    darknet = detector("yolov4-tiny")
    caps = family("darknet").capabilities
    assert darknet.family == "darknet" and (darknet.refines, darknet.augments) == (caps.merge, caps.augment)
    meta = ModelMeta("tiny-rcnn", COCO_CLASSES, (320, 320), Resize.SHORTER_SIDE)
    network = Network("torchvision", build("fasterrcnn_mobilenet_v3_large_320_fpn", 81), meta)
    made = family("torchvision").detector(network, device="cpu")
    caps = family("torchvision").capabilities
    assert made.family == "torchvision" and (made.refines, made.augments) == (caps.merge, caps.augment)
