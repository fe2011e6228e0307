"""Evidence clips: an alarm's video cut from the camera's own stream, without decoding or re-encoding it.

A video source keeps the last seconds of its packets as they came (:class:`PacketRing`, bounded in seconds and
bytes). When an alarm starts, an :class:`EvidenceRecorder` takes the ring's packets from the keyframe before
``pre`` seconds ahead of the firing frame, then every packet the camera sends until ``post`` seconds after the
alarm ends (at most ``max_seconds`` and ``max_bytes``), remuxed into an MP4 as they come. Every packet the camera
sent is in it, whether or not the detector had time to look at its frame: no gap from dropped detection frames.
A reconnection ends the clip there (the next connection may bring another codec).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

MAX_SECONDS, MAX_BYTES = 120.0, 64_000_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Packet:
    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    wall: float  # when it arrived
    duration: int | None


class EvidenceRecorder:
    """One alarm's clip, muxed as packets arrive (on the source's reader thread)."""

    def __init__(self, template: Any, packets: list[Packet], max_seconds: float, max_bytes: int) -> None:
        import av

        self.started: float | None = None  # when its first packet (a keyframe) arrived
        self.stop_at: float | None = None  # set when the alarm ends: its time + post
        self.limits = (max_seconds, max_bytes)
        self.size, self.packets, self.closed = 0, 0, False
        self.scores: list[tuple[float, float]] = []  # (frame time, the alarm class's best score) per checked frame
        self._last_wall = 0.0
        self._lock = threading.Lock()
        self._first: int | None = None
        self._buffer = io.BytesIO()
        self._out = av.open(self._buffer, mode="w", format="mp4")
        self._stream = self._out.add_stream_from_template(template)
        self._time_base = template.time_base
        for packet in packets:
            self.add(packet)

    @property
    def full(self) -> bool:
        max_seconds, max_bytes = self.limits
        late = self.started is not None and self._last_wall - self.started > max_seconds
        return self.size >= max_bytes or late

    def add(self, packet: Packet) -> None:
        with self._lock:
            self._add(packet)

    def _add(self, packet: Packet) -> None:
        import av

        if self.closed or (self.stop_at is not None and packet.wall > self.stop_at) or self.full:
            return
        if self._first is None:
            if not packet.key:  # a clip starts on a keyframe
                return
            self._first = packet.dts if packet.dts is not None else packet.pts or 0
            self.started = packet.wall
        out = av.Packet(packet.data)
        out.pts = None if packet.pts is None else packet.pts - self._first
        out.dts = None if packet.dts is None else packet.dts - self._first
        out.duration = packet.duration
        out.time_base = self._time_base
        out.is_keyframe = packet.key
        out.stream = self._stream
        self._out.mux(out)
        self.size += len(packet.data)
        self.packets += 1
        self._last_wall = packet.wall

    def finish(self) -> bytes | None:
        """The MP4's bytes (``None`` when no packet made it in); no more packets after."""
        with self._lock:
            if self.closed:
                return None
            self.closed = True
            self._out.close()
            return self._buffer.getvalue() if self.packets else None


