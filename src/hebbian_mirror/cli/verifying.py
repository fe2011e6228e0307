"""``train-verifier``: the verifier stage on a trained detector (what a recipe with ``verifier:`` runs itself)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import CommandError
from .app import app
from .common import cli_settings, config_option, console
from .options import setting


@app.command("train-verifier")
def train_verifier(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="The trained detector: a .pt checkpoint (or any model)."),
    data: Path = typer.Option(
        ..., "--data", help="Dataset with train and val splits, any format (a recipe's prepared data: runs/NAME/data)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for verifier.pt, verifier.json and verified.pt."),
    recipe: Path | None = typer.Option(
        None, "--recipe", exists=True, dir_okay=False, help="Take the settings of this recipe's 'verifier' section."
    ),
    classes: list[str] = typer.Option(
        [], "--class", help="A class to verify (repeatable).", show_default="pistol, knife"
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs of the verifier."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use this many images per split (a quick look)."),
    device: str | None = setting("device"),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """Train a verifier for a detector: a crop classifier (EfficientNet-Lite0 from ImageNet) that looks again at
    each candidate of the dangerous classes; its score and the detector's are combined as learned on validation."""
    from ..train import recipe as recipes
    from ..train.verifier import VerifierConfig, run

    section = (recipes.read(recipe).verifier or {}) if recipe else {}
    given = {"classes": tuple(classes) if classes else None, "epochs": epochs, "limit": limit}
    cfg = VerifierConfig.from_dict(section | {k: v for k, v in given.items() if v is not None})
    if not data.exists():
        raise CommandError(f"--data {data}: no such dataset (a folder or data file with train and val splits)")
    settings = cli_settings(ctx, device=device)
    report = run(model, data, out, cfg, settings, log=console.print)
    plain, verified = report["val_AP50"]["plain"], report["val_AP50"]["verified"]
    table = Table(title=f"validation AP50, {model} alone and verified")
    for col in ("", *plain):
        table.add_column(col, justify="right")
    table.add_row("detector", *(f"{plain[c]:.3f}" for c in plain))
    table.add_row("verified", *(f"{verified.get(c, float('nan')):.3f}" for c in plain))
    held = report["val_AP50_held_out"]
    table.add_row("halves: detector", *(f"{held['plain'].get(c, float('nan')):.3f}" for c in plain))
    table.add_row("halves: verified", *(f"{held['verified'].get(c, float('nan')):.3f}" for c in plain))
    console.print(table)
    console.print(
        "halves: each half of the split scored with the combination fitted on the other half (mean of the two)",
        style="dim",
    )
    console.print(f"{out / 'verifier.json'}: the crops, the combination's weights, the numbers", highlight=False)
    if "model" in report:
        console.print(f"serve it: hebbian-mirror serve --model {report['model']}", highlight=False)


@app.command()
def pack(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A trained checkpoint (combined, verified: what a recipe serves)."),
    out: Path = typer.Option(..., "--out", help="The packed checkpoint to write (.pt)."),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """Pack a model to ship: a combined model keeps its fine-tuned network and its base model's name (rebuilt
    from the weights cache when loaded), weights in float16, its verifier inside. Loads like any checkpoint."""
    from ..models import checkpoint
    from ..models.cache import sha256_of
    from ..models.loader import load_network
    from ..models.shipped import pack as packed

    if out.suffix != ".pt" or not model.endswith(".pt"):
        raise CommandError("pack reads a .pt checkpoint and writes one (--out FILE.pt)")
    settings = cli_settings(ctx)
    record = packed(checkpoint.read(model), load_network(model, settings))
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(record, out)
    size = out.stat().st_size / 1e6
    base = record.get("combine_with", {}).get("base")
    console.print(f"{out}: {size:.1f} MB{f', with {base} from the weights cache' if base else ''}", highlight=False)
    console.print(f"sha256 {sha256_of(out)}", highlight=False)
