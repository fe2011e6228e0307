"""``train``: options declared by :class:`~hebbian_mirror.train.loop.TrainConfig`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..config import Settings
from ..errors import CommandError
from ..train.run_config import TrainConfig
from .app import app
from .common import cli_settings, config_option, console, typed
from .options import options, setting

# train takes every training option; the flags that are not --the-name
TRAIN_FLAGS = {
    "model": ("--model", "-m"),
    "freeze_backbone": ("--freeze-backbone",),
    "keep_classes": ("--keep-classes",),
    "cache_images": ("--cache-images",),
    "channels_last": ("--channels-last",),
    "loader_workers": ("--loader-workers", "--workers"),  # --workers: its earlier name
}


@app.command()
@options(Settings, ["weights_dir", "offline"], {"offline": ("--offline/--online",)})
@options(TrainConfig, TrainConfig.option_names(), TRAIN_FLAGS)
def train(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="Dataset with train and val splits (any format)."),
    recipe: Path | None = typer.Option(
        None,
        "--recipe",
        help="Training recipe (YAML: datasets, base model, schedule, augmentation); flags given here override it.",
        exists=True,
        dir_okay=False,
    ),
    augmentation: Path | None = typer.Option(
        None, "--augmentation", "--augment", help="YAML of augmentation settings (datasets/augment.py)."
    ),
    no_augmentation: bool = typer.Option(
        False, "--no-augmentation", "--no-augment", help="Train without augmentation."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt."),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Training processes on this machine (torchrun, DistributedDataParallel): each takes --batch images "
        "of every step (as one process with N times the batch); one per GPU on CUDA.",
    ),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the run to MLflow."),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment.", show_default="the recipe's name, or the dataset's folder name"
    ),
    register: str | None = typer.Option(
        None, "--register", help="Register the model under this name (alias champion if it is the best)."
    ),
    config: Path | None = config_option(),
    **_options: Any,
) -> None:
    """Fine-tune a detector (Darknet YOLO or torchvision) on your own labelled images, tracked in MLflow.

    The MLflow store is sqlite:///mlflow.db in the current folder, or $MLFLOW_TRACKING_URI."""
    import os
    import sys

    from ..datasets.augment import AugmentConfig
    from ..train.trainer import Trainer

    params = ctx.params
    settings = cli_settings(ctx, device=params["device"])
    aug = AugmentConfig.off() if no_augmentation else AugmentConfig.from_yaml(augmentation) if augmentation else None
    names = TrainConfig.option_names()
    if recipe is not None:  # flags given here override the recipe's
        given = {k: params[k] for k in names if k in params and typed(ctx, k)}
    else:
        given = {k: params[k] for k in names if k in params}
    trainer = Trainer(
        settings,
        data=data,
        recipe=recipe,
        options=given,
        augmentation=aug,
        resume=resume,
        nproc=nproc,
        track=track,
        experiment=experiment,
        register=register,
        warn=lambda message: console.print(message, style="yellow"),
    )
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        console.print(f"training in {nproc} processes (torchrun); rank 0 evaluates, logs and saves", style="dim")
    result = trainer.fit(sys.argv[1:])
    if trainer.exit_code is not None:
        raise typer.Exit(trainer.exit_code)
    if result is None:  # another process of a --nproc run: rank 0 reports
        return
    cfg, plan, summary, finished = result.config, trainer.plan, result.summary, result.finished
    out = Path(cfg.out)
    registered = None
    if result.run is not None:
        from ..experiments import run_page

        run = result.run
        registered = run.registered
        command, page = run_page(run.experiment_id, run.run_id)
        console.print(f"MLflow run {run.run_name} ({run.run_id}) in experiment {run.experiment!r}", style="dim")
        console.print(f"see it: {command + ', then ' if command else ''}{page}", style="dim", highlight=False)
    table = Table(title=f"{out}: best AP {summary['best_ap']:.3f}")
    for col in ("epoch", "loss", "AP", "AP50", "seconds"):
        table.add_column(col, justify="right")
    for h in summary["history"]:
        table.add_row(str(h["epoch"]), f"{h['loss']:.3f}", f"{h['AP']:.3f}", f"{h['AP50']:.3f}", str(h["seconds"]))
    console.print(table)
    console.print(f"best → {summary['best']}")
    if "retention" in finished:
        console.print(
            f"base classes kept: COCO AP50 {finished['trained']:.3f} vs the base model's {finished['base']:.3f} "
            f"({finished['retention']:.2f}×, {plan.retention.name})"
        )
    if "combined_model" in finished:
        kept = f", base classes kept {finished['combined_retention']:.2f}×" if "combined_retention" in finished else ""
        refined = finished["combined_val_merge_augment"]
        console.print(
            f"combined with {cfg.model} → {finished['combined_model']}: validation AP50 {finished['combined_val']:.3f}"
            f"{kept}; {refined:.3f} served with --merge --augment (about 3× the time)"
        )
    if "verified_model" in finished:
        ap = finished["verified_per_class"]
        change = ", ".join(
            f"{c} {ap['plain'][c]:.3f} → {ap['verified'][c]:.3f}" if c in ap["plain"] else f"{c} (no labels)"
            for c in ap["classes"]
        )
        console.print(f"verified → {finished['verified_model']}: validation AP50 {change}", highlight=False)
    served = result.served
    alarm = ""
    if plan is not None and plan.alarm:  # the recipe's alarm defaults, as serve and watch take them
        a = plan.alarm
        alarm = "".join(f" --alarm {c}" for c in a.get("classes", []))
        alarm += "".join(f" --alarm-{k.replace('_', '-')} {a[k]}" for k in ("min_score", "frames") if k in a)
    console.print(f"serve it: hebbian-mirror serve --model {served}{alarm}", highlight=False)
    if registered and "skipped" in registered:
        console.print(f"{registered['name']}: {registered['skipped']}")
    elif registered:
        console.print(f"registered {registered['name']} v{registered['version']}: {registered['why']}")
        console.print(f"serve it: hebbian-mirror serve --model models:/{registered['name']}@champion")


