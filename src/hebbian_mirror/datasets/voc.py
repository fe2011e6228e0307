"""Pascal VOC xml datasets, including the OD-WeaponDetection "Sohas" layout
(``images/`` + ``annotations/xmls/`` for training, ``images_test/`` + ``annotations_test/xmls/`` for testing)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from ..errors import DatasetError, InvalidImageError
from ..images import image_size
from .files import UniqueNames, images_in, place
from .records import Box, DetectionDataset, Sample, Splits

# (split, xml folder, image folder) layouts we recognise, relative to the dataset folder.
LAYOUTS = (
    ("train", "annotations/xmls", "images"),
    ("test", "annotations_test/xmls", "images_test"),
    ("train", "Annotations", "JPEGImages"),
)


def detect(path: Path) -> list[tuple[str, Path, Path]]:
    """The (split, xml folder, image folder) triples present under ``path``, including ``<split>/`` subfolders."""
    found = [(s, path / x, path / i) for s, x, i in LAYOUTS if (path / x).is_dir() and (path / i).is_dir()]
    if not found:
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            if (sub / "Annotations").is_dir() and (sub / "JPEGImages").is_dir():
                found.append((sub.name, sub / "Annotations", sub / "JPEGImages"))
    return found


def read_folder(path: Path) -> Splits:
    layouts = detect(path)
    if not layouts:
        raise DatasetError(f"{path}: no Pascal VOC layout (annotations/xmls + images, or Annotations + JPEGImages)")
    parsed = {split: _parse(xml_dir, image_dir) for split, xml_dir, image_dir in layouts}
    classes = _class_list(path, parsed)
    display = {}
    if (path / "display_names.yaml").is_file():
        display = {str(k): str(v) for k, v in (yaml.safe_load((path / "display_names.yaml").read_text()) or {}).items()}
    splits: Splits = {}
    for split, (samples, problems) in parsed.items():
        index = {c: i for i, c in enumerate(classes)}
        out = []
        for sample, names in samples:
            sample.boxes = [Box(b.xyxy, index[n]) for b, n in zip(sample.boxes, names, strict=True)]
            out.append(sample)
        splits[split] = DetectionDataset(classes, out, f"{path}:{split}", display_names=display, problems=problems)
    return splits


def _class_list(path: Path, parsed) -> list[str]:
    for name in ("classes.txt", "labels.txt"):
        if (path / name).is_file():
            return [c.strip() for c in (path / name).read_text(encoding="utf-8").splitlines() if c.strip()]
    seen: dict[str, None] = {}
    for samples, _ in parsed.values():
        for _, names in samples:
            seen.update(dict.fromkeys(names))
    return sorted(seen)


def _parse(xml_dir: Path, image_dir: Path):
    by_stem = {p.stem: p for p in images_in(image_dir, recursive=True)}
    samples = []
    problems: list[str] = []
    annotated: set[str] = set()
    for xml in sorted(xml_dir.glob("*.xml")):
        try:
            root = ET.parse(xml).getroot()
            filename = root.findtext("filename") or ""
            image = image_dir / filename if filename and (image_dir / filename).is_file() else by_stem.get(xml.stem)
            if image is None:
                raise ValueError(f"image {filename or xml.stem} not found in {image_dir}")
            w, h = image_size(image)
            boxes, names = [], []
            for obj in root.iter("object"):
                bb = obj.find("bndbox")
                x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
                if x2 <= x1 or y2 <= y1:
                    problems.append(f"{xml}: empty box skipped")
                    continue
                boxes.append(Box((x1, y1, x2, y2), -1))
                names.append((obj.findtext("name") or "").strip())
        except (ET.ParseError, ValueError, TypeError, AttributeError, InvalidImageError) as exc:
            problems.append(f"{xml}: {exc}")
            continue
        annotated.add(image.name)
        samples.append((Sample(image, w, h, boxes, image_id=len(samples) + 1), names))
    for image in by_stem.values():  # images without an xml are negatives
        if image.name not in annotated:
            try:
                w, h = image_size(image)
            except InvalidImageError as exc:
                problems.append(str(exc))
                continue
            samples.append((Sample(image, w, h, [], image_id=len(samples) + 1), []))
    return samples, problems


def write(splits: Splits, out: Path) -> Path:
    """``out/<split>/JPEGImages`` + ``out/<split>/Annotations``, ``classes.txt`` and ``display_names.yaml``."""
    first = next(iter(splits.values()))
    for split, ds in splits.items():
        names = UniqueNames()
        for s in ds.samples:
            name = names(s.image)
            place(s.image, out / split / "JPEGImages" / name)
            root = ET.Element("annotation")
            ET.SubElement(root, "filename").text = name
            size = ET.SubElement(root, "size")
            for k, v in (("width", s.width), ("height", s.height), ("depth", 3)):
                ET.SubElement(size, k).text = str(v)
            for b in s.boxes:
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = ds.classes[b.class_id]
                ET.SubElement(obj, "difficult").text = "0"
                bb = ET.SubElement(obj, "bndbox")
                for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b.xyxy, strict=True):
                    ET.SubElement(bb, k).text = f"{v:.2f}"
            xml = out / split / "Annotations" / Path(name).with_suffix(".xml")
            xml.parent.mkdir(parents=True, exist_ok=True)
            ET.ElementTree(root).write(xml, encoding="utf-8")
    (out / "classes.txt").write_text("\n".join(first.classes) + "\n", encoding="utf-8")
    (out / "display_names.yaml").write_text(yaml.safe_dump(first.display_names, allow_unicode=True), encoding="utf-8")
    return out
