"""``stack``: the API, the UI and an MLflow tracking server as child processes of one command."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..errors import ChildError, CommandError
from ..supervisor import Child, Supervisor, port_in_use
from .app import app
from .common import console, err_console

DEFAULT_DIR = "mlruns-stack"
GRACE_S = 15.0
LOCAL = "127.0.0.1"  # MLflow has no authentication: it listens on loopback only


def _url(host: str, port: int) -> str:
    """The URL to reach a server listening on ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = LOCAL
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _children(
    models: list[str], host: str, port: int, ui_port: int, mlflow_port: int, folder: Path, serve_args: list[str]
) -> tuple[Child, Child, Child]:
    python = sys.executable
    mlflow_url = _url(LOCAL, mlflow_port)
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_url)
    logs = folder / "logs"
    mlflow_env = dict(os.environ)
    mlflow_env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI job runner: training only
    store = ["--backend-store-uri", f"sqlite:///{(folder / 'mlflow.db').as_posix()}"]
    store += ["--artifacts-destination", str(folder / "artifacts")]
    mlflow_cmd = [python, "-m", "mlflow", "server", "--host", LOCAL, "--port", str(mlflow_port), "--workers", "1"]
    mlflow = Child("mlflow", mlflow_cmd + store, mlflow_url + "/health", logs / "mlflow.log", mlflow_env)
    serve = [python, "-m", "hebbian_mirror", "serve", "--host", host, "--port", str(port)]
    serve += [arg for model in models for arg in ("--model", model)] + serve_args
    api = Child("api", serve, _url(host, port) + "/ready", logs / "api.log", env)
    ui_cmd = [python, "-m", "hebbian_mirror", "ui", "--api", _url(host, port), "--host", host, "--port", str(ui_port)]
    ui = Child("ui", ui_cmd, _url(host, ui_port) + "/_stcore/health", logs / "ui.log", env)
    return api, ui, mlflow


def _check_ports(host: str, ports: dict[str, tuple[str, int]]) -> None:
    """A clear error, before anything starts, for a port given twice or already in use."""
    numbers = [port for _, port in ports.values()]
    if len(set(numbers)) < len(numbers):
        raise CommandError("--port, --ui-port and --mlflow-port must be three different ports")
    for option, (address, port) in ports.items():
        try:
            busy = port_in_use(address, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {address} port {port} ({option}): {exc.strerror or exc}") from exc
        if busy:
            raise CommandError(
                f"port {port} on {address} is already in use: stop what uses it or choose another {option}"
            )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def stack(
    ctx: typer.Context,
    models: list[str] | None = typer.Option(
        None, "--model", "-m", help="Model for the API, as serve takes it; repeat for several."
    ),
    host: str = typer.Option(LOCAL, "--host", help="Address of the API and the UI (0.0.0.0: reachable by others)."),
    port: int = typer.Option(8000, "--port", help="Port of the API."),
    ui_port: int = typer.Option(8501, "--ui-port", help="Port of the UI."),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="Port of MLflow, which listens on 127.0.0.1 only."),
    folder: Path | None = typer.Option(
        None,
        "--dir",
        help="Folder for the MLflow store (mlflow.db, artifacts) and the logs of the three services.",
        show_default="./" + DEFAULT_DIR,
        file_okay=False,
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="HEBBIAN_MIRROR_API_KEY",
        help="Require this key on the API; the UI sends it (given to both through the environment, not their "
        "command lines).",
    ),
    startup_timeout: float = typer.Option(300.0, "--startup-timeout", help="Seconds each service may take to start."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the services' logs here."),
) -> None:
    """Run the API, the web UI and an MLflow tracking server together, until Ctrl-C.

    The API and the UI track to this MLflow; logs go to --dir. Other options, e.g. --device cpu, go to serve."""
    folder = (folder or Path(DEFAULT_DIR)).resolve()
    _check_ports(host, {"--port": (host, port), "--ui-port": (host, ui_port), "--mlflow-port": (LOCAL, mlflow_port)})
    api, ui, mlflow = _children(models or [], host, port, ui_port, mlflow_port, folder, list(ctx.args))
    urls = {"api": _url(host, port), "ui": _url(host, ui_port), "mlflow": _url(LOCAL, mlflow_port)}
    for child in (api, ui):
        assert child.env is not None
        if api_key:
            child.env["HEBBIAN_MIRROR_API_KEY"] = api_key

    def echo(child: Child, line: str) -> None:
        console.print(Text(f"{child.name:>6} | ", style="dim") + Text(line), highlight=False)

    sup = Supervisor(echo if verbose else None)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    console.print(Text(f"Logs in {folder / 'logs'}" + ("" if verbose else " (--verbose shows them here)")))
    code = 0
    try:
        _start(sup, api, ui, mlflow, startup_timeout)
        _show(folder, urls, (api, ui, mlflow))
        while (gone := sup.exited()) is None:
            sup.pump()
            time.sleep(0.5)
        _report(gone, f"stopped unexpectedly with code {gone.returncode}")
        code = 1
    except ChildError as exc:
        _report(exc.child, exc.what)
        code = 1
    except KeyboardInterrupt:
        console.print("Stopping...")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        sup.stop_all(GRACE_S)
    console.print("Stack stopped.")
    raise typer.Exit(code)


def _start(sup: Supervisor, api: Child, ui: Child, mlflow: Child, timeout: float) -> None:
    """MLflow and the UI first, the API once MLflow answers (it may load a models:/ URI from it)."""
    columns = (SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        tasks = {c.name: progress.add_task(f"{c.name}: starting", total=1) for c in (mlflow, api, ui)}

        def ready(child: Child) -> None:
            progress.update(tasks[child.name], description=f"{child.name}: ready", completed=1)

        sup.start(mlflow)
        sup.start(ui)
        progress.update(tasks["api"], description="api: waiting for mlflow")
        sup.wait_healthy([mlflow], timeout, ready)
        sup.start(api)
        progress.update(tasks["api"], description="api: starting")
        sup.wait_healthy([api, ui], timeout, ready)


def _show(folder: Path, urls: dict[str, str], children: tuple[Child, ...]) -> None:
    table = Table(title="Hebbian Mirror stack")
    for column in ("service", "URL", "log"):
        table.add_column(column)
    for child in children:
        table.add_row(child.name, Text(urls[child.name]), Text(str(child.log_path.relative_to(folder))))
    console.print(table)
    console.print(Text(f"Stack folder: {folder}"))
    console.print(Text(f"To track training runs there: export MLFLOW_TRACKING_URI={urls['mlflow']}"))
    console.print("Stack ready: Ctrl-C stops it.")


def _report(child: Child, what: str) -> None:
    err_console.print(Text("error: ", style="bold red") + Text(f"{child.name} {what}; last lines of {child.log_path}:"))
    err_console.print(Text(child.tail()), highlight=False)
