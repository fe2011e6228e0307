"""Video sources: files, network streams (RTSP, RTMP, HTTP(S) incl. HLS and MJPEG, UDP, SRT), V4L2 devices and
image sequences, decoded with PyAV in a reader thread of their own.

Live sources (streams, devices, and files played with ``realtime``) keep only the newest frame: a frame replaced
before the consumer read it counts as *dropped*, and there is never a backlog. Other files go frame by frame:
the reader waits for the consumer. ``fps`` samples frames by their timestamps (the others count as *skipped*).

A watchdog reopens a live source that fails, ends or stalls (no frame for ``stall_timeout`` seconds), with
exponential backoff; the consumer just gets no frame meanwhile. A file that cannot be read at all is a
:class:`SourceError` as soon as the source is made; damaged packets inside a file are skipped and counted. A live
source keeps its last packets for evidence clips; ``record_only``: only that (a record stream, nothing decoded).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import HebbianMirrorError, SourceError
from ..images import decode_image
from ..meta import DEFAULT_MAX_PIXELS
from .evidence import Packet, PacketRing
from .media import Frame, SourceEnded, SourceStats, mask_url, redact
from .policy import OPERATOR, CheckedSource, SourcePolicy

log = logging.getLogger(__name__)

__all__ = ["Frame", "SourceEnded", "SourceError", "SourceStats", "VideoSource", "mask_url", "open_source"]


class VideoSource:
    """One source and its reader thread: ``start``, then ``read`` / ``next`` frames, ``stop``.

    The URL passes ``policy`` first (:class:`~.policy.SourcePolicy`; by default the one for a source the operator
    named), or comes already ``checked``."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        fps: float | None = None,
        realtime: bool | None = None,
        loop: bool = False,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        stall_timeout: float = 15.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        policy: SourcePolicy = OPERATOR,
        operator: bool = True,
        tls_verify: bool = True,
        checked: CheckedSource | None = None,
        record_only: bool = False,
    ) -> None:
        self.policy, self.operator = policy, operator
        self.checked = checked or policy.check(url, operator=operator, tls_verify=tls_verify)
        self.url, self.kind = self.checked.url, self.checked.kind
        self.name = name or Path(urlsplit(url).path).stem or "stream"
        self.live, self.record_only = self.kind in ("stream", "device") or bool(realtime), record_only
        if record_only and (not self.live or self.kind == "images"):
            raise SourceError(f"{mask_url(url)}: only a live video stream can be recorded")
        self.fps, self.loop, self.timeouts = fps, loop, (open_timeout, read_timeout)
        self.stall_timeout, self.backoff, self.max_pixels = stall_timeout, backoff, max_pixels
        self.stats = SourceStats(self.kind, mask_url(url))
        self._stop = threading.Event()
        self._slot: Frame | None = None  # live: the newest frame
        self._cond = threading.Condition()
        self._queue: queue.Queue = queue.Queue(maxsize=2)  # files: frames, then the end or the error
        self._thread: threading.Thread | None = None
        self._failure: SourceError | None = None
        self._ended = self._received = False  # _received: a packet came through the current connection
        self._images = list(self.checked.images)
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []  # next() callers waiting
        self._transport = "tcp"  # RTSP: interleaved TCP first; a server that refuses it is tried over UDP
        self.ring = PacketRing() if self.live and self.kind != "images" else None  # evidence clips: the packets
        if self.kind == "file":
            self._probe()

    # ------------------------------------------------------------------ set-up

    def _open(self):
        import av

        if self.kind == "stream" and not self.operator:
            self.policy.check_host(self.url)  # again at every (re)open: a host name may point elsewhere now
        options = dict(self.checked.av_options)
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self._transport
        if self.kind in ("stream", "device"):
            options |= {"fflags": "nobuffer", "analyzeduration": "1000000"}  # start on the newest, probe 1 s
        container = av.open(
            self.url, format="v4l2" if self.kind == "device" else None, options=options, timeout=self.timeouts
        )
        if not container.streams.video:
            container.close()
            raise SourceError(f"{mask_url(self.url)}: no video stream in it")
        stream = container.streams.video[0]
        stream.codec_context.options = {"max_pixels": str(self.max_pixels)}  # every frame, not just the first
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > self.max_pixels and not self.record_only:  # a record stream is never decoded
            container.close()
            raise SourceError(f"{mask_url(self.url)}: {w}×{h} frames are over the {self.max_pixels:,}-pixel limit")
        self.stats.width, self.stats.height = w, h
        return container

    def _probe(self) -> None:
        """A file must open as a video now, so that a bad one is refused when it is added."""
        import av

        try:
            self._open().close()
            if not self.stats.width or not self.stats.height:
                raise SourceError(f"{self.url}: not a readable video (no picture size in it)")
        except av.FFmpegError as exc:
            raise SourceError(f"{self.url}: not a readable video ({exc.strerror or 'refused'})") from None

    # ------------------------------------------------------------------ consumer side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, join: bool = True) -> None:
        """Stop reading; returns within about the read timeout (the reader is a daemon thread), at once without
        ``join``."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and join:
            self._thread.join(timeout=self.timeouts[1] + 2)
        if self.stats.state not in ("ended", "failed"):
            self.stats.state = "stopped"

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or ``None`` when none came within ``timeout``; :class:`SourceEnded` at the end of a
        file, :class:`SourceError` once the source failed for good."""
        if not self.live:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            if isinstance(item, BaseException):
                self._queue.put(item)  # the end stays the end
                raise item
            self.stats.frames_out += 1
            return item
        with self._cond:
            if self._slot is None and not self._done():
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
        if frame is None:
            if self._failure is not None:
                raise self._failure
            if self._ended:
                raise SourceEnded(self.name)
            return None
        self.stats.frames_out += 1
        return frame

    async def next(self, timeout: float = 1.0) -> Frame | None:
        """:meth:`read` without blocking the event loop, and without a thread of its executor: the reader thread
        wakes the waiting task (so dead cameras cannot starve anything else of threads)."""
        waker = (asyncio.get_running_loop(), asyncio.Event())
        self._wakers.append(waker)
        try:
            frame = self.read(0)
            if frame is None and not self._done():
                try:
                    await asyncio.wait_for(waker[1].wait(), timeout)
                except TimeoutError:
                    return None
                frame = self.read(0)
            return frame
        finally:
            self._wakers.remove(waker)

    def _wake(self) -> None:
        for loop, ready in list(self._wakers):
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # that loop is closed
                continue

    def _done(self) -> bool:
        return self._failure is not None or self._ended or self._stop.is_set()

    # ------------------------------------------------------------------ reader thread

    def _deliver(self, frame: Frame) -> None:
        self.stats.frames_in += 1
        self.stats.recent.append(time.monotonic())
        if self.live:
            with self._cond:
                if self._slot is not None:
                    self.stats.dropped += 1
                self._slot = frame
                self._cond.notify_all()
            self._wake()
            return
        self._put(frame)

    def _put(self, item: Frame | BaseException) -> None:
        """Hand ``item`` to the consumer of a file, waiting for room until the source is stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                self._wake()
                return
            except queue.Full:
                continue

    def _finish(self, outcome: BaseException) -> None:
        if isinstance(outcome, SourceError):
            self._failure, self.stats.state, self.stats.last_error = outcome, "failed", str(outcome)
        else:
            self._ended, self.stats.state = True, "ended"
        if not self.live:
            self._put(outcome)
        with self._cond:
            self._cond.notify_all()
        self._wake()

    def _run(self) -> None:
        delay = self.backoff[0]
        index = 0
        while not self._stop.is_set():
            got = 0
            try:
                frames = self._image_frames(index) if self.kind == "images" else self._video_frames(index)
                for frame in frames:
                    self._deliver(frame)
                    index, got = frame.index + 1, got + 1
                    if got == 1:
                        self.stats.state, delay = "streaming", self.backoff[0]
                    if self._stop.is_set():
                        return
                if self.kind in ("file", "images"):
                    if self.loop and got and not self._stop.is_set():
                        continue
                    self._finish(SourceEnded(self.name))
                    return
                raise ConnectionError("the stream ended")
            except SourceError as exc:
                self._finish(exc)
                return
            except Exception as exc:  # av errors, OSError, a stall: a live source is reopened
                if self._stop.is_set():
                    return
                self.stats.errors += 1
                self.stats.last_error = redact(f"{type(exc).__name__}: {exc}", self.url)
                if self.kind == "file" and not self.live:
                    log.warning("%s: %s; ending the file here", self.name, self.stats.last_error)
                    self._finish(SourceEnded(self.name))
                    return
                if self.record_only and self._received:  # it streamed before it failed (it delivers no frame)
                    delay = self.backoff[0]
                elif not self._received and self.url.startswith(("rtsp://", "rtsps://")):
                    self._transport = "udp" if self._transport == "tcp" else "tcp"
                self.stats.state = "reconnecting"
                self.stats.reconnects += 1
                log.warning("%s: %s; reopening in %.1f s", self.name, self.stats.last_error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])

    def _sampled(self, pts: float, due: list[float]) -> bool:
        """Whether a frame at ``pts`` is taken under ``fps`` (``due``: the next wanted time, updated)."""
        if not self.fps:
            return True
        if pts + 1e-6 < due[0]:
            self.stats.skipped += 1
            return False
        due[0] = max(due[0] + 1 / self.fps, pts + 0.5 / self.fps)
        return True

    def _video_frames(self, index: int) -> Iterator[Frame]:
        import av

        self._received = False
        container = self._open()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.ring is not None:
                self.ring.reset(stream)
            rate = float(stream.average_rate or stream.base_rate or 25)
            started, first_pts, due, last = time.monotonic(), None, [0.0], time.monotonic()
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if self.ring is not None and packet.size:  # as the camera sent it, before any decoding
                    self.ring.add(Packet(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, time.time(),
                                         packet.duration))  # fmt: skip
                self._received = self._received or bool(packet.size)
                if self.kind != "file" and time.monotonic() - last > self.stall_timeout:
                    raise TimeoutError(f"no {'packet' if self.record_only else 'frame'} for {self.stall_timeout:g} s")
                if self.record_only:  # kept, never decoded: a packet is the stream's sign of life
                    self.stats.state, last = "streaming", time.monotonic() if packet.size else last
                    continue
                try:
                    decoded = packet.decode()
                except av.FFmpegError as exc:  # one damaged packet, or a frame over the pixel limit: skip it
                    self.stats.errors += 1
                    why = redact(str(exc.strerror or exc), self.url)
                    self.stats.last_error = f"a damaged frame, or one over the pixel limit, skipped ({why})"
                    decoded = []
                for vf in decoded:
                    if vf.width * vf.height > self.max_pixels:
                        self.stats.errors += 1
                        self.stats.last_error = f"a {vf.width}×{vf.height} frame over the pixel limit skipped"
                        index += 1
                        continue
                    pts = float(vf.time) if vf.time is not None else index / rate
                    first_pts = pts if first_pts is None else first_pts
                    if self.kind == "file" and self.live:  # a file played at its own pace
                        ahead = (pts - first_pts) - (time.monotonic() - started)
                        if ahead > 0 and self._stop.wait(ahead):
                            return
                    last = time.monotonic()
                    if self._sampled(pts - first_pts, due):
                        yield Frame(vf.to_ndarray(format="rgb24"), index, pts, time.time())
                    index += 1
        finally:
            container.close()

    def _image_frames(self, index: int) -> Iterator[Frame]:
        rate = self.fps or 10.0
        for i, path in enumerate(self._images):
            if self._stop.is_set():
                return
            try:
                image = decode_image(self.policy.read_image(path, self.checked.roots), max_pixels=self.max_pixels)
            except (HebbianMirrorError, OSError) as exc:
                self.stats.errors += 1
                self.stats.last_error = f"{path.name}: {exc}"
                continue
            yield Frame(image, index + i, (index + i) / rate, time.time())


def open_source(url: str, **kwargs) -> VideoSource:
    """A source for ``url`` (see :class:`VideoSource`); :class:`SourceError` at once for a source the policy
    refuses, a missing or unreadable file, or an empty folder."""
    return VideoSource(url, **kwargs)
