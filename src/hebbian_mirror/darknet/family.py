"""Darknet YOLO as a model family: a :class:`~hebbian_mirror.network.Network` holding a
:class:`DarknetNet`, stored in checkpoints as its cfg text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..network import Network
from .cfg import parse_cfg, to_text
from .detector import DarknetDetector
from .model import DarknetNet


class DarknetFamily:
    name = "darknet"

    def architecture(self, network: Network) -> dict[str, Any]:
        return {"cfg": to_text(network.module.sections)}

    def build(self, arch: Mapping[str, Any]) -> tuple[DarknetNet, dict[str, Any]]:
        return DarknetNet(parse_cfg(arch["cfg"], source="checkpoint cfg")), {}

    def detector(self, network: Network, device: str | torch.device = "auto", half: bool = False) -> DarknetDetector:
        return DarknetDetector.from_net(network.module, network.meta, device=device, half=half)
