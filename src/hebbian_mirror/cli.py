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


def main() -> None:
    app()
