"""Reading any supported dataset into splits, and writing splits in any supported format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..images import decode_image
from . import coco, voc, yolo
from .records import DetectionDataset, Sample, Splits, normalize_split

FORMATS = ("yolo", "coco", "voc")


def load_splits(data: str | Path, images: str | Path | None = None) -> Splits:
    """Every split of ``data``: a COCO json (images from ``images``, default the json's folder, or the ``images``
    folder beside it when that is where its files are), a folder of Roboflow-style COCO splits, a YOLO
    ``data.yaml``, a YOLO folder, or a Pascal VOC folder (incl. Sohas)."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.suffix.lower() == ".json":
        ds = coco.read(path, Path(images) if images else path.parent)
        beside = path.parent / "images"  # the json beside an images/ folder that holds its files
        first = ds.samples[0].image if ds.samples and not images else None
        if first is not None and not first.exists() and (beside / first.relative_to(path.parent)).exists():
            ds = coco.read(path, beside)
        return {normalize_split(path.parent.name) if path.name == coco.SPLIT_FILE else "train": ds}
    if path.suffix.lower() in (".yaml", ".yml"):
        return yolo.read_yaml(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a COCO .json, a YOLO data.yaml, or a dataset folder")
    if (path / "data.yaml").is_file():
        return yolo.read_yaml(path / "data.yaml")
    if (path / coco.SPLIT_FILE).is_file():
        return {"train": coco.read(path / coco.SPLIT_FILE, path)}
    coco_splits = sorted(p for p in path.iterdir() if (p / coco.SPLIT_FILE).is_file())
    if coco_splits:
        return {normalize_split(p.name): coco.read(p / coco.SPLIT_FILE, p) for p in coco_splits}
    if voc.detect(path):
        return voc.read_folder(path)
    return yolo.read_folder(path, Path(images) if images else None)


def load_dataset(data: str | Path, images: str | Path | None = None, split: str = "val") -> DetectionDataset:
    """One split of ``data`` (see :func:`load_splits`); a dataset with a single split gives that one."""
    splits = load_splits(data, images)
    wanted = normalize_split(split)
    if wanted in splits:
        ds = splits[wanted]
    elif len(splits) == 1:
        ds = next(iter(splits.values()))
    else:
        raise DatasetError(f"{data} has no '{wanted}' split (it has: {', '.join(splits)})")
    if not ds.samples:
        raise DatasetError(f"{data}: the '{wanted}' split has no images")
    return ds


def write_splits(splits: Splits, out: str | Path, fmt: str) -> Path:
    """Write ``splits`` to ``out`` as ``fmt`` (yolo, coco, voc); returns what to pass to :func:`load_splits`."""
    out = Path(out)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty: choose a new folder")
    classes = [ds.classes for ds in splits.values()]
    if any(c != classes[0] for c in classes):
        raise DatasetError("all splits must share one class list")
    display: dict[str, str] = {}
    for ds in splits.values():  # one set of display names for the whole dataset
        display.update(ds.display_names)
    for ds in splits.values():
        ds.display_names = dict(display)
    out.mkdir(parents=True, exist_ok=True)
    return {"yolo": yolo.write, "coco": coco.write, "voc": voc.write}[fmt](splits, out)


def decode_as_annotated(sample: Sample) -> np.ndarray:
    """A sample's image as its boxes saw it (RGB): EXIF orientation applied, unless the sample's size says the
    boxes were drawn on the stored pixels. No pixel limit: a dataset's images are the user's own."""
    image = decode_image(sample.image, max_pixels=None)
    if image.shape[1] != sample.width or image.shape[0] != sample.height:
        image = decode_image(sample.image, max_pixels=None, apply_exif=False)
    return image
