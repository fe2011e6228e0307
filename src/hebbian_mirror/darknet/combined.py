"""A base model and a model extended from it, run as one detector (``hebbian-mirror combine``).

Fine-tuning a COCO model on new classes costs some of its old ones, however it is done. A combined model does
not pay that: every base class the fine-tune did not teach is scored by the base model, unchanged; the new
classes, and the base classes the new data teaches (``taught``: its knives, its phones), by the extended model.
Each ``[yolo]`` head of the pair becomes one head with both models' anchors (the base's first), each anchor
scoring only its model's classes, so decoding, selection, NMS, export and the ONNX backend need nothing new.
The layers both networks have identical from the input on (a backbone frozen in training) run once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..classes import canonical_name
from ..errors import ModelFormatError
from ..network import Network
from .model import DarknetNet, YoloHead
from .yolo import reparametrise

log = logging.getLogger(__name__)

SILENT_LOGIT = -1e4  # a class an anchor does not score: its probability is 0 after the logistic, in fp16 too


def check_extends(tuned: Network, base: Network) -> None:
    """``tuned`` extends ``base``: both Darknet, ``tuned``'s first classes are the base's."""
    if tuned.family != "darknet" or base.family != "darknet":
        raise ModelFormatError("only Darknet models extended from a Darknet base model can be combined or interpolated")
    for net in (tuned, base):
        if isinstance(net.module, CombinedNet):
            raise ModelFormatError(f"{net.meta.name} is already a combined model: use the extended model it holds")
    if tuple(tuned.meta.classes[: len(base.meta.classes)]) != tuple(base.meta.classes):
        raise ModelFormatError(
            f"{tuned.meta.name} does not extend {base.meta.name}: its first classes are not the base model's "
            "(train it with --keep-classes)"
        )


class CombinedNet(nn.Module):
    """``base`` and ``tuned`` (extended from it) as one network with ``tuned``'s classes: per ``[yolo]`` head,
    the base's anchors score the base classes except ``taught`` (class indices), ``tuned``'s the rest."""

    def __init__(self, base: DarknetNet, tuned: DarknetNet, taught: Sequence[int]) -> None:
        super().__init__()
        n_base, n_all = base.num_classes, tuned.num_classes
        same = [(len(h.anchors), h.new_coords) for h in base.heads] == [
            (len(h.anchors), h.new_coords) for h in tuned.heads
        ] and all(
            b.scale_x_y == t.scale_x_y or (b.scale_x_y < t.scale_x_y and not b.new_coords)
            for b, t in zip(base.heads, tuned.heads, strict=True)
        )
        if not same or (base.width, base.height) != (tuned.width, tuned.height):
            raise ModelFormatError("a combined model needs two networks with the same heads and input size")
        if n_all < n_base or any(not 0 <= t < n_base for t in taught):
            raise ModelFormatError(f"taught classes {list(taught)} are not among the base model's {n_base}")
        self.base, self.tuned, self.taught = base, tuned, tuple(sorted(set(taught)))
        self.width, self.height = tuned.width, tuned.height
        self.heads = [
            YoloHead(b.anchors + t.anchors, n_all, t.scale_x_y, t.new_coords)
            for b, t in zip(base.heads, tuned.heads, strict=True)
        ]
        from_tuned = torch.zeros(n_all + 5, dtype=torch.bool)
        from_tuned[:5] = True  # box and objectness
        from_tuned[5 + n_base :] = True
        from_tuned[[5 + t for t in self.taught]] = True
        from_base = ~from_tuned
        from_base[:5] = True
        self.register_buffer("from_base", from_base, persistent=False)  # 1-D: channels-last leaves it alone
        self.register_buffer("from_tuned", from_tuned, persistent=False)
        self.shared = 0  # leading layers both networks have identical: set by :meth:`fuse`, run once
        self.sources: dict[str, str] = {}  # where the two came from (``tuned``, ``base``), for people to read

    @property
    def num_classes(self) -> int:
        return self.tuned.num_classes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        k = self.shared
        start = self.base.run(x, [], 0, k, keep_all=True)
        last = start[k - 1] if k else x
        base_out = self.base.run(last, list(start), k, len(self.base.layers))
        tuned_out = self.tuned.run(last, list(start), k, len(self.tuned.layers))
        heads = []
        from_base, from_tuned = self.from_base.view(1, 1, -1, 1, 1), self.from_tuned.view(1, 1, -1, 1, 1)
        layers = zip(self.heads, self.base.heads, self.base.head_layers, self.tuned.head_layers, strict=True)
        for head, own, bi, ti in layers:
            b, t = base_out[bi], tuned_out[ti]
            if own.scale_x_y != head.scale_x_y and not own.new_coords:  # heads changed (train --neighbour-cells)
                b = reparametrise(b, own, replace(own, scale_x_y=head.scale_x_y))
            n, _, h, w = b.shape
            b = b.view(n, -1, self.base.num_classes + 5, h, w)
            t = t.view(n, -1, head.classes + 5, h, w)
            b = torch.cat((b, b.new_zeros(n, b.shape[1], head.classes - self.base.num_classes, h, w)), dim=2)
            silent = 0.0 if head.new_coords else SILENT_LOGIT  # new_coords heads output probabilities
            both = torch.cat((b.where(from_base, silent), t.where(from_tuned, silent)), dim=1)
            heads.append(both.reshape(n, -1, h, w))
        return heads

    def fuse(self) -> CombinedNet:
        """Find the shared leading layers (weights compared before folding), then fold both networks."""
        self.shared = shared_layers(self.base, self.tuned)
        self.base.fuse()
        self.tuned.fuse()
        return self


def shared_layers(a: DarknetNet, b: DarknetNet) -> int:
    """How many leading layers ``a`` and ``b`` have identical (cfg and every weight and statistic), stopping
    before the first head."""
    sa, sb = a.state_dict(), b.state_dict()
    count = 0
    for i in range(min(a.head_layers[0], b.head_layers[0])):
        if a.sections[i + 1].type != b.sections[i + 1].type or a.sections[i + 1].options != b.sections[i + 1].options:
            break
        prefix = f"layers.{i}."
        keys = [k for k in sa if k.startswith(prefix)]
        if keys != [k for k in sb if k.startswith(prefix)] or not all(torch.equal(sa[k], sb[k]) for k in keys):
            break
        count = i + 1
    return count


def combine(
    tuned: Network, base: Network, taught: Sequence[str] = (), sources: tuple[str, str] | None = None
) -> Network:
    """One network: ``base``'s classes scored by ``base``, except the ``taught`` ones (names of base classes the
    fine-tune's data labels), and the new classes, scored by ``tuned``. ``sources``: where the two came from
    (``tuned``'s, ``base``'s), kept in the checkpoint."""
    check_extends(tuned, base)
    base_names = [canonical_name(c) for c in base.meta.classes]
    indices = []
    for name in taught:
        if canonical_name(name) not in base_names:
            raise ModelFormatError(f"taught class {name!r} is not one of {base.meta.name}'s classes")
        indices.append(base_names.index(canonical_name(name)))
    net = base.module
    if (net.width, net.height) != (tuned.module.width, tuned.module.height):  # trained with --img-size
        log.warning("%s runs at %s's input size here: %dx%d", base.meta.name, tuned.meta.name, *tuned.meta.input_size)
        net = net.with_input_size(tuned.module.width, tuned.module.height)
    module = CombinedNet(net, tuned.module, indices)
    if sources:
        module.sources = {"tuned": sources[0], "base": sources[1]}
    return Network("darknet", module, tuned.meta, dict(tuned.arch))
