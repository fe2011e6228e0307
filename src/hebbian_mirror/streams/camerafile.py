"""Cameras as configuration: one ``[[cameras]]`` entry per camera (:class:`Camera`: the same fields as a
``POST /v1/streams`` body), and the file that keeps them (:class:`CameraFile`).

One source of truth: the settings file's ``[[cameras]]`` tables (``--config``, ``$HEBBIAN_MIRROR_CONFIG`` or
``./hebbian-mirror.toml``); a server started without a settings file keeps them in ``EVENTS_DIR/cameras.toml``
(``cameras_file`` names another). Cameras added, changed or removed through the API or the UI are written back
there (tomlkit: the file's comments and other settings are kept; checked, then replaced atomically), so a restart
watches what was watched.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, RuleError
from .rules import MAX_RULES, AlarmRule, parse_zones
from .streamconfig import MAX_FPS

STREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # in URLs, metrics and events
URL_FIELDS = ("url", "detect_url", "record_url")  # a camera's addresses (passwords masked when shown)


class ArmingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[str] = Field(
        default_factory=list, max_length=28, description="DAYS HH:MM-HH:MM, e.g. mon-fri 18:00-08:00; none: always."
    )
    timezone: str | None = Field(default=None, max_length=64, description="e.g. Europe/Madrid (default: the server's).")


class Camera(BaseModel):
    """A camera (a stream): where it is, which model watches it and how its alarms are raised."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=STREAM_NAME, description="The camera's name.")
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Camera URL (rtsp, rtmp, http(s), srt, udp multicast), /dev/videoN, or a video file, image "
        "folder or glob inside a folder the server allows (--allow-source).",
    )
    detect_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="A lower-resolution stream of the same camera (a substream) that the detector reads instead.",
    )
    record_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The stream evidence clips are cut from, as the camera sent it (default: url; url itself when "
        "the detector reads detect_url).",
    )
    enabled: bool = Field(default=True, description="Watched (false: kept in the configuration, not watched).")
    model: str | None = Field(
        default=None, max_length=100, description="The served model that watches it, by name (default: the first)."
    )
    alarm: list[str] | None = Field(
        default=None, max_length=MAX_RULES, description="Alarm classes (default: the server's)."
    )
    rules: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=MAX_RULES,
        description="Full alarm rules, one per class (label, min_score, frames, median_of, zones, masks, held, "
        "stationary_after, class_lock, min_area, max_area, min_ratio, max_ratio, cooldown, end_after).",
    )
    masks: list[Any] | None = Field(
        default=None,
        description="Exclusion masks for every rule: polygons in pixels or frame fractions (0-1); a detection whose "
        "centre lies in one is ignored.",
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=MAX_FPS,
        allow_inf_nan=False,
        description=f"Frames per second to process (≤ {MAX_FPS:g}).",
    )
    realtime: bool | None = Field(default=None, description="Play a file at its own pace, as if live.")
    loop: bool = Field(default=False, description="Replay a file forever.")
    tls_verify: bool = Field(default=True, description="Check the camera's TLS certificate (false: self-signed).")
    motion_gate: bool | None = Field(default=None, description="Detect only frames with motion (default: server's).")
    arming: ArmingRequest | None = Field(
        default=None, description="When its alarms are delivered (default: the server's arm-schedule)."
    )

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, rule in enumerate(value or ()):
            if nulls := [k for k, v in rule.items() if v is None]:
                raise ValueError(f"rule {i + 1}: {', '.join(nulls)}: null is no value (leave the field out)")
            try:
                AlarmRule.from_dict(rule)
            except RuleError as exc:
                raise ValueError(f"rule {i + 1}: {exc}") from None
        return value

    @field_validator("masks")
    @classmethod
    def _masks(cls, value: list[Any] | None) -> list[Any] | None:
        try:
            parse_zones(value, "masks")
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return value

    def addresses(self) -> tuple[str, str | None]:
        """(what the model reads, what evidence is recorded from when that is another stream, else None)."""
        detect = self.detect_url or self.url
        record = self.record_url or self.url
        return detect, None if record == detect else record

    def alarm_rules(self) -> list[AlarmRule] | None:
        """Its rules (the camera's masks added to each), or None for the server's."""
        if self.rules is None:
            return None
        masks = parse_zones(self.masks, "masks")
        return [AlarmRule.from_dict(r | {"masks": [*(r.get("masks") or []), *masks]}) for r in self.rules]

    def entry(self) -> dict[str, Any]:
        """As a ``[[cameras]]`` table: the fields given, nothing unset (TOML has no null)."""
        return self.model_dump(exclude_none=True, exclude_defaults=False, exclude_unset=True)


