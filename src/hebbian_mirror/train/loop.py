"""`hebbian-mirror train`: fine-tune any trainable model (Darknet YOLO, torchvision detectors) on a labelled
dataset, evaluating every epoch, keeping ``best.pt`` / ``last.pt`` and resuming exactly."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..classes import canonical_name, class_index
from ..config import Settings, meaningful_name
from ..datasets import DetectionDataset, Splits, load_dataset, load_splits
from ..detection import resolve_device
from ..errors import DatasetError, ModelNotFoundError, TrainingConfigError
from ..evaluation import write_report
from ..families import family
from ..image_batches import decoded_batches
from ..images import draw_detections
from ..models import checkpoint
from ..models.loader import load_detector, load_network
from ..network import Network
from ..plots import learning_curve, write_plots
from ..runtime import world_size
from . import distributed, engine
from .run_config import TrainConfig
from .sampling import EpochSampler, repeat_factors, seed_worker

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _splits(cfg: TrainConfig, splits: Splits) -> tuple[DetectionDataset, DetectionDataset]:
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


_HEADS = (("neighbour_cells", False), ("recluster_anchors", False))  # the heads it was given when it started


def _starting_network(cfg: TrainConfig, settings: Settings, last: dict | None, train_ds: DetectionDataset) -> Network:
    """``last.pt``'s network when resuming, else the base model with its head sized for the dataset."""
    if last is not None:
        return checkpoint.from_record(last)
    try:
        base = load_network(cfg.model, settings)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(str(exc).replace("unknown model", "unknown base model", 1)) from exc
    display = dict(train_ds.display_names)
    classes, keep = list(train_ds.classes), 0
    if cfg.keep_classes:  # the base model's classes first, then the dataset's new ones
        known = class_index(base.meta.classes)
        classes = list(base.meta.classes) + [c for c in train_ds.classes if canonical_name(c) not in known]
        display = dict(base.meta.display_names) | display
        keep = len(base.meta.classes)
    name = meaningful_name(Path(cfg.out) / "best.pt")  # runs/weapons/best.pt → weapons
    training = family(base.family).training()
    network = training.adapt(base, classes, display, cfg.img_size, name, keep)
    if (cfg.neighbour_cells or cfg.recluster_anchors) and family(base.family).capabilities.heads:  # else refused
        network = training.reshape_heads(network, train_ds, cfg.neighbour_cells, cfg.recluster_anchors)
    return network


@dataclass
class Prepared:
    """What a run starts from, loaded and checked before anything is trained or tracked."""

    splits: Splits  # every split of the dataset (for its stats)
    train_ds: DetectionDataset
    val_ds: DetectionDataset
    network: Network
    last: dict | None  # last.pt's record when resuming
    device: torch.device
    teacher: Network | None = None  # the base model, to distil from (--distill)


def prepare(cfg: TrainConfig, settings: Settings, resume: bool = False) -> Prepared:
    """Load and check everything a run needs (device, dataset, resume point, base model and its weights), so
    that a mistake stops it before the first step, an output folder or an MLflow run exists."""
    device = resolve_device(cfg.device)
    splits = load_splits(cfg.data)
    train_ds, val_ds = _splits(cfg, splits)
    train_ds.display_names = {**val_ds.display_names, **train_ds.display_names}
    last_path = Path(cfg.out) / "last.pt"
    if resume and not last_path.is_file():
        raise TrainingConfigError(f"nothing to resume: {last_path} does not exist")
    last = checkpoint.read(last_path) if resume else None
    learnt_under = (("backbone_lr", 1.0), ("iou_objectness", False), ("ema", 0.0), *_HEADS)
    for key, default in learnt_under:
        if last is not None and (was := last.get("config", {}).get(key, default)) != getattr(cfg, key):
            flag = "--" + key.replace("_", "-")
            flag = (flag if was else flag.replace("--", "--no-")) if isinstance(was, bool) else f"{flag} {was}"
            with_ = "without " + flag.split()[0] if was == 0.0 and key == "ema" else "with " + flag
            raise TrainingConfigError(f"{last_path} was trained {with_}: resume it with the same setting")
    seed_everything(cfg.seed)
    network = _starting_network(cfg, settings, last, train_ds)
    if list(network.meta.classes) != train_ds.classes:  # an extended head (now or when it was started)
        missing = set(map(canonical_name, train_ds.classes)) - set(map(canonical_name, network.meta.classes))
        if missing:
            raise DatasetError(f"the model does not have the dataset's classes {', '.join(sorted(missing))}")
        train_ds = train_ds.remapped(list(network.meta.classes), dict(network.meta.display_names))
    caps = family(network.family).capabilities
    for flag, wanted, able in (
        ("--iou-objectness", cfg.iou_objectness, caps.iou_objectness),
        ("--multi-scale", cfg.multi_scale, caps.multi_scale),
        ("--neighbour-cells", cfg.neighbour_cells, caps.heads),
        ("--recluster-anchors", cfg.recluster_anchors, caps.heads),
    ):
        if wanted and not able:
            raise TrainingConfigError(
                f"{flag} is for Darknet models: torchvision detectors have their own losses and sizes"
            )
    teacher = _teacher(cfg, settings, network) if cfg.distill else None
    return Prepared(splits, train_ds, val_ds, network, last, device, teacher)


