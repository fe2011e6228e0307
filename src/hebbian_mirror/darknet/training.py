"""Fine-tuning Darknet YOLO (the family's training adapter): heads resized for the new classes, our YOLO loss,
mosaic-capable data at the network's input size."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..classes import canonical_name
from ..datasets import DetectionDataset
from ..datasets.augment import AugmentConfig, build, mosaic, paste, rescale
from ..datasets.samples import apply, cache_samples, load_sample
from ..errors import DatasetError, ModelFormatError
from ..families.base import Criterion
from ..meta import ModelMeta
from ..network import Network
from .heads import backbone_layers, cluster_anchors, mean_best_iou, resize_heads, with_heads
from .loss import Teacher, YoloLoss
from .model import DarknetNet
from .preprocess import fit
from .yolo import reparametrise

log = logging.getLogger(__name__)


def label_sizes(ds: DetectionDataset, size: tuple[int, int], letterbox: bool) -> torch.Tensor:
    """Every label's width and height in network-input pixels (``N×2``), as training feeds them (unaugmented)."""
    out = []
    for sample in ds.samples:
        sx, sy = size[0] / max(sample.width, 1), size[1] / max(sample.height, 1)
        if letterbox:
            sx = sy = min(sx, sy)
        out += [(b.width * sx, b.height * sy) for b in sample.boxes if b.width > 0 and b.height > 0]
    if not out:
        raise DatasetError(f"{ds.source} has no labelled boxes to cluster anchors on")
    return torch.tensor(out, dtype=torch.float32)


class YoloTrainSet(Dataset):
    """Items: ``(3×H×W float image in [0, 1], N×5 target: class, x1, y1, x2, y2 in input pixels)``."""

    def __init__(
        self,
        ds: DetectionDataset,
        size: tuple[int, int],
        letterbox: bool,
        augment: AugmentConfig | None = None,
        cache: bool = False,
    ) -> None:
        if not ds.samples:
            raise DatasetError(f"{ds.source} has no images to train on")
        self.ds, self.size, self.letterbox = ds, size, letterbox
        self.augment = augment
        self.transform = build(augment) if augment else None
        self.cached = cache_samples(ds) if cache else None
        self.pasted, self.bank = self._paste_bank(ds, augment)

    @staticmethod
    def _paste_bank(ds: DetectionDataset, augment: AugmentConfig | None) -> tuple[set[int], list[tuple[int, int]]]:
        """Copy-paste's classes (ids) and every labelled box of theirs: (image index, box index)."""
        if not augment or not augment.copy_paste:
            return set(), []
        known = {canonical_name(c): i for i, c in enumerate(ds.classes)}
        missing = [c for c in augment.paste_classes if canonical_name(c) not in known]
        if missing:
            raise DatasetError(f"copy-paste classes {missing} are not among the dataset's {ds.classes}")
        ids = {known[canonical_name(c)] for c in augment.paste_classes}
        bank = [
            (i, j)
            for i, sample in enumerate(ds.samples)
            for j, box in enumerate(sample.boxes)
            if box.class_id in ids and box.width >= 8 and box.height >= 8
        ]
        if not bank:
            raise DatasetError(f"copy-paste: {ds.source} has no labelled {', '.join(augment.paste_classes)} to paste")
        return ids, bank

    def _crops(self) -> list[tuple[torch.Tensor, int, float]]:
        """1-2 labelled boxes of the copy-paste classes, cut from their images."""
        out = []
        for _ in range(random.randint(1, 2)):
            i, j = random.choice(self.bank)
            image, _, _ = self._load(i)
            box = self.ds.samples[i].boxes[j]
            x1, y1, x2, y2 = (round(v) for v in box.xyxy)
            crop = image[:, max(0, y1) : y2, max(0, x1) : x2]
            if crop.shape[1] >= 8 and crop.shape[2] >= 8:
                out.append((crop, box.class_id, crop.shape[2] / image.shape[2]))
        return out

    def __len__(self) -> int:
        return len(self.ds.samples)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.cached[index] if self.cached is not None else load_sample(self.ds.samples[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, boxes, labels = self._load(index)
        if self.augment and self.augment.mosaic and random.random() < self.augment.mosaic:
            others = [self._load(random.randrange(len(self))) for _ in range(3)]
            image, boxes, labels = mosaic([(image, boxes, labels), *others], *self.size)
        if self.bank and random.random() < self.augment.copy_paste and not any(int(c) in self.pasted for c in labels):
            image, boxes, labels = paste(image, boxes, labels, self._crops())
        if self.transform is not None:
            image, boxes, labels = apply(self.transform, image, boxes, labels)
        tensor, fitted = fit(image, *self.size, self.letterbox)
        target = torch.zeros((len(boxes), 5))
        if len(boxes):
            target[:, 0] = labels.float()
            target[:, 1::2] = boxes[:, 0::2] * fitted.scale_x + fitted.pad_x
            target[:, 2::2] = boxes[:, 1::2] * fitted.scale_y + fitted.pad_y
        return tensor, target


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


class DarknetTraining:
    name = "darknet"
    collate = staticmethod(collate)
    loss_summed = True
    unused_parameters = False

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

    def reshape_heads(
        self, network: Network, ds: DetectionDataset, neighbour_cells: bool, recluster_anchors: bool
    ) -> Network:
        net = network.module
        anchors = None
        if recluster_anchors:
            sizes = label_sizes(ds, network.meta.input_size, network.meta.letterbox)
            anchors = cluster_anchors(sizes, [h.anchors for h in net.heads])
            before = mean_best_iou(sizes, [a for h in net.heads for a in h.anchors])
            after = mean_best_iou(sizes, [a for h in anchors for a in h])
            log.info("anchors from %d boxes: %s (mean best IoU %.3f, was %.3f)", len(sizes), anchors, after, before)
        return Network("darknet", with_heads(net, 2.0 if neighbour_cells else None, anchors), network.meta)

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
        heads = (base.heads, network.module.heads) if base is not None else ()  # the teacher says it as the student

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
                        said = [reparametrise(o.float(), b, t) for o, b, t in zip(base(images), *heads, strict=True)]
                        taught = Teacher(said, base.num_classes, distill)
            size = (images.shape[3], images.shape[2])
            return yolo_loss([o.float() for o in outputs], targets, taught, size)

        return loss
