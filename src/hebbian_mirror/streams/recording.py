"""Short H.264 clips of an alarm, encoded as the frames arrive (PyAV), so a stream holds only its pre-roll in
memory, never the whole event."""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction

import numpy as np


class ClipRecorder:
    """An MP4 (H.264, yuv420p) built in memory: ``add`` frames, ``finish`` for the file's bytes.

    Frames are scaled to the first frame's size rounded down to even numbers (what yuv420p needs); at most
    ``max_frames`` are kept, the rest ignored.
    """

    def __init__(self, fps: float, max_frames: int = 300) -> None:
        import av

        self.fps = max(1.0, float(fps))
        self.max_frames = max_frames
        self.frames = 0
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, mode="w", format="mp4")
        self._stream = None

    def _open(self, image: np.ndarray) -> None:
        rate = Fraction(self.fps).limit_denominator(1000)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width = image.shape[1] // 2 * 2
        self._stream.height = image.shape[0] // 2 * 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.gop_size = max(1, round(2 * self.fps))  # a keyframe every 2 s: seekable, streamable
        self._stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "28"}

    def add(self, image: np.ndarray) -> None:
        """Encode one RGB frame."""
        import av

        if self.frames >= self.max_frames:
            return
        if self._stream is None:
            self._open(image)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(width=self._stream.width, height=self._stream.height, format="yuv420p")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def extend(self, images: Iterable[np.ndarray]) -> None:
        for image in images:
            self.add(image)

    def finish(self) -> bytes | None:
        """Flush and close; the MP4's bytes, or ``None`` when no frame was added."""
        if self._stream is not None:
            self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._buffer.getvalue() if self.frames else None
