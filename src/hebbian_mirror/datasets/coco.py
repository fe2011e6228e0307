"""COCO json datasets (Roboflow's layout too: images and ``_annotations.coco.json`` in one split folder)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatasetError
from .files import UniqueNames, place
from .records import Box, DetectionDataset, Sample, Splits

SPLIT_FILE = "_annotations.coco.json"


def read(path: Path, image_dir: Path) -> DetectionDataset:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        images = doc["images"]
        anns = doc.get("annotations", [])
        index = {c["id"]: i for i, c in enumerate(cats)}
        samples: dict[int, Sample] = {}
        for im in images:
            samples[im["id"]] = Sample(
                image_dir / im["file_name"], int(im["width"]), int(im["height"]), image_id=im["id"]
            )
        for a in anns:
            x, y, w, h = a["bbox"]
            seg = a.get("segmentation")
            outline = tuple(tuple(map(float, p)) for p in seg) if isinstance(seg, list) else ()  # not RLE
            box = Box((x, y, x + w, y + h), index[a["category_id"]], a.get("area"), bool(a.get("iscrowd", 0)), outline)
            samples[a["image_id"]].boxes.append(box)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not a COCO detection json: {exc}") from exc
    display = {c["name"]: c["display_name"] for c in cats if c.get("display_name")}
    return DetectionDataset(
        classes=[c["name"] for c in cats],
        samples=list(samples.values()),
        source=str(path),
        category_ids=[c["id"] for c in cats],
        display_names=display,
    )


def write(splits: Splits, out: Path) -> Path:
    """``out/<split>/`` with the images and ``_annotations.coco.json``; returns ``out``."""
    for split, ds in splits.items():
        folder = out / split
        names = UniqueNames()
        images, annotations = [], []
        for i, s in enumerate(ds.samples, 1):
            name = names(s.image)
            place(s.image, folder / name)
            images.append({"id": i, "file_name": name, "width": s.width, "height": s.height})
            for b in s.boxes:
                x1, y1, x2, y2 = b.xyxy
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "category_id": b.class_id + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": b.area if b.area is not None else (x2 - x1) * (y2 - y1),
                        "iscrowd": int(b.iscrowd),
                    }
                )
        categories = [
            {"id": k + 1, "name": c, **({"display_name": ds.display_names[c]} if c in ds.display_names else {})}
            for k, c in enumerate(ds.classes)
        ]
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (folder / SPLIT_FILE).write_text(json.dumps(doc), encoding="utf-8")
    return out
