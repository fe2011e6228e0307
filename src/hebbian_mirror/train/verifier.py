"""The verifier stage (after the detector is trained): crops from the training split (labelled weapons and
look-alikes, and the detector's own candidates labelled by overlap), EfficientNet-Lite0 fine-tuned from ImageNet
on them, its combination with the detector fitted on the validation split's candidates, and the validation AP50
per class with and without it. Writes ``OUT/verifier.pt`` (the verifier's record) and ``OUT/verifier.json``."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2
from tqdm import tqdm

from ..classes import canonical_name
from ..config import ModelSettings, Settings
from ..datasets import DetectionDataset, decode_as_annotated, load_splits
from ..datasets.tools import spread
from ..detection import DetectOptions, Detector
from ..errors import DatasetError, TrainingConfigError
from ..evaluation import EVAL_OPTIONS, evaluate
from ..image_batches import decoded_batches
from ..models import checkpoint
from ..models.loader import load_detector
from ..verify import combination
from ..verify.mining import Crop, counts, labelled_crops, matched, mined_crops
from ..verify.net import pretrained
from ..verify.verifier import BACKGROUND, VerifiedDetector, Verifier, crops, square_regions

CONTEXT = 0.15  # the stored crops' extra margin, room for the training crops' jitter


@dataclass
class VerifierConfig:
    """What the stage does; a recipe's ``verifier:`` section sets these."""

    classes: tuple[str, ...] = ("pistol", "knife")
    lookalikes: tuple[str, ...] = ("cell phone", "wallet", "airpods", "remote", "banknote", "card")
    size: int = 96
    margin: float = 0.25
    low: float = 0.05
    max_candidates: int = 8
    mine_conf: float = 0.05
    epochs: int = 5
    freeze: int = 3  # the stem and this many leading blocks keep their ImageNet weights (1.4x faster steps)
    batch: int = 64
    lr: float = 5e-4
    limit: int | None = None  # images per split (a quick look), None: all

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> VerifierConfig:
        """The settings a recipe's section or the command line gives, each checked."""
        known = {f for f in cls.__dataclass_fields__}
        if unknown := set(doc) - known:
            raise TrainingConfigError(
                f"verifier: unknown setting(s) {', '.join(sorted(unknown))}; known: {sorted(known)}"
            )
        for name in ("classes", "lookalikes"):
            value = doc.get(name, ())
            if isinstance(value, str) or not all(isinstance(c, str) and c.strip() for c in value):
                raise TrainingConfigError(f"verifier: {name} is a list of class names, got {value!r}")
        out = cls(**doc)
        out.classes, out.lookalikes = tuple(out.classes), tuple(out.lookalikes)
        checks = {
            "classes": bool(out.classes),
            "epochs >= 1": out.epochs >= 1,
            "batch >= 2": out.batch >= 2,
            "size >= 32": out.size >= 32,
            "max_candidates >= 1": out.max_candidates >= 1,
            "freeze in 0..16": 0 <= out.freeze <= 16,
            "margin in [0, 2]": 0 <= out.margin <= 2,
            "low, mine_conf in [0, 1]": 0 <= out.low <= 1 and 0 <= out.mine_conf <= 1,
            "lr > 0": out.lr > 0,
            "limit >= 1": out.limit is None or out.limit >= 1,
        }
        if failed := [name for name, ok in checks.items() if not ok]:
            raise TrainingConfigError(f"verifier: needs {', '.join(failed)}")
        return out


def section(path: Path, value: Any) -> dict[str, Any] | None:
    """A recipe's ``verifier`` section (settings, or ``true`` for the defaults), checked before hours of
    training; ``None`` when the recipe has none."""
    if value in (None, False):
        return None
    value = {} if value is True else value
    if not isinstance(value, dict):
        raise DatasetError(f"recipe {path}: 'verifier' is a mapping of settings (or true)")
    try:
        VerifierConfig.from_dict(value)
    except (TrainingConfigError, TypeError) as exc:
        raise DatasetError(f"recipe {path}: {exc}") from exc
    return value


