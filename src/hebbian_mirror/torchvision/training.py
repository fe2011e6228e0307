"""Fine-tuning torchvision detectors: the box classifier replaced for the new classes, their own losses,
batch-norm statistics frozen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssd import SSDClassificationHead
from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

from ..datasets import DetectionDataset
from ..datasets.augment import AugmentConfig, build
from ..datasets.samples import apply, cache_samples, load_sample
from ..errors import DatasetError, ModelFormatError
from ..families.base import Criterion
from ..network import Network
from .detector import fine_tuned_label_map


def replace_head(model: nn.Module, builder: str, num_classes: int) -> None:
    """Give a torchvision detector a new classifier for ``num_classes`` (background included)."""
    if builder.startswith("fasterrcnn"):
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    elif builder.startswith("retinanet"):
        anchors = model.head.classification_head.num_anchors
        norm = partial(nn.GroupNorm, 32) if builder.endswith("v2") else None
        model.head.classification_head = RetinaNetClassificationHead(
            model.backbone.out_channels, anchors, num_classes, norm_layer=norm
        )
    elif builder.startswith("fcos"):
        anchors = model.head.classification_head.num_anchors
        model.head.classification_head = FCOSClassificationHead(model.backbone.out_channels, anchors, num_classes)
    elif builder.startswith("ssdlite"):
        channels = det_utils.retrieve_out_channels(model.backbone, (320, 320))
        anchors = model.anchor_generator.num_anchors_per_location()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        model.head.classification_head = SSDLiteClassificationHead(channels, anchors, num_classes, norm)
    elif builder.startswith("ssd"):
        channels = det_utils.retrieve_out_channels(model.backbone, (300, 300))
        anchors = model.anchor_generator.num_anchors_per_location()
        model.head.classification_head = SSDClassificationHead(channels, anchors, num_classes)
    else:
        raise ModelFormatError(f"no head replacement known for {builder}")


class TorchvisionTrainSet(Dataset):
    """Items: ``(3×H×W float image in [0, 1], {"boxes", "labels"})`` with labels 1..C (0 is background)."""

    def __init__(self, ds: DetectionDataset, augment: AugmentConfig | None, cache: bool = False) -> None:
        if not ds.samples:
            raise DatasetError(f"{ds.source} has no images to train on")
        self.ds = ds
        self.transform = build(AugmentConfig(**{**augment.to_dict(), "mosaic": 0.0})) if augment else None
        self.cached = cache_samples(ds) if cache else None

    def __len__(self) -> int:
        return len(self.ds.samples)

    def __getitem__(self, index: int):
        image, boxes, labels = self.cached[index] if self.cached is not None else load_sample(self.ds.samples[index])
        labels = labels + 1  # 0 is background for torchvision
        if self.transform is not None:
            image, boxes, labels = apply(self.transform, image, boxes, labels)
        return image.float().div_(255.0), {"boxes": boxes.float(), "labels": labels}


def _lists(batch):
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class TorchvisionTraining:
    name = "torchvision"
    collate = staticmethod(_lists)
    loss_summed = False  # torchvision's losses are means over the batch
    unused_parameters = True  # e.g. an R-CNN's RPN heads on a batch without boxes

    def adapt(
        self,
        network: Network,
        classes: Sequence[str],
        display: dict[str, str],
        img_size: int | None,
        name: str,
        keep: int = 0,
    ) -> Network:
        if keep:
            raise DatasetError(
                "keeping the base model's classes works for Darknet models only (a torchvision detector's box "
                "classifier is replaced whole): train without --keep-classes"
            )
        meta = network.meta.with_(name=name, classes=tuple(classes), display_names=display)
        arch = dict(network.arch)
        labels = arch.get("label_map", fine_tuned_label_map(len(network.meta.classes)))
        if list(network.meta.classes) != list(classes) or labels != fine_tuned_label_map(len(classes)):
            replace_head(network.module, arch["builder"], len(classes) + 1)
            arch |= {"num_classes": len(classes) + 1, "label_map": fine_tuned_label_map(len(classes))}
        return Network("torchvision", network.module, meta, arch)

    def train_set(self, network: Network, ds: DetectionDataset, augment: AugmentConfig, cache: bool = False) -> Dataset:
        return TorchvisionTrainSet(ds, augment, cache)

    def backbone(self, network: Network) -> list[torch.nn.Parameter]:
        return list(network.module.backbone.parameters())

    def freeze_backbone(self, network: Network) -> None:
        network.module.backbone.requires_grad_(False)

    def train_mode(self, network: Network) -> None:
        """Train, with batch-norm statistics frozen (small batches would ruin the pretrained ones)."""
        network.module.train()
        for m in network.module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):  # SyncBatchNorm (--nproc on CUDA) too
                m.eval()

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
        model = forward or network.module

        def loss(images, targets, device: torch.device, use_amp: bool):
            images = [i.to(device, non_blocking=True) for i in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                parts = model(images, targets)
            total = sum(v.float() for v in parts.values())
            return total, {k.removeprefix("loss_"): float(v.detach()) for k, v in parts.items()}

        return loss