def camera_problem(entry: Any, index: int, exc: ValidationError | Exception) -> str:
    """One line naming the camera and each field that is wrong."""
    name = entry.get("name") if isinstance(entry, dict) else None
    who = f"camera {name!r}" if isinstance(name, str) else f"camera {index}"
    if isinstance(exc, ValidationError):
        fields = [
            f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        return f"{who}: {'; '.join(fields)}"
    return f"{who}: {exc}"


def parse_cameras(entries: list[Any]) -> tuple[list[Camera], list[str]]:
    """The valid cameras of ``entries`` and a line per invalid one (a bad camera never stops the others); a name
    used twice keeps its first."""
    cameras, problems, seen = [], [], set()
    for i, entry in enumerate(entries, 1):
        try:
            camera = Camera.model_validate(entry)
        except ValidationError as exc:
            problems.append(camera_problem(entry, i, exc))
            continue
        if camera.name in seen:
            problems.append(f"camera {camera.name!r}: a second camera of that name (the first is kept)")
            continue
        seen.add(camera.name)
        cameras.append(camera)
    return cameras, problems


class CameraFile:
    """The TOML file whose ``[[cameras]]`` tables are the cameras; changes rewrite it keeping everything else."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        """The ``[[cameras]]`` tables as plain dicts (none when the file does not exist yet)."""
        if not self.path.is_file():
            return []
        doc = self._read()
        return [dict(_plain(t)) for t in doc.get("cameras", [])]

    def _read(self):  # a tomlkit document
        import tomlkit

        try:
            return tomlkit.parse(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc
        except tomlkit.exceptions.ParseError as exc:
            raise ConfigError(f"{self.path} is not valid TOML: {exc}") from exc

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(self, camera: Camera) -> None:
        """Add ``camera`` or replace the one of its name, in place (its position in the file kept)."""
        self._change(camera.name, camera.entry())

    def remove(self, name: str) -> bool:
        """Remove the camera called ``name``; False if the file has none."""
        return self._change(name, None)

    def _change(self, name: str, entry: dict[str, Any] | None) -> bool:
        import tomlkit
        from tomlkit.items import AoT

        with self._locked():
            doc = self._read() if self.path.is_file() else tomlkit.document()
            tables = doc.get("cameras")
            if not isinstance(tables, AoT):  # none yet, or written by hand as an inline array
                tables = tomlkit.aot()
                for table in doc.pop("cameras", None) or []:
                    tables.append(tomlkit.item(_plain(table)))
            at = next((i for i, t in enumerate(tables) if t.get("name") == name), None)
            if entry is None and at is None:
                return False
            if entry is None:
                del tables[at]
            elif at is None:
                tables.append(tomlkit.item(entry))
            else:
                tables[at] = tomlkit.item(entry)
            doc.pop("cameras", None)
            if len(tables):  # no cameras: no key (an empty `cameras = []` would read back as an inline array)
                doc["cameras"] = tables
            text = tomlkit.dumps(doc)
            try:
                again = [dict(_plain(t)) for t in tomlkit.parse(text).get("cameras", []) if t.get("name") == name]
            except tomlkit.exceptions.ParseError as exc:
                again = [exc]
            if again != ([] if entry is None else [entry]):  # never write what does not read back as meant
                raise ConfigError(f"camera {name!r}: {self.path} would not read back as written; left as it was")
            self._replace(text)
            return True

    def _replace(self, text: str) -> None:
        target = self.path.resolve()  # a settings file that is a link: the file it points to is replaced
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o777)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself on disk
        finally:
            os.close(folder)


def _plain(value: Any) -> Any:
    """tomlkit's containers as plain dicts, lists and numbers."""
    return value.unwrap() if hasattr(value, "unwrap") else value
