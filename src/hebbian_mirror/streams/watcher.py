"""One watched stream: frames from its source, detected through the model's batcher (shared with every other
stream and the HTTP requests), tracked, checked against the alarm rules, and turned into stored events with an
annotated snapshot and a short clip.

The detector is handed in as an async callable, so this module knows nothing of servers or worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..detection import Detection, Detections, DetectOptions
from ..errors import HebbianMirrorError, SourceError
from ..images import draw_detections, encode_jpeg
from .alarms import Alarm, AlarmTracker, Transition
from .arming import ArmingModes
from .events import Event, EventStore, new_event_id
from .evidence import Evidence
from .health import CameraHealth
from .motion import StillFrames
from .policy import OPERATOR, SourcePolicy
from .recording import ClipRecorder
from .sources import Frame, SourceEnded, VideoSource, mask_url
from .streamconfig import MAX_FPS, StreamConfig  # noqa: F401  (imported from here too)

log = logging.getLogger(__name__)

Detect = Callable[[np.ndarray, DetectOptions], Awaitable[Detections]]
OnEvent = Callable[[str, Event], None]
PRE_ROLL_BYTES = 64_000_000  # the frames kept for a clip's start, per stream, at most


@dataclass
class WatchStats:
    processed: int = 0
    detect_failures: int = 0  # frames the detector refused (queue full, worker restarting): skipped
    still: int = 0  # frames without motion, not detected: the last detections kept
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=100))  # frame decoded → detections, s
    alarms: int = 0
    alarm_latency: deque[float] = field(default_factory=lambda: deque(maxlen=100))  # firing frame → event stored
    times: deque[float] = field(default_factory=lambda: deque(maxlen=50))  # when recent frames were processed

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


class StreamWatcher:
    """Runs one stream until stopped (or, for a file, until its end)."""

    def __init__(
        self,
        config: StreamConfig,
        detect: Detect,
        store: EventStore | None,
        on_event: OnEvent | None = None,
        source: VideoSource | None = None,
        policy: SourcePolicy = OPERATOR,
        modes: ArmingModes | None = None,
    ) -> None:
        self.config = config
        self.modes = modes  # the arming modes people set (none: the schedule alone)
        self.detect = detect
        self.store = store
        self.on_event = on_event
        self.source, self.recorder = (source, None) if source else config.open(policy)  # recorder: record_url's
        self.alarms = AlarmTracker(config.rules, fps=config.fps or 10.0)
        self.options = DetectOptions(conf=min(self.alarms.detect_conf, config.conf))
        self.still = StillFrames(config.motion_refresh) if config.motion_gate else None
        self._last: Detections | None = None  # the last frame's detections (kept while nothing moves)
        self.stats = WatchStats()
        self.latest: tuple[Frame, Detections] | None = None
        self.new_frame = asyncio.Condition()
        self.error: str | None = None
        self.ended = False
        self._stop = asyncio.Event()
        self._pre: deque[np.ndarray] = deque()
        self._pre_frames, self._pre_bytes = max(1, round(config.pre_seconds * (config.fps or 10))), 0
        self._clips: dict[str, ClipRecorder] = {}
        self._events: dict[str, Event] = {}
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"stream-{config.name}")  # snapshots, clips, store
        self._jpeg: tuple[int, bytes] | None = None
        self.health = CameraHealth(config.health, self.source.kind in ("stream", "device"), time.time())
        self.evidence = Evidence(getattr(self.recorder or self.source, "ring", None))  # the camera's own packets
        self._problems: dict[str, Event] = {}

    @property
    def name(self) -> str:
        return self.config.name

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Read, detect, track, alarm; until stopped or the file ended. Ends running alarms on the way out."""
        sources = [s for s in (self.source, self.recorder) if s is not None]
        for source in sources:
            source.start()
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                try:
                    frame = await self.source.next(timeout=0.5)
                except SourceEnded:
                    self.ended = True
                    break
                except SourceError as exc:
                    self.error = str(exc)
                    log.error("stream %s: %s", self.name, exc)
                    break
                now = time.time()
                for problem, present in self.health.frame(frame.image, now) if frame else self.health.tick(now):
                    await self._camera(problem, present, now)
                await self._store_evidence(self.evidence.due(now))
                if frame is not None:
                    await self._process(frame)
        finally:
            try:
                for t in self.alarms.finish(time.time()):
                    await self._emit(t, None)
                for problem in list(self._problems):  # no longer watched: said so, not that it is fixed
                    await self._camera(problem, False, time.time(), ended_by="stopped")
                await self._store_evidence(self.evidence.due(time.time(), everything=True))
            except Exception:  # a full disk, a closed store: the camera is still let go
                log.exception("stream %s: ending its events failed", self.name)
            finally:
                for source in sources:  # all told first; then joined, not in the shared executor: a dead camera
                    source.stop(join=False)
                for source in sources:
                    await loop.run_in_executor(self._io, source.stop)
                self._io.shutdown(wait=True)

    async def _process(self, frame: Frame) -> None:
        due = self.still is None or await asyncio.get_running_loop().run_in_executor(
            None, self.still.due, frame.image, frame.pts, self.alarms.busy
        )
        if not (due := due or self._last is None):  # nothing moved: the model would see what it saw
            detections = self._last
            self.stats.still += 1
        else:
            try:
                detections = self._last = await self.detect(frame.image, self.options)
            except HebbianMirrorError as exc:  # the model refused this frame (queue full, worker restarting)
                self.stats.detect_failures += 1
                log.debug("stream %s: frame %d not detected: %s", self.name, frame.index, exc)
                return
            self.stats.processed += 1
            self.stats.latency.append(time.time() - frame.wall)
            self.stats.times.append(time.monotonic())
        size = (frame.image.shape[1], frame.image.shape[0])
        _, transitions = self.alarms.update(detections, frame.pts, frame.index, frame.wall, size, due)
        if self.evidence.running:  # per checked frame, each running alarm's class: its best score (manifest)
            best: dict[str, float] = {}
            for d in detections:
                best[d.label] = max(best.get(d.label, 0.0), d.score)
            self.evidence.observe(best, frame.wall)
        shown = detections.select(detections.scores >= self.config.conf)
        self.latest = (frame, shown)
        for t in transitions:
            await self._emit(t, frame, shown)
        if self.config.clip_seconds > 0:
            self._pre.append(frame.image)
            self._pre_bytes += frame.image.nbytes
            while len(self._pre) > self._pre_frames or (self._pre_bytes > PRE_ROLL_BYTES and len(self._pre) > 1):
                self._pre_bytes -= self._pre.popleft().nbytes
            for clip in self._clips.values():
                self._io.submit(clip.add, frame.image)
        async with self.new_frame:
            self.new_frame.notify_all()

    def latest_jpeg(self) -> bytes | None:
        """The newest processed frame with its detections drawn (encoded once per frame)."""
        if self.latest is None:
            return None
        frame, detections = self.latest
        if self._jpeg is None or self._jpeg[0] != frame.index:
            self._jpeg = (frame.index, encode_jpeg(draw_detections(frame.image, detections), quality=80))
        return self._jpeg[1]

    def _event(self, alarm: Alarm) -> Event:
        event = self._events.get(alarm.label)
        if event is None:
            event = Event(
                id=new_event_id(alarm.start_wall),
                stream=self.name,
                label=alarm.label,
                class_id=alarm.class_id,
                track_id=alarm.track_id,
                start=alarm.start_wall,
                end=None,
                top_score=alarm.top_score,
                box=alarm.top_box,
            )
            self._events[alarm.label] = event
        event.top_score, event.box, event.frames = alarm.top_score, tuple(alarm.top_box), alarm.frames
        event.end = alarm.end_wall
        event.extra = event.extra | {"tracks": sorted(alarm.tracks), "first_frame": alarm.start_index}
        event.extra["held_by"] = list(alarm.held_by) if alarm.held_by else None  # the holder's person box
        event.extra["holder_track"] = alarm.holder_track  # and that person's track id
        for key in ("detector_score", "verifier_score"):  # a verified model's two scores of the top detection
            event.extra.pop(key, None)
        event.extra |= alarm.top_parts
        event.extra.setdefault("armed", self.armed(alarm.start_wall))  # decided once: when the alarm began
        alarm.event_id = event.id
        return event

    async def _emit(self, t: Transition, frame: Frame | None, shown: Sequence[Detection] = ()) -> None:
        """Store one transition (snapshot / clip included) off the event loop, then tell ``on_event``."""
        event = self._event(t.alarm)
        loop = asyncio.get_running_loop()
        if t.kind == "new":
            self.stats.alarms += 1
            self.evidence.start(t.alarm.label, event, t.alarm.start_wall)
            if self.config.clip_seconds > 0:
                clip = self._clips[t.alarm.label] = ClipRecorder(
                    self.config.fps or 10.0, max_frames=round(self.config.clip_seconds * (self.config.fps or 10))
                )
                pre = list(self._pre)
                self._io.submit(clip.extend, pre)
        if t.kind in ("new", "update") and self.store is not None:
            snapshot = clean = None
            if frame is not None:
                snapshot, clean = await loop.run_in_executor(self._io, _snapshot, frame.image, shown, t.alarm)
                event.extra["frame_box"] = [round(float(v), 1) for v in t.alarm.top_box]  # the box on frame.jpg
            write = self.store.begin if t.kind == "new" else self.store.update
            await loop.run_in_executor(self._io, write, event, snapshot, clean)
        elif t.kind == "end":
            del self._events[t.alarm.label]
            self.evidence.end(t.alarm.label, time.time())
            clip = self._clips.pop(t.alarm.label, None)
            data = await loop.run_in_executor(self._io, clip.finish) if clip is not None else None
            if self.store is not None:
                await loop.run_in_executor(self._io, self.store.end, event, data)
        if t.kind == "new" and frame is not None:
            self.stats.alarm_latency.append(time.time() - frame.wall)
        log.info(
            "stream %s: alarm %s %s (score %.2f, event %s)", self.name, t.kind, event.label, event.top_score, event.id
        )
        if self.on_event is not None:
            self.on_event(t.kind, event)

    def armed(self, now: float | None = None) -> bool:
        """Whether this camera's alarms are delivered now: the mode a person set, else its schedule."""
        if self.modes is None:
            return self.config.arming.armed_at(time.time() if now is None else now)
        return self.modes.armed(self.name, self.config.arming, now)

    async def _camera(self, problem: str, present: bool, now: float, ended_by: str | None = None) -> None:
        """Store and announce a camera problem (``camera.<problem>``) or its end (``camera.ok``)."""
        if present:
            detail = self.health.details.get(problem, "")
            event = Event(new_event_id(now), self.name, problem, -1, -1, now, None, 0.0, (0.0, 0.0, 0.0, 0.0))
            event.extra = {"problem": problem, "detail": detail}
            self._problems[problem] = event
        elif (event := self._problems.pop(problem, None)) is None:
            return
        else:
            event.end = now
            event.extra |= {"ended_by": ended_by} if ended_by else {}
        kind = f"camera.{problem}" if present else "camera.ok"
        log.warning("stream %s: %s%s", self.name, kind, f" ({event.extra['detail']})" if present else "")
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, self.store.camera, event, kind)
        if self.on_event is not None:
            self.on_event(kind, event)

    async def _store_evidence(self, done) -> None:
        """Store finished evidence clips with their manifests (``alarm.clip``)."""
        for event, recorder, clip in done:
            if clip is None or self.store is None:
                continue
            rule = next((r.to_dict() for r in self.config.rules if r.label == event.label), None)
            details = {
                "fired": event.start,
                "clip_starts": recorder.started,
                "packets": recorder.packets,
                "frames": recorder.scores,
                "rule": rule,
                "model": self.config.model,
                "version": __version__,
            }
            await asyncio.get_running_loop().run_in_executor(self._io, self.store.evidence, event, clip, details)
            log.info("stream %s: evidence clip of event %s (%d packets)", self.name, event.id, recorder.packets)
            if self.on_event is not None:
                self.on_event("clip", event)

    @property
    def state(self) -> str:
        """The source's state, until the watcher itself is done (the last frames may still be in its hands)."""
        if self.error:
            return "error"
        if self.ended:
            return "ended"
        return "streaming" if self.source.stats.state == "ended" else self.source.stats.state

    def describe(self) -> dict[str, Any]:
        """The stream's state for the API and the CLI's status line."""
        s, rec = self.source.stats, self.recorder  # rec: the record stream's source, if any
        latency = sorted(self.stats.latency)
        return {
            "name": self.name,
            "url": mask_url(self.config.url),
            "state": self.state,
            "error": self.error or s.last_error,
            "kind": s.kind,
            "fps_in": round(s.fps_in, 2),
            "fps_processed": round(self.stats.fps, 2),
            "frames_in": s.frames_in,
            "processed": self.stats.processed,
            "dropped": s.dropped,
            "skipped": s.skipped,
            "detect_failures": self.stats.detect_failures,
            "still": self.stats.still,
            "reconnects": s.reconnects,
            "latency_ms_p50": round(1000 * latency[len(latency) // 2], 1) if latency else None,
            "alarms": self.stats.alarms,
            "active_alarms": sorted(self.alarms.active),
            "problems": sorted(self._problems),  # the camera's: offline, frozen, covered
            "armed": self.armed(),
            "arming": self.config.arming.to_dict()
            | ((self.modes and self.modes.get(self.name)) or {"mode": "schedule"}),
            "rules": [r.to_dict() for r in self.config.rules],
            "record": rec and {"url": mask_url(rec.url), "state": rec.stats.state, "error": rec.stats.last_error},
        }


def _snapshot(image: np.ndarray, shown: Sequence[Detection], alarm: Alarm) -> tuple[bytes, bytes]:
    """The frame with its detections drawn, the alarm's own box included even below the display threshold; and
    the frame as it was (for training on reviewed events)."""
    boxes = list(shown)
    if not any(d.label == alarm.label and d.box == alarm.top_box for d in boxes):
        boxes.append(Detection(tuple(alarm.top_box), alarm.top_score, alarm.class_id, alarm.label))
    return encode_jpeg(draw_detections(image, boxes), quality=85), encode_jpeg(image, quality=92)
