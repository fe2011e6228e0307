"""Box geometry, in one place: overlap (IoU), how much of one box lies inside another, and who holds it (each
dangerous detection matched to the person it belongs to). Boxes are ``(x1, y1, x2, y2)``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .classes import DANGEROUS_CLASSES, canonical_name
from .detection import Detection

PERSON = "person"
MIN_SHARE = 0.2  # of the object's area inside the person's box, to count as held by that person


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def xywh_to_xyxy(box: Sequence[float]) -> tuple[float, float, float, float]:
    """A COCO ``(x, y, width, height)`` box as ``(x1, y1, x2, y2)``."""
    return (box[0], box[1], box[0] + box[2], box[1] + box[3])


def inside_share(obj: Sequence[float], person: Sequence[float]) -> float:
    """The fraction of ``obj``'s area that lies inside ``person``'s box."""
    w = min(obj[2], person[2]) - max(obj[0], person[0])
    h = min(obj[3], person[3]) - max(obj[1], person[1])
    area = (obj[2] - obj[0]) * (obj[3] - obj[1])
    return max(w, 0.0) * max(h, 0.0) / area if area > 0 else 0.0


def held_by(
    detections: Sequence[Detection], dangerous: Iterable[str] = DANGEROUS_CLASSES, min_share: float = MIN_SHARE
) -> dict[int, int | None]:
    """For each dangerous detection (by index in ``detections``), the index of the person holding it, or
    ``None`` when no person box overlaps it enough. The holder is the person box with the largest share of the
    object inside it (at least ``min_share``); of equal shares, the smallest box (the closer fit)."""
    detections = list(detections)  # records once (indexing Detections builds one each time)
    wanted = {canonical_name(c) for c in dangerous}
    people = [i for i, d in enumerate(detections) if canonical_name(d.label) == PERSON]
    out: dict[int, int | None] = {}
    for j, d in enumerate(detections):
        if canonical_name(d.label) not in wanted:
            continue
        best, key = None, (min_share, float("-inf"))
        for i in people:
            p = detections[i].box
            candidate = (inside_share(d.box, p), -(p[2] - p[0]) * (p[3] - p[1]))
            if candidate >= key:
                best, key = i, candidate
        out[j] = best
    return out
