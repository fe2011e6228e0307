"""What a video source is made of: frames, statistics, errors, and the kinds of URL a source can be."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import SourceError

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # H×W×3 RGB uint8
    index: int  # position in the source, skipped and dropped frames counted
    pts: float  # seconds in the source's timeline
    wall: float  # time.time() when decoded


class SourceEnded(Exception):
    """A file or image sequence has no more frames."""


@dataclass
class SourceStats:
    kind: str
    url: str
    state: str = "connecting"  # connecting | streaming | reconnecting | ended | failed | stopped
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    skipped: int = 0
    reconnects: int = 0
    errors: int = 0
    last_error: str | None = None
    width: int = 0
    height: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=50), repr=False)

    @property
    def fps_in(self) -> float:
        if len(self.recent) < 2 or self.recent[-1] <= self.recent[0]:
            return 0.0
        return (len(self.recent) - 1) / (self.recent[-1] - self.recent[0])


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and listings."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def classify(url: str) -> str:
    """file, stream, device or images; :class:`SourceError` for what cannot be a source."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in STREAM_SCHEMES:
        return "stream"
    if scheme and len(scheme) > 1 and scheme != "file":
        raise SourceError(f"unsupported URL scheme {scheme!r} in {mask_url(url)}: use {', '.join(STREAM_SCHEMES)}")
    path = url[7:] if scheme == "file" else url
    if path.startswith("/dev/video"):
        if not os.path.exists(path):
            raise SourceError(f"no camera at {path}")
        return "device"
    if os.path.isdir(path) or any(c in path for c in "*?["):
        return "images"
    if not os.path.isfile(path):
        raise SourceError(f"no such file: {path}")
    return "file"
