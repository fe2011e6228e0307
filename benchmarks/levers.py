"""The training levers of the weapons recipe, each measured against the same control: continuations of one trained
checkpoint on the recipe's prepared data, with the same seed, steps and schedule, differing by one lever each; the
validation AP50 per class of each run's last weights (no best-epoch picking), and its difference from the control.

    .venv/bin/python benchmarks/levers.py --model runs/weapons/best.pt --data runs/weapons/data

Levers: EMA of the weights, averaging the last epochs' weights (with batch norm measured again: the control's
own kept epochs), neighbour cells (YOLOv5's assignment, heads at scale_x_y 2), anchors clustered on the recipe's
boxes, copy-paste of pistol and knife boxes onto images without them. A continuation is cheaper than a full
recipe run and fair between the levers, but it favours what acts quickly: a lever that changes the heads
(neighbour cells, anchors) starts from a model trained without it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from hebbian_mirror.config import load_settings
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.datasets.augment import AugmentConfig
from hebbian_mirror.evaluation import EVAL_OPTIONS, evaluate
from hebbian_mirror.families import family
from hebbian_mirror.models import checkpoint
from hebbian_mirror.train import recipe as recipes
from hebbian_mirror.train.averaging import average, recalibrate
from hebbian_mirror.train.loop import train

REPO = Path(__file__).resolve().parents[1]
WEAPONS = ("pistol", "knife")


def levers(recipe: recipes.Recipe) -> dict[str, dict]:
    """Each lever as the training settings it changes (``averaged``: computed from the control's kept epochs)."""
    pasting = AugmentConfig(**recipe.augmentation)
    pasting.copy_paste, pasting.paste_classes = 0.3, WEAPONS
    return {
        "control": {},
        "ema 0.999": {"ema": 0.999},
        "neighbour cells": {"neighbour_cells": True},
        "anchors clustered": {"recluster_anchors": True},
        "copy-paste 0.3": {"augmentation": pasting},
    }


def measured(path: Path, val, device: str) -> dict[str, float]:
    """AP50 of the checkpoint's network alone (all classes, and per weapon class) on ``val``."""
    network = checkpoint.load(path)
    detector = family(network.family).detector(network, device=device)
    report = evaluate(detector, val, EVAL_OPTIONS, progress=True)
    per = {name: v["AP50"] for name, v in report["per_class"].items() if v.get("AP50") is not None}
    return {"all": report["AP50"]} | {c: per.get(c, float("nan")) for c in WEAPONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the trained checkpoint the runs continue from")
    parser.add_argument("--data", type=Path, required=True, help="the recipe's prepared data (runs/weapons/data)")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "weapons.yaml")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each continuation (the control keeps all)")
    parser.add_argument("--steps", type=int, default=80, help="steps per epoch")
    parser.add_argument("--lr", type=float, default=0.002, help="peak learning rate (cosine schedule)")
    parser.add_argument("--only", action="append", help="run only these levers (repeatable; the control always)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "levers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    settings = load_settings(device="cpu", offline=True)
    recipe = recipes.read(args.recipe)
    val = load_splits(args.data)["val"]
    chosen = levers(recipe)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k == "control" or k in args.only}
    common = {
        "model": str(args.model),
        "epochs": args.epochs,
        "max_steps": args.steps,
        "lr": args.lr,
        "warmup_epochs": 0,
        "freeze_epochs": 0,
        "patience": args.epochs + 1,
        "device": "cpu",
    }
    results: dict[str, dict] = {}
    print(f"# continuing {args.model}: {args.epochs} epochs × {args.steps} steps, lr {args.lr}, seed 0, on {args.data}")
    for name, change in chosen.items():
        out = args.out / name.replace(" ", "-")
        overrides = common | {"out": str(out), "keep_epochs": args.epochs if name == "control" else 0} | change
        cfg = recipes.config(recipe, args.data, overrides)
        cfg = replace(cfg, retention_data=None)
        started = time.perf_counter()
        train(cfg, settings)
        results[name] = measured(out / "last.pt", val, "cpu") | {"minutes": (time.perf_counter() - started) / 60}
        print(json.dumps({name: results[name]}), flush=True)
    if "control" in results and args.epochs >= 2:
        kept = sorted((args.out / "control").glob("epoch-*.pt"))
        network = average(kept)
        recalibrate(network, load_splits(args.data)["train"])
        path = args.out / "averaged.pt"
        checkpoint.save(checkpoint.to_record(network), path)
        results[f"averaged last {len(kept)}"] = measured(path, val, "cpu")
    control = results["control"]
    print("\n| lever | AP50 all | pistol | knife | Δ pistol | Δ knife | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        deltas = [r[c] - control[c] for c in WEAPONS]
        minutes = f"{r['minutes']:.1f}" if "minutes" in r else "—"
        print(
            f"| {name} | {r['all']:.3f} | {r['pistol']:.3f} | {r['knife']:.3f} | {deltas[0]:+.3f} | {deltas[1]:+.3f} "
            f"| {minutes} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
