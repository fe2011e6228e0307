"""What a video source is made of: frames and statistics; and URLs with their secrets masked."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np


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


SECRET_PARAMS = re.compile(r"(?i)pass|pwd|token|secret|key|auth|sig|cred|session|%")  # anywhere in the name


def mask_url(url: str, query: bool = True) -> str:
    """``url`` with any password, and (with ``query``) query values such as ``password=`` or ``token=``, replaced
    by ``***``, for logs, listings and error texts."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # a malformed URL: keep only what cannot be a secret
        return url.split("://")[0] + "://***" if "://" in url else url
    if password is not None:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{port}" if port else "")
        parts = parts._replace(netloc=netloc)
    if parts.query and query:
        pairs = [p.partition("=") for p in parts.query.split("&")]
        query = "&".join(k + s + ("***" if s and SECRET_PARAMS.search(k) else v) for k, s, v in pairs)
        parts = parts._replace(query=query)
    return urlunsplit(parts)


def sink_name(kind: str, url: str) -> tuple[str, str]:
    """(name, the name before query secrets were masked) of a delivery target: its masked URL, made unique by a
    hash of the whole URL when masking hid part of it (two webhooks that differ only in a token stay two)."""
    legacy = f"{kind}:{mask_url(url, query=False)}"
    masked = mask_url(url)
    if masked == mask_url(url, query=False):
        return legacy, legacy
    return f"{kind}:{masked}#{hashlib.sha256(url.encode()).hexdigest()[:8]}", legacy


def redact(text: str, url: str) -> str:
    """``text`` (an FFmpeg or socket error, which often quotes the URL) with ``url``'s secrets masked."""
    masked = mask_url(url)
    text = text.replace(url, masked)
    try:
        parts = urlsplit(url)
        secrets = [parts.password] + [
            v for k, _, v in (p.partition("=") for p in parts.query.split("&")) if SECRET_PARAMS.search(k)
        ]
    except ValueError:
        secrets = []
    for secret in filter(None, secrets):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
