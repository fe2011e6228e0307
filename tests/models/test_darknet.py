"""Darknet in PyTorch: parity with OpenCV DNN on every Darknet model in ../shared, cfg/weights handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.images import decode_image, list_images
from hebbian_mirror.models.loader import load_detector

from ..conftest import COCO_VAL, DARKNET_MODELS, DOG, KNIFE, PHOTOS, WEIGHTS, detector
from ..opencv_reference import OpenCVYolo

PARITY_IMAGES = [
    *list_images([PHOTOS / "darknet-samples"]),
    KNIFE,
    PHOTOS / "weapons-in-hands" / "before2.jpg",
    *sorted((COCO_VAL / "images").glob("*.jpg"))[:4],
]


@pytest.fixture(scope="module", params=DARKNET_MODELS)
def pair(request, tmp_path_factory):
    name = request.param
    ref = OpenCVYolo(WEIGHTS / f"{name}.cfg", WEIGHTS / f"{name}.weights", tmp_path_factory.mktemp(name))
    return detector(name), ref


def test_raw_outputs_match_opencv(pair):
    ours, ref = pair
    img = decode_image(DOG)
    batch, _ = ours.preprocess([img])
    rows = ours.forward(batch)[0].numpy()
    w, h = ours.input_size
    parts = []
    for out, head in zip(ref.raw(batch.numpy()), ours.net.heads, strict=True):
        a = len(head.anchors)
        side = round((out.shape[0] / a) ** 0.5)
        # OpenCV orders rows (y, x, anchor); ours (anchor, y, x)
        parts.append(out.reshape(side, side, a, -1).transpose(2, 0, 1, 3).reshape(-1, out.shape[1]))
    cv = np.concatenate(parts)
    assert cv.shape == rows.shape
    np.testing.assert_allclose(cv[:, [0, 2]] * w, rows[:, [0, 2]], atol=0.05)
    np.testing.assert_allclose(cv[:, [1, 3]] * h, rows[:, [1, 3]], atol=0.05)
    np.testing.assert_allclose(cv[:, 4], rows[:, 4], atol=1e-4)
    np.testing.assert_allclose(cv[:, 5:], rows[:, 4:5] * rows[:, 5:], atol=1e-4)


def test_detections_match_opencv(pair):
    """Same images, same network input: boxes within 1 px and scores within 0.01, detection for detection."""
    ours, ref = pair
    options = DetectOptions(conf=0.1, iou=0.45, max_det=300)
    compared = 0
    for path in PARITY_IMAGES:
        img = decode_image(path)
        batch, fits = ours.preprocess([img])
        fit = fits[0]

        def to_image(xyxy, fit=fit):
            out = xyxy.copy()
            out[:, 0::2] = (out[:, 0::2] - fit.pad_x) / fit.scale_x
            out[:, 1::2] = (out[:, 1::2] - fit.pad_y) / fit.scale_y
            return out

        expected = ref.detect_blob(batch.numpy(), to_image, (img.shape[1], img.shape[0]), 0.1, 0.45, 300)
        got = ours.detect([img], options)[0]
        # scores within 1e-4 of the threshold may fall either side; compare the rest one to one
        expected = [e for e in expected if e[1] > options.conf + 1e-3]
        got = [g for g in got if g.score > options.conf + 1e-3]
        assert len(got) == len(expected), f"{path.name}: {len(got)} detections vs OpenCV's {len(expected)}"
        for (box, score, cls), det in zip(
            sorted(expected, key=lambda e: -e[1]), sorted(got, key=lambda d: -d.score), strict=True
        ):
            assert det.class_id == cls, path.name
            assert abs(det.score - score) < 0.01, path.name
            assert np.abs(np.array(det.box) - np.array(box)).max() < 1.0, path.name
        compared += len(got)
    assert compared > 20


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov3-tiny"])
def test_dog_photo_finds_dog_bicycle_and_vehicle(name):
    labels = {d.label for d in detector(name).detect([decode_image(DOG)])[0]}
    assert {"dog", "bicycle"} <= labels and labels & {"car", "truck"}


@pytest.mark.parametrize("name", DARKNET_MODELS)
def test_knife_photo_finds_person(name):
    dets = detector(name).detect([decode_image(KNIFE)])[0]
    assert any(d.label == "person" and d.score > 0.5 for d in dets)


def test_batch_equals_single_and_options_apply():
    det = detector("yolov4-tiny")
    imgs = [decode_image(p) for p in PARITY_IMAGES[:5]]
    batched = det.detect(imgs)
    for img, result in zip(imgs, batched, strict=True):
        single = det.detect([img])[0]
        assert [d.class_id for d in single] == [d.class_id for d in result]
        assert np.allclose([d.box for d in single], [d.box for d in result], atol=1e-3)
    dog = decode_image(DOG)
    only_dogs = det.detect([dog], DetectOptions(classes=frozenset({16})))[0]
    assert only_dogs and all(d.label == "dog" for d in only_dogs)
    assert len(det.detect([dog], DetectOptions(conf=0.01, max_det=2))[0]) == 2
    assert all(d.score >= 0.8 for d in det.detect([dog], DetectOptions(conf=0.8))[0])
    for d in det.detect([dog], DetectOptions(conf=0.01))[0]:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= dog.shape[1] and 0 <= y1 <= y2 <= dog.shape[0]
    assert det.detect([]) == []
    with pytest.raises(TypeError, match="uint8 RGB"):
        det.detect([np.zeros((10, 10), dtype=np.uint8)])


def test_letterbox_follows_model_family():
    assert detector("yolov3-tiny").letterbox is True
    assert detector("yolov4-tiny").letterbox is False
    det = detector("yolov3-tiny")
    batch, fits = det.preprocess([np.full((100, 300, 3), 255, dtype=np.uint8)])
    assert fits[0].scale_x == pytest.approx(fits[0].scale_y, rel=0.01) and fits[0].pad_y > 0 and fits[0].pad_x == 0
    assert torch.all(batch[0, :, 0, 0] == 0.5)  # grey padding as in Darknet


def test_cfg_and_weights_given_by_path_load(tmp_path):
    """A pair outside the zoo (renamed copies) loads, with names from a .names file beside the cfg."""
    cfg = tmp_path / "custom.cfg"
    cfg.write_text((WEIGHTS / "yolo-fastest-1.1.cfg").read_text())
    (tmp_path / "custom.weights").write_bytes((WEIGHTS / "yolo-fastest-1.1.weights").read_bytes())
    (tmp_path / "custom.names").write_text("\n".join(f"thing{i}" for i in range(80)))
    det = load_detector(f"{cfg},{tmp_path / 'custom.weights'}", load_settings(device="cpu"))
    assert det.class_names[16] == "thing16" and det.letterbox is False
    by_path = load_detector(str(cfg), load_settings(device="cpu"))
    assert by_path.input_size == (320, 320)
    dets = by_path.detect([decode_image(DOG)])[0]
    assert any(d.label == "thing16" for d in dets)  # dog


def test_grouped_and_depthwise_convolutions_built():
    net = detector("yolo-fastest-1.1").net
    groups = {m.groups for m in net.modules() if isinstance(m, torch.nn.Conv2d)}
    assert 1 in groups and any(g > 1 for g in groups)


def test_mismatched_weights_rejected(tmp_path):
    from hebbian_mirror.darknet import read_cfg

    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    with pytest.raises(ModelFormatError, match="does not fit this cfg"):
        load_darknet_weights(net, WEIGHTS / "yolov3-tiny.weights")
    short = tmp_path / "short.weights"
    short.write_bytes(b"\x00" * 8)
    with pytest.raises(ModelFormatError, match="too short"):
        load_darknet_weights(net, short)
