"""The settings' components: one validated model each (model, detection, limits, server, alarms, events, delivery,
Ray). A component takes only its own (``settings.part(DetectSettings)``); :class:`~hebbian_mirror.config.Settings`
is all of them, read from one flat namespace of keys (TOML, ``HEBBIAN_MIRROR_*``, flags)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..classes import DANGEROUS_CLASSES
from ..detection import DetectOptions, resolve_classes
from ..meta import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, DEFAULT_MAX_PIXELS, Described

DEFAULT_WEIGHTS_DIR = Path("~/.cache/hebbian-mirror/weights")


class Component(BaseModel):
    """A group of settings: validated on its own, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _split(value: Any) -> Any:
    """``"a,b"`` → ``["a", "b"]`` (a list from TOML or repeated flags stays as it is)."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


def _split_each(value: Any) -> Any:
    """``"a,b"`` and ``["a,b", "c"]`` (repeated flags) both give ``["a", "b", "c"]``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        return value
    return [part.strip() for v in items for part in v.split(",") if part.strip()]


def _expand(value: Path) -> Path:
    return value.expanduser()


def secret_from_file(data: Any, field: str) -> Any:
    """``data`` (a component's raw values) with ``field`` read from the file ``<field>_file`` names, when that is
    given and ``field`` is not: a secret need not appear on a command line or in the settings file."""
    if not isinstance(data, dict) or not data.get(f"{field}_file") or data.get(field):
        return data
    path = Path(str(data[f"{field}_file"])).expanduser()
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc
        raise ValueError(f"{field}_file: cannot read {path}: {why}") from None
    if not value:
        raise ValueError(f"{field}_file: {path} is empty")
    return {**data, field: value}


class ModelSettings(Component):
    """Which model, where its weights are, what runs it."""

    model: str = Field(
        default="yolov4-tiny",
        description="Model: zoo name, .pt checkpoint, .onnx file, Darknet .cfg/.weights path, models:/ or runs:/ URI.",
    )
    weights_dir: Path = Field(default=DEFAULT_WEIGHTS_DIR, validate_default=True, description="Weights cache folder.")
    offline: bool = Field(default=False, description="Never download weights; a missing file is an error.")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N (auto: CUDA when present).")
    half: bool = Field(default=False, description="float16 inference (CUDA only).")
    verify: bool = Field(
        default=True,
        description="Run a model's verifier stage, if it has one (--no-verify: the detector's own scores alone).",
    )

    @field_validator("weights_dir", mode="after")
    @classmethod
    def _expand_weights(cls, value: Path) -> Path:
        return _expand(value)


class DetectSettings(Component):
    """Detection defaults: thresholds and the refinements of YOLO selection."""

    conf: float = Field(default=DEFAULT_CONF, ge=0.0, le=1.0, description="Confidence threshold.")
    iou: float = Field(default=DEFAULT_IOU, ge=0.0, le=1.0, description="NMS IoU threshold.")
    max_det: int = Field(default=DEFAULT_MAX_DET, ge=1, description="Most detections per image.")
    merge: bool = Field(
        default=False,
        description="Darknet models: box voting (each kept box averaged with its class's overlapping ones).",
    )
    augment: bool = Field(
        default=False,
        description="Darknet models: also run each image flipped, at 0.8x size and both (about 3x the time).",
    )

    def detect_options(
        self,
        model: Described,
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: str | Iterable[str | int] | None = None,
        merge: bool | None = None,
        augment: bool | None = None,
    ) -> DetectOptions:
        """The one way these settings become a call's :class:`DetectOptions` for ``model``: the values given
        (a request's, a command's) over the settings' thresholds, ``classes`` named or numbered for ``model``;
        ``merge`` and ``augment`` as given, else the settings' where ``model`` has them (``refines``,
        ``augments``). :class:`InvalidOptionError` for a bad value or an unknown class."""
        served_merge, served_augment = self._refinements(model)
        return DetectOptions(
            conf=self.conf if conf is None else conf,
            iou=self.iou if iou is None else iou,
            max_det=self.max_det if max_det is None else max_det,
            classes=resolve_classes(classes, model.class_names),
            merge=served_merge if merge is None else merge,
            augment=served_augment if augment is None else augment,
        )

    def served(self, options: DetectOptions, model: Described) -> DetectOptions:
        """``options`` (a stream's thresholds) with these settings' ``merge`` and ``augment`` where ``model`` has
        them."""
        merge, augment = self._refinements(model)
        return replace(options, merge=merge, augment=augment)

    def _refinements(self, model: Described) -> tuple[bool, bool]:
        """The settings' merge and augment, each only where ``model`` has it (``refines``, ``augments``)."""
        refines, augments = bool(getattr(model, "refines", False)), bool(getattr(model, "augments", False))
        return self.merge and refines, self.augment and augments


