"""Giving a pretrained Darknet network a new class list: resize the YOLO heads, keep every other weight."""

from __future__ import annotations

import copy
import math

import torch

from ..errors import ModelFormatError
from .cfg import Section
from .model import DarknetNet

CLASS_PRIOR = 0.01  # initial class probability of a new head (bias = logit of it), as in focal-loss init


def with_num_classes(sections: list[Section], num_classes: int) -> list[Section]:
    """A copy of the cfg with every ``[yolo]`` layer, and the convolution feeding it, sized for ``num_classes``."""
    secs = copy.deepcopy(sections)
    for i, sec in enumerate(secs):
        if sec.type != "yolo":
            continue
        n_anchors = len(sec.get_floats("anchors")) // 2
        mask = sec.get_ints("mask", list(range(n_anchors)))
        prev = secs[i - 1]
        if prev.type not in ("convolutional", "conv"):
            raise ModelFormatError(f"[yolo] at cfg line {sec.line} is not fed by a convolution; cannot resize it")
        sec.options["classes"] = str(num_classes)
        prev.options["filters"] = str(len(mask) * (num_classes + 5))
    return secs


def head_convs(net: DarknetNet) -> list[int]:
    """Indices of the convolutions that feed the ``[yolo]`` layers."""
    return [i - 1 for i in net.head_layers]


@torch.no_grad()
def resize_heads(net: DarknetNet, num_classes: int, keep: int = 0) -> DarknetNet:
    """A new network for ``num_classes`` with all of ``net``'s weights except the head convolutions' class
    rows: their box and objectness rows are kept per anchor, and so are the first ``keep`` class rows (the base
    model's classes, when a model is extended rather than replaced); the others start fresh (weights from the
    default init, biases at the logit of a 1% prior)."""
    new = DarknetNet(with_num_classes(net.sections, num_classes))
    old_state, new_state = net.state_dict(), new.state_dict()
    heads = {f"layers.{i}." for i in head_convs(net)}
    for key, value in new_state.items():
        if not any(key.startswith(h) for h in heads):
            value.copy_(old_state[key])
            continue
        old = old_state[key]
        a = len(net.heads[0].anchors)
        c_old, c_new = old.shape[0] // a - 5, value.shape[0] // a - 5
        if keep > min(c_old, c_new):
            raise ModelFormatError(f"cannot keep {keep} classes of a head with {c_old} when resizing to {c_new}")
        for k in range(a):
            new_at, old_at = k * (c_new + 5), k * (c_old + 5)
            value[new_at : new_at + 5] = old[old_at : old_at + 5]
            if key.endswith("bias"):
                value[new_at + 5 : new_at + 5 + c_new] = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)
            value[new_at + 5 : new_at + 5 + keep] = old[old_at + 5 : old_at + 5 + keep]
    return new


def backbone_layers(net: DarknetNet) -> int:
    """How many leading layers form the backbone: everything before the first head's last two convolutions."""
    return max(0, net.head_layers[0] - 2)


