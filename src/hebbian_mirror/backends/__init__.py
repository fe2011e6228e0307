"""Model families: what runs a :class:`~hebbian_mirror.network.Network`. Adding a family is one module
implementing :class:`~hebbian_mirror.network.Family` and one line here."""

from __future__ import annotations

from functools import cache

from ..errors import ModelFormatError
from ..network import Family


@cache
def families() -> dict[str, Family]:
    from ..darknet.family import DarknetFamily
    from .torchvision import TorchvisionFamily

    return {f.name: f for f in (DarknetFamily(), TorchvisionFamily())}


def family(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise ModelFormatError(f"unknown model family {name!r}: {', '.join(families())}") from None
