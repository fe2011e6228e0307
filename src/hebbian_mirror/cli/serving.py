"""``serve``, ``bench`` and ``ui``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..config import Settings, UiSettings, env_name
from ..errors import CommandError
from .app import app
from .common import cli_settings, config_option, console
from .options import options

# serve takes every setting (the default model is --model, the first of `models`) but the cameras: tables of the
# settings file (or the camera file), not flags
SERVE_SETTINGS = [
    name for name in Settings.model_fields if name not in ("model", "cameras") and name not in UiSettings.model_fields
]
SERVE_FLAGS = {
    "models": ("--model", "-m"),
    "offline": ("--offline/--online",),
    "streams": ("--stream",),
    "webhooks": ("--webhook",),
    "source_hosts": ("--source-host",),
    "api_keys": ("--scoped-key",),
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
    from ..streams.manager import check_sources

    settings = cli_settings(ctx)
    remote = ray and settings.ray_address  # the sources are the cluster's: checked where the app runs
    if not remote and (problems := check_sources(settings, settings.streams)):  # said before we listen
        raise CommandError("; ".join(problems))
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


UI_FLAGS = {
    "ui_api": ("--api",),
    "ui_api_key": ("--api-key",),
    "ui_host": ("--host",),
    "ui_port": ("--port",),
    "ui_dangerous": ("--dangerous",),
    "ui_sources": ("--allow-source",),
}


@app.command()
@options(Settings, list(UiSettings.model_fields), UI_FLAGS)
def ui(ctx: typer.Context, config: Path | None = config_option(), **_settings: Any) -> None:
    """Open the web UI (Streamlit) in front of a running server."""
    import os
    import sys

    settings = cli_settings(ctx)
    api, host, port, allow_source = settings.ui_api, settings.ui_host, settings.ui_port, settings.ui_sources
    page = Path(__file__).parent.parent / "ui" / "app.py"
    env = dict(  # the page's process reads them as its settings (defaults < TOML < environment)
        os.environ,
        **{
            env_name("ui_api"): api,
            env_name("ui_dangerous"): ",".join(settings.ui_dangerous),
            env_name("ui_sources"): "\n".join(allow_source),
            env_name("ui_api_key"): settings.ui_api_key or settings.api_key or "",
        },
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
