"""Fine-tuning Darknet YOLO: heads resized for the new classes, our YOLO loss, mosaic-capable data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ...darknet.model import DarknetNet
from ...datasets import DetectionDataset
from ...meta import ModelMeta
from ...network import Network
from ..augment import AugmentConfig
from ..data import YoloTrainSet, collate
from ..heads import backbone_layers, resize_heads
from ..loss import YoloLoss
from .base import Criterion


class DarknetTraining:
    name = "darknet"
    collate = staticmethod(collate)

    def adapt(
        self,
        network: Network,
        classes: Sequence[str],
        display: dict[str, str],
        img_size: int | None,
        name: str,
        keep: int = 0,
    ) -> Network:
        net: DarknetNet = network.module
        if img_size:
            net.sections[0].options["width"] = net.sections[0].options["height"] = str(img_size)
            resized = DarknetNet(net.sections)
            resized.load_state_dict(net.state_dict())
            net = resized
        if net.num_classes != len(classes):
            net = resize_heads(net, len(classes), keep)
        meta = ModelMeta(name, tuple(classes), (net.width, net.height), network.meta.resize, display)
        return Network("darknet", net, meta)

    def train_set(self, network: Network, ds: DetectionDataset, augment: AugmentConfig, cache: bool = False) -> Dataset:
        return YoloTrainSet(ds, network.meta.input_size, network.meta.letterbox, augment, cache)

    def freeze_backbone(self, network: Network) -> None:
        for layer in list(network.module.layers)[: backbone_layers(network.module)]:
            layer.requires_grad_(False)

    def train_mode(self, network: Network) -> None:
        network.module.train()

    def criterion(
        self, network: Network, forward: Callable[..., Any] | None = None, channels_last: bool = False
    ) -> Criterion:
        net, yolo_loss = forward or network.module, YoloLoss(network.module)
        layout = torch.channels_last if channels_last else torch.contiguous_format

        def loss(images, targets, device: torch.device, use_amp: bool):
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = net(images.to(device, non_blocking=True).contiguous(memory_format=layout))
            return yolo_loss([o.float() for o in outputs], targets)

        return loss
