"""The Typer application the subcommand modules register on."""

from __future__ import annotations

import typer

from .. import __version__
from .common import DEBUG_ENV, Commands, console
from .options import env_help

app = typer.Typer(
    name="hebbian-mirror",
    help="Object detection: Darknet YOLO and torchvision detectors, served over HTTP, fine-tuned on your data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Commands,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"hebbian-mirror {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version."),
    debug: bool = typer.Option(
        False, "--debug", help=env_help("Show the traceback of every error, not only of unexpected ones.", DEBUG_ENV)
    ),
) -> None:
    """Hebbian Mirror."""
    ctx.meta["debug"] = debug