@torch.no_grad()
def with_heads(
    net: DarknetNet, scale_x_y: float | None = None, anchors: list[list[tuple[float, float]]] | None = None
) -> DarknetNet:
    """A new network with other ``[yolo]`` parameters and every weight of ``net``: ``scale_x_y`` for all heads,
    ``anchors`` per head (as many as each has, network-input pixels). The head convolutions' box rows are
    adjusted so that the network starts out predicting what it did: the size rows' biases by the log of the
    anchors' ratio (exact), the centre rows scaled by the ratio of the scales (exact at the cell centre)."""
    if anchors is not None and [len(a) for a in anchors] != [len(h.anchors) for h in net.heads]:
        raise ModelFormatError(
            f"anchors per head {[len(a) for a in anchors]}, the model has {[len(h.anchors) for h in net.heads]}"
        )
    if any(h.new_coords for h in net.heads):
        raise ModelFormatError("heads with new_coords (Scaled-YOLOv4) cannot be re-parametrised")
    secs = copy.deepcopy(net.sections)
    flat = [pair for head in anchors for pair in head] if anchors is not None else None
    yolo_sections = [sec for sec in secs if sec.type == "yolo"]
    start = 0
    for h, sec in enumerate(yolo_sections):
        if scale_x_y is not None:
            sec.options["scale_x_y"] = f"{scale_x_y:g}"
        if flat is not None:
            sec.options["anchors"] = ", ".join(f"{w:.1f},{hh:.1f}" for w, hh in flat)
            sec.options["mask"] = ",".join(str(start + k) for k in range(len(anchors[h])))
            sec.options["num"] = str(len(flat))
            start += len(anchors[h])
    new = DarknetNet(secs)
    new.load_state_dict(net.state_dict())
    for h, conv in enumerate(head_convs(net)):
        old_head, new_head = net.heads[h], new.heads[h]
        layer = new.layers[conv]
        weight = next(m for m in layer.modules() if isinstance(m, torch.nn.Conv2d))
        per = old_head.classes + 5
        for k, (old_a, new_a) in enumerate(zip(old_head.anchors, new_head.anchors, strict=True)):
            at = k * per
            if weight.bias is not None:
                weight.bias[at + 2] += math.log(old_a[0] / new_a[0])
                weight.bias[at + 3] += math.log(old_a[1] / new_a[1])
            ratio = old_head.scale_x_y / new_head.scale_x_y
            weight.weight[at : at + 2] *= ratio
            if weight.bias is not None:
                weight.bias[at : at + 2] *= ratio
    return new


def cluster_anchors(
    sizes: torch.Tensor,
    current: list[tuple[tuple[float, float], ...]],
    iters: int = 300,
    restarts: int = 5,
    seed: int = 0,
) -> list[list[tuple[float, float]]]:
    """k-means of box sizes ``N×2`` (width, height in network-input pixels) with 1 − IoU as the distance (boxes
    sharing a centre; YOLOv2's) into as many anchors as the heads have (``current``: each head's anchors now),
    sorted by area and dealt to the heads in the order of their current anchors' sizes (the coarse head keeps
    the large ones)."""
    k = sum(len(a) for a in current)
    sizes = sizes.float()
    if len(sizes) < k:
        raise ModelFormatError(f"{len(sizes)} boxes cannot give {k} anchors")
    gen = torch.Generator().manual_seed(seed)
    best, best_fit = sizes[:k], -1.0
    for _ in range(restarts):  # k-means++ seeding (by 1 - IoU), then Lloyd's steps with medians
        centres = sizes[torch.randint(len(sizes), (1,), generator=gen)]
        while len(centres) < k:
            far = (1 - wh_iou(sizes, centres).max(1).values).square()
            centres = torch.cat((centres, sizes[torch.multinomial(far + 1e-12, 1, generator=gen)]))
        for _ in range(iters):
            nearest = wh_iou(sizes, centres).argmax(1)
            moved = torch.stack(
                [sizes[nearest == j].median(0).values if (nearest == j).any() else centres[j] for j in range(k)]
            )
            if torch.equal(moved, centres):
                break
            centres = moved
        if (fit := float(wh_iou(sizes, centres).max(1).values.mean())) > best_fit:
            best, best_fit = centres, fit
    centres = best
    ordered = sorted((tuple(round(float(v), 1) for v in c) for c in centres), key=lambda a: a[0] * a[1])
    by_size = sorted(range(len(current)), key=lambda h: sum(w * hh for w, hh in current[h]) / len(current[h]))
    out: list[list[tuple[float, float]]] = [[] for _ in current]
    start = 0
    for h in by_size:  # smallest anchors to the head that had the smallest
        out[h] = ordered[start : start + len(current[h])]
        start += len(current[h])
    return out


def wh_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of sizes ``N×2`` against ``M×2``, boxes sharing a centre."""
    inter = torch.min(a[:, None], b[None]).prod(-1)
    return inter / (a.prod(-1)[:, None] + b.prod(-1)[None] - inter)


def mean_best_iou(sizes: torch.Tensor, anchors: list[tuple[float, float]]) -> float:
    """How well ``anchors`` fit box sizes ``N×2``: each box's best IoU with one of them (centres shared), averaged."""
    return float(wh_iou(sizes.float(), torch.tensor(anchors, dtype=torch.float32)).max(1).values.mean())