class LimitSettings(Component):
    """What one request, one image and all of them together may take: sizes, queues, timeouts, threads."""

    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1, description="Largest image, in pixels.")
    max_batch_size: int = Field(default=8, ge=1, description="Images per batch.")
    max_batch_delay_ms: float = Field(default=2.0, ge=0.0, description="Longest wait for a batch to fill, in ms.")
    max_queue: int = Field(default=256, ge=1, description="Queued requests per model before 503.")
    request_timeout: float = Field(default=30.0, gt=0.0, description="Seconds before a request gets 504.")
    max_upload_mb: float = Field(default=20.0, gt=0.0, description="Largest request body, in MB.")
    decode_timeout: float = Field(default=10.0, gt=0.0, description="Seconds one image may take to decode (422).")
    max_pixels_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Decoded pixels all requests may hold at once (images and raw pixel tensors).",
        json_schema_extra={"default_help": "4 × max-pixels"},
    )
    header_timeout: float = Field(default=10.0, gt=0.0, description="Seconds to send a request's headers (408).")
    body_timeout: float = Field(default=30.0, gt=0.0, description="Seconds to send a request's body (408).")
    max_connections: int = Field(default=1000, ge=1, description="Open connections; idle ones close first.")
    max_requests: int = Field(default=1024, ge=1, description="Requests in progress before 503.")
    decoder_threads: int | None = Field(
        default=None,
        ge=1,
        description="Image decoding threads.",
        json_schema_extra={"default_help": "half the CPU cores, 1 to 4"},
    )

    @property
    def decode_workers(self) -> int:
        """Image decoding threads; by default few, so that they do not starve inference of CPU."""
        return self.decoder_threads or max(1, min(4, (os.cpu_count() or 2) // 2))

    @property
    def pixel_budget(self) -> int:
        """Decoded pixels in flight, never below one largest image."""
        return max(self.max_pixels_in_flight or 4 * self.max_pixels, self.max_pixels)


SCOPES = ("detect", "view", "review", "admin")
Scope = Literal["detect", "view", "review", "admin"]


class ApiKey(BaseModel):
    """One API key and what it may do: ``detect`` (the detection routes), ``view`` (streams, events, their
    pictures, metrics), ``review`` (judging events), ``admin`` (adding and removing cameras)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=8, max_length=512, description="The key, as clients send it.")
    scopes: list[Scope] = Field(min_length=1, description="What the key may do.")
    name: str | None = Field(default=None, max_length=100, description="Who holds it (logs and /v1/auth).")

    @classmethod
    def parse(cls, value: Any) -> Any:
        """``"SCOPE[,SCOPE...]:KEY"`` (a flag's or the environment's form; JSON too) → the fields."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            import json

            return json.loads(value)
        scopes, sep, key = value.partition(":")
        if not sep:
            raise ValueError("an API key with scopes is SCOPE[,SCOPE...]:KEY, e.g. view,detect:KEY")
        return {"key": key, "scopes": [s.strip() for s in scopes.split(",") if s.strip()]}


class ServerSettings(Component):
    """The server: what it serves, where it listens, its workers and key, how it logs."""

    models: list[str] = Field(
        default_factory=list,
        description="Model to serve, as SOURCE or NAME=SOURCE (SOURCE: zoo name, .pt, .onnx, Darknet "
        ".cfg/.weights, models:/ or runs:/ URI); repeat for several (the first is the default).",
    )
    host: str = Field(
        default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface, reachable by others)."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    workers: int | None = Field(
        default=None,
        ge=0,
        description="Worker processes per model (0: the model runs in a thread of the server process).",
        json_schema_extra={"default_help": "one per GPU on CUDA, else 2 (1 on one core)"},
    )
    api_key: str | None = Field(default=None, description="Require this key (X-API-Key or Bearer).")
    api_key_file: Path | None = Field(default=None, description="Read api-key from this file (not on a command line).")
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description="API keys with scopes, as SCOPE[,SCOPE...]:KEY (repeatable) or TOML tables {key, scopes, name}; "
        "scopes: detect, view, review, admin (api-key has them all).",
    )
    profile: Literal["dev", "prod"] | None = Field(
        default=None, description="dev (4 decoder threads, info logs) or prod (16, critical)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="critical, error, warning, info or debug."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return _split(value)

    @model_validator(mode="before")
    @classmethod
    def _key_from_file(cls, data: Any) -> Any:
        return secret_from_file(data, "api_key")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        return [ApiKey.parse(v) for v in value] if isinstance(value, list) else value

    def scopes_of(self, candidate: str | None) -> tuple[str | None, frozenset[str]] | None:
        """(holder's name, scopes) of the key ``candidate``, or ``None`` when it is no key of this server;
        every scope for everyone when the server has no key."""
        import secrets

        if not self.api_key and not self.api_keys:
            return None, frozenset(SCOPES)
        if not candidate:
            return None
        given = candidate.encode()
        found = None
        if self.api_key and secrets.compare_digest(given, self.api_key.encode()):
            found = (None, frozenset(SCOPES))
        for entry in self.api_keys:  # every key compared, in constant time each
            if secrets.compare_digest(given, entry.key.encode()):
                found = (entry.name, frozenset(entry.scopes))
        return found

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class RaySettings(Component):
    """Ray Serve (serve --ray): one deployment per model, the HTTP app as ingress."""

    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to join: auto, or ray://host:10001; without it a local cluster starts.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of the local Ray cluster.", json_schema_extra={"default_help": "all"}
    )
    ray_replicas: int = Field(default=1, ge=1, description="Replicas per model (fixed; or autoscale with min/max).")
    ray_min_replicas: int | None = Field(default=None, ge=0, description="Autoscaling: fewest replicas per model.")
    ray_max_replicas: int | None = Field(default=None, ge=1, description="Autoscaling: most replicas per model.")
    ray_target_ongoing_requests: float = Field(
        default=8.0, gt=0.0, description="Autoscaling: images in progress per replica to aim for."
    )
    ray_max_ongoing_requests: int | None = Field(
        default=None,
        ge=1,
        description="Images a replica takes at once (at least max-batch-size, or batches never fill).",
        json_schema_extra={"default_help": "2 × max-batch-size"},
    )
    ray_cpus_per_replica: float = Field(default=1.0, gt=0.0, description="CPUs Ray reserves per model replica.")
    ray_gpus_per_replica: float = Field(default=0.0, ge=0.0, description="GPUs per model replica (1: one each).")


