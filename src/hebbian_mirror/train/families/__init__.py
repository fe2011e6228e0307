"""What differs between the model families training fine-tunes. Each family is one module implementing
:class:`~.base.TrainingFamily`, registered here with one line."""

from __future__ import annotations

from functools import cache

from ...errors import ModelFormatError
from .base import TrainingFamily


@cache
def _families() -> dict[str, TrainingFamily]:
    from .darknet import DarknetTraining
    from .torchvision import TorchvisionTraining

    return {f.name: f for f in (DarknetTraining(), TorchvisionTraining())}


def training_family(name: str) -> TrainingFamily:
    try:
        return _families()[name]
    except KeyError:
        raise ModelFormatError(f"training does not support {name!r} models yet ({', '.join(_families())})") from None
