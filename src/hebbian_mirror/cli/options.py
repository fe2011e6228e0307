"""Command-line options generated from where they are declared, by one mechanism: a setting (a field of
:class:`~hebbian_mirror.config.Settings`, with its environment variable) or a training option (a field of
:class:`~hebbian_mirror.train.run_config.TrainConfig`) becomes an option with the field's help, default and type;
:func:`options` adds a list of them to a command, so a command that takes every setting cannot forget one."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel

from ..config import Settings, env_name
from ..errors import CommandError
from ..train.run_config import TrainConfig


def env_help(text: str, env: str) -> str:
    """``text`` and the environment variable that also sets it, e.g. "Weights cache folder; env NAME."."""
    return f"{text.rstrip('.')}; env {env}."


def fraction(option: str, value: float) -> float:
    """``value``, or a :class:`CommandError` naming ``option`` when it is not between 0 and 1."""
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"{option} must be between 0 and 1, got {value:g}")
    return value


def _fraction_check(option: str) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        return value if value is None else fraction(option, value)

    return check


def setting(name: str, *decls: str, **kwargs: Any) -> Any:
    """A command-line option for the setting ``name``: help, default and environment variable come from
    :class:`~hebbian_mirror.config.Settings`. Only a value given on the command line counts (see
    :func:`~.common.cli_settings`); the default shown is the built-in one, below TOML and environment."""
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


_TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def train_option(name: str, *decls: str, **kwargs: Any) -> Any:
    """A ``train`` option for the :class:`TrainConfig` field ``name``: default and help from the field (its
    values are checked where the config is made)."""
    f = _TRAIN_FIELDS[name]
    default = ... if f.default is dataclasses.MISSING else f.default
    dashed = name.replace("_", "-")
    flag = decls or ((f"--{dashed}/--no-{dashed}",) if f.type in (bool, "bool") else (f"--{dashed}",))
    if "default_help" in f.metadata:
        kwargs.setdefault("show_default", f.metadata["default_help"])
    return typer.Option(default, *flag, help=f.metadata.get("help"), **kwargs)


def _cli_type(annotation: Any) -> Any:
    """A field's type as Typer takes it: ``T | None`` (unset: not given), a ``Literal`` as ``str``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if (
        annotation is Literal
        or typing.get_origin(annotation) is Literal
        or (args and typing.get_origin(args[0]) is Literal)
    ):
        return str | None
    if typing.get_origin(annotation) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return list[str] | None  # tables in TOML; strings on the command line, parsed by the field
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        annotation = args[0] if len(args) == 1 else annotation
    return annotation | None


def _train_types() -> dict[str, Any]:
    from ..datasets.augment import AugmentConfig

    return typing.get_type_hints(TrainConfig, localns={"AugmentConfig": AugmentConfig, "Path": Path})


def options(
    source: type, names: Iterable[str], decls: Mapping[str, tuple[str, ...]] | None = None
) -> Callable[[Callable], Callable]:
    """Add the fields ``names`` of ``source`` (:class:`Settings` or :class:`TrainConfig`) to a command as options
    (``decls``: their flags where not ``--the-name``); the command receives them as keyword arguments, and
    :func:`~.common.cli_settings` reads the settings among them from the context."""
    decls = decls or {}
    if source is Settings:
        fields = [(n, setting(n, *decls.get(n, ())), _cli_type(Settings.model_fields[n].annotation)) for n in names]
    elif source is TrainConfig:
        hints = _train_types()
        fields = [(n, train_option(n, *decls.get(n, ())), hints[n]) for n in names]
    else:
        raise TypeError(f"options come from Settings or TrainConfig, not {source!r}")

    def wrap(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, default, annotation in fields
            if name not in taken
        ]

        @functools.wraps(command)
        def with_options(**kwargs: Any) -> Any:
            return command(**kwargs)

        with_options.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return with_options

    return wrap
