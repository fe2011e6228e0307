"""What a model family is: its declared capabilities, how it turns a :class:`~hebbian_mirror.network.Network`
into a detector and into (and back from) a checkpoint, and its training adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ModelFormatError
from ..meta import ModelMeta
from ..network import Network

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from ..datasets import DetectionDataset
    from ..datasets.augment import AugmentConfig
    from ..detection import Detector

# (images, targets, device, use_amp) → the batch's total loss and its named parts (for the progress bar)
Criterion = Callable[[Any, Any, "torch.device", bool], tuple["torch.Tensor", dict[str, float]]]


@dataclass(frozen=True)
class Capabilities:
    """What a family's models can do; every feature that only some families have asks here, never the name."""

    checkpoint: bool = False  # a Network of it is saved in and loaded from the product's `.pt` checkpoints
    train: bool = False  # `train` fine-tunes it (the family has a training adapter)
    export: bool = False  # `export` writes it as an ONNX file
    merge: bool = False  # box voting in selection (DetectOptions.merge)
    augment: bool = False  # test-time augmentation: the network at a second input size (DetectOptions.augment)
    multi_scale: bool = False  # train --multi-scale: batches at random input sizes
    iou_objectness: bool = False  # train --iou-objectness: a YOLO objectness target
    distill: bool = False  # train --distill: an extended head learns from its base model's outputs
    combine: bool = False  # `combine`: an extended model and its base as one detector
    average: bool = False  # `average`: checkpoints averaged, batch norm recalibrated on training images alone
    heads: bool = False  # train --neighbour-cells / --recluster-anchors: a YOLO head's assignment and anchors


class Family:
    """One model family (Darknet YOLO, torchvision, ONNX, ...): one package holding its detector, this class and
    its training adapter, registered with one line in :func:`hebbian_mirror.families.families`.

    A family implements what its :attr:`capabilities` declare; the defaults refuse."""

    name: str
    capabilities: Capabilities = Capabilities()
    suffixes: tuple[str, ...] = ()  # files this family runs as they are (``.onnx``), through :meth:`open`

    def architecture(self, network: Network) -> dict[str, Any]:
        """What a checkpoint stores besides the weights to rebuild the module."""
        raise self._cannot("be saved as a checkpoint")

    def build(self, arch: Mapping[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
        """An untrained module from :meth:`architecture`'s output (read from any mapping that holds it, e.g. a
        checkpoint record), and the ``arch`` to keep on its :class:`Network`."""
        raise self._cannot("be loaded from a checkpoint")

    def meta(self, record: Mapping[str, Any]) -> ModelMeta:
        """The metadata a checkpoint record holds (a family may fill in what old records left implied)."""
        return ModelMeta.from_dict(record)

    def from_files(self, meta: ModelMeta, arch: Mapping[str, Any], paths: list[Path]) -> Network:
        """A zoo model from its official files (in the order the registry lists them)."""
        raise self._cannot("be built from weight files")

    def detector(self, network: Network, device: str | torch.device = "auto", half: bool = False) -> Detector:
        """Run ``network`` (copied: the caller may keep training it)."""
        raise self._cannot("run a Network")

    def open(self, path: Path, device: str | torch.device = "auto") -> Detector:
        """Run a file of one of :attr:`suffixes` as it is."""
        raise self._cannot(f"open {path}")

    def training(self) -> TrainingAdapter:
        """What training needs to fine-tune this family (:attr:`Capabilities.train`)."""
        raise ModelFormatError(f"training does not support {self.name!r} models")

    def _cannot(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.name} models cannot {what}")


class TrainingAdapter(Protocol):
    """What differs between the families training fine-tunes."""

    name: str
    collate: Callable[[list], Any]
    loss_summed: bool  # the loss sums over the batch (YOLO's) rather than averaging (torchvision's)
    unused_parameters: bool  # some parameters may get no gradient in a step (DistributedDataParallel must know)

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

    def reshape_heads(
        self, network: Network, ds: DetectionDataset, neighbour_cells: bool, recluster_anchors: bool
    ) -> Network:
        """(Families with ``capabilities.heads``.) ``network`` with heads that assign each label to its
        neighbouring cells too, and/or anchors clustered on ``ds``'s boxes; it starts out predicting as before."""

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
        resized to a random side in (1 ± it) × its own (a family whose capabilities lack them never gets them:
        training refuses them first)."""
