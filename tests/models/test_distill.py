"""Distillation from the base model (train --distill): what the loss teaches, where labels win, and a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet import DarknetNet, load_darknet_weights, read_cfg
from hebbian_mirror.darknet.heads import resize_heads
from hebbian_mirror.darknet.loss import Teacher, YoloLoss
from hebbian_mirror.errors import TrainingConfigError
from hebbian_mirror.images import decode_image
from hebbian_mirror.train.loop import TrainConfig, train

from ..conftest import PHOTOS, WEIGHTS


def coco_net() -> DarknetNet:
    net = DarknetNet(read_cfg(WEIGHTS / "yolov4-tiny.cfg"))
    load_darknet_weights(net, WEIGHTS / "yolov4-tiny.weights")
    return net.eval()


def photos(*names: str) -> torch.Tensor:
    """Darknet's sample photos stretched to the network's 416², as a batch in [0, 1]."""
    images = [Image.fromarray(decode_image(PHOTOS / "darknet-samples" / n)).resize((416, 416)) for n in names]
    return torch.stack([torch.from_numpy(np.array(i)) for i in images]).permute(0, 3, 1, 2).float() / 255


def output_grads(loss_fn: YoloLoss, outputs, targets, teacher=None) -> list[torch.Tensor]:
    raw = [o.detach().clone().requires_grad_() for o in outputs]
    loss, _ = loss_fn(raw, targets, teacher)
    loss.backward()
    return [r.grad for r in raw]


def per_anchor(t: torch.Tensor, channels: int) -> torch.Tensor:
    """``B×(A·C)×H×W`` → ``B×A×H×W×C``."""
    b, _, h, w = t.shape
    return t.view(b, -1, channels, h, w).permute(0, 1, 3, 4, 2)


@pytest.fixture(scope="module")
def extended():
    """yolov4-tiny extended to 83 classes (COCO's 80 kept), its raw outputs and the base model's on two photos."""
    base = coco_net()
    net = resize_heads(base, 83, keep=80).eval()
    images = photos("dog.jpg", "person.jpg")
    with torch.no_grad():
        return net, net(images), base(images)


def test_a_model_that_is_its_own_teacher_learns_nothing_from_unlabelled_images(extended):
    net, outputs, taught = extended
    loss_fn, empty = YoloLoss(net), [torch.zeros((0, 5))] * 2
    plain = output_grads(loss_fn, outputs, empty)
    distilled = output_grads(loss_fn, outputs, empty, Teacher(taught, keep=80))
    for g_plain, g_distilled in zip(plain, distilled, strict=True):
        # without a teacher every anchor is pushed to "nothing here" (the dog, the people included) ...
        assert per_anchor(g_plain, 88)[..., 4].abs().max() > 1e-4
        # ... with the base model as its teacher, a model that answers as the base model does is already right
        assert g_distilled.abs().max() <= 1e-3 * g_plain.abs().max()
    # and a model that drifted from the base model is pulled back: objectness, kept classes and boxes
    drifted = [o.clone() for o in outputs]
    for o in drifted:
        per_anchor(o, 88)[..., :85] += 0.5
    pulled = output_grads(loss_fn, drifted, empty, Teacher(taught, keep=80))
    for g in pulled:
        rows = per_anchor(g, 88)
        assert (rows[..., 4].sum() > 0) and (rows[..., 5:85].sum() > 0) and (rows[..., :4].sum() > 0)
        assert rows[..., 85:].abs().max() == 0  # the new classes are not the teacher's to teach


def test_labels_win_where_the_teacher_box_overlaps_them(extended):
    """A new-class label put on the base model's own dog: around it the loss is the plain YOLO loss (the base
    model's dog must not be taught there), elsewhere (the bicycle, the truck) the teacher still teaches."""
    net, outputs, taught = extended
    loss_fn = YoloLoss(net)
    head0 = per_anchor(taught[0], 85)[0]
    dog = head0[..., 4].argmax()
    a, gy, gx = torch.unravel_index(dog, head0.shape[:3])
    boxes = [loss_fn._boxes(per_anchor(t, 85).float(), h) for h, t in enumerate(taught)]
    label = torch.cat([torch.tensor([[82.0]]), boxes[0][0, a, gy, gx][None]], 1)
    targets = [label, torch.zeros((0, 5))]
    plain = output_grads(loss_fn, outputs, targets)
    distilled = output_grads(loss_fn, outputs, targets, Teacher(taught, keep=80))
    near_checked = far_checked = 0
    for h, (g_plain, g_distilled) in enumerate(zip(plain, distilled, strict=True)):
        near = box_iou(boxes[h][0].reshape(-1, 4), label[:, 1:]).max(1).values.view(boxes[h].shape[1:4]) > 0.5
        obj_plain, obj_distilled = per_anchor(g_plain, 88)[0, ..., 4], per_anchor(g_distilled, 88)[0, ..., 4]
        # near the label: pushed down (or ignored, or the assigned anchor pulled up) exactly as without a teacher
        # (the totals' normalisers differ, so the directions are compared), and no class is distilled there
        assert torch.equal(torch.sign(obj_plain[near]), torch.sign(obj_distilled[near]))
        negatives = near & (obj_plain > 0)
        assert per_anchor(g_distilled, 88)[0, ..., 5:85][negatives].abs().max() == 0
        # elsewhere the base model's confident boxes (the bicycle, the truck) keep their objectness
        confident = (torch.sigmoid(per_anchor(taught[h], 85)[0, ..., 4]) > 0.3) & ~near
        if confident.any():
            assert (obj_plain[confident] > 0).all()  # without a teacher: "nothing here"
            assert obj_distilled[confident].abs().max() <= 1e-3 * obj_plain[confident].abs().min()
        near_checked += int(negatives.sum())
        far_checked += int(confident.sum())
    assert near_checked > 0 and far_checked > 0


def test_a_run_distils_and_distillation_needs_an_extended_model(tiny, tmp_path):
    options = {"epochs": 1, "batch": 4, "img_size": 160, "device": "cpu", "loader_workers": 0, "max_steps": 2}
    cfg = TrainConfig(
        data=str(tiny), out=str(tmp_path / "run"), eval_batch=4, keep_classes=True, distill=1.0, **options
    )
    distilled = train(cfg, load_settings(device="cpu"))["history"][0]["loss"]
    same = TrainConfig(data=str(tiny), out=str(tmp_path / "same"), eval_batch=4, keep_classes=True, **options)
    undistilled = train(same, load_settings(device="cpu"))["history"][0]["loss"]
    assert distilled > undistilled > 0  # the same batches, plus what the base model teaches
    plain = TrainConfig(data=str(tiny), out=str(tmp_path / "plain"), distill=1.0, **options)
    with pytest.raises(TrainingConfigError, match="needs --keep-classes"):
        train(plain, load_settings(device="cpu"))


def test_iou_objectness_aims_each_assigned_anchor_at_its_fit():
    """--iou-objectness: an assigned anchor's objectness target is its box's IoU with the label, not 1; every
    other anchor is taught as before."""
    net = coco_net()
    with torch.no_grad():
        outputs = net(photos("dog.jpg"))
    for o in outputs:
        per_anchor(o, 85)[..., 4] = 0.0  # every objectness 0.5: the gradient then shows each anchor's target
    # the dog's box (from the model itself), moved by a fifth of its size: its anchors fit it only roughly
    head0 = per_anchor(outputs[0], 85)[0]
    boxes = [YoloLoss(net)._boxes(per_anchor(o, 85).float(), h) for h, o in enumerate(outputs)]
    a, gy, gx = torch.unravel_index(head0[..., 5 + 16].argmax(), head0.shape[:3])
    dog = boxes[0][0, a, gy, gx]
    label = torch.cat([torch.tensor([16.0]), dog + 0.2 * (dog[2:] - dog[:2]).repeat(2)])[None]
    ones = output_grads(YoloLoss(net), outputs, [label])
    fits = output_grads(YoloLoss(net, iou_objectness=True), outputs, [label])
    rough = 0
    for h, (g_one, g_fit) in enumerate(zip(ones, fits, strict=True)):
        obj_one, obj_fit = per_anchor(g_one, 85)[0, ..., 4], per_anchor(g_fit, 85)[0, ..., 4]
        assigned = obj_one < 0  # pulled up towards 1 (the rest: pushed down to 0, or ignored)
        iou = box_iou(boxes[h][0][assigned], label[:, 1:])[:, 0]
        # the same weight, the target moved: (0.5 - iou) instead of (0.5 - 1)
        assert torch.allclose(obj_fit[assigned], obj_one[assigned] * (0.5 - iou) / (0.5 - 1), rtol=1e-4, atol=1e-9)
        assert torch.equal(obj_fit[~assigned], obj_one[~assigned])
        # the target is a number, not a path for gradients: boxes and classes learn exactly as before
        assert torch.equal(per_anchor(g_fit, 85)[..., :4], per_anchor(g_one, 85)[..., :4])
        rough += int((iou < 0.9).sum())
    assert rough > 0


def test_iou_objectness_aims_an_anchor_two_labels_share_at_the_better_fit():
    net = coco_net()
    with torch.no_grad():
        outputs = net(photos("dog.jpg"))
    for o in outputs:
        per_anchor(o, 85)[..., 4] = 0.0
    head0 = per_anchor(outputs[0], 85)[0]
    a, gy, gx = torch.unravel_index(head0[..., 5 + 16].argmax(), head0.shape[:3])
    dog = YoloLoss(net)._boxes(per_anchor(outputs[0], 85).float(), 0)[0, a, gy, gx]
    inset = 0.06 * (dog[2:] - dog[:2]).repeat(2) * torch.tensor([1, 1, -1, -1])
    exact, smaller = (torch.cat([torch.tensor([16.0]), box])[None] for box in (dog, dog + inset))  # one centre

    def targets(labels: torch.Tensor, iou: bool = True) -> list[torch.Tensor]:
        """Per head, each anchor's objectness target as the gradient shows it: with every logit 0 it is
        w·(0.5 - target), and w is the plain negatives' gradient (target 0) doubled."""
        grads = output_grads(YoloLoss(net, iou_objectness=iou), outputs, [labels])
        obj = [per_anchor(g, 85)[0, ..., 4] for g in grads]
        return [0.5 - o / (2 * o.max()) for o in obj]

    both = [(e > 0.99) & (s > 0.99) for e, s in zip(targets(exact, False), targets(smaller, False), strict=True)]
    fit_exact, fit_smaller = targets(exact), targets(smaller)
    for order in (torch.cat([exact, smaller]), torch.cat([smaller, exact])):
        for h, pair in enumerate(targets(order)):
            better = torch.max(fit_exact[h], fit_smaller[h])
            assert torch.allclose(pair[both[h]], better[both[h]], atol=1e-4)
    shared = torch.cat([(e - s)[m] for e, s, m in zip(fit_exact, fit_smaller, both, strict=True)])
    assert len(shared) and shared.abs().max() > 0.05  # anchors the two labels share, which they fit differently
