"""The protocol a trainable model family implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from ...datasets import DetectionDataset
from ...network import Network
from ..augment import AugmentConfig

# (images, targets, device, use_amp) → the batch's total loss and its named parts (for the progress bar)
Criterion = Callable[[Any, Any, torch.device, bool], tuple[torch.Tensor, dict[str, float]]]


class TrainingFamily(Protocol):
    name: str
    collate: Callable[[list], Any]

    def adapt(
        self,
        network: Network,
        classes: Sequence[str],
        display: dict[str, str],
        img_size: int | None,
        name: str,
        keep: int = 0,
    ) -> Network:
        """``network`` ready to learn ``classes`` (a new head where the class list differs), named ``name``;
        with ``keep``, the first ``keep`` classes are the network's own, whose head rows are kept."""

    def train_set(self, network: Network, ds: DetectionDataset, augment: AugmentConfig, cache: bool = False) -> Dataset:
        """The training items; ``cache``: decode every image once, into RAM."""

    def backbone(self, network: Network) -> list[torch.nn.Parameter]:
        """The backbone's parameters: what ``--freeze-backbone`` freezes and ``--backbone-lr`` slows."""

    def freeze_backbone(self, network: Network) -> None: ...

    def train_mode(self, network: Network) -> None: ...

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
        """The loss of ``network`` on a batch, its forward pass through ``forward`` when given (the network
        wrapped in ``DistributedDataParallel``), its images in channels-last layout when asked; with
        ``teacher`` (the base model of an extended head), distilled from its outputs with weight ``distill``;
        ``iou_objectness``: a YOLO loss's objectness target is the assigned box's IoU; ``multi_scale``: each batch
        resized to a random side in (1 ± it) × its own (a family without a YOLO loss ignores both: training
        refuses them for it before it gets here)."""