def _teacher(cfg: TrainConfig, settings: Settings, network: Network) -> Network:
    """The base model an extended network distils from: the same family, whose classes its first rows are."""
    if not family(network.family).capabilities.distill:
        raise TrainingConfigError("--distill is for Darknet models: torchvision detectors are fine-tuned without it")
    base = load_network(cfg.model, settings)
    if base.family != network.family or tuple(network.meta.classes[: len(base.meta.classes)]) != base.meta.classes:
        raise TrainingConfigError(
            f"--distill needs --keep-classes: the model's first classes must be {cfg.model}'s own"
        )
    return base  # fully convolutional: it reads the training input at any --img-size


def train(
    cfg: TrainConfig, settings: Settings, resume: bool = False, on_epoch=None, prepared: Prepared | None = None
) -> dict:
    """Train, evaluating on the validation split every epoch; returns the run summary.

    ``on_epoch(epoch, metrics)`` is called after each epoch (MLflow logging hooks in here); ``prepared`` is
    :func:`prepare`'s result when the caller has it already. Under torchrun (``train --nproc N``) every
    process runs this; only rank 0 evaluates, calls ``on_epoch`` and writes the run folder."""
    p = prepared or prepare(cfg, settings, resume)
    world, device = distributed.init(p.device)
    try:
        return _train(cfg, p, world, device, on_epoch)
    finally:
        distributed.close()


