"""Training recipes: a YAML file naming the datasets (by path), the base model, the schedule, augmentation and
alarm defaults, run end to end by ``train --recipe``: prepare the data (rename classes, pseudo-label the
base model's classes on the new images, merge), train, check what the base model's classes kept, combine the
result with its base (``combine: true``), register.

Relative paths in a recipe are resolved against its ``root`` (relative to the recipe file; default its
folder), as Ultralytics' data files point at ``../datasets``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torchvision.ops import box_iou

from ..classes import canonical_name, class_index
from ..config import Settings
from ..darknet.combined import combine
from ..datasets import Box, DetectionDataset, Splits, decode_as_annotated, load_dataset, load_splits, write_splits
from ..datasets.augment import AugmentConfig
from ..datasets.tools import merge, spread
from ..detection import DetectOptions
from ..errors import DatasetError, HebbianMirrorError, TrainingConfigError
from ..evaluation import EVAL_OPTIONS, evaluate
from ..families import family
from ..image_batches import decoded_batches
from ..models import checkpoint
from ..models.loader import load_detector, load_network
from .run_config import TrainConfig
from .verifier import section

# what prepare_data writes; 2: pseudo-labels skip only the classes the new datasets teach; 3: and the objects
# already annotated (a labelled pistol the base model calls a remote)
DATA_FORMAT = 3
QUICK_LOOK = {"train": 64, "val": 32}  # images per dataset and split of a quick look (a --max-steps run)


@dataclass
class DataSource:
    """One dataset of a recipe."""

    path: Path
    rename: dict[str, str] = field(default_factory=dict)  # class → the name to train it under
    splits: dict[str, str] = field(default_factory=dict)  # its split → ours (train2017: train)
    pseudo_labels: bool = True  # add the base model's detections of classes nobody annotates


@dataclass
class Recipe:
    name: str
    sources: list[DataSource]
    train: dict[str, Any]
    augmentation: dict[str, Any] = field(default_factory=dict)
    pseudo_conf: float = 0.5
    retention: Path | None = None  # a COCO-style dataset the base model's classes are checked on
    register: str | None = None
    alarm: dict[str, Any] = field(default_factory=dict)
    combine: bool = False  # serve the trained model combined with its base (darknet/combined.py)
    verifier: dict[str, Any] | None = None  # a verifier stage after training (train/verifier.py's VerifierConfig)

    @property
    def out(self) -> Path:
        return Path(self.train.get("out", f"runs/{self.name}"))


def read(path: str | Path) -> Recipe:
    """The recipe in ``path``, its paths resolved; a clear :class:`DatasetError` for a bad file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read recipe {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list) or not doc["datasets"]:
        raise DatasetError(f"recipe {path}: needs a 'datasets' list")
    root = (path.parent / doc.get("root", ".")).resolve()

    def at(p: str | Path) -> Path:
        return (root / p).resolve() if not Path(p).is_absolute() else Path(p)

    try:
        return _recipe(path, doc, at)
    except (TypeError, ValueError, KeyError) as exc:  # a value of the wrong kind: the file's mistake, in words
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"recipe {path}: {type(exc).__name__}: {exc}") from exc


def _recipe(path: Path, doc: dict, at) -> Recipe:
    sources = []
    for entry in doc["datasets"]:
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)
        sources.append(DataSource(at(entry.pop("path")), **entry))
    train = dict(doc.get("train") or {})
    if "workers" in train:  # its name before the DataLoader's processes and the server's were told apart
        train.setdefault("loader_workers", train.pop("workers"))
    known = {f.name for f in fields(TrainConfig)} - {"data", "augmentation"}
    if unknown := sorted(set(train) - known):
        raise DatasetError(f"recipe {path}: unknown train settings {', '.join(unknown)}")
    if "out" in train:
        train["out"] = str(at(train["out"]))
    pseudo = doc.get("pseudo_labels") or {}
    return Recipe(
        name=str(doc.get("name", path.stem)),
        sources=sources,
        train=train,
        augmentation=dict(doc.get("augmentation") or doc.get("augment") or {}),  # augment: its earlier name
        pseudo_conf=float(pseudo.get("conf", 0.5)),
        retention=at(doc["retention"]) if doc.get("retention") else None,
        register=doc.get("register"),
        alarm=dict(doc.get("alarm") or {}),
        combine=bool(doc.get("combine", False)),
        verifier=section(path, doc.get("verifier")),
    )


