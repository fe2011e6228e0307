"""YOLO txt datasets: ``data.yaml`` with split folders, or a folder of ``images/`` + ``labels/``."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import DatasetError, InvalidImageError
from ..images import image_size
from .files import UniqueNames, images_in, place
from .records import Box, DetectionDataset, Sample, Splits, normalize_split


def _names(value) -> list[str]:
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value, key=int)]
    return [str(v) for v in value]


def read_yaml(path: Path) -> Splits:
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if "names" not in cfg:
        raise DatasetError(f"{path} has no 'names' list")
    root = (path.parent / str(cfg.get("path", "."))).resolve()
    classes = _names(cfg["names"])
    display = {str(k): str(v) for k, v in (cfg.get("display_names") or {}).items()}
    splits: Splits = {}
    for key in ("train", "val", "valid", "test"):
        if not cfg.get(key):
            continue
        entries = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        samples: list[Sample] = []
        problems: list[str] = []
        for entry in entries:
            image_dir = root / str(entry)
            if not image_dir.is_dir():
                raise DatasetError(f"{path}: split '{key}' folder {image_dir} does not exist")
            s, p = read_samples(images_in(image_dir), classes)
            samples += s
            problems += p
        name = normalize_split(key)
        splits[name] = DetectionDataset(classes, samples, f"{path}:{name}", display_names=display, problems=problems)
    if not splits:
        raise DatasetError(f"{path} names no split (train / val / test)")
    return splits


def read_folder(path: Path, image_dir: Path | None = None) -> Splits:
    """``images/`` + ``labels/`` (optionally with split subfolders), names in classes.txt or data.yaml."""
    classes: list[str] | None = None
    for candidate in (path / "classes.txt", path.parent / "classes.txt"):
        if candidate.is_file():
            classes = [n.strip() for n in candidate.read_text(encoding="utf-8").splitlines() if n.strip()]
            break
    if not classes:
        raise DatasetError(f"{path}: no data.yaml, classes.txt or other dataset description found")
    image_dir = image_dir or (path / "images" if (path / "images").is_dir() else path)
    subdirs = [d for d in sorted(image_dir.iterdir()) if d.is_dir()] if image_dir.is_dir() else []
    if subdirs and not images_in(image_dir):  # images/train, images/val, ...
        out: Splits = {}
        for d in subdirs:
            samples, problems = read_samples(images_in(d, recursive=True), classes)
            out[normalize_split(d.name)] = DetectionDataset(classes, samples, f"{path}:{d.name}", problems=problems)
        return out
    samples, problems = read_samples(images_in(image_dir, recursive=True), classes)
    return {"train": DetectionDataset(classes, samples, str(path), problems=problems)}


def label_path(image: Path) -> Path:
    """``.../images/x.jpg`` → ``.../labels/x.txt`` (the last ``images`` folder in the path)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_samples(images: list[Path], classes: list[str]) -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for img in images:
        try:
            w, h = image_size(img)
        except InvalidImageError as exc:
            problems.append(str(exc))
            continue
        sample = Sample(img, w, h, image_id=len(samples) + 1)
        label = label_path(img)
        if label.is_file():
            for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    if len(parts) < 5:
                        raise ValueError("too few values")
                    cls = int(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:5])
                    if not 0 <= cls < len(classes):
                        raise ValueError(f"class id {cls} out of range (0..{len(classes) - 1})")
                except ValueError as exc:
                    problems.append(f"{label}:{n}: {exc}")
                    continue
                x1, y1 = max(0.0, (cx - bw / 2) * w), max(0.0, (cy - bh / 2) * h)
                x2, y2 = min(float(w), (cx + bw / 2) * w), min(float(h), (cy + bh / 2) * h)
                if x2 <= x1 or y2 <= y1:
                    problems.append(f"{label}:{n}: empty box")
                    continue
                sample.boxes.append(Box((x1, y1, x2, y2), cls))
        samples.append(sample)
    return samples, problems


def write(splits: Splits, out: Path) -> Path:
    """``out/images/<split>/``, ``out/labels/<split>/``, ``out/data.yaml``; returns the yaml's path."""
    first = next(iter(splits.values()))
    names = UniqueNames()
    for split, ds in splits.items():
        for s in ds.samples:
            name = names(s.image, split)
            place(s.image, out / "images" / split / name)
            lines = []
            for b in s.boxes:
                x1, y1, x2, y2 = b.xyxy
                cx, cy = (x1 + x2) / 2 / s.width, (y1 + y2) / 2 / s.height
                lines.append(f"{b.class_id} {cx:.6f} {cy:.6f} {(x2 - x1) / s.width:.6f} {(y2 - y1) / s.height:.6f}")
            label = out / "labels" / split / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    cfg = {
        "path": ".",
        **{split: f"images/{split}" for split in splits},
        "nc": len(first.classes),
        "names": list(first.classes),
        "display_names": first.display_names,
    }
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
