"""A model's weights in memory: what the loader returns, training fine-tunes and checkpoints hold (what a
family does with it is :class:`hebbian_mirror.families.base.Family`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .meta import ModelMeta

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Network:
    """A trainable module with its metadata: what the loader returns, training fine-tunes and checkpoints
    hold. ``arch`` is what besides the weights rebuilds ``module`` (family-specific, JSON-able)."""

    family: str
    module: nn.Module
    meta: ModelMeta
    arch: dict[str, Any] = field(default_factory=dict)
