"""What differs between the model families the training loop fine-tunes: Darknet YOLO and torchvision."""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssd import SSDClassificationHead
from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

from ..darknet.detector import DarknetDetector
from ..darknet.model import DarknetNet
from ..datasets import DetectionDataset
from ..detection import Detector
from ..errors import DatasetError
from . import checkpoint
from .augment import AugmentConfig, build
from .data import YoloTrainSet, apply, collate, load_sample
from .heads import backbone_layers
from .loss import YoloLoss

TORCHVISION_FORMAT = "hebbian-mirror/torchvision-v1"


class DarknetFamily:
    def __init__(self, net: DarknetNet, classes: list[str], display: dict[str, str], letterbox: bool, name: str):
        self.model, self.classes, self.display, self.letterbox, self.name = net, classes, display, letterbox, name
        self._loss = YoloLoss(net)

    def train_set(self, ds: DetectionDataset, augment: AugmentConfig) -> Dataset:
        return YoloTrainSet(ds, (self.model.width, self.model.height), self.letterbox, augment)

    collate = staticmethod(collate)

    def freeze_backbone(self) -> None:
        for layer in list(self.model.layers)[: backbone_layers(self.model)]:
            layer.requires_grad_(False)

    def train_mode(self) -> None:
        self.model.train()

    def loss(self, images, targets, device: torch.device, use_amp: bool):
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            outputs = self.model(images.to(device, non_blocking=True))
        return self._loss([o.float() for o in outputs], targets)

    def detector(self, device: torch.device | str, half: bool = False) -> Detector:
        return DarknetDetector(
            self.model,
            self.classes,
            name=self.name,
            letterbox=self.letterbox,
            device=device,
            half=half,
            display_names=self.display,
        )

    def record(self, name: str) -> dict:
        return checkpoint.model_record(self.model, self.classes, self.display, self.letterbox, name)


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
        raise ValueError(f"no head replacement known for {builder}")


class TorchvisionTrainSet(Dataset):
    """Items: ``(3×H×W float image in [0, 1], {"boxes", "labels"})`` with labels 1..C (0 is background)."""

    def __init__(self, ds: DetectionDataset, augment: AugmentConfig | None) -> None:
        if not ds.samples:
            raise DatasetError(f"{ds.source} has no images to train on")
        self.ds = ds
        self.transform = build(AugmentConfig(**{**augment.to_dict(), "mosaic": 0.0})) if augment else None

    def __len__(self) -> int:
        return len(self.ds.samples)

    def __getitem__(self, index: int):
        image, boxes, labels = load_sample(self.ds.samples[index])
        labels = labels + 1  # 0 is background for torchvision
        if self.transform is not None:
            image, boxes, labels = apply(self.transform, image, boxes, labels)
        return image.float().div_(255.0), {"boxes": boxes.float(), "labels": labels}


def _lists(batch):
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class TorchvisionFamily:
    def __init__(
        self,
        model: nn.Module,
        builder: str,
        classes: list[str],
        display: dict[str, str],
        input_size: tuple[int, int],
        name: str,
    ) -> None:
        self.model, self.builder, self.classes, self.display = model, builder, classes, display
        self.input_size, self.name = input_size, name

    def train_set(self, ds: DetectionDataset, augment: AugmentConfig) -> Dataset:
        return TorchvisionTrainSet(ds, augment)

    collate = staticmethod(_lists)

    def freeze_backbone(self) -> None:
        self.model.backbone.requires_grad_(False)

    def train_mode(self) -> None:
        """Train, with batch-norm statistics frozen (small batches would ruin the pretrained ones)."""
        self.model.train()
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def loss(self, images, targets, device: torch.device, use_amp: bool):
        images = [i.to(device, non_blocking=True) for i in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            parts = self.model(images, targets)
        total = sum(v.float() for v in parts.values())
        return total, {k.removeprefix("loss_"): float(v.detach()) for k, v in parts.items()}

    def detector(self, device: torch.device | str, half: bool = False) -> Detector:
        from ..backends.torchvision import TorchvisionDetector

        label_map = [-1, *range(len(self.classes))]
        return TorchvisionDetector(
            copy.deepcopy(self.model),
            self.classes,
            label_map,
            name=self.name,
            input_size=self.input_size,
            device=device,
            half=half,
            display_names=self.display,
        )

    def record(self, name: str) -> dict:
        return {
            "format": TORCHVISION_FORMAT,
            "name": name,
            "builder": self.builder,
            "num_classes": len(self.classes) + 1,
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "class_names": list(self.classes),
            "display_names": dict(self.display),
            "input_size": list(self.input_size),
            "thresholds": {"conf": 0.25, "iou": 0.45},
        }


def from_record(record: dict):
    """The family of a saved checkpoint, with its weights."""
    if record.get("format") == TORCHVISION_FORMAT:
        import torchvision.models.detection as tvd

        model = getattr(tvd, record["builder"])(weights=None, weights_backbone=None, num_classes=record["num_classes"])
        model.load_state_dict(record["state_dict"])
        return TorchvisionFamily(
            model,
            record["builder"],
            record["class_names"],
            record.get("display_names") or {},
            tuple(record["input_size"]),
            record.get("name", "model"),
        )
    return DarknetFamily(
        checkpoint.build_net(record),
        record["class_names"],
        record.get("display_names") or {},
        record["letterbox"],
        record.get("name", "model"),
    )
