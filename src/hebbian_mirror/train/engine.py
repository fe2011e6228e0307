"""The training engine, torchvision-references style: optimiser and schedule, one epoch, validation, and
the checkpoints a run resumes from."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..datasets import DetectionDataset
from ..evaluation import EVAL_OPTIONS, evaluate
from ..families import family
from ..families.base import Criterion
from ..models import checkpoint
from ..network import Network

if TYPE_CHECKING:
    from .run_config import TrainConfig


@dataclass
class Progress:
    """Where a run stands: what ``last.pt`` carries besides the weights and the optimiser."""

    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_ap: float = -1.0
    stale: int = 0  # epochs since the validation AP last improved


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def optimisation(
    cfg: TrainConfig,
    module: torch.nn.Module,
    steps_per_epoch: int,
    use_amp: bool,
    lr_scale: float = 1.0,
    backbone: Collection[torch.nn.Parameter] = (),
) -> Optimisation:
    """SGD (Nesterov) or AdamW, weights decayed but not biases and norms; warm-up then cosine or step. The peak
    learning rate is ``lr_scale`` × the configured one (N processes: N times the batch, N times the rate), and
    ``cfg.backbone_lr`` times that for the ``backbone`` parameters."""
    lr = cfg.learning_rate() * lr_scale
    slow = {id(p) for p in backbone} if cfg.backbone_lr != 1.0 else set()
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for p in module.parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim > 1, id(p) in slow), []).append(p)
    params = [
        {"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": lr * (cfg.backbone_lr if s else 1)}
        for (decay, s), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))
    ]
    if cfg.optimizer == "sgd":  # TrainConfig checked it is sgd or adamw
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.937, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0 if progress < 0.8 else 0.1 if progress < 0.9 else 0.01

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return Optimisation(optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=use_amp))


class Ema:
    """An exponential moving average of a network's weights and batch-norm statistics
    (``torch.optim.swa_utils.AveragedModel``), the decay ramped up as YOLOv5 does: ``decay × (1 − e^(−n/RAMP))``
    after ``n`` updates (2000: about 63% of the decay by then), so the first steps' weights do not linger."""

    RAMP = 2000.0

    def __init__(self, network: Network, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel

        def average(kept: list[torch.Tensor], new: list[torch.Tensor], n: torch.Tensor) -> None:
            d = decay * (1 - math.exp(-float(n) / self.RAMP))  # once per update
            for k, v in zip(kept, new, strict=True):
                if k.is_floating_point():
                    k.lerp_(v, 1 - d)
                else:  # counters (batch norm's batches seen) follow the network
                    k.copy_(v)

        self.network = network
        self.model = AveragedModel(network.module, multi_avg_fn=average, use_buffers=True)

    def update(self) -> None:
        self.model.update_parameters(self.network.module)

    def averaged(self) -> Network:
        """The averaged weights as a network of their own (what is validated and saved as ``best.pt``)."""
        return Network(self.network.family, self.model.module, self.network.meta, self.network.arch)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.model.module.state_dict(), "updates": int(self.model.n_averaged)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.module.load_state_dict(state["weights"])
        self.model.n_averaged.fill_(state["updates"])


def train_one_epoch(
    network: Network,
    criterion: Criterion,
    loader: DataLoader,
    opt: Optimisation,
    device: torch.device,
    *,
    steps: int,
    clip: float,
    use_amp: bool,
    desc: str,
    quiet: bool = False,
    ema: Ema | None = None,
) -> dict[str, float]:
    """At most ``steps`` optimiser steps (each followed by an ``ema`` update), with a progress bar of the live
    losses; returns the mean loss and the seconds it took."""
    started, losses = time.perf_counter(), []
    params = [p for p in network.module.parameters() if p.requires_grad]
    with tqdm(loader, total=steps, desc=desc, unit="batch", disable=quiet) as bar:
        for step, (images, targets) in enumerate(bar):
            if step >= steps:
                break
            loss, parts = criterion(images, targets, device, use_amp)
            opt.optimizer.zero_grad(set_to_none=True)
            opt.scaler.scale(loss).backward()
            opt.scaler.unscale_(opt.optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.scheduler.step()
            if ema is not None:
                ema.update()
            losses.append(loss.item())
            shown = {k: f"{v:.3f}" for k, v in parts.items() if k != "positives"}
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", **shown, lr=f"{opt.scheduler.get_last_lr()[0]:.2e}")
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def validate(network: Network, val: DetectionDataset, device: torch.device, batch_size: int) -> dict:
    """COCO metrics of the network as it is now on the validation split (the full evaluation report)."""
    network.module.eval()
    detector = family(network.family).detector(network, device)
    return evaluate(detector, val, EVAL_OPTIONS, batch_size=batch_size, progress=True)


def epoch_metrics(epoch: int, trained: dict[str, float], report: dict, lr: float) -> dict:
    """One row of the run's history (what MLflow logs per epoch)."""
    return {
        "epoch": epoch + 1,
        "loss": trained["loss"],
        "seconds": trained["seconds"],
        "AP": report["AP"],
        "AP50": report["AP50"],
        "AP75": report["AP75"],
        "precision": report["at_threshold"]["precision"],
        "recall": report["at_threshold"]["recall"],
        "lr": lr,
        "per_class": {k: {"AP": v["AP"], "AP50": v["AP50"]} for k, v in report["per_class"].items()},
    }


def save_last(
    path: Path, network: Network, opt: Optimisation, progress: Progress, config: dict, ema: Ema | None = None
) -> None:
    """``last.pt``: the model plus everything :func:`resume` needs to continue exactly (the average too)."""
    last = progress.history[-1]
    checkpoint.save(
        checkpoint.to_record(network)
        | {
            "epoch": progress.next_epoch - 1,
            "metrics": last,
            "history": progress.history,
            "best_ap": progress.best_ap,
            "stale": progress.stale,
            "config": config,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }
        | opt.state_dict()
        | ({"ema": ema.state_dict()} if ema is not None else {}),
        path,
    )


def save_best(path: Path, network: Network, epoch: int, metrics: dict) -> None:
    checkpoint.save(checkpoint.to_record(network) | {"epoch": epoch, "metrics": metrics}, path)


def resume(record: dict, opt: Optimisation, ema: Ema | None = None) -> Progress:
    """Restore the optimiser (and the average) from a ``last.pt`` record; returns where the run stands."""
    opt.load_state_dict(record)
    if ema is not None:
        ema.load_state_dict(record["ema"])
    return Progress(record["epoch"] + 1, record["history"], record["best_ap"], record["stale"])


def keep_epoch(out: Path, network: Network, epoch: int, keep: int) -> None:
    """With ``keep`` > 0, the epoch's weights as ``OUT/epoch-N.pt``, only the last ``keep`` of them left."""
    if keep <= 0:
        return
    save_best(out / f"epoch-{epoch + 1}.pt", network, epoch, {})
    for old in out.glob("epoch-*.pt"):
        number = old.stem.removeprefix("epoch-")
        if number.isdigit() and int(number) <= epoch + 1 - keep:
            old.unlink(missing_ok=True)


def time_left(cfg: TrainConfig, history: list[dict]) -> None:
    """The line that says how long the rest of the run should take (epochs with a frozen backbone and the
    others estimated apart, each from the last one of its kind; an unfrozen one never seen counts 2×)."""
    done = len(history)
    mins = [h.get("minutes", 0.0) for h in history]  # runs written before this line existed have none
    took = [m - (mins[i - 1] if i else 0.0) for i, m in enumerate(mins)]
    frozen = [t for i, t in enumerate(took) if history[i]["epoch"] <= cfg.freeze_epochs]
    full = [t for i, t in enumerate(took) if history[i]["epoch"] > cfg.freeze_epochs]
    per_full = full[-1] if full else (frozen[-1] * 2 if frozen else 0.0)
    left = sum(
        (frozen[-1] if frozen else per_full) if e < cfg.freeze_epochs else per_full for e in range(done, cfg.epochs)
    )
    tqdm.write(
        f"epoch {done}/{cfg.epochs} done after {mins[-1]:.1f} min: about {left:.0f} min left"
        f" (AP50 {history[-1]['AP50']:.3f})"
    )
