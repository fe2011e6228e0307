"""torchvision detectors through the zoo.

Their official checkpoints cannot be downloaded here, so this builds a checkpoint in the official
format (the architecture's state dict, minus the batch-norm counters frozen-BN checkpoints lack) under
the official file name in a temporary weights cache, and checks the whole loading and inference path:
class mapping onto the 80 COCO ids, thresholds, filters and box coordinates.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.models.detection as tvd

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.models.registry import get_spec

from ..conftest import DOG, detector


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tv-weights")
    spec = get_spec("ssdlite320-mobilenet-v3-large")
    torch.manual_seed(0)
    model = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, folder / spec.files[0].name)
    return folder


def test_torchvision_model_loads_and_detects(cache):
    det = load_detector("ssdlite320-mobilenet-v3-large", load_settings(weights_dir=cache, device="cpu", offline=True))
    assert det.info()["family"] == "torchvision" and len(det.class_names) == 80
    img = decode_image(DOG)
    results = det.detect([img, img[:200, :300].copy()], DetectOptions(conf=0.0, iou=0.5, max_det=50))
    assert len(results) == 2
    for result, (h, w) in zip(results, [(576, 768), (200, 300)], strict=True):
        assert 0 < len(result) <= 50
        for d in result:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            assert 0 <= d.class_id < 80 and d.label == det.class_names[d.class_id]
    only = det.detect([img], DetectOptions(conf=0.0, classes=frozenset({0, 16})))[0]
    assert {d.class_id for d in only} <= {0, 16}


def test_merge_and_augment_are_refused_with_a_clear_error(cache):
    """torchvision detectors run their own NMS: no box voting, no test-time augmentation. Asked for them, the
    detector and a request answer clearly; the server's own ``merge`` / ``augment`` apply to Darknet models only."""
    from types import SimpleNamespace

    from hebbian_mirror.server.errors import APIError
    from hebbian_mirror.server.pipeline import Inputs, detect_options

    det = load_detector("ssdlite320-mobilenet-v3-large", load_settings(weights_dir=cache, device="cpu", offline=True))
    for options in (DetectOptions(merge=True), DetectOptions(augment=True)):
        with pytest.raises(ValueError, match="merge and augment are for Darknet YOLO models"):
            det.detect([decode_image(DOG)], options)
    server = SimpleNamespace(settings=load_settings(merge=True, augment=True))
    with pytest.raises(APIError, match="merge and augment are for Darknet YOLO models") as refused:
        detect_options(server, det, Inputs(read=None, merge=True))
    assert refused.value.status == 422
    options = detect_options(server, det, Inputs(read=None))
    assert (options.merge, options.augment) == (False, False)
    assert det.detect([decode_image(DOG)], options)
    darknet = detect_options(server, detector("yolov4-tiny"), Inputs(read=None))
    assert (darknet.merge, darknet.augment) == (True, True)
