"""Labelled detection datasets, read into one in-memory form: COCO json and YOLO txt (folder or data.yaml)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DatasetError, InvalidImageError
from .images import IMAGE_SUFFIXES, image_size


@dataclass
class Box:
    """One ground-truth object; ``xyxy`` in pixels. ``area`` defaults to the box area (COCO json gives
    the segmentation area, which COCO's small/medium/large split uses)."""

    xyxy: tuple[float, float, float, float]
    class_id: int
    area: float | None = None
    iscrowd: bool = False


@dataclass
class Sample:
    image: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    image_id: int = 0


@dataclass
class DetectionDataset:
    classes: list[str]
    samples: list[Sample]
    source: str
    # COCO category id of each class (COCO json keeps its ids; others number from 1)
    category_ids: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable files and bad label lines

    def __post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.classes) + 1))


def load_dataset(data: str | Path, images: str | Path | None = None, split: str = "val") -> DetectionDataset:
    """Read ``data``: a COCO json (images from ``images``, default the json's folder), a YOLO
    ``data.yaml`` (its ``split`` entry) or a YOLO folder (``images/`` + ``labels/``, or images whose
    labels sit in the mirrored ``labels`` folder)."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.suffix.lower() == ".json":
        ds = _read_coco(path, Path(images) if images else path.parent)
    elif path.suffix.lower() in (".yaml", ".yml"):
        ds = _read_yolo_yaml(path, split)
    elif path.is_dir():
        ds = _read_yolo_folder(path, Path(images) if images else None)
    else:
        raise DatasetError(f"{path}: expected a COCO .json, a YOLO data.yaml or a YOLO folder")
    if not ds.samples:
        raise DatasetError(f"{path}: the dataset has no images")
    return ds


def _read_coco(path: Path, image_dir: Path) -> DetectionDataset:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        images = doc["images"]
        anns = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not a COCO detection json: {exc}") from exc
    index = {c["id"]: i for i, c in enumerate(cats)}
    samples: dict[int, Sample] = {}
    for im in images:
        samples[im["id"]] = Sample(image_dir / im["file_name"], int(im["width"]), int(im["height"]), image_id=im["id"])
    for a in anns:
        x, y, w, h = a["bbox"]
        box = Box((x, y, x + w, y + h), index[a["category_id"]], a.get("area"), bool(a.get("iscrowd", 0)))
        samples[a["image_id"]].boxes.append(box)
    return DetectionDataset(
        classes=[c["name"] for c in cats],
        samples=list(samples.values()),
        source=str(path),
        category_ids=[c["id"] for c in cats],
    )


def _names(value) -> list[str]:
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    return [str(v) for v in value]


def _read_yolo_yaml(path: Path, split: str) -> DetectionDataset:
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if "names" not in cfg:
        raise DatasetError(f"{path} has no 'names' list")
    root = (path.parent / str(cfg.get("path", "."))).resolve()
    key = {"valid": "val", "validation": "val"}.get(split, split)
    if key not in cfg:
        raise DatasetError(f"{path} has no '{key}' split (it has: {', '.join(k for k in cfg if k != 'names')})")
    entries = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
    classes = _names(cfg["names"])
    samples: list[Sample] = []
    problems: list[str] = []
    for entry in entries:
        image_dir = root / str(entry)
        if not image_dir.is_dir():
            raise DatasetError(f"{path}: split '{key}' folder {image_dir} does not exist")
        s, p = _yolo_samples(sorted(_images_in(image_dir)), classes)
        samples += s
        problems += p
    return DetectionDataset(classes, samples, f"{path}:{key}", problems=problems)


def _read_yolo_folder(path: Path, image_dir: Path | None) -> DetectionDataset:
    image_dir = image_dir or (path / "images" if (path / "images").is_dir() else path)
    classes: list[str] | None = None
    for candidate in (path / "classes.txt", path.parent / "classes.txt", path / "data.yaml"):
        if candidate.is_file():
            if candidate.suffix == ".txt":
                classes = [n.strip() for n in candidate.read_text(encoding="utf-8").splitlines() if n.strip()]
            else:
                classes = _names((yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}).get("names", []))
            break
    if not classes:
        raise DatasetError(f"{path}: no classes.txt or data.yaml with class names")
    samples, problems = _yolo_samples(sorted(_images_in(image_dir, recursive=True)), classes)
    return DetectionDataset(classes, samples, str(path), problems=problems)


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in it if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def yolo_label_path(image: Path) -> Path:
    """``.../images/x.jpg`` → ``.../labels/x.txt`` (the last ``images`` folder in the path)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_samples(images: list[Path], classes: list[str]) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for i, img in enumerate(images):
        try:
            w, h = image_size(img)
        except InvalidImageError as exc:
            problems.append(str(exc))
            continue
        sample = Sample(img, w, h, image_id=i + 1)
        label = yolo_label_path(img)
        if label.is_file():
            for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    cls = int(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:5])
                    if not 0 <= cls < len(classes) or len(parts) < 5:
                        raise ValueError("class id out of range" if len(parts) >= 5 else "too few values")
                except ValueError as exc:
                    problems.append(f"{label}:{n}: {exc}")
                    continue
                x1, y1 = max(0.0, (cx - bw / 2) * w), max(0.0, (cy - bh / 2) * h)
                x2, y2 = min(float(w), (cx + bw / 2) * w), min(float(h), (cy + bh / 2) * h)
                sample.boxes.append(Box((x1, y1, x2, y2), cls))
        samples.append(sample)
    return samples, problems
