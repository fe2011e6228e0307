"""Issue 29's training levers on real weights: neighbour cells (heads at scale_x_y 2, three positives per label),
anchors clustered on the training boxes, copy-paste of labelled boxes onto images without them. A network whose
heads are changed starts out predicting what it did; a combined model and a teacher speak its parametrisation."""

from __future__ import annotations

import random

import pytest
import torch
from torchvision.ops import box_iou

from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights, read_cfg
from hebbian_mirror.darknet.combined import CombinedNet
from hebbian_mirror.darknet.detector import DarknetDetector
from hebbian_mirror.darknet.heads import cluster_anchors, resize_heads, with_heads
from hebbian_mirror.darknet.loss import YoloLoss
from hebbian_mirror.darknet.training import YoloTrainSet, label_sizes
from hebbian_mirror.darknet.yolo import decode_head, reparametrise
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.datasets.augment import AugmentConfig
from hebbian_mirror.errors import DatasetError, ModelFormatError, TrainingConfigError
from hebbian_mirror.images import decode_image
from hebbian_mirror.meta import ModelMeta
from hebbian_mirror.models import checkpoint
from hebbian_mirror.train.loop import TrainConfig, train

from ..conftest import PHOTOS, WEIGHTS


def coco_net() -> DarknetNet:
    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    load_darknet_weights(net, WEIGHTS / "yolov4-tiny.weights")
    return net.eval()


def found(net: DarknetNet, pixels, classes: tuple[str, ...]) -> tuple[torch.Tensor, list[int]]:
    meta = ModelMeta("m", classes, (net.width, net.height))
    detections = DarknetDetector.from_net(net, meta, device="cpu").detect([pixels])[0]
    return torch.tensor([d.box for d in detections]).reshape(-1, 4), [d.class_id for d in detections]


NEW_ANCHORS = [[(150.0, 120.0), (200.0, 260.0), (330.0, 300.0)], [(12.0, 20.0), (30.0, 40.0), (70.0, 90.0)]]


def test_other_anchors_start_out_predicting_exactly_what_the_model_did():
    net = coco_net()
    changed = with_heads(net, anchors=NEW_ANCHORS).eval()
    assert [list(h.anchors) for h in changed.heads] == NEW_ANCHORS
    x = torch.rand(1, 3, net.height, net.width)
    with torch.no_grad():
        for raw, new, h_old, h_new in zip(net(x), changed(x), net.heads, changed.heads, strict=True):
            before, after = (
                decode_head(raw, h_old, net.width, net.height),
                decode_head(new, h_new, net.width, net.height),
            )
            torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-4)


def test_heads_at_scale_2_find_what_the_model_found():
    net, pixels = coco_net(), decode_image((PHOTOS / "darknet-samples" / "dog.jpg").read_bytes())
    classes = tuple(f"c{i}" for i in range(80))
    boxes, ids = found(net, pixels, classes)
    changed_boxes, changed_ids = found(with_heads(net, 2.0).eval(), pixels, classes)
    assert len(ids) >= 3 and sorted(changed_ids) == sorted(ids)  # dog, bicycle, truck
    assert (box_iou(boxes, changed_boxes).max(1).values > 0.9).all()


def test_reparametrised_outputs_decode_to_the_same_boxes():
    net = coco_net()
    raw = torch.randn(2, 3 * 85, 13, 13) * 2
    src = net.heads[0]
    dst = type(src)(tuple(NEW_ANCHORS[0]), src.classes, 2.0)
    same = decode_head(reparametrise(raw, src, dst), dst, 416, 416)
    torch.testing.assert_close(same, decode_head(raw, src, 416, 416), atol=1e-3, rtol=1e-4)
    with pytest.raises(ModelFormatError):
        reparametrise(raw, dst, src)  # a scale of 2 cannot be said at 1.05


def test_a_combined_model_scores_the_base_classes_as_the_base_whatever_the_extended_heads():
    net, pixels = coco_net(), decode_image((PHOTOS / "darknet-samples" / "dog.jpg").read_bytes())
    coco = tuple(f"c{i}" for i in range(80))
    tuned = with_heads(resize_heads(net, 81, keep=80), 2.0, NEW_ANCHORS).eval()
    combined = CombinedNet(coco_net(), tuned, [])
    boxes, ids = found(net, pixels, coco)
    meta = ModelMeta("m", (*coco, "pistol"), (net.width, net.height))
    both = [d for d in DarknetDetector.from_net(combined, meta, device="cpu").detect([pixels])[0] if d.class_id < 80]
    assert sorted(d.class_id for d in both) == sorted(ids)
    torch.testing.assert_close(
        torch.tensor([d.box for d in both]).sort(0).values, boxes.sort(0).values, atol=0.05, rtol=0
    )
    with pytest.raises(ModelFormatError, match="same heads"):
        CombinedNet(with_heads(coco_net(), 2.0), resize_heads(net, 81, keep=80), [])  # base at 2, tuned at 1.05


