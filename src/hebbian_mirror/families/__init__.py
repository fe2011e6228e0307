"""The model-family registry: every family the product runs, by name. Adding a family is one package (its
detector, a :class:`~.base.Family` subclass and, to train it, a training adapter) and one line here."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..errors import ModelFormatError
from .base import Capabilities, Family, TrainingAdapter

__all__ = ["Capabilities", "Family", "TrainingAdapter", "families", "family", "for_file"]


@cache
def families() -> dict[str, Family]:
    from ..darknet.family import DarknetFamily
    from ..onnx.family import OnnxFamily
    from ..torchvision.family import TorchvisionFamily

    return {f.name: f for f in (DarknetFamily(), TorchvisionFamily(), OnnxFamily())}


def family(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise ModelFormatError(f"unknown model family {name!r}: {', '.join(families())}") from None


def for_file(path: str | Path) -> Family | None:
    """The family that runs ``path`` as it is (by its suffix), if any."""
    suffix = Path(path).suffix.lower()
    return next((f for f in families().values() if suffix in f.suffixes), None)
