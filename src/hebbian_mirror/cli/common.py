"""What every subcommand shares: consoles, options declared once from their settings, and the one place
errors become messages and exit codes."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..config import Settings, load_settings
from ..errors import HebbianMirrorError
from .options import env_help

console = Console(soft_wrap=True)  # long paths and commands stay on one line, so they can be pasted
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


DEBUG_ENV = "HEBBIAN_MIRROR_DEBUG"


class Commands(TyperGroup):
    """Runs a subcommand. The product's own errors (:class:`~hebbian_mirror.errors.HebbianMirrorError`) print as
    one line, exit status 1; anything else is a bug and shows its traceback. ``--debug`` (or
    ``HEBBIAN_MIRROR_DEBUG=1``) shows the traceback of the product's errors too."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HebbianMirrorError as exc:
            if ctx.meta.get("debug") or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise fail(str(exc)) from exc


def config_option() -> Any:
    return typer.Option(None, "--config", help=env_help("TOML settings file.", "HEBBIAN_MIRROR_CONFIG"))


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (not its default); by name, as Typer may
    carry its own copy of click."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def cli_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings for this command: defaults < TOML < environment < the command's own setting options
    given on the command line, then ``overrides``; sets up logging."""
    given = {k: v for k, v in ctx.params.items() if k in Settings.model_fields and typed(ctx, k)}
    settings = load_settings(ctx.params.get("config"), **(given | overrides))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return settings
