"""``models``, ``predict``, ``evaluate`` and ``export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table

from ..errors import CommandError
from ..meta import DEFAULT_IOU, EVAL_CONF, EVAL_MAX_DET
from .app import app
from .common import cli_settings, config_option, console, err_console
from .options import fraction, setting

if TYPE_CHECKING:
    from ..models.shipped import ShippedModel

MODEL_OPTION = setting("model", "--model", "-m")


@app.command()
def models(
    ctx: typer.Context,
    weights_dir: Path | None = setting("weights_dir"),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per model."),
    config: Path | None = config_option(),
) -> None:
    """List the model zoo (classes, input size, published COCO AP, whether the weights are cached) and the
    models shipped with the product (their measured AP and sha256)."""
    from ..models.cache import is_cached
    from ..models.registry import registry
    from ..models.shipped import SHIPPED

    settings = cli_settings(ctx)
    rows = [
        {
            "name": spec.name,
            "family": spec.family,
            "classes": len(spec.classes),
            "input": "×".join(map(str, spec.input_size)),
            "resize": spec.meta.describe_resize(),
            "AP": spec.published.get("AP"),
            "AP50": spec.published.get("AP50"),
            "cached": is_cached(spec, settings.weights_dir),
            "default": spec.name == settings.model,
        }
        for spec in registry().values()
    ]
    cached = {r["name"]: r["cached"] for r in rows}
    shipped = [
        _shipped_row(m) | {"cached": cached.get(m.base, False), "default": m.name == settings.model}
        for m in SHIPPED.values()
    ]
    if as_json:
        for row in rows + shipped:
            print(json.dumps(row))
        return
    _print_zoo(rows, settings.weights_dir)
    if shipped:
        _print_shipped(shipped)


def _shipped_row(model: ShippedModel) -> dict:
    """A shipped model as ``models`` lists it: its classes, measured accuracy and digest, from the registry
    (the file is not read); ``models`` adds ``cached`` (its base model's weights are) and ``default``."""
    return {
        "name": model.name,
        "shipped": True,
        "base": model.base,
        "classes": model.classes,
        "new_classes": list(model.new_classes),
        "AP50": dict(model.measured),
        "sha256": model.sha256,
        "file": str(model.path),
        "card": model.card,
    }


def _print_shipped(rows: list[dict]) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for col in ("name", "base", "classes", "validation AP50", "sha256"):
        table.add_column(col, no_wrap=col != "validation AP50", justify="right" if col == "classes" else "left")
    for r in rows:
        measured = ", ".join(f"{k} {v:.2f}" for k, v in r["AP50"].items())
        table.add_row(r["name"], r["base"], str(r["classes"]), measured, r["sha256"][:12])
    console.print("\nShipped with the product (trained by this project; offline, loaded by name)", highlight=False)
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: + {', '.join(r['new_classes'])}; model card {r['card']}", style="dim")


def _print_zoo(rows: list[dict], weights_dir: Path) -> None:
    """The zoo as a table that fits 80 columns with every name whole; the default model marked ``*``."""
    class_counts = {r["classes"] for r in rows}
    columns = ["name", "family", *(["classes"] if len(class_counts) > 1 else []), "input", "AP", "AP50", "cached"]
    fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    cells = [
        r
        | {
            "name": f"{r['name']} *" if r["default"] else r["name"],
            "classes": str(r["classes"]),
            "AP": fmt(r["AP"]),
            "AP50": fmt(r["AP50"]),
            "cached": "[green]yes[/]" if r["cached"] else "no",
        }
        for r in rows
    ]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("classes", "AP", "AP50") else "left",
            no_wrap=True,
            min_width=max(len(c["name"]) for c in cells) if col == "name" else None,
        )
    for c in cells:
        table.add_row(*(c[col] for col in columns))
    console.print(f"Model zoo (weights cache: {weights_dir})", highlight=False)
    console.print(table)
    console.print("* the default model (--model, HEBBIAN_MIRROR_MODEL)", style="dim")
    if len(class_counts) == 1:
        console.print(f"classes: the {class_counts.pop()} COCO classes, every model", style="dim")
    console.print("AP / AP50: published COCO box metrics (%) from each model's authors", style="dim")


