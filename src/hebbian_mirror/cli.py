"""The ``hebbian-mirror`` command line: one Typer app, each subcommand delegating to a module."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import ConfigError, Settings, load_settings
from .errors import HebbianMirrorError

app = typer.Typer(
    name="hebbian-mirror",
    help="Object detection: Darknet YOLO and torchvision detectors, served over HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

# Options shared by several commands.
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file.", show_default=False)]
WeightsDirOpt = Annotated[
    Path | None, typer.Option("--weights-dir", help="Weights cache folder [env HEBBIAN_MIRROR_WEIGHTS].")
]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Zoo name or Darknet .cfg/.weights path.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")]
HalfOpt = Annotated[bool | None, typer.Option("--half/--no-half", help="float16 on CUDA.", show_default=False)]
OfflineOpt = Annotated[
    bool | None, typer.Option("--offline/--online", help="Never download weights.", show_default=False)
]


def _settings(**flags) -> Settings:
    config = flags.pop("config", None)
    settings = load_settings(config, **flags)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"hebbian-mirror {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")] = False,
) -> None:
    """Hebbian Mirror."""


@app.command()
def models(
    config: ConfigOpt = None,
    weights_dir: WeightsDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the model zoo: classes, input size, published COCO AP and whether the weights are cached."""
    from .zoo import is_cached, registry

    settings = _settings(config=config, weights_dir=weights_dir)
    rows = []
    for spec in registry().values():
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "classes": len(spec.classes),
                "input": "×".join(map(str, spec.input_size)),
                "resize": spec.resize,
                "AP": spec.published.get("AP"),
                "AP50": spec.published.get("AP50"),
                "cached": is_cached(spec, settings.weights_dir),
                "default": spec.name == settings.model,
            }
        )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"Model zoo (weights cache: {settings.weights_dir})")
    for col in ("name", "family", "classes", "input", "AP", "AP50", "cached"):
        table.add_column(col, justify="right" if col in ("classes", "AP", "AP50") else "left")
    for r in rows:
        fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        name = f"{r['name']} (default)" if r["default"] else r["name"]
        table.add_row(
            name,
            r["family"],
            str(r["classes"]),
            r["input"],
            fmt(r["AP"]),
            fmt(r["AP50"]),
            "[green]yes[/]" if r["cached"] else "no",
        )
    console.print(table)
    console.print("AP / AP50: published COCO box metrics (%) from each model's authors.", style="dim")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.", show_default=False)],
    model: ModelOpt = None,
    conf: Annotated[float | None, typer.Option("--conf", help="Confidence threshold [0.25].")] = None,
    iou: Annotated[float | None, typer.Option("--iou", help="NMS IoU threshold [0.45].")] = None,
    max_det: Annotated[int | None, typer.Option("--max-det", help="Max detections per image [300].")] = None,
    classes: Annotated[
        str | None, typer.Option("--classes", help="Keep only these classes: names or ids, comma-separated.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write annotated copies into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per image.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per forward pass.")] = 8,
    device: DeviceOpt = None,
    half: HalfOpt = None,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Detect objects in images: print them and optionally write annotated copies."""
    from .detection import DetectOptions, resolve_classes
    from .images import decode_image, draw_detections, list_images
    from .zoo import load_detector

    try:
        settings = _settings(
            config=config,
            model=model,
            conf=conf,
            iou=iou,
            max_det=max_det,
            device=device,
            half=half,
            weights_dir=weights_dir,
            offline=offline,
        )
        detector = load_detector(settings.model, settings)
        wanted = resolve_classes(classes.split(","), detector.class_names) if classes else None
        options = DetectOptions(settings.conf, settings.iou, settings.max_det, wanted)
    except (HebbianMirrorError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    paths = list_images(images)
    if not paths:
        raise _fail("no images found in the given paths")
    if out:
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        decoded = []
        for p in chunk:
            try:
                decoded.append((p, decode_image(p, settings.max_pixels)))
            except HebbianMirrorError as exc:
                failures += 1
                err_console.print(f"[red]skipped[/] {exc}", highlight=False, soft_wrap=True)
        if not decoded:
            continue
        results = detector.detect([img for _, img in decoded], options)
        for (path, img), dets in zip(decoded, results, strict=True):
            annotated = None
            if out:
                annotated = out / f"{path.stem}.jpg"
                draw_detections(img, dets).save(annotated, quality=92)
            if as_json:
                print(
                    json.dumps(
                        {
                            "image": str(path),
                            "width": img.shape[1],
                            "height": img.shape[0],
                            "model": detector.name,
                            "detections": [d.to_dict() for d in dets],
                            **({"annotated": str(annotated)} if annotated else {}),
                        }
                    )
                )
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
    data: Annotated[Path, typer.Option("--data", help="COCO json, YOLO data.yaml or YOLO folder.")],
    model: ModelOpt = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder for a COCO json.")] = None,
    split: Annotated[str, typer.Option("--split", help="data.yaml split to evaluate.")] = "val",
    out: Annotated[Path | None, typer.Option("--out", help="Folder for report.json.")] = None,
    conf: Annotated[float, typer.Option("--conf", help="Confidence threshold for evaluation.")] = 0.001,
    iou: Annotated[float, typer.Option("--iou", help="NMS IoU threshold.")] = 0.45,
    max_det: Annotated[int, typer.Option("--max-det")] = 100,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
    device: DeviceOpt = None,
    half: HalfOpt = None,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = None,
    config: ConfigOpt = None,
) -> None:
    """COCO metrics (AP, AP50, AP75, by size, AR, per class) of a model on a labelled dataset."""
    from .datasets import load_dataset
    from .detection import DetectOptions
    from .evaluation import evaluate as run_evaluation
    from .evaluation import write_report
    from .zoo import load_detector

    try:
        settings = _settings(
            config=config, model=model, device=device, half=half, weights_dir=weights_dir, offline=offline
        )
        ds = load_dataset(data, images, split)
        detector = load_detector(settings.model, settings)
        report = run_evaluation(detector, ds, DetectOptions(conf, iou, max_det), batch_size=batch)
    except (HebbianMirrorError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{detector.name} on {ds.source}: {report['images']} images", highlight=False, soft_wrap=True)
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
        from .plots import write_plots

        path = write_report(report, out)
        plots = write_plots(report, out)
        console.print(f"report → {path}; plots → {', '.join(str(p) for p in plots)}", style="dim")


@app.command()
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to serve; repeat for several (the first is the default)."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Bind address [0.0.0.0].")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port [8000].")] = None,
    device: DeviceOpt = None,
    half: HalfOpt = None,
    max_batch_size: Annotated[int | None, typer.Option("--max-batch-size", help="Images per batch [8].")] = None,
    max_batch_delay_ms: Annotated[
        float | None, typer.Option("--max-batch-delay-ms", help="Longest wait for a batch to fill [2].")
    ] = None,
    max_queue: Annotated[
        int | None, typer.Option("--max-queue", help="Queued requests per model before 503 [256].")
    ] = None,
    request_timeout: Annotated[float | None, typer.Option("--request-timeout", help="Seconds before 504 [30].")] = None,
    max_upload_mb: Annotated[float | None, typer.Option("--max-upload-mb", help="Largest request body [20].")] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Largest image in pixels [40M].")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Require this key (X-API-Key / Bearer).")] = None,
    decoder_threads: Annotated[
        int | None, typer.Option("--decoder-threads", help="Image decoding threads [half the cores, 1-4].")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="dev (4 threads, info logs) or prod (16, critical).")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="critical, error, warning, info, debug.")] = None,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve detection over HTTP (native, DeepStack-compatible and original Hebbian Mirror routes)."""

    import uvicorn

    from .server import create_app
    from .zoo import ensure_weights, registry

    try:
        settings = _settings(
            config=config,
            models=model or None,
            host=host,
            port=port,
            device=device,
            half=half,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            max_queue=max_queue,
            request_timeout=request_timeout,
            max_upload_mb=max_upload_mb,
            max_pixels=max_pixels,
            api_key=api_key,
            decoder_threads=decoder_threads,
            profile=profile,
            log_level=log_level,
            weights_dir=weights_dir,
            offline=offline,
        )
        for name in settings.served_models:  # fetch weights now: a missing file stops us before we listen
            if name in registry():
                ensure_weights(registry()[name], settings)
    except (HebbianMirrorError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level in ("info", "debug"),
        timeout_graceful_shutdown=int(settings.request_timeout) + 1,
    )


