"""Weight-space interpolation of an extended model with its base (as WiSE-FT does for fine-tuned classifiers):
every weight the base model has becomes ``α × fine-tuned + (1 − α) × base``; the new classes' head rows stay
as fine-tuned. One knob, no training: α = 1 is the fine-tuned model, α = 0 scores the base classes exactly as
the base model does (beside the new classes' boxes). A sweep measures what each α keeps of both."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from ..darknet.combined import check_extends
from ..darknet.heads import head_convs, resize_heads, with_heads
from ..datasets import DetectionDataset
from ..errors import DatasetError, InvalidOptionError, ModelFormatError
from ..network import Network
from . import engine


def base_state(tuned: Network, base: Network) -> dict[str, torch.Tensor]:
    """``base``'s weights in ``tuned``'s shape (its head extended as ``tuned``'s was); a ``tuned`` that does not
    extend ``base`` is refused."""
    check_extends(tuned, base)
    net = resize_heads(base.module, len(tuned.meta.classes), keep=len(base.meta.classes))
    wanted = [(h.anchors, h.scale_x_y) for h in tuned.module.heads]
    if [(h.anchors, h.scale_x_y) for h in net.heads] != wanted:  # trained with other heads: the base as it began
        same_scale = [h.scale_x_y for h in net.heads] == [scale for _, scale in wanted]
        net = with_heads(net, None if same_scale else wanted[0][1], [list(a) for a, _ in wanted])
    start = net.state_dict()
    for key, value in tuned.module.state_dict().items():
        if key not in start or start[key].shape != value.shape:
            raise ModelFormatError(f"{tuned.meta.name} and {base.meta.name} differ at {key}: not the same network")
    return start


@torch.no_grad()
def interpolate(tuned: Network, base: Network, alpha: float, start: dict[str, torch.Tensor] | None = None) -> Network:
    """A copy of ``tuned`` (extended from ``base``: its first classes are the base's) with every weight the base
    has moved to ``alpha × tuned + (1 − alpha) × base``; ``start``: :func:`base_state`'s, when the caller has it."""
    if not 0.0 <= alpha <= 1.0:
        raise InvalidOptionError(f"alpha must be between 0 and 1, got {alpha}")
    start = start if start is not None else base_state(tuned, base)
    n_base, n_tuned = len(base.meta.classes), len(tuned.meta.classes)
    heads = tuple(f"layers.{i}." for i in head_convs(tuned.module))
    state = {}
    for key, value in tuned.module.state_dict().items():
        if not value.is_floating_point():
            state[key] = value  # batch-norm counters
            continue
        mixed = alpha * value + (1 - alpha) * start[key].to(value)
        if key.startswith(heads):  # per anchor: box, objectness, base classes, then the new classes as tuned
            rows = n_tuned + 5
            for a in range(value.shape[0] // rows):
                mixed[a * rows + 5 + n_base : (a + 1) * rows] = value[a * rows + 5 + n_base : (a + 1) * rows]
        state[key] = mixed
    merged = copy.deepcopy(tuned)
    merged.module.load_state_dict(state)
    return merged


def sweep(
    tuned: Network,
    base: Network,
    alphas: Sequence[float],
    val: DetectionDataset,
    kept: DetectionDataset,
    device: torch.device,
    batch: int = 8,
) -> list[dict]:
    """For each α: validation AP50 (all and per class) of the new data, and the base classes' AP50 on ``kept``
    against the base model's own (``retention``)."""
    base_ap50 = engine.validate(base, kept, device, batch)["AP50"]
    if not base_ap50 > 0:
        raise DatasetError(f"{kept.source}: the base model scores AP50 0 there (none of its classes?): nothing to keep")
    start, rows = base_state(tuned, base), []
    for alpha in alphas:
        merged = interpolate(tuned, base, alpha, start)
        merged.module.to(device)
        report = engine.validate(merged, val, device, batch)
        kept_ap50 = engine.validate(merged, kept, device, batch)["AP50"]
        rows.append(
            {
                "alpha": alpha,
                "AP50": report["AP50"],
                "per_class": {k: v["AP50"] for k, v in report["per_class"].items() if v["AP50"] is not None},
                "retention_AP50": kept_ap50,
                "base_AP50": base_ap50,
                "retention": kept_ap50 / base_ap50 if base_ap50 > 0 else float("nan"),
            }
        )
    return rows


def choose(rows: list[dict], min_retention: float) -> dict:
    """The row with the best validation AP50 among those keeping at least ``min_retention`` × the base."""
    good = [r for r in rows if r["retention"] >= min_retention]
    if not good:
        best = max(rows, key=lambda r: r["retention"])
        raise ModelFormatError(
            f"no α keeps {min_retention:.2f}× of the base classes (at best {best['retention']:.2f}× at α "
            f"{best['alpha']:g}): try smaller --alphas or a lower --min-retention"
        )
    return max(good, key=lambda r: r["AP50"])
