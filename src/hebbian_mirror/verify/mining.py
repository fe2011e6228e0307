"""What the verifier learns from: crops of labelled weapons, of labelled look-alikes, and of the detector's own
candidates on a dataset's images, each labelled by how it overlaps the labelled weapons.

The rule for a detector's candidate of a verified class (:func:`label_candidate`): overlapping a labelled
weapon by IoU ≥ ``POSITIVE_IOU`` it is that weapon (whatever class the detector said); overlapping none by
IoU ≥ ``NEGATIVE_IOU``, and holding no labelled weapon mostly inside it, it is background (a mined false
positive); anything between is left out, so no negative shows a labelled weapon."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boxes import inside_share, iou
from ..classes import canonical_name
from ..datasets.io import decode_as_annotated
from ..datasets.records import DetectionDataset
from ..detection import DetectOptions, Detector
from ..image_batches import decoded_batches

POSITIVE_IOU = 0.5
NEGATIVE_IOU = 0.1
INSIDE = 0.5  # a labelled weapon this much inside a candidate's box makes it no negative


@dataclass(frozen=True)
class Crop:
    """One training example: a box on an image and its label index (0: background). ``origin``: labelled,
    look-alike or mined."""

    image: Path
    box: tuple[float, float, float, float]
    label: int
    origin: str


def label_candidate(box: Sequence[float], weapons: Iterable[tuple[Sequence[float], int]]) -> int | None:
    """The label of a detector's candidate ``box`` among the labelled ``weapons`` (box, label): the best
    overlapping weapon's label at IoU ≥ ``POSITIVE_IOU``, 0 (background) when it overlaps none by IoU ≥
    ``NEGATIVE_IOU`` and holds none mostly inside it, ``None`` (not used) otherwise."""
    best, label = 0.0, None
    for gt, gt_label in weapons:
        overlap = iou(box, gt)
        if overlap > best:
            best, label = overlap, gt_label
        if inside_share(gt, box) >= INSIDE:
            best = max(best, NEGATIVE_IOU)
    if best >= POSITIVE_IOU:
        return label
    return 0 if best < NEGATIVE_IOU else None


def labelled_crops(ds: DetectionDataset, labels: Sequence[str], lookalikes: Iterable[str]) -> list[Crop]:
    """A crop per labelled weapon (its label) and per labelled look-alike (background)."""
    index = {canonical_name(c): i for i, c in enumerate(labels) if i}
    harmless = {canonical_name(c) for c in lookalikes}
    out = []
    for s in ds.samples:
        for b in s.boxes:
            name = canonical_name(ds.classes[b.class_id])
            if name in index:
                out.append(Crop(s.image, b.xyxy, index[name], "labelled"))
            elif name in harmless:
                out.append(Crop(s.image, b.xyxy, 0, "look-alike"))
    return out


def mined_crops(
    detector: Detector,
    ds: DetectionDataset,
    labels: Sequence[str],
    conf: float,
    batch_size: int = 8,
    progress: str | None = None,
) -> list[Crop]:
    """The detector's candidates of the verified classes (score ≥ ``conf``) on ``ds``'s images, labelled by
    :func:`label_candidate`."""
    index = {canonical_name(c): i for i, c in enumerate(labels) if i}
    wanted = {i for i, c in enumerate(detector.class_names) if canonical_name(c) in index}
    options = DetectOptions(conf=conf, classes=frozenset(wanted))
    out = []
    for batch in decoded_batches(ds.samples, batch_size, decode=decode_as_annotated, progress=progress):
        for s, found in zip(batch.items, detector.detect(batch.images, options), strict=True):
            weapons = [
                (b.xyxy, index[canonical_name(ds.classes[b.class_id])])
                for b in s.boxes
                if canonical_name(ds.classes[b.class_id]) in index
            ]
            for box in found.boxes:
                label = label_candidate(box.tolist(), weapons)
                if label is not None:
                    out.append(Crop(s.image, tuple(box.tolist()), label, "mined"))
    return out


def counts(crops: Iterable[Crop], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """How many crops of each label, by origin (for the report)."""
    out: dict[str, dict[str, int]] = {}
    for c in crops:
        by_origin = out.setdefault(labels[c.label], {})
        by_origin[c.origin] = by_origin.get(c.origin, 0) + 1
    return out


def matched(boxes: np.ndarray, scores: np.ndarray, truths: Sequence[Sequence[float]]) -> np.ndarray:
    """Which candidates (one class, any order) are true positives as COCO counts them at IoU 0.5: best score
    first, each matched to the unmatched truth it overlaps most."""
    hit = np.zeros(len(boxes), dtype=bool)
    used = [False] * len(truths)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        best, which = POSITIVE_IOU, -1
        for j, t in enumerate(truths):
            if not used[j] and (overlap := iou(boxes[i].tolist(), t)) >= best:
                best, which = overlap, j
        if which >= 0:
            used[which] = hit[i] = True
    return hit
