"""`hebbian-mirror train`: a plain training loop (torchvision references style) for Darknet YOLO models."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Settings
from ..darknet import load_net
from ..darknet.model import DarknetNet
from ..datasets import DetectionDataset, load_splits
from ..detection import resolve_device
from ..errors import DatasetError, ModelNotFoundError
from ..evaluation import EVAL_OPTIONS, evaluate, write_report
from ..plots import write_plots
from . import checkpoint
from .augment import AugmentConfig
from .data import seed_worker
from .families import DarknetFamily, TorchvisionFamily, from_record, replace_head
from .heads import resize_heads

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    model: str = "yolov4-tiny"
    out: str = "runs/train"
    epochs: int = 30
    batch: int = 8
    lr: float | None = None  # default: 0.01 for SGD, 0.001 for AdamW
    optimizer: str = "sgd"
    schedule: str = "cosine"  # or "step"
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    clip: float = 10.0
    img_size: int | None = None  # default: the model's
    device: str = "auto"
    workers: int = 2
    amp: bool = True  # on CUDA only
    freeze_backbone: bool = False
    seed: int = 0
    patience: int = 10  # early stop after this many epochs without a better validation AP
    max_steps: int | None = None  # stop an epoch after this many steps (quick experiments, tests)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch: int = 8

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.01 if self.optimizer == "sgd" else 0.001)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _splits(cfg: TrainConfig) -> tuple[DetectionDataset, DetectionDataset]:
    splits = load_splits(cfg.data)
    if "train" not in splits:
        raise DatasetError(f"{cfg.data} has no 'train' split (it has: {', '.join(splits)})")
    val = splits.get("val") or splits.get("test")
    if val is None:
        raise DatasetError(f"{cfg.data} has no 'val' split: make one with `hebbian-mirror data split`")
    for name, ds in (("train", splits["train"]), ("val", val)):
        if not ds.samples:
            raise DatasetError(f"{cfg.data}: the {name} split has no readable images ({len(ds.problems)} problems)")
    if not any(s.boxes for s in splits["train"].samples):
        raise DatasetError(f"{cfg.data}: the train split has no labelled boxes")
    return splits["train"], val


def _base_family(cfg: TrainConfig, settings: Settings, classes: list[str], display: dict[str, str]):
    """The model to start from, with its head sized for ``classes``."""
    from ..backends.torchvision import load_official
    from ..zoo import ensure_weights, get_spec, registry

    name = Path(cfg.out).name
    if cfg.model.endswith(".pt"):
        family = from_record(checkpoint.read(cfg.model))
        if list(family.classes) == list(classes):
            family.display = display
            return family
        if isinstance(family, TorchvisionFamily):
            replace_head(family.model, family.builder, len(classes) + 1)
            return TorchvisionFamily(family.model, family.builder, classes, display, family.input_size, name)
        net, letterbox = family.model, family.letterbox
    elif cfg.model in registry():
        spec = get_spec(cfg.model)
        if spec.family == "torchvision":
            model = load_official(spec.builder, len(spec.extra["categories"]), ensure_weights(spec, settings)[0])
            replace_head(model, spec.builder, len(classes) + 1)
            return TorchvisionFamily(model, spec.builder, classes, display, spec.input_size, name)
        weights, cfg_file = ensure_weights(spec, settings)
        net, letterbox = load_net(cfg_file, weights), spec.letterbox
    else:
        raise ModelNotFoundError(
            f"unknown base model {cfg.model!r}: a zoo model ({', '.join(registry())}) or a .pt checkpoint"
        )
    if cfg.img_size:
        net.sections[0].options["width"] = net.sections[0].options["height"] = str(cfg.img_size)
        resized = DarknetNet(net.sections)
        resized.load_state_dict(net.state_dict())
        net = resized
    if net.num_classes != len(classes):
        net = resize_heads(net, len(classes))
    return DarknetFamily(net, classes, display, letterbox, name)


def _optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)  # weights decay; biases and norms do not
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.learning_rate(), momentum=0.937, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate())
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: sgd or adamw")


def _schedule(cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if cfg.schedule == "step":
            return 1.0 if progress < 0.8 else 0.1 if progress < 0.9 else 0.01
        raise ValueError(f"unknown schedule {cfg.schedule!r}: cosine or step")

    return factor


def train(cfg: TrainConfig, settings: Settings, resume: bool = False, on_epoch=None) -> dict:
    """Train, evaluating on the validation split every epoch; returns the run summary.

    ``on_epoch(epoch, metrics)`` is called after each epoch (MLflow logging hooks in here)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    device = resolve_device(cfg.device)
    train_ds, val_ds = _splits(cfg)
    classes = train_ds.classes
    display = {**val_ds.display_names, **train_ds.display_names}
    if resume and not last_path.is_file():
        raise DatasetError(f"nothing to resume: {last_path} does not exist")
    state = checkpoint.read(last_path) if resume else None
    seed_everything(cfg.seed)
    family = from_record(state) if state is not None else _base_family(cfg, settings, classes, display)
    net = family.model.to(device)
    if cfg.freeze_backbone:
        family.freeze_backbone()
    train_set = family.train_set(train_ds, cfg.augment)
    steps = len(train_set) // cfg.batch if len(train_set) >= cfg.batch else 1
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    optimizer = _optimizer(cfg, net)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, steps))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    start_epoch, best_ap, stale = 0, -1.0, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, start_epoch = state["history"], state["epoch"] + 1
        best_ap, stale = state["best_ap"], state["stale"]
    for epoch in range(start_epoch, cfg.epochs):
        if stale >= cfg.patience:
            log.info("early stop: no better validation AP for %d epochs", stale)
            break
        seed_everything(cfg.seed * 1000 + epoch)  # the epoch's shuffling and augmentation, resumable exactly
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch,
            shuffle=True,
            drop_last=len(train_set) >= cfg.batch,
            num_workers=cfg.workers,
            collate_fn=family.collate,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
            persistent_workers=False,
        )
        family.train_mode()
        started, losses = time.perf_counter(), []
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for step, (images, targets) in enumerate(bar):
            if step >= steps:
                break
            loss, parts = family.loss(images, targets, device, use_amp)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())
            shown = {k: f"{v:.3f}" for k, v in parts.items() if k != "positives"}
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", **shown, lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        train_seconds = time.perf_counter() - started
        net.eval()
        detector = family.detector(device)
        report = evaluate(detector, val_ds, EVAL_OPTIONS, batch_size=cfg.eval_batch, progress=True)
        metrics = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "seconds": round(train_seconds, 1),
            "AP": report["AP"],
            "AP50": report["AP50"],
            "AP75": report["AP75"],
            "precision": report["at_threshold"]["precision"],
            "recall": report["at_threshold"]["recall"],
            "lr": scheduler.get_last_lr()[0],
            "per_class": {k: {"AP": v["AP"], "AP50": v["AP50"]} for k, v in report["per_class"].items()},
        }
        history.append(metrics)
        record = family.record(out.name)
        improved = report["AP"] > best_ap
        if improved:
            best_ap, stale = report["AP"], 0
            checkpoint.save(record | {"epoch": epoch, "metrics": metrics}, best_path)
            write_report(report, out / "best-eval")
            write_plots(report, out / "best-eval")
        else:
            stale += 1
        checkpoint.save(
            record
            | {
                "epoch": epoch,
                "metrics": metrics,
                "history": history,
                "best_ap": best_ap,
                "stale": stale,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "config": _config_dict(cfg),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            },
            last_path,
        )
        log.info(
            "epoch %d: loss %.3f, val AP %.3f AP50 %.3f (%.0f s)",
            epoch + 1,
            metrics["loss"],
            report["AP"],
            report["AP50"],
            train_seconds,
        )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    if best_path.is_file():
        draw_predictions(best_path, val_ds, out / "predictions", device)
    summary = {
        "config": _config_dict(cfg),
        "classes": classes,
        "display_names": display,
        "best_ap": best_ap,
        "epochs_run": len(history),
        "history": history,
        "best": str(best_path),
        "last": str(last_path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["augment"] = cfg.augment.to_dict()
    return d


def draw_predictions(best: Path, ds: DetectionDataset, out: Path, device, count: int = 6) -> None:
    """A few validation images with the best model's detections drawn (display names as labels)."""
    from dataclasses import replace

    from ..images import decode_image, draw_detections

    detector = checkpoint.load_detector(best, device=str(device))
    out.mkdir(parents=True, exist_ok=True)
    for sample in ds.samples[:count]:
        image = decode_image(sample.image, max_pixels=None)
        dets = detector.detect([image])[0]
        named = [replace(d, label=detector.display_names.get(d.label, d.label)) for d in dets]
        draw_detections(image, named).save(out / f"{sample.image.stem}.jpg", quality=88)
