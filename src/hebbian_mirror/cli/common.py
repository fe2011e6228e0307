"""What every subcommand shares: consoles, options declared once from their settings, and the one place
errors become messages and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..config import Settings, env_name, load_settings
from ..errors import HebbianMirrorError

console = Console(soft_wrap=True)  # long paths and commands stay on one line, so they can be pasted
err_console = Console(stderr=True, soft_wrap=True)


class Failure(HebbianMirrorError):
    """A command's own refusal (bad flag combination, nothing to do)."""


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


class Commands(TyperGroup):
    """Runs a subcommand; any product error (or bad value) it raises is printed as one line, exit status 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (HebbianMirrorError, ValueError) as exc:
            raise fail(str(exc)) from exc


def setting(name: str, *decls: str, **kwargs: Any) -> Any:
    """A command-line option for the setting ``name``: help, default and environment variable come from
    :class:`~hebbian_mirror.config.Settings`. Unset, it is ``None`` and the other layers decide."""
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown = f"; default {default}" if default not in (None, [], False) else ""
    dashed = name.replace("_", "-")
    flag = decls or ((f"--{dashed}/--no-{dashed}",) if field.annotation is bool else (f"--{dashed}",))
    help_text = f"{field.description} (env {env_name(name)}{shown})"
    return typer.Option(None, *flag, help=help_text, show_default=False, **kwargs)


def config_option() -> Any:
    return typer.Option(None, "--config", help="TOML settings file (env HEBBIAN_MIRROR_CONFIG).", show_default=False)


def cli_settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings for this command: defaults < TOML < environment < the command's own setting options
    (read from its parameters), then ``overrides``; sets up logging."""
    params = ctx.params
    flags = {k: v for k, v in params.items() if k in Settings.model_fields and v not in (None, [], ())}
    settings = load_settings(params.get("config"), **(flags | overrides))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return settings
