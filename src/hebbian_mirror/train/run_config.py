"""A training run's settings (kept free of torch, so the command line can declare its options from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from ..errors import TrainingConfigError

if TYPE_CHECKING:
    from ..datasets.augment import AugmentConfig


def _default_augment() -> AugmentConfig:
    from ..datasets.augment import AugmentConfig

    return AugmentConfig()


@dataclass
class TrainConfig:
    """A training run. Field help is the ``train`` command's option help."""

    data: str = field(metadata={"help": "Dataset with train and val splits (any format)."})
    model: str = field(
        default="yolov4-tiny",
        metadata={
            "help": "Base model: zoo name (Darknet or torchvision), .pt checkpoint, Darknet .cfg/.weights path, "
            "models:/ or runs:/ URI."
        },
    )
    out: str = field(
        default="runs/train",
        metadata={"help": "Run folder: last.pt, best.pt, summary.json (with --recipe, its prepared data too)."},
    )
    epochs: int = field(default=30, metadata={"help": "Epochs."})
    batch: int = field(default=8, metadata={"help": "Images per step."})
    lr: float | None = field(
        default=None, metadata={"help": "Peak learning rate.", "default_help": "0.01 for sgd, 0.001 for adamw"}
    )
    optimizer: str = field(default="sgd", metadata={"help": "sgd or adamw."})
    schedule: str = field(default="cosine", metadata={"help": "cosine or step."})
    warmup_epochs: float = field(default=1.0, metadata={"help": "Epochs of linear warm-up."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay (not on biases and norms)."})
    clip: float = field(default=10.0, metadata={"help": "Gradient norm clipping."})
    img_size: int | None = field(
        default=None, metadata={"help": "Square input size of Darknet models.", "default_help": "the model's"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N."})
    loader_workers: int = field(default=2, metadata={"help": "Data loading processes (DataLoader workers)."})
    amp: bool = field(default=True, metadata={"help": "Mixed precision (on CUDA only)."})
    freeze_backbone: bool = field(default=False, metadata={"help": "Train only the neck and heads."})
    freeze_epochs: int = field(
        default=0,
        metadata={"help": "Train only the neck and heads for the first N epochs (about 2× faster), then all."},
    )
    backbone_lr: float = field(
        default=1.0,
        metadata={
            "help": "The backbone's learning rate as a share of --lr once it trains: below 1 it drifts less from "
            "the base model (what an extended model keeps of its classes); 0 freezes it."
        },
    )
    keep_classes: bool = field(
        default=False,
        metadata={
            "help": "Extend the base model: keep its classes (e.g. COCO's 80, their head rows kept) and add the "
            "dataset's new ones, instead of replacing them with the dataset's."
        },
    )
    cache_images: bool = field(
        default=False, metadata={"help": "Decode the training images once, into RAM (3 bytes a pixel)."}
    )
    channels_last: bool = field(
        default=False, metadata={"help": "Channels-last tensors: faster convolutions on CPUs (Darknet models)."}
    )
    repeat_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Class-balanced sampling (LVIS repeat factors): an image with a class found in fewer than this "
            "share of the training images is drawn sqrt(share/its) times as often; an epoch keeps its length.",
            "default_help": "off",
        },
    )
    retention_data: str | None = field(
        default=None,
        metadata={
            "help": "A labelled dataset of the base model's classes (e.g. COCO val) also evaluated after each "
            "epoch: its AP50 is in the history and the curve (what an extended model keeps).",
            "default_help": "none",
        },
    )
    distill: float | None = field(
        default=None,
        metadata={
            "help": "Learning without Forgetting for an extended model (--keep-classes): on every image the base "
            "model's objectness, class scores and boxes teach its own classes, with this weight.",
            "default_help": "off",
        },
    )
    iou_objectness: bool = field(
        default=False,
        metadata={
            "help": "An assigned anchor's objectness target is its box's IoU with the label (as YOLOv5), not 1: "
            "a score then also says how well the box fits (Darknet models; its obj loss never reaches 0, so "
            "compare it only with runs that use it too)."
        },
    )
    neighbour_cells: bool = field(
        default=False,
        metadata={
            "help": "Assign each label also to the horizontal and vertical neighbour cells nearest its centre "
            "(YOLOv5's): three positives per label and anchor instead of one; the heads' scale_x_y becomes 2 so "
            "that those cells can reach it (Darknet models; a new run, not a resumed one)."
        },
    )
    recluster_anchors: bool = field(
        default=False,
        metadata={
            "help": "Cluster the anchors on the training boxes (k-means, 1 − IoU; as many as the model has) and "
            "start from predictions unchanged (Darknet models; a new run, not a resumed one)."
        },
    )
    multi_scale: float = field(
        default=0.0,
        metadata={
            "help": "Each step's input side drawn from (1 ± this) × the input size, in multiples of 32 (Darknet's "
            "random=1, YOLOv3's multi-scale training; Darknet models); 0: off."
        },
    )
    ema: float = field(
        default=0.0,
        metadata={
            "help": "Keep an exponential moving average of the weights with this decay (e.g. 0.999; ramped up "
            "as YOLOv5 does, with a time constant of 2000 steps): it is what is validated and saved as best.pt; "
            "0: off."
        },
    )
    keep_epochs: int = field(
        default=0,
        metadata={"help": "Also keep the last N epochs' weights (OUT/epoch-N.pt), for `hebbian-mirror average`."},
    )
    seed: int = field(default=0, metadata={"help": "Random seed (shuffling, augmentation)."})
    patience: int = field(default=10, metadata={"help": "Early stop after N epochs without a better val AP."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop each epoch after N steps (quick runs)."})
    augmentation: AugmentConfig = field(default_factory=_default_augment)
    eval_batch: int = field(default=8, metadata={"help": "Images per batch when validating."})

    def __post_init__(self) -> None:
        """Checked when the run is configured, before anything is loaded, created or logged."""
        choices = {"optimizer": ("sgd", "adamw"), "schedule": ("cosine", "step")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainingConfigError(f"unknown {name} {getattr(self, name)!r}: {' or '.join(allowed)}")
        if self.keep_epochs < 0:
            raise TrainingConfigError(f"keep_epochs cannot be negative, got {self.keep_epochs}")
        for name in ("epochs", "batch", "eval_batch", "patience"):
            if getattr(self, name) < 1:
                raise TrainingConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TrainingConfigError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.loader_workers < 0 or self.warmup_epochs < 0 or self.freeze_epochs < 0:
            raise TrainingConfigError("loader_workers, warmup_epochs and freeze_epochs cannot be negative")
        if not 0.0 <= self.backbone_lr <= 1.0:
            raise TrainingConfigError(f"backbone_lr must be between 0 and 1, got {self.backbone_lr:g}")
        if not 0.0 <= self.ema < 1.0:
            raise TrainingConfigError(f"ema must be at least 0 and below 1, got {self.ema:g}")
        if not 0.0 <= self.multi_scale <= 0.9:
            raise TrainingConfigError(f"multi_scale must be between 0 and 0.9, got {self.multi_scale:g}")
        if self.repeat_threshold is not None and not 0.0 <= self.repeat_threshold <= 1.0:
            raise TrainingConfigError(f"repeat_threshold must be between 0 and 1, got {self.repeat_threshold:g}")
        for name in ("weight_decay", "clip", "distill"):
            if (getattr(self, name) or 0.0) < 0:
                raise TrainingConfigError(f"{name} cannot be negative, got {getattr(self, name):g}")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.01 if self.optimizer == "sgd" else 0.001)

    def to_dict(self) -> dict:
        return asdict(self) | {"augmentation": self.augmentation.to_dict()}

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "augmentation"]