@app.command()
def bench(
    url: Annotated[str, typer.Option("--url", help="Server base URL.")] = "http://127.0.0.1:8000",
    image: Annotated[Path, typer.Option("--image", help="Image to send.", exists=True, dir_okay=False)] = Path(
        "dog.jpg"
    ),
    concurrency: Annotated[str, typer.Option("--concurrency", help="Comma-separated client counts.")] = "1,8,32",
    duration: Annotated[float, typer.Option("--duration", help="Seconds per concurrency level.")] = 10.0,
    route: Annotated[str, typer.Option("--route", help="Route to load.")] = "/v1/detect",
    api_key: Annotated[str | None, typer.Option("--api-key", help="Sent as X-API-Key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per level.")] = False,
) -> None:
    """Load a running server: requests/s, latency percentiles and errors per concurrency level."""
    import asyncio

    from .loadgen import run_load

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError as exc:
        raise _fail(f"--concurrency must be integers, got {concurrency!r}") from exc
    headers = {"X-API-Key": api_key} if api_key else None
    table = Table(title=f"{url}{route} with {image.name}, {duration:g} s per level")
    for col in ("clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for level in levels:
        result = asyncio.run(run_load(url, image, level, duration, route, headers))
        if as_json:
            print(json.dumps(result.to_dict()))
        table.add_row(
            str(level),
            f"{result.rps:.1f}",
            f"{result.p50_ms:.1f}",
            f"{result.p95_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(result.errors),
        )
    if not as_json:
        console.print(table)


@app.command()
def ui(
    api: Annotated[str, typer.Option("--api", help="The server's URL.")] = "http://127.0.0.1:8000",
    port: Annotated[int, typer.Option("--port", help="Port for the page.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address for the page.")] = "0.0.0.0",
    dangerous: Annotated[
        str, typer.Option("--dangerous", help="Classes that raise the alert, comma-separated.")
    ] = "pistol,knife,gun,rifle",
) -> None:
    """Open the web UI (Streamlit) in front of a running server."""
    import os
    import sys

    page = Path(__file__).with_name("ui") / "app.py"
    env = dict(os.environ, HEBBIAN_MIRROR_UI_API=api, HEBBIAN_MIRROR_UI_DANGEROUS=dangerous)
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(page),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    console.print(f"UI on http://{'localhost' if host == '0.0.0.0' else host}:{port} for the server at {api}")
    sys.stdout.flush()
    # become Streamlit, so that signals (Ctrl-C, SIGTERM from a supervisor) reach it and nothing is left behind
    os.execve(sys.executable, cmd, env)


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="Dataset with train and val splits (any format).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Base: a Darknet zoo model or a .pt checkpoint.")] = (
        "yolov4-tiny"
    ),
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate [SGD 0.01, AdamW 0.001].")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd or adamw.")] = "sgd",
    schedule: Annotated[str, typer.Option("--schedule", help="cosine or step.")] = "cosine",
    img_size: Annotated[int | None, typer.Option("--img-size", help="Square input size [the model's].")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data loading processes.")] = 2,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    patience: Annotated[int, typer.Option("--patience", help="Early stop after N epochs without better AP.")] = 10,
    augment: Annotated[
        Path | None, typer.Option("--augment", help="YAML of augmentation settings (see train/augment.py).")
    ] = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="Train without augmentation.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, summary.json.")] = Path(
        "runs/train"
    ),
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow.")] = True,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment [dataset name].")] = None,
    register: Annotated[
        str | None, typer.Option("--register", help="Register the model under this name (alias champion if best).")
    ] = None,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fine-tune a Darknet YOLO model on your own labelled images (tracked in MLflow:
    sqlite:///mlflow.db here, or $MLFLOW_TRACKING_URI)."""
    from .train.augment import AugmentConfig
    from .train.loop import TrainConfig
    from .train.loop import train as run_training

    try:
        settings = _settings(config=config, weights_dir=weights_dir, offline=offline)
        aug = AugmentConfig.off() if no_augment else AugmentConfig.from_yaml(augment) if augment else AugmentConfig()
        cfg = TrainConfig(
            data=str(data),
            model=model,
            out=str(out),
            epochs=epochs,
            batch=batch,
            lr=lr,
            optimizer=optimizer,
            schedule=schedule,
            img_size=img_size,
            device=device,
            workers=workers,
            amp=amp,
            freeze_backbone=freeze_backbone,
            seed=seed,
            patience=patience,
            augment=aug,
        )
        if track:
            summary, registered = _tracked_training(cfg, settings, resume, experiment, register)
        else:
            if register:
                raise ValueError("--register needs tracking (drop --no-track)")
            summary, registered = run_training(cfg, settings, resume=resume), None
    except (HebbianMirrorError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    table = Table(title=f"{out}: best AP {summary['best_ap']:.3f}")
    for col in ("epoch", "loss", "AP", "AP50", "seconds"):
        table.add_column(col, justify="right")
    for h in summary["history"]:
        table.add_row(str(h["epoch"]), f"{h['loss']:.3f}", f"{h['AP']:.3f}", f"{h['AP50']:.3f}", str(h["seconds"]))
    console.print(table)
    console.print(f"best → {summary['best']} (serve it: hebbian-mirror serve --model {summary['best']})")
    if registered:
        verdict = "now the champion" if registered["promoted"] else "champion unchanged (it was better)"
        console.print(
            f"registered {registered['name']} v{registered['version']}: {verdict}; serve it: "
            f"hebbian-mirror serve --model models:/{registered['name']}@champion"
        )


def _tracked_training(cfg, settings, resume: bool, experiment: str | None, register: str | None):
    from .datasets import load_splits
    from .datasets.tools import stats
    from .tracking import TrainingRun
    from .train.loop import _config_dict
    from .train.loop import train as run_training

    name = experiment or Path(cfg.data).resolve().name
    with TrainingRun(name, run_name=Path(cfg.out).name) as run:
        run.log_params(_config_dict(cfg))
        summary = run_training(cfg, settings, resume=resume, on_epoch=run.log_epoch)
        run.log_results(Path(cfg.out), summary, stats(load_splits(cfg.data)))
        registered = run.register(register) if register else None
        console.print(f"MLflow run {run.run_id} in experiment {name!r}", style="dim")
    return summary, registered


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Zoo Darknet model, trained .pt, cfg path or models:/ URI.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", help="Output file [MODEL.onnx].")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch")] = True,
    half: Annotated[bool, typer.Option("--half", help="float16 model (for CUDA runtimes).")] = False,
    verify: Annotated[
        list[Path] | None, typer.Option("--verify", help="Images to compare PyTorch and onnxruntime on.")
    ] = None,
    weights_dir: WeightsDirOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """Export a model to ONNX; `predict`, `evaluate` and `serve` then take the .onnx file as --model."""
    from .export import export_onnx
    from .zoo import load_detector

    if fmt != "onnx":
        raise _fail(f"unsupported format {fmt!r}: onnx")
    try:
        settings = _settings(device="cpu", weights_dir=weights_dir, offline=offline)
        detector = load_detector(model, settings)
        target = out or Path(f"{Path(model).stem if '/' in model else model}.onnx")
        path = export_onnx(detector, target, dynamic_batch=dynamic_batch, half=half)
    except (HebbianMirrorError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"exported {detector.name} → {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if verify:
        from .backends.onnx import OnnxDetector
        from .images import decode_image, list_images

        onnx_detector = OnnxDetector(path, device="cpu")
        worst = 0.0
        for image_path in list_images(verify):
            image = decode_image(image_path)
            a, b = detector.detect([image])[0], onnx_detector.detect([image])[0]
            if [d.label for d in a] != [d.label for d in b]:
                raise _fail(f"{image_path}: PyTorch and onnxruntime disagree on the labels")
            for da, db in zip(a, b, strict=True):
                worst = max(worst, *(abs(x - y) for x, y in zip(da.box, db.box, strict=True)))
        console.print(f"verified on {len(list_images(verify))} images: largest box difference {worst:.3f} px")
        if worst > 1.0:
            raise _fail("boxes differ by more than 1 px")


data_app = typer.Typer(help="Inspect, convert, merge, split and preview labelled datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
DataArg = Annotated[Path, typer.Argument(help="COCO json, YOLO data.yaml or folder, Pascal VOC folder.")]
ToOpt = Annotated[str, typer.Option("--to", help="Output format: yolo, coco or voc.")]


def _load_splits(data: Path):
    from .datasets import load_splits

    try:
        return load_splits(data)
    except HebbianMirrorError as exc:
        raise _fail(str(exc)) from exc


def _write(splits, out: Path, fmt: str) -> None:
    from .datasets import write_splits

    try:
        path = write_splits(splits, out, fmt)
    except HebbianMirrorError as exc:
        raise _fail(str(exc)) from exc
    counts = ", ".join(f"{k}: {len(v.samples)}" for k, v in splits.items())
    console.print(f"wrote {fmt} dataset ({counts} images) → {path}")


@data_app.command("stats")
def data_stats(data: DataArg, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Images, boxes per class, box sizes, empty images and broken files, per split."""
    from .datasets.tools import stats

    report = stats(_load_splits(data))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for split, r in report.items():
        table = Table(title=f"{data} — {split}: {r['images']} images, {r['empty_images']} empty, {r['boxes']} boxes")
        for col in ("class", "display name", "boxes"):
            table.add_column(col, justify="right" if col == "boxes" else "left")
        for name, n in r["boxes_per_class"].items():
            table.add_row(name, r["display_names"][name], str(n))
        console.print(table)
        w, h = r["box_width_px"], r["box_height_px"]
        if w:
            console.print(
                f"box width px min/median/max {w['min']:.0f}/{w['median']:.0f}/{w['max']:.0f}, height "
                f"{h['min']:.0f}/{h['median']:.0f}/{h['max']:.0f}; COCO sizes {r['box_sizes_coco']}"
            )
        for problem in r["problems"][:20]:
            console.print(f"[yellow]problem:[/] {problem}", highlight=False, soft_wrap=True)
        if len(r["problems"]) > 20:
            console.print(f"... and {len(r['problems']) - 20} more problems")


@data_app.command("convert")
def data_convert(data: DataArg, out: Annotated[Path, typer.Argument(help="New output folder.")], to: ToOpt) -> None:
    """Write a dataset in another format (every split; class and display names kept)."""
    _write(_load_splits(data), out, to)


@data_app.command("merge")
def data_merge(
    datasets: Annotated[list[Path], typer.Argument(help="Datasets to merge, then the output folder last.")],
    to: ToOpt = "yolo",
) -> None:
    """Merge datasets into one: class lists united by name, splits by name."""
    from .datasets.tools import merge

    if len(datasets) < 3:
        raise _fail("give at least two datasets and an output folder")
    *sources, out = datasets
    merged = merge([_load_splits(d) for d in sources])
    console.print(f"classes: {', '.join(next(iter(merged.values())).classes)}")
    _write(merged, out, to)


@data_app.command("split")
def data_split(
    data: DataArg,
    out: Annotated[Path, typer.Argument(help="New output folder.")],
    val: Annotated[float, typer.Option("--val", help="Fraction for validation.")] = 0.2,
    test: Annotated[float, typer.Option("--test", help="Fraction for testing.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    to: ToOpt = "yolo",
) -> None:
    """Pool all images and re-split them at random into train / val (/ test)."""
    from .datasets.tools import split

    fractions = {"train": 1.0 - val - test, "val": val, **({"test": test} if test > 0 else {})}
    try:
        splits = split(_load_splits(data), fractions, seed)
    except HebbianMirrorError as exc:
        raise _fail(str(exc)) from exc
    _write(splits, out, to)


@data_app.command("preview")
def data_preview(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for the drawn images.")],
    split: Annotated[str, typer.Option("--split")] = "train",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many images.")] = None,
) -> None:
    """Draw the ground-truth boxes (with display names) on the images."""
    from .datasets import load_dataset
    from .datasets.tools import preview

    try:
        ds = load_dataset(data, split=split)
    except HebbianMirrorError as exc:
        raise _fail(str(exc)) from exc
    written = preview(ds, out, limit)
    console.print(f"{len(written)} images → {out}")


def main() -> None:
    app()