class UiSettings(Component):
    """The web UI (``hebbian-mirror ui``): the server it talks to, where the page listens, what it alerts on."""

    ui_api: str = Field(default="http://127.0.0.1:8000", description="The server's URL.")
    ui_api_key: str | None = Field(
        default=None,
        description="The server's API key, for everyone who opens the page (never shown to it; a key typed in its "
        "sidebar wins).",
        json_schema_extra={"default_help": "api-key"},
    )
    ui_host: str = Field(default="127.0.0.1", description="Address for the page (0.0.0.0: reachable by others).")
    ui_port: int = Field(default=8501, ge=0, le=65535, description="Port for the page.")
    ui_dangerous: list[str] = Field(
        default_factory=lambda: list(DANGEROUS_CLASSES),
        description="Classes that raise the page's alert.",
    )
    ui_sources: list[str] = Field(
        default_factory=list,
        description="Let the page load images from this URL prefix or folder (repeatable). Without it the page has "
        "no URL / path field: whoever reaches the page could make this machine fetch URLs or read files.",
    )

    @field_validator("ui_dangerous", mode="before")
    @classmethod
    def _split_dangerous(cls, value: Any) -> Any:
        return _split_each(value)

    @field_validator("ui_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: Any) -> Any:
        """One a line (as the ``ui`` command hands them on) or comma-separated."""
        if isinstance(value, str):
            return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
        return value