@app.command()
def predict(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files or folders.", show_default=False),
    model: str | None = MODEL_OPTION,
    conf: float | None = setting("conf"),
    iou: float | None = setting("iou"),
    max_det: int | None = setting("max_det"),
    merge: bool | None = setting("merge"),
    augment: bool | None = setting("augment"),
    classes: str | None = typer.Option(
        None, "--classes", help="Keep only these classes: names or ids, comma-separated."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write annotated copies into this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line per image."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per forward pass."),
    device: str | None = setting("device"),
    half: bool | None = setting("half"),
    verify: bool | None = setting("verify"),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """Detect objects in images: print them and optionally write annotated copies."""
    from ..image_batches import decoded_batches
    from ..images import draw_detections, list_images
    from ..models.loader import load_detector

    settings = cli_settings(ctx)
    detector = load_detector(settings.model, settings)
    options = settings.detect_options(detector, classes=classes, merge=settings.merge, augment=settings.augment)
    paths = list_images(images)
    if not paths:
        raise CommandError("no images found in the given paths")
    if out:
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for chunk in decoded_batches(paths, batch, max_pixels=settings.max_pixels):
        for _, exc in chunk.failed:
            failures += 1
            err_console.print(f"[red]skipped[/] {exc}", highlight=False)
        for path, img, dets in zip(chunk.items, chunk.images, detector.detect(chunk.images, options), strict=True):
            annotated = out / f"{path.stem}.jpg" if out else None
            if annotated:
                draw_detections(img, dets).save(annotated, quality=92)
            if as_json:
                row = {"image": str(path), "width": img.shape[1], "height": img.shape[0], "model": detector.name}
                row |= {"detections": [d.to_dict() for d in dets]} | (
                    {"annotated": str(annotated)} if annotated else {}
                )
                print(json.dumps(row))
            else:
                _print_detections(path, img.shape, dets, annotated)
    if failures:
        raise typer.Exit(1)


def _print_detections(path: Path, shape, dets, annotated: Path | None) -> None:
    table = Table(title=f"{path}  ({shape[1]}×{shape[0]}, {len(dets)} objects)", title_justify="left")
    for col in ("label", "score", "x1", "y1", "x2", "y2"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for d in dets:
        table.add_row(d.label, f"{d.score:.3f}", *(f"{v:.0f}" for v in d.box))
    console.print(table)
    if annotated:
        console.print(f"annotated → {annotated}", style="dim")


@app.command()
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="COCO json, YOLO data.yaml or folder, Pascal VOC folder."),
    model: str | None = MODEL_OPTION,
    images: Path | None = typer.Option(None, "--images", help="Image folder for a COCO json."),
    split: str = typer.Option("val", "--split", help="Split to evaluate."),
    out: Path | None = typer.Option(None, "--out", help="Folder for report.json and the plots."),
    conf: float = typer.Option(EVAL_CONF, "--conf", help="Lowest score kept (low: the COCO protocol)."),
    iou: float = typer.Option(DEFAULT_IOU, "--iou", help="NMS IoU threshold."),
    max_det: int = typer.Option(EVAL_MAX_DET, "--max-det", min=1, help="Most detections per image."),
    merge: bool = typer.Option(False, "--merge", help="Darknet models: box voting (as serve --merge)."),
    augment: bool = typer.Option(False, "--augment", help="Darknet models: test-time augmentation, about 3x the time."),
    batch: int = typer.Option(8, "--batch", min=1, help="Images per forward pass."),
    rename: list[str] = typer.Option(
        [],
        "--rename",
        help="OLD=NEW: the dataset's class OLD is the model's NEW (e.g. phone='cell phone'); repeatable.",
    ),
    device: str | None = setting("device"),
    half: bool | None = setting("half"),
    verify: bool | None = setting("verify"),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
    config: Path | None = config_option(),
) -> None:
    """COCO metrics (AP, AP50, AP75, by size, AR, per class) of a model on a labelled dataset."""
    from ..datasets import load_dataset
    from ..detection import DetectOptions
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import write_report
    from ..models.loader import load_detector

    conf, iou = fraction("--conf", conf), fraction("--iou", iou)
    settings = cli_settings(ctx)
    options = DetectOptions(conf, iou, max_det, merge=merge, augment=augment)
    pairs = [r.split("=", 1) for r in rename]
    for given, pair in zip(rename, pairs, strict=True):
        if len(pair) != 2 or not pair[0].strip() or not pair[1].strip():
            raise CommandError(f"--rename takes OLD=NEW (e.g. phone='cell phone'), got {given!r}")
    ds = load_dataset(data, images, split)
    if pairs:
        ds = ds.renamed({old.strip(): new.strip() for old, new in pairs})
    detector = load_detector(settings.model, settings)
    report = run_evaluation(detector, ds, options, batch_size=batch)
    console.print(f"{detector.name} on {ds.source}: {report['images']} images", highlight=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100"):
        table.add_row(key, f"{report[key]:.3f}")
    console.print(table)
    per_class = Table(title="per class")
    for col in ("class", "instances", "AP", "AP50"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for name, row in sorted(report["per_class"].items(), key=lambda kv: -(kv[1]["AP"] or 0)):
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        per_class.add_row(name, str(row.get("instances", "")), fmt(row["AP"]), fmt(row["AP50"]))
    console.print(per_class)
    at = report["at_threshold"]
    if at["precision"] is not None:
        console.print(f"at score ≥ {at['conf']:g}: precision {at['precision']:.3f}, recall {at['recall']:.3f}")
    if out:
        from ..plots import write_plots

        path = write_report(report, out)
        plots = write_plots(report, out)
        console.print(f"report → {path}; plots → {', '.join(str(p) for p in plots)}", style="dim")


@app.command()
def export(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., help="Darknet model: zoo name, trained .pt checkpoint, Darknet .cfg/.weights path, models:/ or runs:/ URI."
    ),
    fmt: str = typer.Option("onnx", "--format", help="Output format; onnx is the only one."),
    out: Path | None = typer.Option(None, "--out", help="Output file.", show_default="MODEL.onnx"),
    dynamic_batch: bool = typer.Option(
        True, "--dynamic-batch/--static-batch", help="Any batch size at run time, or batches of one image only."
    ),
    half: bool = typer.Option(False, "--half", help="float16 model (for CUDA runtimes)."),
    verify: list[Path] | None = typer.Option(None, "--verify", help="Images to compare PyTorch and onnxruntime on."),
    weights_dir: Path | None = setting("weights_dir"),
    offline: bool | None = setting("offline", "--offline/--online"),
) -> None:
    """Export a Darknet model to one ONNX file; `predict`, `evaluate` and `serve` then take it as --model.

    Torchvision models are refused: serve them with PyTorch."""
    from ..export import check_exportable, export_onnx, verify_onnx
    from ..images import list_images
    from ..models.loader import load_detector

    if fmt != "onnx":
        raise CommandError(f"unsupported format {fmt!r}: onnx is the only one")
    check_exportable(model)  # before any download
    settings = cli_settings(ctx, device="cpu", half=False, verify=True)  # (--verify here is export's own check)
    detector = load_detector(model, settings)
    if (verifier := getattr(detector, "verifier", None)) is not None:
        console.print(
            f"note: {detector.name}'s verifier stage ({', '.join(verifier.classes)}) is not exported: the ONNX file "
            "is its detector alone, with the detector's own scores; serve the .pt for verified scores",
            style="yellow",
        )
        detector = detector.inner
    target = out or Path(f"{Path(model).stem if '/' in model else model}.onnx")
    path = export_onnx(detector, target, dynamic_batch=dynamic_batch, half=half)
    console.print(f"exported {detector.name} → {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if verify:
        paths = list_images(verify)
        worst = verify_onnx(detector, path, paths)
        console.print(f"verified on {len(paths)} images: largest box difference {worst:.3f} px")
        if worst > 1.0:
            raise CommandError("boxes differ by more than 1 px")
