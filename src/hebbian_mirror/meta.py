"""Model metadata: the one description of a model that every layer shares (zoo entries, loaded detectors,
checkpoints, ONNX files), and the default detection thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

# Default thresholds, for serving, predict and checkpoints; evaluation keeps more (the COCO protocol).
DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.45
DEFAULT_MAX_DET = 300
EVAL_CONF = 0.001
EVAL_MAX_DET = 100
DEFAULT_MAX_PIXELS = 40_000_000  # decompression-bomb guard: largest image decoded


class Resize(StrEnum):
    """How an image is fitted into the network input."""

    STRETCH = "stretch"  # plain resize to width × height (AlexeyAB's Darknet, SSD)
    LETTERBOX = "letterbox"  # aspect kept, grey padding (pjreddie's Darknet)
    SHORTER_SIDE = "shorter-side"  # R-CNN style: shorter side to input_size[0], longer at most input_size[1]


@dataclass(frozen=True)
class ModelMeta:
    """What a model is, whatever runs it: name, classes, display names, input size and resize.

    ``input_size`` is ``(width, height)``, or ``(shorter, longest)`` side for :attr:`Resize.SHORTER_SIDE`.
    """

    name: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    resize: Resize = Resize.STRETCH
    display_names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "resize", Resize(self.resize))
        object.__setattr__(self, "display_names", dict(self.display_names))

    @property
    def letterbox(self) -> bool:
        return self.resize is Resize.LETTERBOX

    def display_name(self, label: str) -> str:
        """The name people read for ``label`` (the label itself when the model has none)."""
        return self.display_names.get(label, label)

    def describe_resize(self) -> str:
        if self.resize is Resize.SHORTER_SIDE:
            return f"shorter side {self.input_size[0]}, longer <= {self.input_size[1]}"
        return self.resize.value

    def with_(self, **changes: Any) -> ModelMeta:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able form, as written into checkpoints and ONNX metadata (``letterbox`` too, for the
        versions that read only that)."""
        return {
            "name": self.name,
            "class_names": list(self.classes),
            "display_names": dict(self.display_names),
            "input_size": list(self.input_size),
            "resize": self.resize.value,
            "letterbox": self.letterbox,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMeta:
        """Read :meth:`to_dict`'s form, also as written before ``resize`` existed (``letterbox`` only)."""
        resize = d.get("resize") or (Resize.LETTERBOX if d.get("letterbox") else Resize.STRETCH)
        return cls(
            name=d.get("name") or "model",
            classes=tuple(d["class_names"]),
            input_size=tuple(d["input_size"]),
            resize=Resize(resize),
            display_names=dict(d.get("display_names") or {}),
        )


class Described:
    """Gives a holder of ``meta`` (a detector, a zoo entry) its name, classes, input size and resize."""

    meta: ModelMeta

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.meta.input_size

    @property
    def letterbox(self) -> bool:
        return self.meta.letterbox
