"""A model's weights in memory, and the protocol each model family implements to turn them into a detector
and into (and back from) a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .meta import ModelMeta

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .detection import Detector


@dataclass
class Network:
    """A trainable module with its metadata: what the loader returns, training fine-tunes and checkpoints
    hold. ``arch`` is what besides the weights rebuilds ``module`` (family-specific, JSON-able)."""

    family: str
    module: nn.Module
    meta: ModelMeta
    arch: dict[str, Any] = field(default_factory=dict)


class Family(Protocol):
    """One model family (Darknet YOLO, torchvision, ...). Register an implementation in
    :data:`hebbian_mirror.backends.FAMILIES`."""

    name: str

    def architecture(self, network: Network) -> dict[str, Any]:
        """What a checkpoint stores besides the weights to rebuild the module."""

    def build(self, arch: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
        """An untrained module from :meth:`architecture`'s output (read from any mapping that holds it, e.g. a
        checkpoint record), and the ``arch`` to keep on its :class:`Network`."""

    def from_files(self, meta: ModelMeta, arch: Mapping[str, Any], paths: list[Path]) -> Network:
        """A zoo model from its official files (in the order the registry lists them)."""

    def detector(self, network: Network, device: str | torch.device = "auto", half: bool = False) -> Detector:
        """Run ``network`` (copied: the caller may keep training it)."""
