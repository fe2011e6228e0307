"""YOLO-layer decoding and post-processing: candidates (confidence filter), class-aware NMS, box merging."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms, box_iou

from ..errors import ModelFormatError
from .model import YoloHead
from .preprocess import Letterbox

# Above this many candidate (box, class) pairs per image only the best are sent to NMS.
MAX_NMS_CANDIDATES = 30_000


def decode_head(raw: torch.Tensor, head: YoloHead, net_w: int, net_h: int) -> torch.Tensor:
    """Decode one ``[yolo]`` output ``B×A(5+C)×H×W`` into ``B×(A·H·W)×(5+C)`` rows of
    ``cx, cy, w, h`` (network-input pixels), objectness and per-class probabilities."""
    b, _, h, w = raw.shape
    a = len(head.anchors)
    p = raw.view(b, a, head.classes + 5, h, w).permute(0, 1, 3, 4, 2).float()
    ys, xs = torch.meshgrid(
        torch.arange(h, device=raw.device, dtype=p.dtype),
        torch.arange(w, device=raw.device, dtype=p.dtype),
        indexing="ij",
    )
    grid = torch.stack((xs, ys), dim=-1)  # H×W×2
    anchors = torch.tensor(head.anchors, device=raw.device, dtype=p.dtype).view(1, a, 1, 1, 2)
    stride = torch.tensor((net_w / w, net_h / h), device=raw.device, dtype=p.dtype)
    if head.new_coords:  # Scaled-YOLOv4: the conv already applied the logistic
        xy = (p[..., 0:2] * 2.0 - 0.5 + grid) * stride
        wh = (p[..., 2:4] * 2.0) ** 2 * anchors
        rest = p[..., 4:]
    else:
        s = head.scale_x_y
        xy = (torch.sigmoid(p[..., 0:2]) * s - 0.5 * (s - 1.0) + grid) * stride
        wh = torch.exp(p[..., 2:4]) * anchors
        rest = torch.sigmoid(p[..., 4:])
    return torch.cat((xy, wh, rest), dim=-1).reshape(b, -1, head.classes + 5)


def reparametrise(raw: torch.Tensor, src: YoloHead, dst: YoloHead) -> torch.Tensor:
    """One head's raw output ``B×A(5+C)×H×W`` re-expressed for a head ``dst`` with as many anchors (other anchors,
    a ``scale_x_y`` at least ``src``'s), so that it decodes to the same boxes: where two parametrisations meet (a
    combined model's base part; a base model teaching a network whose heads were changed)."""
    if (src.anchors, src.scale_x_y) == (dst.anchors, dst.scale_x_y):
        return raw
    if src.new_coords or dst.new_coords or len(src.anchors) != len(dst.anchors) or dst.scale_x_y < src.scale_x_y:
        raise ModelFormatError("these YOLO heads cannot express each other's outputs")
    b, _, h, w = raw.shape
    p = raw.view(b, len(src.anchors), -1, h, w)
    s1, s2 = src.scale_x_y, dst.scale_x_y
    xy = p[:, :, :2]
    if s1 != s2:  # the same centre: sigmoid(q)·s2 − (s2 − 1)/2 = sigmoid(p)·s1 − (s1 − 1)/2
        xy = torch.logit((torch.sigmoid(xy.float()) * s1 + 0.5 * (s2 - s1)) / s2).to(raw.dtype)
    ratio = torch.tensor(src.anchors, dtype=raw.dtype, device=raw.device) / torch.tensor(
        dst.anchors, dtype=raw.dtype, device=raw.device
    )
    wh = p[:, :, 2:4] + ratio.log().view(1, -1, 2, 1, 1)
    return torch.cat((xy, wh, p[:, :, 4:]), dim=2).reshape(raw.shape)


def decode(raw_heads: Sequence[torch.Tensor], heads: Sequence[YoloHead], net_w: int, net_h: int) -> torch.Tensor:
    """Decode every head and concatenate: ``B×N×(5+C)``."""
    return torch.cat([decode_head(r, h, net_w, net_h) for r, h in zip(raw_heads, heads, strict=True)], dim=1)


def candidates(
    rows: torch.Tensor, letterbox: Letterbox, conf: float, classes: frozenset[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One view's (box, class) candidates from its decoded rows ``N×(5+C)``: xyxy boxes in image pixels,
    scores and class ids.

    Score of (box, class) = objectness × class probability; every class above ``conf`` yields a
    candidate (as Darknet does)."""
    obj = rows[:, 4]
    rows = rows[obj > conf]
    scores = rows[:, 4:5] * rows[:, 5:]
    if classes is not None:
        allowed = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
        allowed[[c for c in classes if c < scores.shape[1]]] = True
        scores = scores * allowed
    idx, cls = (scores > conf).nonzero(as_tuple=True)
    cxcywh = rows[idx, :4]
    boxes = torch.cat((cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2), dim=1)
    return letterbox.to_image(boxes), scores[idx, cls], cls


def suppress(
    boxes: torch.Tensor, scores: torch.Tensor, cls: torch.Tensor, iou: float, max_det: int, merge: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-aware NMS at ``iou``, best first, at most ``max_det``.

    ``merge``: each kept box becomes the score-weighted mean of itself and the candidates of its class that
    overlap it by more than ``iou`` (YOLOv5's merge-NMS, also called box voting). Scores stay the kept box's own."""
    if scores.numel() > MAX_NMS_CANDIDATES:
        scores, top = scores.topk(MAX_NMS_CANDIDATES)
        boxes, cls = boxes[top], cls[top]
    keep = batched_nms(boxes, scores, cls, iou)[:max_det]
    kept = boxes[keep]
    if merge and keep.numel():
        near = (box_iou(kept, boxes) > iou) & (cls[keep, None] == cls[None, :])
        near[torch.arange(len(keep)), keep] = True  # itself, whatever the IoU (1 is not above iou=1; 0/0 is NaN)
        weights = near * scores[None, :]
        kept = (weights @ boxes) / weights.sum(dim=1, keepdim=True)
    return kept, scores[keep], cls[keep]
