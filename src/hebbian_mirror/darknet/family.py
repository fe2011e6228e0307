"""Darknet YOLO as a model family: a :class:`~hebbian_mirror.network.Network` holding a
:class:`DarknetNet` (or a :class:`CombinedNet` pair), stored in checkpoints as its cfg text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFormatError
from ..families.base import Capabilities, Family, TrainingAdapter
from ..meta import ModelMeta
from ..network import Network
from .cfg import parse_cfg, to_text
from .combined import CombinedNet
from .detector import DarknetDetector
from .model import DarknetNet
from .weights import load_net


class DarknetFamily(Family):
    name = "darknet"
    capabilities = Capabilities(
        checkpoint=True,
        train=True,
        export=True,
        merge=True,
        augment=True,
        multi_scale=True,
        heads=True,
        iou_objectness=True,
        distill=True,
        combine=True,
        average=True,
    )

    def architecture(self, network: Network) -> dict[str, Any]:
        module = network.module
        if isinstance(module, CombinedNet):  # the extended network's cfg, and its base's beside it
            both = {"base_cfg": to_text(module.base.sections), "taught": list(module.taught)} | module.sources
            return {"cfg": to_text(module.tuned.sections), "combined": both}
        return {"cfg": to_text(module.sections)}

    def build(self, arch: Mapping[str, Any]) -> tuple[DarknetNet | CombinedNet, dict[str, Any]]:
        net = DarknetNet(parse_cfg(arch["cfg"], source="checkpoint cfg"))
        if both := arch.get("combined"):
            if not isinstance(both, Mapping) or not {"base_cfg", "taught"} <= set(both):
                raise ModelFormatError(
                    "checkpoint's 'combined' entry needs the base model's cfg and the taught classes"
                )
            base = DarknetNet(parse_cfg(both["base_cfg"], source="checkpoint base cfg"))
            module = CombinedNet(base, net, both["taught"])
            module.sources = {k: both[k] for k in ("tuned", "base") if k in both}
            return module, {}
        return net, {}

    def from_files(self, meta: ModelMeta, arch: Mapping[str, Any], paths: list[Path]) -> Network:
        """``paths``: the ``.weights`` then the ``.cfg``; the input size is the cfg's."""
        weights, cfg = paths
        net = load_net(cfg, weights)
        return Network(self.name, net, meta.with_(input_size=(net.width, net.height)))

    def detector(self, network: Network, device: str | torch.device = "auto", half: bool = False) -> DarknetDetector:
        return DarknetDetector.from_net(network.module, network.meta, device=device, half=half)

    def training(self) -> TrainingAdapter:
        from .training import DarknetTraining

        return DarknetTraining()