def _train(cfg: TrainConfig, p: Prepared, world: distributed.World, device: torch.device, on_epoch) -> dict:
    train_ds, val_ds, network, last = p.train_ds, p.val_ds, p.network, p.last
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    fam = family(network.family).training()
    network.module.to(device)
    if cfg.freeze_backbone or cfg.backbone_lr == 0:
        fam.freeze_backbone(network)
    if cfg.freeze_epochs and world.distributed:
        raise TrainingConfigError(
            "--freeze-epochs cannot change what trains under --nproc: use --freeze-backbone, or one process"
        )
    trainable = [param.requires_grad for param in network.module.parameters()]
    forward = None
    train_set = fam.train_set(network, train_ds, cfg.augmentation, cfg.cache_images)
    if cfg.channels_last:
        network.module.to(memory_format=torch.channels_last)
    global_batch = cfg.batch * world.size
    # the epoch's permutation (one process draws it all; N processes each take every N-th image of it)
    weights = _balance(cfg, train_ds) if cfg.repeat_threshold else None
    sampler = EpochSampler(
        len(train_set), cfg.seed * 1000, world.rank, world.size, len(train_set) >= global_batch, weights
    )
    if world.distributed:  # each process a share of every global batch of world.size × batch images
        distributed.sync_batchnorm(network.module, device)
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(network.module, ids, find_unused_parameters=fam.unused_parameters)
    steps = len(train_set) // global_batch if len(train_set) >= global_batch else 1
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    use_amp = cfg.amp and device.type == "cuda"
    # N processes, N times the batch: the rate N times larger, where the family's loss is a mean over the batch
    # (torchvision's); the YOLO loss is summed over the batch, so its gradient already grows N times
    lr_scale = 1 if fam.loss_summed else world.size
    opt = engine.optimisation(cfg, network.module, steps, use_amp, lr_scale, fam.backbone(network))  # all trainable
    if last is not None and last.get("config", {}).get("processes", 1) != world.size:
        raise TrainingConfigError(
            f"{cfg.out}/last.pt was trained by {last['config'].get('processes', 1)} process(es): resume it with "
            f"as many (--nproc), its schedule and batch depend on them"
        )
    ema = engine.Ema(network, cfg.ema) if cfg.ema and world.main else None  # on rank 0: the one that validates
    progress = engine.resume(last, opt, ema) if last is not None else engine.Progress()
    if p.teacher is not None:
        p.teacher.module.to(device)
    criterion = fam.criterion(
        network, forward, cfg.channels_last, p.teacher, cfg.distill or 0.0, cfg.iou_objectness, cfg.multi_scale
    )
    kept_ds = load_dataset(cfg.retention_data) if cfg.retention_data and world.main else None
    for epoch in range(progress.next_epoch, cfg.epochs):
        if progress.stale >= cfg.patience:
            log.info("early stop: no better validation AP for %d epochs", progress.stale)
            break
        started = time.monotonic()
        # the epoch's augmentation, resumable exactly; each process its own draws (rank 0's are one process's)
        seed_everything(cfg.seed * 1000 + epoch + 7919 * world.rank)
        sampler.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch,
            sampler=sampler,
            drop_last=len(train_set) >= global_batch,
            num_workers=cfg.loader_workers,
            collate_fn=fam.collate,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 7919 * world.rank),
            persistent_workers=False,
        )
        for param, on in zip(network.module.parameters(), trainable, strict=True):
            param.requires_grad_(on)  # frozen ones get no gradient, and SGD / AdamW leave them as they are
        if epoch < cfg.freeze_epochs:
            fam.freeze_backbone(network)
        fam.train_mode(network)
        trained = engine.train_one_epoch(
            network,
            criterion,
            loader,
            opt,
            device,
            steps=steps,
            clip=cfg.clip,
            use_amp=use_amp,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            quiet=not world.main,
            ema=ema,
        )
        progress.next_epoch = epoch + 1
        if world.main:
            trained["started"] = started  # when the epoch began: its minutes count validation too
            _evaluate_and_save(cfg, (network, ema), (val_ds, kept_ds), device, epoch, trained, opt, progress, on_epoch)
        progress.stale = distributed.broadcast(progress.stale)  # every process stops early together
    if not world.main:
        return {"best_ap": None, "history": [], "best": str(best_path), "last": str(last_path)}
    if best_path.is_file():
        draw_predictions(best_path, val_ds, out / "predictions", device)
    summary = {
        "config": cfg.to_dict(),
        "classes": train_ds.classes,
        "display_names": train_ds.display_names,
        "best_ap": progress.best_ap,
        "epochs_run": len(progress.history),
        "history": progress.history,
        "best": str(best_path),
        "last": str(last_path),
        "processes": world.size,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _evaluate_and_save(cfg, networks, datasets, device, epoch, trained, opt, progress, on_epoch) -> None:
    """Rank 0's end of an epoch: validation (and the retention set's AP50) of the network, or of its average with
    ``--ema``, best.pt / last.pt, the log line and ``on_epoch``."""
    trainee, ema = networks
    network = ema.averaged() if ema is not None else trainee
    out = Path(cfg.out)
    val_ds, kept_ds = datasets
    report = engine.validate(network, val_ds, device, cfg.eval_batch)
    metrics = engine.epoch_metrics(epoch, trained, report, opt.scheduler.get_last_lr()[0])
    if kept_ds is not None:  # the base classes, on their own dataset: best.pt is still chosen by validation
        metrics["retention_AP50"] = engine.validate(network, kept_ds, device, cfg.eval_batch)["AP50"]
    before = progress.history[-1].get("minutes", 0.0) if progress.history else 0.0
    metrics["minutes"] = round(before + (time.monotonic() - trained["started"]) / 60, 4)
    progress.history.append(metrics)
    learning_curve(progress.history, out / "ap-by-minutes.png")
    engine.time_left(cfg, progress.history)
    if report["AP"] > progress.best_ap:
        progress.best_ap, progress.stale = report["AP"], 0
        engine.save_best(out / "best.pt", network, epoch, metrics)
        write_report(report, out / "best-eval")
        write_plots(report, out / "best-eval")
    else:
        progress.stale += 1
    engine.save_last(out / "last.pt", trainee, opt, progress, cfg.to_dict() | {"processes": world_size()}, ema)
    engine.keep_epoch(out, network, epoch, cfg.keep_epochs)  # for checkpoint averaging
    log.info(
        "epoch %d: loss %.3f, val AP %.3f AP50 %.3f (%.0f s)",
        epoch + 1,
        metrics["loss"],
        report["AP"],
        report["AP50"],
        trained["seconds"],
    )
    if on_epoch is not None:
        on_epoch(epoch, metrics)


def _balance(cfg: TrainConfig, train_ds: DetectionDataset) -> list[float]:
    """Repeat factors for class-balanced sampling; logs how the rarest classes' share of draws changes."""
    found = [{b.class_id for b in s.boxes} for s in train_ds.samples]
    factors = repeat_factors(found, cfg.repeat_threshold)
    total, n = sum(factors), max(len(found), 1)
    before: dict[int, float] = {}
    after: dict[int, float] = {}
    for classes, f in zip(found, factors, strict=True):
        for c in classes:
            before[c] = before.get(c, 0.0) + 1 / n
            after[c] = after.get(c, 0.0) + f / total
    rarest = sorted(before, key=before.get)[:3]
    log.info(
        "class-balanced sampling (threshold %g), images drawn up to %.1f× as often: %s",
        cfg.repeat_threshold,
        max(factors, default=1.0),
        "; ".join(f"{train_ds.classes[c]} in {before[c]:.1%} → {after[c]:.1%} of draws" for c in rarest),
    )
    return factors


def draw_predictions(best: Path, ds: DetectionDataset, out: Path, device, count: int = 6) -> None:
    """A few validation images with the best model's detections drawn (display names as labels)."""
    from dataclasses import replace

    detector = load_detector(best, Settings(device=str(device)))
    out.mkdir(parents=True, exist_ok=True)
    for batch in decoded_batches([s.image for s in ds.samples[:count]], batch_size=count):
        for path, image, dets in zip(batch.items, batch.images, detector.detect(batch.images), strict=True):
            named = [replace(d, label=detector.meta.display_name(d.label)) for d in dets]
            draw_detections(image, named).save(out / f"{path.stem}.jpg", quality=88)
