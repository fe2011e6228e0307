"""Signed, expiring links to an event's files, and the extras a delivered message carries (``links``, an inline
``thumbnail``), so that a receiver sees the picture without the API key.

A link is ``PUBLIC_URL/v1/events/ID/FILE?expires=UNIX&sig=SIG``, ``SIG`` the URL-safe base64 HMAC-SHA256 of
``ID/FILE/UNIX`` under a key kept in the events folder (``link.key``, made on first use, readable by its owner
only), so links keep working across restarts until they expire; removing the file and restarting revokes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import LinkError
from .eventdb import FILES, Event

THUMBNAIL_SIDE = 320


def link_key(events_dir: Path) -> bytes:
    """The events folder's link key, made the first time (32 random bytes, mode 0600, written whole to a
    temporary file and linked into place, so no process ever reads a partial one)."""
    path = Path(events_dir) / "link.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"link.key.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process was first: then its key is the key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path}: a link key of {len(key)} bytes (remove it to make a new one)")
    return key


@dataclass(frozen=True)
class Signer:
    """Signs and checks links to events' files."""

    key: bytes
    public_url: str | None = None  # without it, messages carry no links (signatures are still checked)
    ttl_s: float = 86400.0

    def _sig(self, event_id: str, file: str, expires: int) -> str:
        digest = hmac.new(self.key, f"{event_id}/{file}/{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def link(self, event_id: str, file: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        path = f"/v1/events/{event_id}/{file}?expires={expires}&sig={self._sig(event_id, file, expires)}"
        return f"{self.public_url}{path}" if self.public_url else path

    def check(self, event_id: str, file: str, expires: str, sig: str, now: float | None = None) -> None:
        """:class:`LinkError` unless ``sig`` signs this file of this event until ``expires``, not yet past."""
        try:
            when = int(expires)
        except ValueError:
            raise LinkError(403, "this link is not one this server signed") from None
        if file not in FILES or not hmac.compare_digest(sig.encode(), self._sig(event_id, file, when).encode()):
            raise LinkError(403, "this link is not one this server signed")
        if when < (now if now is not None else time.time()):
            raise LinkError(410, "this link has expired: ask for the event with an API key")


@dataclass(frozen=True)
class Extras:
    """What a delivered message carries besides the event: links to its files (with a public URL), and a small
    copy of a new snapshot (with ``thumbnails``)."""

    signer: Signer
    thumbnails: bool = False

    def __call__(self, event: Event, kind: str, snapshot: bytes | None, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.signer.public_url:
            evidence = bool(event.extra.get("evidence"))
            named = {"snapshot": ("snapshot.jpg", event.has_snapshot), "clip": ("clip.mp4", event.has_clip),
                     "evidence": ("evidence.mp4", evidence), "manifest": ("evidence.json", evidence)}  # fmt: skip
            files = {name: file for name, (file, has) in named.items() if has}
            if files:
                out["links"] = {name: self.signer.link(event.id, file, now) for name, file in files.items()}
                out["links"]["expires"] = int(now + self.signer.ttl_s)
        if self.thumbnails and snapshot:
            out["thumbnail"] = thumbnail(snapshot)
        return out


def thumbnail(jpeg: bytes, side: int = THUMBNAIL_SIDE) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the picture shrunk to at most ``side`` pixels."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
