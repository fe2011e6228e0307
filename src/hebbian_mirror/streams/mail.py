"""E-mail as a delivery target (SMTP, the standard library's ``smtplib``): each event message becomes one e-mail
with a readable subject and text, the signed links the message carries, and its thumbnail inline. STARTTLS is
used whenever the server offers it and required before a password is sent; ``smtps://`` speaks TLS from the
start. The ``Message-ID`` comes from the message's id, so a resend after a crash is the same e-mail to a client
that removes duplicates.
"""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import DeliveryError
from .eventdb import Message
from .media import sink_name


@dataclass(frozen=True)
class EmailSettings:
    url: str  # smtp://user:pass@host:port or smtps://...
    to: tuple[str, ...]
    sender: str | None = None
    ca_file: Path | None = None

    @classmethod
    def of(cls, delivery) -> EmailSettings | None:
        """From the settings' delivery part; ``None`` when no SMTP server is set."""
        if not delivery.smtp:
            return None
        return cls(delivery.smtp, tuple(delivery.email_to), delivery.email_from, delivery.smtp_ca_file)


HEADLINES = {
    "new": "ALARM",
    "update": "Alarm update",
    "end": "Alarm ended",
    "review": "Alarm reviewed",
    "clip": "Alarm evidence",
}
STATES = {"acknowledged": "acknowledged", "confirmed": "CONFIRMED", "false_alarm": "a false alarm"}


class EmailSink:
    """Each message as an e-mail to ``settings.to``; ``timeout``: each step of the SMTP conversation."""

    def __init__(self, settings: EmailSettings, timeout: float = 20.0) -> None:
        parts = urlsplit(settings.url)
        self.tls = parts.scheme == "smtps"
        self.host, self.port = parts.hostname or "", parts.port or (465 if self.tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.to, self.timeout = list(settings.to), timeout
        self.sender = settings.sender or f"hebbian-mirror@{socket.gethostname()}"
        self.context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        self.name, self.legacy_name = sink_name("email", settings.url)

    def compose(self, message: Message) -> EmailMessage:
        """The e-mail for a message; one that cannot be read as an event becomes a plain e-mail with the message
        itself (a message must never block the ones after it)."""
        try:
            return self._compose(message)
        except Exception:
            mail = EmailMessage()
            mail["Subject"], mail["From"], mail["To"] = "Hebbian Mirror event", self.sender, ", ".join(self.to)
            mail["Message-ID"] = f"<{_header(message.msg_id)}@hebbian-mirror>"
            mail.set_content(message.body)
            return mail

    def _compose(self, message: Message) -> EmailMessage:
        body = json.loads(message.body)
        event, kind = body["data"], body["type"].removeprefix("alarm.")
        what = f"{event['label']} on {event['stream']}"
        subject = f"{HEADLINES.get(kind, kind)}: {what}"
        lines = [f"{HEADLINES.get(kind, kind)}: {what}", ""]
        lines.append(f"started {_when(event['start'])}, top score {event['top_score']:.2f}")
        if event.get("end") is not None:
            lines.append(f"ended {_when(event['end'])}, after {event['end'] - event['start']:.1f} s")
        if review := event.get("review"):
            verdict = STATES.get(review["state"], review["state"])
            subject += f" — {verdict}" + (f" by {review['by']}" if review.get("by") else "")
            lines.append(f"reviewed: {verdict}" + (f" by {review['by']}" if review.get("by") else ""))
            if review.get("note"):
                lines.append(f"note: {review['note']}")
        links = body.get("links") or {}
        for name in ("snapshot", "clip", "evidence", "manifest"):
            if name in links:
                lines.append(f"{name}: {links[name]}")
        if "expires" in links:
            lines.append(f"(links work without a key until {_when(links['expires'])})")
        lines += ["", f"event {event['id']}"]
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = _header(subject), self.sender, ", ".join(self.to)
        mail["Message-ID"] = f"<{_header(message.msg_id)}@hebbian-mirror>"
        mail["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        mail.set_content("\n".join(lines))
        if thumbnail := body.get("thumbnail"):
            mail.add_attachment(
                _picture(thumbnail),
                maintype="image",
                subtype="jpeg",
                filename=f"{event['id']}.jpg",
                disposition="inline",
            )
        return mail

    def send(self, message: Message) -> None:
        mail = self.compose(message)
        try:
            smtp_class = smtplib.SMTP_SSL if self.tls else smtplib.SMTP
            kwargs: dict[str, Any] = {"context": self.context} if self.tls else {}
            with smtp_class(self.host, self.port, timeout=self.timeout, **kwargs) as smtp:
                smtp.ehlo()
                if not self.tls and smtp.has_extn("starttls"):
                    smtp.starttls(context=self.context)
                    smtp.ehlo()
                elif not self.tls and self.username:
                    raise DeliveryError(f"{self.name}: the server offers no STARTTLS; the password is not sent")
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(mail)
            if refused and len(refused) == len(self.to):
                raise DeliveryError(f"{self.name}: every recipient refused: {refused}")
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    async def deliver(self, message: Message) -> None:
        await asyncio.to_thread(self.send, message)

    async def aclose(self) -> None:
        return None


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _picture(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split(",", 1)[1])


def _header(text: str) -> str:
    """Text fit for a header line: no control or line-break characters (a reviewer's name comes from outside)."""
    return "".join(c if c.isprintable() else " " for c in text)[:300]
