"""Dataset tools behind `hebbian-mirror data`: stats, merge, split, preview."""

from __future__ import annotations

import hashlib
import random
import statistics
from dataclasses import replace
from pathlib import Path

from ..classes import canonical_name
from ..detection import Detection
from ..errors import DatasetError
from ..image_batches import decoded_batches
from ..images import draw_detections
from .io import decode_as_annotated
from .records import DetectionDataset, Splits


def fingerprint(ds: DetectionDataset) -> str:
    """A short hash of what a split holds (image names, their classes and boxes): two evaluations on splits with
    one fingerprint measured the same thing."""
    digest = hashlib.sha256()
    for s in sorted(ds.samples, key=lambda s: s.image.name):
        boxes = sorted((ds.classes[b.class_id], *(round(v) for v in b.xyxy)) for b in s.boxes)
        digest.update(f"{s.image.name}:{boxes};".encode())
    return digest.hexdigest()[:16]


def stats(splits: Splits) -> dict:
    """Per split: images, empty images, boxes per class, box sizes, problems."""
    out = {}
    for split, ds in splits.items():
        per_class = {c: 0 for c in ds.classes}
        widths, heights, sizes = [], [], {"small": 0, "medium": 0, "large": 0}
        for s in ds.samples:
            for b in s.boxes:
                per_class[ds.classes[b.class_id]] += 1
                widths.append(b.width)
                heights.append(b.height)
                area = b.area if b.area is not None else b.width * b.height
                sizes["small" if area < 32**2 else "medium" if area < 96**2 else "large"] += 1

        def summary(values: list[float]) -> dict:
            return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}

        out[split] = {
            "images": len(ds.samples),
            "empty_images": sum(1 for s in ds.samples if not s.boxes),
            "boxes": sum(per_class.values()),
            "boxes_per_class": per_class,
            "display_names": {c: ds.display_name(i) for i, c in enumerate(ds.classes)},
            "box_width_px": summary(widths),
            "box_height_px": summary(heights),
            "box_sizes_coco": sizes,
            "problems": ds.problems,
        }
    return out


def merge(datasets: list[Splits]) -> Splits:
    """Unite datasets: classes by name (:func:`canonical_name`; first spelling and display name win), splits
    by name."""
    classes: list[str] = []
    display: dict[str, str] = {}
    seen: set[str] = set()
    for splits in datasets:
        for ds in splits.values():
            for i, c in enumerate(ds.classes):
                if canonical_name(c) not in seen:
                    seen.add(canonical_name(c))
                    classes.append(c)
                    display[c] = ds.display_name(i)
    merged: Splits = {}
    for splits in datasets:
        for split, ds in splits.items():
            part = ds.remapped(classes, display)
            if split in merged:
                base = merged[split]
                base.samples += part.samples
                base.problems += part.problems
                base.source += f" + {part.source}"
            else:
                merged[split] = DetectionDataset(
                    classes, part.samples, part.source, display_names=dict(display), problems=part.problems
                )
    for ds in merged.values():
        for i, s in enumerate(ds.samples, 1):
            s.image_id = i
    return merged


def split(
    splits: Splits, fractions: dict[str, float], seed: int = 0, count: int | None = None, share: float | None = None
) -> Splits:
    """Pool every image and deal them into new splits by ``fractions`` (e.g. train 0.8, val 0.2), shuffled with
    ``seed``. ``count`` images, or a ``share`` of them, are kept when given: a random subset, the same for the
    same seed. Every split with a fraction above 0 gets at least one image while there are images to deal."""
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise DatasetError(f"split fractions must be positive, got {fractions}")
    first = next(iter(splits.values()))
    pool = [s for ds in splits.values() for s in ds.samples]
    random.Random(seed).shuffle(pool)
    if count is not None:
        if not 1 <= count <= len(pool):
            raise DatasetError(f"cannot take {count} images: the dataset has {len(pool)}")
        pool = pool[:count]
    elif share is not None:
        if not 0 < share <= 1:
            raise DatasetError(f"the subset must be a fraction between 0 and 1, got {share:g}")
        pool = pool[: max(1, round(len(pool) * share))]
    out: Splits = {}
    start = 0
    names = list(fractions)
    for k, name in enumerate(names):
        if k == len(names) - 1:
            n = len(pool) - start
        else:
            wanted = round(len(pool) * fractions[name] / total)
            later = sum(1 for m in names[k + 1 :] if fractions[m] > 0)  # keep one image for each later split
            n = min(max(wanted, 1 if fractions[name] > 0 else 0), max(len(pool) - start - later, 0))
        chosen = [replace(s, image_id=i) for i, s in enumerate(pool[start : start + n], 1)]
        start += n
        out[name] = DetectionDataset(
            first.classes, chosen, f"{first.source} ({name})", display_names=dict(first.display_names)
        )
    return out


def preview(ds: DetectionDataset, out: Path, limit: int | None = None) -> list[Path]:
    """Draw every image's ground-truth boxes (with display names) into ``out``; unreadable images are skipped."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for batch in decoded_batches(ds.samples[:limit], 8, decode=decode_as_annotated):
        for s, image in zip(batch.items, batch.images, strict=True):
            dets = [Detection(b.xyxy, 1.0, b.class_id, ds.display_name(b.class_id)) for b in s.boxes]
            path = out / f"{s.image.stem}.jpg"
            draw_detections(image, dets).save(path, quality=90)
            written.append(path)
    return written


def spread(items: list, n: int | None) -> list:
    """``n`` of ``items`` spread evenly over them (all of them when there are no more, or ``n`` is ``None``): a
    sample of a split whose datasets are concatenated takes from each."""
    return items if n is None or len(items) <= n else [items[i * len(items) // n] for i in range(n)]