def test_neighbour_cells_give_three_positives_per_label_and_anchor():
    net = coco_net()
    label = [torch.tensor([[16.0, 100.0, 110.0, 180.0, 190.0]])]  # centre (140, 150): off-centre in its cells
    with torch.no_grad():
        outputs = net(torch.rand(1, 3, 416, 416))
        _, plain = YoloLoss(net)(outputs, label)
        wide = with_heads(net, 2.0)
        _, more = YoloLoss(wide, neighbours=True)(wide(torch.rand(1, 3, 416, 416)), label)
    assert plain["positives"] > 0 and more["positives"] == 3 * plain["positives"]
    with pytest.raises(ModelFormatError, match="scale_x_y 2"):
        YoloLoss(net, neighbours=True)


def test_anchors_cluster_on_the_boxes_and_go_to_the_heads_by_size():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 14], [24, 30], [40, 60], [90, 80], [150, 200], [300, 260]])
    sizes = torch.cat([c * (1 + 0.05 * torch.randn(50, 2, generator=gen)) for c in centres])
    current = [((81.0, 82.0), (135.0, 169.0), (344.0, 319.0)), ((23.0, 27.0), (37.0, 58.0), (81.0, 82.0))]
    anchors = cluster_anchors(sizes, current)
    flat = torch.tensor([a for head in anchors for a in head])
    assert (torch.cdist(centres, flat).min(1).values < 0.1 * centres.norm(dim=1)).all()
    assert min(w * h for w, h in anchors[0]) >= max(w * h for w, h in anchors[1])  # the coarse head: the large ones
    with pytest.raises(ModelFormatError):
        cluster_anchors(sizes[:3], current)


def test_copy_paste_adds_labelled_boxes_to_images_without_them(tiny):
    ds = load_splits(tiny)["train"]  # 12 images of AirPods: the last 6 made negatives
    for sample in ds.samples[6:]:
        sample.boxes = []
    random.seed(0)
    augment = AugmentConfig.off()
    augment.copy_paste, augment.paste_classes = 1.0, ("airpods",)
    pasted = YoloTrainSet(ds, (224, 224), letterbox=False, augment=augment)
    plain = YoloTrainSet(ds, (224, 224), letterbox=False, augment=AugmentConfig.off())
    for i in range(6):  # an image with the class already: left alone
        torch.testing.assert_close(pasted[i], plain[i])
    for i in range(6, 12):
        image, target = pasted[i]
        assert 1 <= len(target) <= 2 and (target[:, 0] == ds.classes.index("airpods")).all()
        x1, y1, x2, y2 = target[0, 1:].round().int().tolist()
        assert not torch.equal(image[:, y1:y2, x1:x2], plain[i][0][:, y1:y2, x1:x2])  # the crop is where its box is
    with pytest.raises(DatasetError, match="not among"):
        YoloTrainSet(ds, (224, 224), False, AugmentConfig(copy_paste=0.5, paste_classes=("pistol",)))
    with pytest.raises(DatasetError, match="paste_classes"):
        AugmentConfig(copy_paste=0.5)


def test_a_run_with_new_heads_saves_them_distils_through_them_and_resumes_only_with_them(tiny, tmp_path):
    options = {"epochs": 2, "batch": 4, "img_size": 160, "device": "cpu", "loader_workers": 0, "max_steps": 1}
    cfg = TrainConfig(
        data=str(tiny),
        out=str(tmp_path / "run"),
        eval_batch=4,
        keep_classes=True,
        distill=1.0,
        neighbour_cells=True,
        recluster_anchors=True,
        **options,
    )
    summary = train(cfg, load_settings(device="cpu"))
    assert summary["history"][0]["loss"] > 0
    net = checkpoint.load(tmp_path / "run" / "last.pt").module
    assert all(h.scale_x_y == 2.0 for h in net.heads)
    sizes = label_sizes(
        load_splits(tiny)["train"], (160, 160), checkpoint.load(tmp_path / "run" / "last.pt").meta.letterbox
    )
    assert sorted(a for h in net.heads for a in h.anchors) == sorted(
        a for h in cluster_anchors(sizes, [h.anchors for h in coco_net().heads]) for a in h
    )
    cfg.epochs, cfg.neighbour_cells = 3, False
    with pytest.raises(TrainingConfigError, match="neighbour-cells"):
        train(cfg, load_settings(device="cpu"), resume=True)
