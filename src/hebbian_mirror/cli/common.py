"""What every subcommand shares: consoles, options declared once from their settings, and the one place
errors become messages and exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..config import Settings, env_name, load_settings
from ..errors import CommandError, HebbianMirrorError

console = Console(soft_wrap=True)  # long paths and commands stay on one line, so they can be pasted
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def fraction(option: str, value: float) -> float:
    """``value``, or a :class:`CommandError` naming ``option`` when it is not between 0 and 1."""
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"{option} must be between 0 and 1, got {value:g}")
    return value


def _fraction_check(option: str) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        return value if value is None else fraction(option, value)

    return check


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


def env_help(text: str, env: str) -> str:
    """``text`` and the environment variable that also sets it, e.g. "Weights cache folder; env NAME."."""
    return f"{text.rstrip('.')}; env {env}."


def setting(name: str, *decls: str, **kwargs: Any) -> Any:
    """A command-line option for the setting ``name``: help, default and environment variable come from
    :class:`~hebbian_mirror.config.Settings`. Only a value given on the command line counts (see
    :func:`cli_settings`); the default shown is the built-in one, below TOML and environment."""
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    dashed = name.replace("_", "-")
    flag = decls or ((f"--{dashed}/--no-{dashed}",) if field.annotation is bool else (f"--{dashed}",))
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    shown = extra.get("default_help")  # words for a computed default, e.g. "4 × max-pixels"
    kwargs.setdefault("show_default", shown if shown else default not in (None, []))
    limits = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le") if hasattr(m, k)}
    if limits == {"ge": 0.0, "le": 1.0}:
        kwargs.setdefault("callback", _fraction_check(flag[0].split("/")[0]))
    return typer.Option(default, *flag, help=env_help(field.description or "", env_name(name)), **kwargs)


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