class PacketRing:
    """A source's last ``seconds`` of video packets (at most ``max_bytes``), starting on a keyframe, and the
    recorders that take every new one. Thread-safe: the reader thread adds, the watcher starts and ends clips."""

    def __init__(self, seconds: float = 10.0, max_bytes: int = 48_000_000) -> None:
        self.seconds, self.max_bytes = seconds, max_bytes
        self._packets: deque[Packet] = deque()
        self._bytes = 0
        self._template: Any = None  # the current connection's video stream
        self._recorders: list[EvidenceRecorder] = []
        self._lock = threading.Lock()

    def reset(self, template: Any) -> None:
        """A new connection: its stream; the clips in progress end here."""
        with self._lock:
            self._packets.clear()
            self._bytes = 0
            self._template = template
            for recorder in self._recorders:
                recorder.stop_at = 0.0
            self._recorders.clear()

    def add(self, packet: Packet) -> None:
        with self._lock:
            self._packets.append(packet)
            self._bytes += len(packet.data)
            # drop the oldest group of pictures while the next keyframe is itself `seconds` old (or over budget):
            # the ring then always reaches `seconds` back, from a keyframe
            while True:
                second = next((i for i in range(1, len(self._packets)) if self._packets[i].key), None)
                if second is None:
                    break
                if packet.wall - self._packets[second].wall < self.seconds and self._bytes <= self.max_bytes:
                    break
                for _ in range(second):
                    self._bytes -= len(self._packets.popleft().data)
            recorders = list(self._recorders)
        for recorder in recorders:
            try:
                recorder.add(packet)
            except Exception as exc:  # a clip that cannot be written never costs the camera its stream
                log.warning("evidence clip stopped: %s", exc)
                recorder.closed = True

    def record(self, since: float, max_seconds: float = MAX_SECONDS, max_bytes: int = MAX_BYTES) -> EvidenceRecorder:
        """A clip from the keyframe at or before ``since`` (or the oldest kept), fed every new packet."""
        with self._lock:
            if self._template is None:
                raise RuntimeError("no video stream yet")
            kept = list(self._packets)
            keys = [i for i, p in enumerate(kept) if p.key and p.wall <= since]
            start = keys[-1] if keys else 0
            recorder = EvidenceRecorder(self._template, kept[start:], max_seconds, max_bytes)
            self._recorders.append(recorder)
        return recorder

    def release(self, recorder: EvidenceRecorder) -> bytes | None:
        """Stop feeding ``recorder`` and finish it."""
        with self._lock:
            if recorder in self._recorders:
                self._recorders.remove(recorder)
            return recorder.finish()


PRE, POST = 5.0, 5.0  # seconds of evidence before the firing frame, and after the alarm's end


class Evidence:
    """A watcher's evidence clips: one per running alarm, then for ``post`` seconds after it ended."""

    def __init__(self, ring: PacketRing | None, pre: float = PRE, post: float = POST) -> None:
        self.ring, self.pre, self.post = ring, pre, post
        self.running: dict[str, tuple[Any, EvidenceRecorder]] = {}  # label → (event, recorder)
        self.ending: list[tuple[Any, EvidenceRecorder]] = []

    def start(self, label: str, event: Any, fired: float) -> None:
        if self.ring is not None and label not in self.running:
            try:
                self.running[label] = (event, self.ring.record(fired - self.pre))
            except RuntimeError:  # the camera has not sent a packet yet: no clip
                pass
            except Exception as exc:  # a codec the MP4 muxer does not take: no clip, the alarm goes on
                log.warning("no evidence clip for %s: %s", label, exc)

    def observe(self, scores: dict[str, float], wall: float) -> None:
        """A checked frame's best score per running alarm's class (0: not seen), for the manifest."""
        for label, (_, recorder) in self.running.items():
            recorder.scores.append((round(wall, 3), round(scores.get(label, 0.0), 4)))

    def end(self, label: str, wall: float) -> None:
        if (found := self.running.pop(label, None)) is not None:
            found[1].stop_at = wall + self.post
            self.ending.append(found)

    def due(self, now: float, everything: bool = False) -> list[tuple[Any, EvidenceRecorder, bytes | None]]:
        """The clips complete now (``everything``: all, the stream is stopping), released and finished."""
        if everything:
            for label in list(self.running):
                self.end(label, now - self.post)
        done = [(e, r) for e, r in self.ending if everything or now > r.stop_at or r.full]
        self.ending = [(e, r) for e, r in self.ending if (e, r) not in done]
        return [(e, r, self._release(r)) for e, r in done]

    def _release(self, recorder: EvidenceRecorder) -> bytes | None:
        try:
            return self.ring.release(recorder)
        except Exception as exc:
            log.warning("evidence clip lost: %s", exc)
            return None
