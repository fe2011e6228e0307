"""Fine-tuning Darknet YOLO: heads resized for the new classes, our YOLO loss, mosaic-capable data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ...darknet.model import DarknetNet
from ...datasets import DetectionDataset
from ...errors import ModelFormatError
from ...meta import ModelMeta
from ...network import Network
from ..augment import AugmentConfig, rescale
from ..data import YoloTrainSet, collate
from ..heads import backbone_layers, resize_heads
from ..loss import Teacher, YoloLoss
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
        net = network.module
        if not isinstance(net, DarknetNet):
            raise ModelFormatError(
                f"{network.meta.name} is a combined model (a base model and one extended from it): train the "
                "extended model, then combine it again"
            )
        if img_size:
            net = net.with_input_size(img_size, img_size)
        if net.num_classes != len(classes):
            net = resize_heads(net, len(classes), keep)
        meta = ModelMeta(name, tuple(classes), (net.width, net.height), network.meta.resize, display)
        return Network("darknet", net, meta)

    def train_set(self, network: Network, ds: DetectionDataset, augment: AugmentConfig, cache: bool = False) -> Dataset:
        return YoloTrainSet(ds, network.meta.input_size, network.meta.letterbox, augment, cache)

    def backbone(self, network: Network) -> list[torch.nn.Parameter]:
        return [
            p for layer in list(network.module.layers)[: backbone_layers(network.module)] for p in layer.parameters()
        ]

    def freeze_backbone(self, network: Network) -> None:
        for p in self.backbone(network):
            p.requires_grad_(False)

    def train_mode(self, network: Network) -> None:
        """Training mode, except layers that learn nothing now (a frozen backbone): their batch-norm statistics
        stay the base model's too."""
        network.module.train()
        for layer in network.module.layers:
            params = list(layer.parameters())
            if params and not any(p.requires_grad for p in params):
                layer.eval()

    def criterion(
        self,
        network: Network,
        forward: Callable[..., Any] | None = None,
        channels_last: bool = False,
        teacher: Network | None = None,
        distill: float = 1.0,
        iou_objectness: bool = False,
        multi_scale: float = 0.0,
    ) -> Criterion:
        net, yolo_loss = forward or network.module, YoloLoss(network.module, iou_objectness=iou_objectness)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        base = teacher.module.eval().requires_grad_(False) if teacher is not None else None
        if base is not None and channels_last:
            base.to(memory_format=torch.channels_last)

        def loss(images, targets, device: torch.device, use_amp: bool):
            images = images.to(device, non_blocking=True)
            if multi_scale:
                images, targets = rescale(images, targets, multi_scale)
            images = images.contiguous(memory_format=layout)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = net(images)
                taught = None
                if base is not None:
                    with torch.no_grad():
                        taught = Teacher([o.float() for o in base(images)], base.num_classes, distill)
            size = (images.shape[3], images.shape[2])
            return yolo_loss([o.float() for o in outputs], targets, taught, size)

        return loss