def config(recipe: Recipe, data: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The run's settings: the recipe's, then the flags given on the command line."""
    values = {"out": str(recipe.out)} | recipe.train | overrides
    if recipe.retention is not None and "retention_data" not in values:  # its AP50 after every epoch too
        values["retention_data"] = str(recipe.retention)
    augmentation = values.pop("augmentation", None) or AugmentConfig(**recipe.augmentation)
    return TrainConfig(data=str(data), augmentation=augmentation, **values)


def pseudo_label(
    ds: DetectionDataset,
    detector,
    skip: set[str],
    conf: float,
    label: str = "pseudo-labels",
    overlap: float = 0.5,
) -> tuple[DetectionDataset, int, int]:
    """``ds`` with the base ``detector``'s detections (at ``conf`` or above) of its classes that nobody
    annotates (not in ``skip``, canonical names) added as boxes, except those overlapping an annotated box by
    IoU > ``overlap`` (the same object under another name); how many were added, and how many so left out."""
    classes = list(ds.classes)
    index = class_index(classes)
    added = on_labels = 0
    samples = []
    options = DetectOptions(conf=conf)
    found: dict[int, list] = {}  # by sample index: an image that cannot be decoded gets none
    batches = decoded_batches(  # in the boxes' pixels: the added boxes join them
        list(range(len(ds.samples))), 8, decode=lambda i: decode_as_annotated(ds.samples[i]), progress=label
    )
    for b in batches:
        found.update(zip(b.items, detector.detect(b.images, options), strict=True))
    for i, sample in enumerate(ds.samples):
        dets = [(canonical_name(d.label), d) for d in found.get(i, [])]
        dets = [(key, d) for key, d in dets if key not in skip]
        boxes = list(sample.boxes)
        if dets and boxes:
            ious = box_iou(
                torch.tensor([d.box for _, d in dets], dtype=torch.float32),
                torch.tensor([b.xyxy for b in boxes], dtype=torch.float32),
            )
            kept = (~(ious > overlap).any(1)).tolist()
            on_labels += kept.count(False)
            dets = [det for det, keep in zip(dets, kept, strict=True) if keep]
        for key, d in dets:
            if key not in index:
                index[key] = len(classes)
                classes.append(d.label)
            boxes.append(Box(tuple(d.box), index[key]))
            added += 1
        samples.append(replace(sample, boxes=boxes))
    return replace(ds, classes=classes, samples=samples, category_ids=[]), added, on_labels


def fingerprint(recipe: Recipe, base_model: str, sample: bool = False) -> dict[str, Any]:
    """What the prepared data depends on: a run prepared from anything else is not reused."""
    sources = [
        {"path": str(s.path), "rename": s.rename, "splits": s.splits, "pseudo_labels": s.pseudo_labels}
        for s in recipe.sources
    ]
    out = {"format": DATA_FORMAT, "base_model": base_model, "pseudo_conf": recipe.pseudo_conf, "sources": sources}
    return out | ({"sample": QUICK_LOOK} if sample else {})


def prepare_data(
    recipe: Recipe, settings: Settings, base_model: str, sample: bool = False
) -> tuple[Path, dict[str, Any]]:
    """The recipe's merged dataset in ``OUT/data`` (made once; a resumed run reuses it) and what was done; with
    ``sample`` (a quick look), of :data:`QUICK_LOOK` images per dataset and split, spread over each.
    Data prepared from another recipe (or by an older version) is made again, unless a run already trained on it:
    then it is an error."""
    if recipe.retention is not None:
        _retention_split(recipe.retention)  # a bad retention set fails now, not after hours of training
    out = recipe.out / "data"
    report_path = recipe.out / "data-report.json"
    wanted = fingerprint(recipe, base_model, sample)
    if (out / "data.yaml").is_file() and report_path.is_file():
        report = json.loads(report_path.read_text())
        if report.get("recipe") == wanted:
            return out / "data.yaml", report
        if (recipe.out / "last.pt").is_file():
            raise TrainingConfigError(
                f"{recipe.out} was trained on data prepared from another recipe or by an older version: "
                f"give this run another 'out', or remove {recipe.out}"
            )
    loaded: list[tuple[DataSource, Splits]] = []
    for source in recipe.sources:
        splits = {source.splits.get(k, k): v for k, v in load_splits(source.path).items()}
        splits = {k: v for k, v in splits.items() if k in ("train", "val")}  # test splits stay held out
        if sample:
            splits = {k: replace(v, samples=spread(v.samples, QUICK_LOOK[k])) for k, v in splits.items()}
        if "train" not in splits:
            raise DatasetError(f"{source.path}: no train split (map one with 'splits')")
        has = {k: {canonical_name(c) for c in v.classes} for k, v in splits.items()}
        for old in {canonical_name(o) for o in source.rename} - set().union(*has.values()):
            raise DatasetError(f"{source.path}: cannot rename {old!r}, none of its splits has that class")
        splits = {  # a split without the class (a COCO json listing only its own) keeps its names
            k: v.renamed({o: n for o, n in source.rename.items() if canonical_name(o) in has[k]})
            for k, v in splits.items()
        }
        loaded.append((source, splits))
    # The base model labels what the new images' own datasets leave out (the people holding the knives), never a
    # class those datasets teach (its "cell phone" on a pistol would teach the look-alike). A dataset that is not
    # pseudo-labelled (COCO itself, annotated in full) adds no class to skip: else nothing would be labelled.
    taught = {
        canonical_name(c) for s, splits in loaded if s.pseudo_labels for ds in splits.values() for c in ds.classes
    }
    report: dict[str, Any] = {"recipe": wanted, "sources": [], "pseudo_conf": recipe.pseudo_conf}
    detector = None
    for source, splits in loaded:
        entry = {
            "path": str(source.path),
            "train": len(splits["train"].samples),
            "pseudo_boxes": 0,
            "pseudo_on_labels": 0,
        }
        if source.pseudo_labels:
            detector = detector or load_detector(base_model, settings)
            label = f"pseudo-labels for {source.path.name}"
            splits["train"], entry["pseudo_boxes"], entry["pseudo_on_labels"] = pseudo_label(
                splits["train"], detector, taught, recipe.pseudo_conf, label
            )
            entry["pseudo_classes"] = _counts(splits["train"], taught)
        report["sources"].append(entry)
    merged = merge([splits for _, splits in loaded])
    if "val" not in merged:
        raise DatasetError("the recipe's datasets have no validation split")
    if out.exists():
        shutil.rmtree(out)  # an interrupted earlier preparation
    data = write_splits(merged, out, "yolo")
    report["classes"] = merged["train"].classes
    report["taught"] = sorted(taught)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return data, report


def _counts(ds: DetectionDataset, taught: set[str]) -> dict[str, int]:
    """Boxes per class in ``ds`` that are not of a ``taught`` class (the pseudo-labels), most first."""
    counts: dict[str, int] = {}
    for sample in ds.samples:
        for box in sample.boxes:
            name = ds.classes[box.class_id]
            if canonical_name(name) not in taught:
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _retention_split(data: Path) -> DetectionDataset:
    """The retention check's dataset (its val split, else its only one), with images that exist."""
    split = load_dataset(data)  # as train --retention-data loads it
    if not any(s.image.is_file() for s in split.samples):
        raise DatasetError(f"retention dataset {data}: none of its {len(split.samples)} images is there")
    return split


def check_combinable(recipe: Recipe, base_model: str, keep_classes: bool, settings: Settings) -> None:
    """A recipe that combines needs a Darknet base model that training extends: checked before anything runs."""
    if not recipe.combine:
        return
    if not keep_classes:
        raise TrainingConfigError("a recipe with 'combine' extends its base model: it needs keep_classes: true")
    if not family(name := load_network(base_model, settings).family).capabilities.combine:
        raise TrainingConfigError(f"'combine' is for Darknet models; {base_model} is a {name} model")


def finish(
    recipe: Recipe, best: Path, base_model: str, data: Path, settings: Settings, quick: bool = False, warn=print
) -> dict[str, Any]:
    """After training: COCO AP50 of ``best`` and of its base on the retention set (``retention``: how much of the
    base classes it kept); with ``combine``, the combined model (``combined.pt`` beside ``best``: what to serve and
    register), its validation AP50 on ``data`` (also with ``merge`` and ``augment``: what it scores served with them)
    and its retention; with a ``verifier`` section, the verifier stage on the combined model (one epoch in a
    ``quick`` look): ``verified.pt`` is then what is served and registered (a stage that fails is a ``warn``ing, the
    combined model stays). Written to ``retention.json`` beside ``best``."""
    result: dict[str, Any] = {}
    models = {"base": base_model, "trained": str(best)}
    if recipe.combine:
        val = load_dataset(data, split="val")
        models["combined"] = str(_combined(recipe, best, base_model, settings, val))
        result["model"] = result["combined_model"] = models["combined"]
        combined = load_detector(models["combined"], settings)
        result["combined_val"] = evaluate(combined, val, EVAL_OPTIONS, True)["AP50"]
        refined = replace(EVAL_OPTIONS, merge=True, augment=True)
        result["combined_val_merge_augment"] = evaluate(combined, val, refined, True)["AP50"]
    if recipe.verifier is not None:  # a failure here keeps what was made before it (the combined model served)
        from . import verifier

        cfg = verifier.VerifierConfig.from_dict(recipe.verifier | ({"epochs": 1} if quick else {}))
        try:
            stage = verifier.run(result.get("model", str(best)), data, best.parent, cfg, settings)
        except HebbianMirrorError as exc:
            warn(f"warning: the verifier stage: {exc}")
        else:
            result["model"] = result["verified_model"] = stage["model"]
            result["verified_val"] = stage["val_AP50"]["verified"]["all"]
            result["verified_per_class"] = stage["val_AP50"] | {"classes": [canonical_name(c) for c in cfg.classes]}
    if recipe.retention is not None:
        split = _retention_split(recipe.retention)
        for name, model in models.items():
            result[name] = evaluate(load_detector(model, settings), split, EVAL_OPTIONS, progress=True)["AP50"]
        for name in ("trained", "combined"):
            if name in result:
                key = "retention" if name == "trained" else "combined_retention"
                result[key] = result[name] / result["base"] if result["base"] > 0 else float("nan")
    if result:
        (best.parent / "retention.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _combined(recipe: Recipe, best: Path, base_model: str, settings: Settings, val: DetectionDataset) -> Path:
    """``best`` combined with its base: the base classes the recipe's new datasets label (its knives) from ``best``
    (data prepared before the report listed them: the classes its validation split annotates)."""
    report = json.loads((recipe.out / "data-report.json").read_text())
    if "taught" in report:
        labelled = set(report["taught"])
    else:
        labelled = {canonical_name(val.classes[b.class_id]) for s in val.samples for b in s.boxes}
    base, tuned = load_network(base_model, settings), load_network(best, settings)
    taught = [c for c in base.meta.classes if canonical_name(c) in labelled]
    path = best.parent / "combined.pt"
    checkpoint.save(checkpoint.to_record(combine(tuned, base, taught, (str(best), base_model))), path)
    return path