class CropBank(torch.utils.data.Dataset):
    """Every crop, cut once (with extra context) and kept in memory as ``uint8``; training draws a jittered,
    flipped, recoloured view of it; evaluation the served view (its centre)."""

    def __init__(
        self, items: Sequence[Crop], ds: DetectionDataset, cfg: VerifierConfig, train: bool, progress: str | None
    ) -> None:
        factor = (1 + 2 * (cfg.margin + CONTEXT)) / (1 + 2 * cfg.margin)
        self.stored = round(cfg.size * factor)
        by_image: dict[Path, list[int]] = defaultdict(list)
        for i, c in enumerate(items):
            by_image[c.image].append(i)
        self.images = torch.zeros(len(items), 3, self.stored, self.stored, dtype=torch.uint8)
        self.labels = torch.tensor([c.label for c in items], dtype=torch.long)
        samples = [s for s in ds.samples if s.image in by_image]
        for batch in decoded_batches(samples, 16, decode=decode_as_annotated, progress=progress):
            for sample, image in zip(batch.items, batch.images, strict=True):
                rows = by_image[sample.image]
                regions = square_regions(np.array([items[i].box for i in rows]), cfg.margin + CONTEXT)
                self.images[rows] = crops(image, regions, self.stored).mul(255).round().to(torch.uint8)
        keep = cfg.size / self.stored
        self.view = (
            v2.Compose(
                [
                    v2.RandomResizedCrop(cfg.size, scale=(keep**2 * 0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.ColorJitter(0.3, 0.3, 0.3, 0.02),
                ]
            )
            if train
            else v2.CenterCrop(cfg.size)
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(self.images[i]).float().div(255), self.labels[i]


def _bank(detector: Detector, ds: DetectionDataset, labels: tuple[str, ...], cfg: VerifierConfig, what: str):
    """``ds``'s crops (labelled and mined) and their bank."""
    found = labelled_crops(ds, labels, cfg.lookalikes)
    found += mined_crops(detector, ds, labels, cfg.mine_conf, progress=f"mine {what} candidates")
    return found, CropBank(found, ds, cfg, what == "training", f"cut {what} crops")


def train_net(
    train: CropBank, val: CropBank, labels: tuple[str, ...], cfg: VerifierConfig, device: torch.device, log=print
) -> nn.Module:
    """Fine-tune EfficientNet-Lite0 on ``train`` (class-balanced loss) on ``device``; keep the epoch with the
    lowest validation loss."""
    net = pretrained(len(labels)).to(device)
    frozen = nn.ModuleList([net._conv_stem, net._bn0, *net._blocks[: cfg.freeze]])
    frozen.requires_grad_(False)
    freq = torch.bincount(train.labels, minlength=len(labels)).float().clamp(min=1)
    loss_fn = nn.CrossEntropyLoss(weight=(freq.sum() / freq / len(labels)).to(device), label_smoothing=0.05)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(train, cfg.batch, shuffle=True, drop_last=len(train) > cfg.batch)
    steps = cfg.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
    best, best_loss = None, math.inf
    for epoch in range(cfg.epochs):
        net.train()
        frozen.eval()  # their batch-norm statistics stay ImageNet's too
        for x, y in tqdm(loader, desc=f"verifier epoch {epoch + 1}/{cfg.epochs}", unit="batch"):
            opt.zero_grad()
            loss_fn(net(x.to(device)), y.to(device)).backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            outs = [(net(x.to(device)).cpu(), y) for x, y in torch.utils.data.DataLoader(val, 128)]
        logits, ys = torch.cat([o for o, _ in outs]), torch.cat([y for _, y in outs])
        val_loss = nn.functional.cross_entropy(logits, ys).item()
        accuracy = (logits.argmax(1) == ys).float().mean().item()
        log(f"verifier epoch {epoch + 1}: validation loss {val_loss:.3f}, accuracy {accuracy:.3f}")
        if best is None or val_loss < best_loss:  # (a NaN loss is never better: the first epoch stands)
            best, best_loss = {k: v.clone() for k, v in net.state_dict().items()}, val_loss
    net.load_state_dict(best)
    return net.eval()


def fit_combination(detector: Detector, verifier: Verifier, ds: DetectionDataset) -> dict[str, Any]:
    """Fit each class's combination on ``ds``'s candidates (as served: score ≥ ``low``, the best
    ``max_candidates``), labelled as COCO matches them."""
    rows: dict[int, list[tuple[float, float, bool]]] = defaultdict(list)
    options = DetectOptions(conf=verifier.low)
    for batch in decoded_batches(ds.samples, 8, decode=decode_as_annotated, progress="fit the combination"):
        for s, image, found in zip(batch.items, batch.images, detector.detect(batch.images, options), strict=True):
            pick, labels = verifier.candidates(found)
            if not len(pick):
                continue
            probs = verifier.probabilities(verifier.crops_of(image, found.boxes[pick]))
            for label in set(labels.tolist()):
                name = verifier.labels[label]
                rows_of = pick[labels == label]
                truths = [b.xyxy for b in s.boxes if canonical_name(ds.classes[b.class_id]) == name]
                hits = matched(found.boxes[rows_of], found.scores[rows_of], truths)
                for k, hit in zip(np.flatnonzero(labels == label), hits, strict=True):
                    rows[label].append((float(found.scores[pick[k]]), float(probs[k, label]), bool(hit)))
    report = {}
    for label, values in sorted(rows.items()):
        det, ver, hit = (np.array(v) for v in zip(*values, strict=True))
        name = verifier.labels[label]
        verifier.weights[name] = combination.fit(det, ver, hit)
        report[name] = {"candidates": len(hit), "true": int(hit.sum()), "weights": verifier.weights[name]}
    return report


def cross_fitted(detector: Detector, verifier: Verifier, val_ds: DetectionDataset) -> dict[str, dict[str, float]]:
    """The gain measured on images the combination was not fitted on: each half of ``val_ds`` scored with the
    combination fitted on the other half (the same classifier); AP50 per class, plain and verified, the mean of
    the two halves. The served combination is fitted on the whole split."""
    halves = [replace(val_ds, samples=val_ds.samples[i::2]) for i in (0, 1)]
    scores: dict[str, list[dict[str, float]]] = {"plain": [], "verified": []}
    for fit_on, measure_on in ((halves[0], halves[1]), (halves[1], halves[0])):
        other = Verifier(
            verifier.net, verifier.labels, verifier.size, verifier.margin, verifier.low, verifier.max_candidates
        )
        fit_combination(detector, other, fit_on)
        scores["plain"].append(_per_class(evaluate(detector, measure_on, EVAL_OPTIONS)))
        scores["verified"].append(_per_class(evaluate(VerifiedDetector(detector, other), measure_on, EVAL_OPTIONS)))
    return {
        kind: {c: round(sum(h[c] for h in halves_) / 2, 4) for c in halves_[0] if all(c in h for h in halves_)}
        for kind, halves_ in scores.items()
    }


def run(source: str, data: Path, out: Path, cfg: VerifierConfig, settings: Settings, log=print) -> dict[str, Any]:
    """The whole stage for the detector at ``source`` on the prepared dataset ``data`` (train and val splits)."""
    start = time.perf_counter()
    splits = load_splits(data)
    if not {"train", "val"} <= set(splits):
        raise TrainingConfigError(f"the verifier stage needs train and val splits in {data}, found {sorted(splits)}")
    train_ds, val_ds = (replace(splits[k], samples=spread(splits[k].samples, cfg.limit)) for k in ("train", "val"))
    if source.startswith(("models:/", "runs:/")):
        from ..experiments import resolve

        source = str(resolve(source))
    if not source.endswith(".pt"):
        raise TrainingConfigError(
            f"the verifier stage is for a trained checkpoint (.pt, models:/, runs:/), not {source}"
        )
    detector = load_detector(source, settings.part(ModelSettings).model_copy(update={"verify": False}))
    labels = (BACKGROUND, *(canonical_name(c) for c in cfg.classes))
    missing = [c for c in labels[1:] if c not in {canonical_name(n) for n in detector.class_names}]
    if missing:
        raise TrainingConfigError(f"the verifier's classes {missing} are not classes of {detector.name}")
    train_crops, train_bank = _bank(detector, train_ds, labels, cfg, "training")
    val_crops, val_bank = _bank(detector, val_ds, labels, cfg, "validation")
    counts_of = torch.bincount(train_bank.labels, minlength=len(labels)).tolist()
    if empty := [labels[i] for i, n in enumerate(counts_of) if n == 0]:
        raise TrainingConfigError(f"the training split gives the verifier no crop of {', '.join(empty)}")
    if not len(val_bank):
        raise TrainingConfigError("the validation split gives the verifier no crop to check its epochs on")
    net = train_net(train_bank, val_bank, labels, cfg, detector.device, log)
    verifier = Verifier(net, labels, cfg.size, cfg.margin, cfg.low, cfg.max_candidates)
    fitted = fit_combination(detector, verifier, val_ds)
    plain = evaluate(detector, val_ds, EVAL_OPTIONS, progress=True)
    verified = evaluate(VerifiedDetector(detector, verifier), val_ds, EVAL_OPTIONS, progress=True)
    held_out = cross_fitted(detector, verifier, val_ds)
    report = {
        "detector": source,
        "data": str(data),
        "config": asdict(cfg),
        "crops": {"train": counts(train_crops, labels), "val": counts(val_crops, labels)},
        "combination": fitted,
        "val_AP50": {"plain": _per_class(plain), "verified": _per_class(verified)},
        "val_AP50_held_out": held_out,
        "minutes": round((time.perf_counter() - start) / 60, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(verifier.to_record(), out / "verifier.pt")
    report["model"] = str(out / "verified.pt")  # the detector's checkpoint with the verifier inside: one file
    checkpoint.save(checkpoint.read(source) | {"verifier": verifier.to_record()}, out / "verified.pt")
    (out / "verifier.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _per_class(report: dict) -> dict[str, float]:
    return {"all": round(report["AP50"], 4)} | {
        name: round(v["AP50"], 4) for name, v in report["per_class"].items() if v.get("AP50") is not None
    }
