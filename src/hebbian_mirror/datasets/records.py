"""The in-memory form every dataset format is read into and written from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..classes import KNOWN_DISPLAY_NAMES, canonical_name, class_index
from ..errors import DatasetError

# Spellings of split names → the name we use.
SPLIT_ALIASES = {"valid": "val", "validation": "val", "training": "train", "testing": "test"}


def normalize_split(name: str) -> str:
    name = name.strip().lower()
    return SPLIT_ALIASES.get(name, name)


@dataclass
class Box:
    """One ground-truth object; ``xyxy`` in pixels. ``area`` defaults to the box area (COCO json gives
    the segmentation area, which COCO's small/medium/large split uses)."""

    xyxy: tuple[float, float, float, float]
    class_id: int
    area: float | None = None
    iscrowd: bool = False
    outline: tuple[tuple[float, ...], ...] = ()  # COCO's polygons (x1, y1, x2, y2, ...) where a json gives them

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]


@dataclass
class Sample:
    """One image and its boxes (none: a negative example, which is valid)."""

    image: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    image_id: int = 0


@dataclass
class DetectionDataset:
    """One split of a dataset."""

    classes: list[str]
    samples: list[Sample]
    source: str
    # COCO category id of each class (a COCO json keeps its ids; other formats number from 1)
    category_ids: list[int] = field(default_factory=list)
    display_names: dict[str, str] = field(default_factory=dict)  # class name → name shown to people
    problems: list[str] = field(default_factory=list)  # unreadable images and bad label lines

    def __post_init__(self) -> None:
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.classes) + 1))
        for name in self.classes:
            if name not in self.display_names and name.lower() in KNOWN_DISPLAY_NAMES:
                self.display_names[name] = KNOWN_DISPLAY_NAMES[name.lower()]

    def display_name(self, class_id: int) -> str:
        name = self.classes[class_id]
        return self.display_names.get(name, name)

    def renamed(self, rename: dict[str, str]) -> DetectionDataset:
        """The same samples with classes renamed (``{"phone": "cell phone"}``, old names matched by
        :func:`canonical_name`): a dataset's name for a class a model knows by another."""
        wanted = {canonical_name(k): v for k, v in rename.items()}
        unknown = set(wanted) - {canonical_name(c) for c in self.classes}
        if unknown:
            raise DatasetError(
                f"cannot rename {', '.join(sorted(unknown))}: {self.source} has {', '.join(self.classes)}"
            )
        classes = [wanted.get(canonical_name(c), c) for c in self.classes]
        if len({canonical_name(c) for c in classes}) < len(classes):
            raise DatasetError(
                f"renaming {', '.join(rename)} gives {self.source} one class twice: {', '.join(classes)}"
            )
        return replace(self, classes=classes, category_ids=[], display_names={})

    def remapped(self, classes: list[str], display_names: dict[str, str] | None = None) -> DetectionDataset:
        """The same samples with class ids into ``classes`` (matched by :func:`canonical_name`)."""
        index = class_index(classes)
        lut = [index[canonical_name(c)] for c in self.classes]
        samples = [replace(s, boxes=[replace(b, class_id=lut[b.class_id]) for b in s.boxes]) for s in self.samples]
        names = dict(display_names or {})
        for c in self.classes:
            names.setdefault(classes[index[canonical_name(c)]], self.display_names.get(c, c))
        return DetectionDataset(list(classes), samples, self.source, display_names=names, problems=list(self.problems))


Splits = dict[str, DetectionDataset]
