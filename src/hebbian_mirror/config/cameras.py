"""The settings of cameras: streams and their alarm rules, where sources may come from, events and their
delivery (components of :class:`~hebbian_mirror.config.Settings`, as in :mod:`.components`)."""

from __future__ import annotations

import base64
import json
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..classes import DANGEROUS_CLASSES
from .components import Component, _expand, _split, _split_each, secret_from_file
from .schedule import Schedule


class AlarmSettings(Component):
    """Streams and their alarm rules."""

    streams: list[str] = Field(
        default_factory=list,
        description="Stream to watch, as NAME=URL (video file, rtsp://, rtmp://, http(s):// incl. HLS and MJPEG, "
        "/dev/videoN, image folder or glob); repeat for several.",
    )
    cameras: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Cameras: [[cameras]] tables in the settings file (name, url, model, rules...; docs/cameras.md).",
    )
    cameras_file: Path | None = Field(
        default=None,
        description="The TOML file whose [[cameras]] are the cameras, rewritten when they change through the API.",
        json_schema_extra={"default_help": "the settings file, else EVENTS_DIR/cameras.toml"},
    )
    alarm: list[str] = Field(
        default_factory=lambda: list(DANGEROUS_CLASSES),
        description="Classes that raise alarms on streams; the model must know each (of the default list, those "
        "it knows).",
    )
    alarm_min_score: float = Field(default=0.5, ge=0.0, le=1.0, description="Score a detection needs to count.")
    alarm_frames: int = Field(default=5, ge=1, description="Successive frames that raise an alarm.")
    alarm_median_of: int | None = Field(
        default=None, ge=1, description="Instead: the median of the last K scores reaches the min score."
    )
    alarm_end_after: int = Field(default=10, ge=1, description="Frames without the object that end an alarm.")
    alarm_cooldown: float = Field(default=0.0, ge=0.0, description="Seconds after an alarm before the next.")
    alarm_min_area: float = Field(default=0.0, ge=0.0, description="Smallest box that counts, in pixels.")
    stream_fps: float | None = Field(
        default=None,
        gt=0.0,
        le=60.0,
        description="Frames per second to process per stream (at most 60).",
        json_schema_extra={"default_help": "every frame"},
    )
    motion_gate: bool = Field(
        default=True,
        description="Detect only frames with motion (and every frame while an alarm runs); a still picture keeps "
        "its last detections.",
    )
    motion_refresh: float = Field(
        default=2.0, gt=0.0, le=3600.0, description="Seconds after which a still picture is detected again anyway."
    )
    camera_offline_after: float = Field(
        default=10.0, ge=0.0, le=86400.0, description="Seconds without a frame before a camera is offline (0: off)."
    )
    camera_frozen_after: float = Field(
        default=30.0, ge=0.0, le=86400.0, description="Seconds of one unchanging picture before it is frozen (0: off)."
    )
    camera_covered_after: float = Field(
        default=10.0,
        ge=0.0,
        le=86400.0,
        description="Seconds of a black or featureless picture before the camera is covered (0: off).",
    )
    arm_schedule: list[str] = Field(
        default_factory=list,
        description="When alarms are delivered, as weekly windows DAYS HH:MM-HH:MM (mon-fri 18:00-08:00, sat,sun "
        "00:00-24:00, daily 22:00-06:00); repeatable (';' between them in one value); none: always. Outside them "
        "alarms are stored, not delivered.",
    )
    arm_timezone: str = Field(default="UTC", description="The time zone of arm-schedule (e.g. Europe/Madrid).")
    max_streams: int = Field(default=16, ge=1, le=1024, description="Most streams watched at once.")
    allow_source: list[Path] = Field(
        default_factory=list,
        description="Folder whose videos and images may be added as streams through the API and the UI "
        "(repeatable). Without it they may add only cameras: network URLs and /dev/videoN.",
    )
    source_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts and networks (CIDR) that cameras added through the API may be on (repeatable). "
        "Without it: any but this machine's own (loopback) and link-local addresses.",
    )
    tls_unverified: list[str] = Field(
        default_factory=list,
        description="Streams (by name) whose TLS certificate is not checked: cameras with self-signed ones.",
    )

    @field_validator("streams", mode="before")
    @classmethod
    def _split_streams(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("cameras", mode="before")
    @classmethod
    def _cameras_json(cls, value: Any) -> Any:  # from the environment: a JSON list of tables
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("alarm", mode="before")
    @classmethod
    def _split_alarm(cls, value: Any) -> Any:
        return _split_each(value)

    @field_validator("arm_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: Any) -> Any:
        """Windows hold commas (sat,sun ...): several in one string (the environment's form) are split on ';'."""
        return [w.strip() for w in value.split(";") if w.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _schedule_parses(self) -> AlarmSettings:
        Schedule.parse(self.arm_schedule, self.arm_timezone)  # RuleError names the window or the zone
        return self

    @field_validator("allow_source", "source_hosts", "tls_unverified", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return _split_each(value)

    @field_validator("allow_source", mode="after")
    @classmethod
    def _expand_folders(cls, value: list[Path]) -> list[Path]:
        return [_expand(p) for p in value]


class EventSettings(Component):
    """Where events, snapshots and clips are kept, and for how long."""

    events_dir: Path = Field(
        default=Path("~/.local/share/hebbian-mirror/events"),
        validate_default=True,
        description="Events database, snapshots and clips.",
    )
    events_max_age_days: float | None = Field(default=30.0, gt=0.0, description="Delete ended events older.")
    events_max_mb: float | None = Field(default=2000.0, gt=0.0, description="Most snapshot and clip storage.")
    clip_seconds: float = Field(default=20.0, ge=0.0, description="Longest alarm clip (0: no clips).")

    @field_validator("events_dir", mode="after")
    @classmethod
    def _expand_events(cls, value: Path) -> Path:
        return _expand(value)


class DeliverySettings(Component):
    """Where events are delivered: webhooks (Standard Webhooks) and MQTT."""

    webhooks: list[str] = Field(default_factory=list, description="POST events to this URL; repeatable.")
    webhook_secret: str | None = Field(default=None, description="Sign webhooks (Standard Webhooks, whsec_...).")
    webhook_secret_file: Path | None = Field(
        default=None, description="Read webhook-secret from this file (not on a command line)."
    )
    mqtt: str | None = Field(
        default=None,
        description="Publish events to an MQTT broker: mqtt://user:pass@host:port/prefix, host alone at least.",
    )
    smtp: str | None = Field(
        default=None,
        description="E-mail events through this SMTP server: smtp://user:pass@host:port (STARTTLS, required "
        "before a password is sent) or smtps://... (TLS from the start); needs email-to.",
    )
    smtp_ca_file: Path | None = Field(
        default=None, description="Trust this CA certificate for the SMTP server (one with a self-signed certificate)."
    )
    email_to: list[str] = Field(default_factory=list, description="Send event e-mails to this address; repeatable.")
    email_from: str | None = Field(
        default=None,
        description="The e-mails' sender address.",
        json_schema_extra={"default_help": "hebbian-mirror@ this host's name"},
    )
    public_url: str | None = Field(
        default=None,
        description="The server's address as receivers reach it (http(s)://host:port): messages then carry signed "
        "links to the snapshot and clip that work without an API key until they expire.",
    )
    link_hours: float = Field(default=24.0, gt=0.0, le=24 * 365, description="How long a link in a message works.")
    home_assistant: bool = Field(
        default=False,
        description="Announce each camera to Home Assistant over MQTT discovery (a sensor per alarm class, the "
        "latest alarm snapshot, an arming switch, a problem sensor); needs mqtt.",
    )
    home_assistant_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_\-/]{1,64}$", description="Home Assistant's discovery prefix."
    )
    thumbnails: bool = Field(
        default=False,
        description="Put a small copy of the snapshot (JPEG, at most 320 pixels, base64) inside alarm messages.",
    )

    @field_validator("webhooks", "email_to", mode="before")
    @classmethod
    def _split_webhooks(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("email_to", mode="after")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", address):
                raise ValueError(f"an e-mail address is name@host, got {address!r}")
        return value

    @field_validator("public_url", mode="after")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("public-url is the server's http(s)://host[:port][/path] as receivers reach it")
            value = value.rstrip("/")
        return value

    @field_validator("smtp", mode="after")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parts = urlsplit(value)
                _ = parts.port
            except ValueError:
                parts = None
            if parts is None or parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError("an SMTP server is smtp://[user:pass@]host[:port] (smtps:// for TLS from the start)")
        return value

    @field_validator("smtp_ca_file", mode="after")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = _expand(value)
            if not value.is_file():
                raise ValueError(f"smtp-ca-file {value}: no such file")
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ValueError(f"smtp-ca-file {value}: not a PEM certificate ({exc})") from None
        return value

    @model_validator(mode="after")
    def _home_assistant_needs_mqtt(self) -> DeliverySettings:
        if self.home_assistant and not self.mqtt:
            raise ValueError("home-assistant needs mqtt: the broker Home Assistant listens to")
        return self

    @model_validator(mode="after")
    def _email_needs_both(self) -> DeliverySettings:
        if bool(self.smtp) != bool(self.email_to):
            raise ValueError("e-mail needs both smtp (the server) and email-to (the recipients)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _secret_from_file(cls, data: Any) -> Any:
        return secret_from_file(data, "webhook_secret")

    @field_validator("webhooks", mode="after")
    @classmethod
    def _http_only(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                shown = f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else "(no scheme)"
                raise ValueError(f"a webhook is an http:// or https:// URL, got {shown}...")
        return value

    @field_validator("webhook_secret", mode="after")
    @classmethod
    def _standard_secret(cls, value: str | None) -> str | None:
        """Standard Webhooks: ``whsec_`` and base64 of 24 to 64 random bytes."""
        if value is None:
            return value
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not 24 <= len(key) <= 64:
            raise ValueError(
                "a webhook secret is whsec_ and base64 of 24 to 64 random bytes: make one with "
                "`hebbian-mirror new-secret`"
            )
        return value

    @field_validator("mqtt", mode="after")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("an MQTT broker is mqtt://[user:pass@]host[:port][/prefix] (mqtts:// for TLS)")
        return value
