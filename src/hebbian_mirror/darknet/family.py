"""Darknet YOLO as a model family: a :class:`~hebbian_mirror.network.Network` holding a
:class:`DarknetNet`, stored in checkpoints as its cfg text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..meta import ModelMeta
from ..network import Network
from .cfg import parse_cfg, to_text
from .detector import DarknetDetector
from .model import DarknetNet
from .weights import load_net


class DarknetFamily:
    name = "darknet"

    def architecture(self, network: Network) -> dict[str, Any]:
        return {"cfg": to_text(network.module.sections)}

    def build(self, arch: Mapping[str, Any]) -> tuple[DarknetNet, dict[str, Any]]:
        return DarknetNet(parse_cfg(arch["cfg"], source="checkpoint cfg")), {}

    def from_files(self, meta: ModelMeta, arch: Mapping[str, Any], paths: list[Path]) -> Network:
        """``paths``: the ``.weights`` then the ``.cfg``; the input size is the cfg's."""
        weights, cfg = paths
        net = load_net(cfg, weights)
        return Network(self.name, net, meta.with_(input_size=(net.width, net.height)))

    def detector(self, network: Network, device: str | torch.device = "auto", half: bool = False) -> DarknetDetector:
        return DarknetDetector.from_net(network.module, network.meta, device=device, half=half)