@app.command()
def interpolate(
    ctx: typer.Context,
    tuned: str = typer.Argument(..., help="The extended model: a checkpoint trained with --keep-classes."),
    base: str = typer.Option(..., "--base", help="The model it was extended from (e.g. yolov4-tiny)."),
    out: Path = typer.Option(..., "--out", help="The interpolated checkpoint to write (.pt)."),
    alpha: float | None = typer.Option(
        None, "--alpha", min=0.0, max=1.0, help="Share of the fine-tuned weights: 1 is the model as trained."
    ),
    data: Path | None = typer.Option(None, "--data", help="Its validation data, to choose α by a sweep."),
    split: str = typer.Option("val", "--split", help="Split of --data to evaluate."),
    retention_data: Path | None = typer.Option(
        None, "--retention-data", help="A dataset of the base classes (e.g. COCO val): what each α keeps."
    ),
    alphas: str = typer.Option("1,0.9,0.8,0.7,0.6,0.5,0.4", "--alphas", help="The α values a sweep tries."),
    min_retention: float = typer.Option(
        0.9, "--min-retention", min=0.0, help="A sweep picks the best validation AP50 keeping this × the base."
    ),
    device: str | None = setting("device"),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """Move an extended model's weights part of the way back to its base model's: the base classes come back,
    the new ones fade (no training). Give --alpha, or --data and --retention-data to sweep and choose."""
    from ..datasets import load_dataset
    from ..detection import resolve_device
    from ..models import checkpoint
    from ..models.loader import load_network
    from ..plots import tradeoff
    from ..train import interpolate as wise

    if (alpha is None) == (data is None or retention_data is None):
        raise CommandError("give either --alpha, or --data with --retention-data (to sweep α and choose)")
    try:
        tried = [float(a) for a in alphas.split(",")]
    except ValueError:
        raise CommandError(f"--alphas takes numbers between 0 and 1 separated by commas, got {alphas!r}") from None
    if not tried or any(not 0 <= a <= 1 for a in tried):
        raise CommandError(f"--alphas takes numbers between 0 and 1 separated by commas, got {alphas!r}")
    if out.suffix != ".pt":
        raise CommandError(f"--out is a checkpoint: a .pt file, got {out}")
    settings = cli_settings(ctx, device=device)
    tuned_net, base_net = load_network(tuned, settings), load_network(base, settings)
    start = wise.base_state(tuned_net, base_net)  # a model that does not extend the base fails now, not after a sweep
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"interpolation": {"alpha": alpha, "base": base, "tuned": tuned}}
    if alpha is None:
        dev = resolve_device(settings.device)
        val, kept = load_dataset(data, split=split), load_dataset(retention_data)
        base_net.module.to(dev)
        rows = wise.sweep(tuned_net, base_net, tried, val, kept, dev)
        table = Table(title=f"{tuned} interpolated with {base}")
        for col in ("α", "val AP50", "base classes AP50", "kept", *rows[0]["per_class"]):
            table.add_column(col, justify="right")
        for r in rows:
            per_class = [f"{r['per_class'].get(c, float('nan')):.2f}" for c in rows[0]["per_class"]]
            ap = [f"{r['AP50']:.3f}", f"{r['retention_AP50']:.3f}", f"{r['retention']:.2f}×"]
            table.add_row(f"{r['alpha']:g}", *ap, *per_class)
        console.print(table)
        (out.with_name(out.stem + "-sweep.json")).write_text(json.dumps(rows, indent=2) + "\n")
        plot = out.with_name(out.stem + "-tradeoff.png")
        tradeoff(rows, plot)  # kept even when no α keeps enough
        chosen = wise.choose(rows, min_retention)
        alpha = chosen["alpha"]
        tradeoff(rows, plot, alpha)
        console.print(f"the sweep → {plot}, {plot.with_name(out.stem + '-sweep.json')}", style="dim")
        record["interpolation"] |= {"alpha": alpha, "AP50": chosen["AP50"], "retention": chosen["retention"]}
    merged = wise.interpolate(tuned_net, base_net, alpha, start)
    merged.module.cpu()
    checkpoint.save(checkpoint.to_record(merged) | record, out)
    console.print(f"α {alpha:g} → {out}; serve it: hebbian-mirror serve --model {out}", highlight=False)


