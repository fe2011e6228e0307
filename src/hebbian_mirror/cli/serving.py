"""``serve``, ``bench`` and ``ui``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..classes import DANGEROUS_CLASSES
from ..config import Settings
from ..errors import CommandError
from .app import app
from .common import cli_settings, config_option, console
from .options import options

# serve takes every setting (the default model is --model, the first of `models`)
SERVE_SETTINGS = [name for name in Settings.model_fields if name != "model"]
SERVE_FLAGS = {
    "models": ("--model", "-m"),
    "offline": ("--offline/--online",),
    "streams": ("--stream",),
    "webhooks": ("--webhook",),
}


@app.command()
@options(Settings, SERVE_SETTINGS, SERVE_FLAGS)
def serve(
    ctx: typer.Context,
    ray: bool = typer.Option(
        False, "--ray", help="Serve through Ray Serve: a deployment per model, replicas, autoscaling."
    ),
    config: Path | None = config_option(),
    **_settings: Any,
) -> None:
    """Serve detection over HTTP (native, DeepStack-compatible, Open Inference Protocol and original Hebbian
    Mirror routes), in this process or through Ray Serve."""
    from ..models.loader import prefetch
    from ..server.serve import serve as run_server

    settings = cli_settings(ctx)
    prefetch([m.source for m in settings.served_models], settings)  # a missing file stops us before we listen
    if not ray:
        run_server(settings)
        return
    try:
        from ..server.ray_serve import run as run_ray
    except ImportError as exc:
        raise CommandError(
            f"Ray Serve is not installed ({exc}): pip install 'hebbian-mirror' with its ray extra"
        ) from exc
    run_ray(settings)


@app.command()
def bench(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Server base URL."),
    image: Path = typer.Option(
        ..., "--image", help="Image file to send with every request.", exists=True, dir_okay=False
    ),
    concurrency: str = typer.Option("1,8,32", "--concurrency", help="Comma-separated client counts."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds per concurrency level."),
    route: str = typer.Option("/v1/detect", "--route", help="Route to load."),
    api_key: str | None = typer.Option(None, "--api-key", help="Sent as X-API-Key."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per level."),
) -> None:
    """Load a running server: requests/s, latency percentiles and errors per concurrency level."""
    import asyncio

    from ..loadgen import run_load

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError as exc:
        raise CommandError(f"--concurrency must be integers, got {concurrency!r}") from exc
    headers = {"X-API-Key": api_key} if api_key else None
    table = Table(title=f"{url}{route} with {image.name}, {duration:g} s per level")
    for col in ("clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    for level in levels:
        result = asyncio.run(run_load(url, image, level, duration, route, headers))
        if as_json:
            print(json.dumps(result.to_dict()))
        ms = (result.p50_ms, result.p95_ms, result.p99_ms)
        table.add_row(str(level), f"{result.rps:.1f}", *(f"{v:.1f}" for v in ms), str(result.errors))
    if not as_json:
        console.print(table)


@app.command()
def ui(
    api: str = typer.Option("http://127.0.0.1:8000", "--api", help="The server's URL."),
    port: int = typer.Option(8501, "--port", help="Port for the page."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address for the page (0.0.0.0: reachable by others)."),
    dangerous: str = typer.Option(
        ",".join(DANGEROUS_CLASSES), "--dangerous", help="Classes that raise the alert, comma-separated."
    ),
    allow_source: list[str] = typer.Option(
        [],
        "--allow-source",
        help="Let the page load images from this URL prefix or folder (repeatable). Without it the page has no "
        "URL / path field: whoever reaches the page could make this machine fetch URLs or read files.",
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="HEBBIAN_MIRROR_API_KEY",
        help="The server's API key, for everyone who opens the page (the page never shows it; a key typed in its "
        "sidebar wins).",
    ),
) -> None:
    """Open the web UI (Streamlit) in front of a running server."""
    import os
    import sys

    page = Path(__file__).parent.parent / "ui" / "app.py"
    env = dict(
        os.environ,
        HEBBIAN_MIRROR_UI_API=api,
        HEBBIAN_MIRROR_UI_DANGEROUS=dangerous,
        HEBBIAN_MIRROR_UI_SOURCES="\n".join(allow_source),
        HEBBIAN_MIRROR_UI_API_KEY=api_key or "",
    )
    cmd = [sys.executable, "-m", "streamlit", "run", str(page), "--server.port", str(port)]
    cmd += ["--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    cmd += ["--client.toolbarMode", "viewer"]  # no Deploy button or developer menu for the page's users
    console.print(f"UI on http://{'localhost' if host == '0.0.0.0' else host}:{port} for the server at {api}")
    if allow_source:
        console.print("Images may also be loaded from: " + ", ".join(allow_source))
    sys.stdout.flush()
    # become Streamlit, so that signals (Ctrl-C, SIGTERM from a supervisor) reach it and nothing is left behind
    os.execve(sys.executable, cmd, env)
