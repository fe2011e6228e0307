"""Settings, in one place: defaults < TOML file < ``HEBBIAN_MIRROR_*`` environment < command-line flags.

The TOML file is ``--config PATH``, else ``$HEBBIAN_MIRROR_CONFIG``, else ``./hebbian-mirror.toml`` when
present; its keys are the field names of the components (:mod:`.components`), at top level, in their
component's table (``[detect] conf = 0.3``, ``[ui] ui_port = 8502``), or under a ``[hebbian_mirror]`` table.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, PrivateAttr, ValidationError

from ..errors import ConfigError
from .cameras import AlarmSettings, DeliverySettings, EventSettings
from .components import (
    Component,
    DetectSettings,
    LimitSettings,
    ModelSettings,
    RaySettings,
    ServerSettings,
    UiSettings,
)

C = TypeVar("C", bound=Component)

# The components, in the order people read them (docs, ``hebbian-mirror settings``).
COMPONENTS: tuple[type[Component], ...] = (
    ModelSettings,
    DetectSettings,
    LimitSettings,
    ServerSettings,
    AlarmSettings,
    EventSettings,
    DeliverySettings,
    RaySettings,
    UiSettings,
)

__all__ = [
    "COMPONENTS",
    "GENERIC_NAMES",
    "AlarmSettings",
    "ConfigError",
    "DeliverySettings",
    "DetectSettings",
    "EventSettings",
    "LimitSettings",
    "ModelSettings",
    "RaySettings",
    "ServedModel",
    "ServerSettings",
    "Settings",
    "UiSettings",
    "default_model_name",
    "env_name",
    "load_settings",
    "meaningful_name",
]

ENV_PREFIX = "HEBBIAN_MIRROR_"
SECRET_FILES = ("api_key", "webhook_secret")  # secrets that can come from a file: <name>_file
DEFAULT_CONFIG_FILE = "hebbian-mirror.toml"
# Environment names that differ from ENV_PREFIX + FIELD.upper().
ENV_ALIASES = {"weights_dir": "HEBBIAN_MIRROR_WEIGHTS"}


# Server profiles, as the original Hebbian Mirror's Rocket.toml had them.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"decoder_threads": 4, "log_level": "info"},
    "prod": {"decoder_threads": 16, "log_level": "critical"},
}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_GENERIC_STEMS = {"best", "last", "model", "checkpoint", "weights"}  # served under their folder's name
# Names that say nothing of a model: a trained model in a file or folder so named is named after one above it.
GENERIC_NAMES = {
    "best",
    "last",
    "model",
    "checkpoint",
    "weights",
    "run",
    "runs",
    "train",
    "out",
    "output",
    "exp",
    "quick-look",
}


@dataclass(frozen=True)
class ServedModel:
    """A model a server runs: ``name`` in URLs and answers, ``source`` as the loader takes it."""

    name: str
    source: str

    @classmethod
    def parse(cls, entry: str) -> ServedModel:
        """``NAME=SOURCE``, or a source named after itself: a zoo name as is, ``models:/NAME@alias`` →
        NAME, ``runs/tiny/best.pt`` → ``tiny`` (a generic file name gives its folder's), ``my.onnx`` → ``my``."""
        name, sep, source = entry.partition("=")
        if sep and _NAME.fullmatch(name.strip()) and source.strip():
            return cls(name.strip(), source.strip())
        return cls(default_model_name(entry), entry)


def default_model_name(source: str) -> str:
    """A URL-safe name for a model source (see :meth:`ServedModel.parse`)."""
    if source.startswith("models:/"):
        name = re.split(r"[@/]", source.removeprefix("models:/"))[0]
    elif source.startswith("runs:/"):
        name = "run-" + source.removeprefix("runs:/").split("/")[0][:8]
    else:
        path = Path(source.split(",")[0].strip())
        name = source
        if path.suffix in (".pt", ".onnx", ".cfg", ".weights"):
            generic = path.stem.lower() in _GENERIC_STEMS and path.parent.name not in ("", ".", "..")
            name = path.parent.name if generic else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def meaningful_name(path: Path) -> str:
    """The name a trained model carries: its file's stem, else (``best.pt``, ``run/last.pt``) the nearest folder
    above it whose name says more (``runs/weapons/run/best.pt`` → ``weapons``); else its folder's name."""
    for name in (path.stem, *(p.name for p in path.parents)):
        if name and name not in (".", "..") and name.lower() not in GENERIC_NAMES:
            return name
    return path.parent.name or path.stem or "model"


class Settings(
    UiSettings,
    RaySettings,
    DeliverySettings,
    EventSettings,
    AlarmSettings,
    ServerSettings,
    LimitSettings,
    DetectSettings,
    ModelSettings,
):
    """Everything configurable: every component (:mod:`.components`) at once. Field names are the TOML keys and,
    upper-cased, the env suffixes; a component takes its own part (:meth:`part`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    _config_file: Path | None = PrivateAttr(default=None)  # the settings file these came from (load_settings)

    @property
    def camera_file(self) -> Path:
        """Where the cameras are kept: ``cameras_file``, else the settings file, else ``EVENTS_DIR/cameras.toml``."""
        return Path(self.cameras_file or self._config_file or Path(self.events_dir) / "cameras.toml")

    def part(self, component: type[C]) -> C:
        """This component's settings alone (what a component, e.g. a worker process, is given)."""
        return component.model_validate({name: getattr(self, name) for name in component.model_fields})

    @property
    def served_models(self) -> list[ServedModel]:
        """The models a server loads, the default first, each under its own name."""
        served = [ServedModel.parse(entry) for entry in dict.fromkeys(self.models or [self.model])]
        names = [m.name for m in served]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(
                f"two models would be called {', '.join(twice)}: name them, e.g. --model NAME=SOURCE "
                f"({', '.join(m.source for m in served if m.name in twice)})"
            )
        return served


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return _flatten(data.get("hebbian_mirror", data), path)


def section(component: type[Component]) -> str:
    """A component's TOML table: ``ModelSettings`` → ``[model]``."""
    return component.__name__.removesuffix("Settings").lower()


def _flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Keys at top level, or in their component's table (``[detect] conf = 0.3``); a key in the wrong table is an
    error that names the right one."""
    tables = {section(c): c for c in COMPONENTS}
    flat = {k: v for k, v in data.items() if k not in tables or not isinstance(v, dict)}
    for name, values in data.items():
        if name in tables and isinstance(values, dict):
            for key, value in values.items():
                if key not in tables[name].model_fields:
                    home = next((section(c) for c in COMPONENTS if key in c.model_fields), None)
                    where = f"it belongs in [{home}]" if home else "no such setting"
                    raise ConfigError(f"config file {path}: [{name}] {key}: {where}")
                flat[key] = value
    return flat


def env_name(field: str) -> str:
    """The environment variable of a setting (``HEBBIAN_MIRROR_<FIELD>`` unless aliased)."""
    return ENV_ALIASES.get(field, ENV_PREFIX + field.upper())


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in Settings.model_fields:
        for key in (ENV_ALIASES.get(field), ENV_PREFIX + field.upper()):
            if key and environ.get(key, "") != "":
                values[field] = environ[key]
                break
    return values


def load_settings(
    config_file: str | Path | None = None, environ: dict[str, str] | None = None, **flags: Any
) -> Settings:
    """Merge the layers; ``flags`` whose value is ``None`` (not given on the command line) are ignored."""
    environ = dict(os.environ if environ is None else environ)
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((f"config file {path}", _read_toml(Path(path))))
    layers.append(("environment", _from_env(environ)))
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    merged: dict[str, Any] = {}
    for _, values in layers:
        for secret in SECRET_FILES:  # a secret and its file: the higher layer's wins, whichever it gives
            if values.get(secret) or values.get(f"{secret}_file"):
                merged.pop(secret, None)
                merged.pop(f"{secret}_file", None)
        merged.update(values)
    profile = merged.get("profile")
    if profile in PROFILES:  # a profile's values sit just above the defaults
        merged = PROFILES[profile] | merged
    try:
        settings = Settings.model_validate(merged)
        settings._config_file = Path(path) if path is not None else None
        return settings
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            source = next((name for name, vals in reversed(layers) if field in vals), "default")
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{field} ({source}): {message}" if field else message)
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
