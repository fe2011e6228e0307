"""torchvision's detectors as a model family: a :class:`~hebbian_mirror.network.Network` stored as its builder
name and label map."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..families.base import Capabilities, Family, TrainingAdapter
from ..meta import ModelMeta, Resize
from ..network import Network
from .detector import TorchvisionDetector, build, fine_tuned_label_map, label_map, load_official


class TorchvisionFamily(Family):
    """``Network.arch``: ``builder`` (torchvision function name), ``num_classes`` (with background) and
    ``label_map``."""

    name = "torchvision"
    capabilities = Capabilities(checkpoint=True, train=True)

    def architecture(self, network: Network) -> dict[str, Any]:
        return dict(network.arch)

    def build(self, arch: Mapping[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
        kept = {k: arch[k] for k in ("builder", "num_classes", "label_map") if arch.get(k) is not None}
        return build(arch["builder"], arch["num_classes"]), kept

    def from_files(self, meta: ModelMeta, arch: Mapping[str, Any], paths: list[Path]) -> Network:
        """``arch``: ``builder`` and the official weights' ``categories``; ``paths``: the state dict file."""
        categories = arch["categories"]
        model = load_official(arch["builder"], len(categories), paths[0])
        labels = label_map(categories, meta.classes)
        return Network(
            self.name, model, meta, {"builder": arch["builder"], "num_classes": len(categories), "label_map": labels}
        )

    def detector(
        self, network: Network, device: str | torch.device = "auto", half: bool = False
    ) -> TorchvisionDetector:
        labels = network.arch.get("label_map") or fine_tuned_label_map(len(network.meta.classes))
        return TorchvisionDetector(copy.deepcopy(network.module), network.meta, labels, device=device, half=half)

    def meta(self, record: Mapping[str, Any]) -> ModelMeta:
        meta = ModelMeta.from_dict(record)
        if "resize" not in record and not record["builder"].startswith("ssd"):
            meta = meta.with_(resize=Resize.SHORTER_SIDE)  # written before ModelMeta: R-CNN-style resize implied
        return meta

    def training(self) -> TrainingAdapter:
        from .training import TorchvisionTraining

        return TorchvisionTraining()
