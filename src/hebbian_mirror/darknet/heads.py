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