@app.command()
def combine(
    ctx: typer.Context,
    tuned: str = typer.Argument(..., help="The extended model: a checkpoint trained with --keep-classes."),
    base: str = typer.Option(..., "--base", help="The model it was extended from (e.g. yolov4-tiny)."),
    out: Path = typer.Option(..., "--out", help="The combined checkpoint to write (.pt)."),
    taught: list[str] = typer.Option(
        [], "--taught", help="A base class the extended model's data labels (e.g. knife): scored by it. Repeatable."
    ),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """Run an extended model and its base as one model: the base classes exactly as the base model scores them,
    the new classes (and the --taught ones) as the extended model does. It costs both networks' inference, less
    the leading layers they share (a backbone frozen in training runs once)."""
    from ..darknet.combined import combine as combined
    from ..darknet.combined import shared_layers
    from ..models import checkpoint
    from ..models.loader import load_network

    if out.suffix != ".pt":
        raise CommandError(f"--out is a checkpoint: a .pt file, got {out}")
    settings = cli_settings(ctx)
    network = combined(load_network(tuned, settings), load_network(base, settings), taught, (tuned, base))
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(checkpoint.to_record(network), out)
    module, classes = network.module, network.meta.classes
    new = [classes[i] for i in (*module.taught, *range(module.base.num_classes, len(classes)))]
    shared = shared_layers(module.base, module.tuned)
    console.print(f"{out}: {', '.join(new)} from {tuned}; the other {len(classes) - len(new)} classes from {base}")
    console.print(f"layers run once for both: {shared} of {len(module.tuned.layers)}", style="dim")
    console.print(f"serve it: hebbian-mirror serve --model {out}", highlight=False)


@app.command()
def average(
    ctx: typer.Context,
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoints of one run (train --keep-epochs N keeps them)."),
    data: Path = typer.Option(..., "--data", help="The run's dataset: its training images recalibrate batch norm."),
    out: Path = typer.Option(..., "--out", help="The averaged checkpoint to write (.pt)."),
    images: int = typer.Option(512, "--images", min=1, help="Training images batch norm is measured on."),
    weights_dir: Path | None = setting("weights_dir"),
    config: Path | None = config_option(),
) -> None:
    """Average a run's last epochs' weights (uniformly, as stochastic weight averaging does), then measure batch
    norm's statistics anew on training images: often a flatter, better model than any one epoch."""
    from ..datasets import load_splits
    from ..models import checkpoint
    from ..train.averaging import average as averaged
    from ..train.averaging import recalibrate

    if out.suffix != ".pt":
        raise CommandError(f"--out is a checkpoint: a .pt file, got {out}")
    cli_settings(ctx)
    network = averaged(checkpoints)
    splits = load_splits(data)
    if "train" not in splits:
        raise CommandError(f"--data {data} has no train split to recalibrate batch norm on")
    try:
        train_ds = splits["train"].remapped(list(network.meta.classes), dict(network.meta.display_names))
    except KeyError as exc:
        raise CommandError(f"--data {data} has a class the model does not: {exc.args[0]}") from None
    used = recalibrate(network, train_ds, images)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(checkpoint.to_record(network) | {"averaged": [str(p) for p in checkpoints]}, out)
    console.print(f"{len(checkpoints)} checkpoints averaged, batch norm measured on {used} images → {out}")
    console.print(f"evaluate it: hebbian-mirror evaluate --data {data} --model {out}", highlight=False)
