"""What a stream is to watch and how: its source, alarm rules, frame rate, clip, camera-health rules and arming
schedule, as the server, ``watch`` and the API make it (:meth:`StreamConfig.from_settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from ..errors import RuleError, StreamLimitError
from ..meta import DEFAULT_MAX_PIXELS
from .arming import Schedule
from .health import HealthRules
from .policy import OPERATOR, SourcePolicy
from .rules import AlarmRule
from .sources import VideoSource, open_source

MAX_FPS = 60.0  # frames per second a stream may ask to process


@dataclass
class StreamConfig:
    """What to watch and how: the source, its alarm rules, and the frame rate to process."""

    name: str
    url: str  # what the detector reads
    rules: list[AlarmRule]
    fps: float | None = None  # process at most this many frames per second (files: sampled by timestamp)
    realtime: bool | None = None  # play a file at its own pace, as if live
    loop: bool = False  # replay a file forever
    conf: float = 0.25  # detections drawn on the live view and snapshots
    pre_seconds: float = 2.0  # clip: seconds before the alarm
    clip_seconds: float = 20.0  # clip: longest (0: no clips)
    operator: bool = False  # named by whoever runs the process (CLI, settings file), not sent through the API
    tls_verify: bool = True  # check the camera's TLS certificate
    max_pixels: int = DEFAULT_MAX_PIXELS  # every decoded frame at most
    health: HealthRules = field(default_factory=HealthRules)  # when a live camera is offline, frozen, covered
    arming: Schedule = field(default_factory=Schedule)  # when its alarms are delivered (none: always)
    model: str = ""  # the model that watches it, as the settings name it (evidence manifests say so)
    served: str | None = None  # the served model that watches it, by name (None: the server's first)
    motion_gate: bool = True  # detect only frames with motion (streams/motion.py)
    motion_refresh: float = 2.0  # seconds: a still picture is detected again anyway
    record_url: str | None = None  # evidence clips cut from this stream's packets (None: from url's)

    def __post_init__(self) -> None:
        if not self.rules:
            raise RuleError(f"stream {self.name}: no alarm classes: name at least one the model knows")
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:
            raise StreamLimitError(f"stream {self.name}: fps must be above 0 and at most {MAX_FPS}, got {self.fps:g}")

    def open(self, policy: SourcePolicy = OPERATOR) -> tuple[VideoSource, VideoSource | None]:
        """Its source, through ``policy``, and its record stream (``record_url``: packets only, for evidence)."""
        common = {
            "max_pixels": self.max_pixels,
            "policy": policy,
            "operator": self.operator,
            "tls_verify": self.tls_verify,
        }
        source = open_source(self.url, name=self.name, fps=self.fps, realtime=self.realtime, loop=self.loop, **common)
        if not self.record_url:
            return source, None
        record = open_source(self.record_url, name=f"{self.name}-record", record_only=True, **common)
        source.ring = None  # its packets are not the evidence
        return source, record

    def check(self, policy: SourcePolicy) -> None:
        """Its addresses through ``policy`` (:class:`SourceError` for one refused), opening nothing."""
        for url in filter(None, (self.url, self.record_url)):
            policy.check(url, operator=self.operator, tls_verify=self.tls_verify)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        name: str,
        url: str,
        rules: list[AlarmRule],
        fps: float | None = None,
        realtime: bool | None = None,
        loop: bool = False,
        *,
        operator: bool = False,
        tls_verify: bool | None = None,
        arming: Schedule | None = None,
    ) -> StreamConfig:
        """A stream as the server and ``watch`` start it: ``fps`` (else the configured one), the configured
        drawing threshold, clip length and pixel limit; TLS checked unless given or listed in
        ``tls_unverified``. ``operator``: the stream comes from the command line or the settings file."""
        return cls(
            name,
            url,
            rules,
            fps=fps or settings.stream_fps,
            realtime=realtime,
            loop=loop,
            conf=settings.conf,
            clip_seconds=settings.clip_seconds,
            operator=operator,
            tls_verify=name not in settings.tls_unverified if tls_verify is None else tls_verify,
            max_pixels=settings.max_pixels,
            health=HealthRules(
                settings.camera_offline_after, settings.camera_frozen_after, settings.camera_covered_after
            ),
            arming=arming or Schedule.parse(settings.arm_schedule, settings.arm_timezone),
            model=settings.models[0] if settings.models else settings.model,
            motion_gate=settings.motion_gate,
            motion_refresh=settings.motion_refresh,
        )
