"""Delivering events: webhooks signed per Standard Webhooks, MQTT (paho), and the dispatcher thread that drains
the outbox into them.

At least once, with idempotent ids: a message is marked delivered only after a 2xx (webhook) or the broker's
PUBACK (MQTT, QoS 1). A crash between the two resends it with the same ``webhook-id`` / envelope id, which the
receiver uses to drop the duplicate. Each sink gets its messages in order; one that fails is retried with
exponential backoff while the others go on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ..errors import DeliveryError
from .events import EventStore, Message
from .sources import mask_url

log = logging.getLogger(__name__)


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64 (``hebbian-mirror
    webhook-secret`` prints one)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Sink(Protocol):
    name: str

    def send(self, message: Message) -> None: ...

    def close(self) -> None: ...


class WebhookSink:
    """JSON POSTs to ``url``, signed when a secret is set."""

    def __init__(self, url: str, secret: str | None = None, timeout: float = 10.0) -> None:
        import httpx

        if urlsplit(url).scheme not in ("http", "https"):
            raise DeliveryError(f"webhook URL {mask_url(url)!r}: must be http:// or https://")
        if secret is not None:
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except ValueError as exc:
                raise DeliveryError(
                    "the webhook secret must be whsec_ + base64 (Standard Webhooks): make one with "
                    "`hebbian-mirror webhook-secret`"
                ) from exc
        self.url, self.secret = url, secret
        self.name = f"webhook:{mask_url(url)}"
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def send(self, message: Message) -> None:
        import httpx

        now = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": message.msg_id, "webhook-timestamp": str(now)}
        if self.secret:
            headers["webhook-signature"] = sign(self.secret, message.msg_id, now, message.body)
        try:
            r = self._client.post(self.url, content=message.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= r.status_code < 300:
            raise DeliveryError(f"{self.name}: answered {r.status_code}")

    def close(self) -> None:
        self._client.close()


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt://user:pass@host:port/prefix`` (only the host is needed) (``mqtts://`` for TLS) → connection settings."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise DeliveryError(
            f"MQTT URL {mask_url(url)!r}: expected mqtt://host, optionally user:pass@, :port and /prefix"
        )
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError as exc:
        raise DeliveryError(f"MQTT URL {mask_url(url)!r}: bad port") from exc
    return {
        "host": parts.hostname,
        "port": port,
        "tls": parts.scheme == "mqtts",
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "prefix": parts.path.strip("/") or "hebbian_mirror",
    }


class MqttSink:
    """Publishes each message to ``PREFIX/events`` (QoS 1); ``PREFIX/availability`` is ``online`` (retained)
    while connected and the broker's last will ``offline`` when this process dies."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        self.cfg = parse_mqtt_url(url)
        self.name = f"mqtt:{mask_url(url)}"
        self.timeout = timeout
        prefix = self.cfg["prefix"]
        self.events_topic, self.availability = f"{prefix}/events", f"{prefix}/availability"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hebbian-mirror-{secrets.token_hex(4)}")
        if self.cfg["username"]:
            self._client.username_pw_set(self.cfg["username"], self.cfg["password"])
        if self.cfg["tls"]:
            self._client.tls_set()
        self._client.will_set(self.availability, "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.reconnect_delay_set(1, 30)
        self._started = False

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.publish(self.availability, "online", qos=1, retain=True)

    def send(self, message: Message) -> None:
        if not self._started:
            try:
                self._client.connect_async(self.cfg["host"], self.cfg["port"], keepalive=30)
            except (OSError, ValueError) as exc:
                raise DeliveryError(f"{self.name}: {exc}") from exc
            self._client.loop_start()
            self._started = True
        if not self._client.is_connected():
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while not self._client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._client.is_connected():
                raise DeliveryError(f"{self.name}: not connected to the broker")
        info = self._client.publish(self.events_topic, message.body, qos=1)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"{self.name}: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"{self.name}: no PUBACK within {self.timeout:g} s")

    def close(self) -> None:
        if self._started and self._client.is_connected():
            self._client.publish(self.availability, "offline", qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()


class Dispatcher:
    """A thread that sends every sink its pending messages, in order, retrying failures with backoff."""

    def __init__(
        self,
        db_path: Path,
        sinks: Sequence[Sink],
        on_result: Callable[[str, bool], None] | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.store = EventStore(Path(db_path).parent, db_path)
        self.sinks = list(sinks)
        self.on_result = on_result
        self.backoff = backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._stats = {s.name: {"delivered": 0, "failures": 0, "last_error": None, "retry_at": 0.0} for s in sinks}
        self._delay = {s.name: backoff[0] for s in sinks}
        for sink in self.sinks:
            self.store.register_sink(sink.name)
        self._thread = threading.Thread(target=self._run, name="event-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """A message was written: look now."""
        self._wake.set()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: st | {"depth": self.store.depth(name)} for name, st in self._stats.items()}

    def stop(self, timeout: float = 5.0) -> None:
        """One last attempt at what is pending (bounded by ``timeout``), then stop; the rest waits in the
        outbox for the next start."""
        self._deadline = time.monotonic() + timeout
        for st in self._stats.values():
            st["retry_at"] = 0.0
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + 15)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                log.debug("closing %s: %s", sink.name, exc)
        self.store.close()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            for sink in self.sinks:
                if stopping and time.monotonic() > self._deadline:
                    return
                self._drain(sink, once=stopping)
            if stopping:
                return
            waits = [st["retry_at"] - time.monotonic() for st in self._stats.values() if st["retry_at"]]
            self._wake.wait(max(0.05, min([1.0, *waits])))
            self._wake.clear()

    def _drain(self, sink: Sink, once: bool = False) -> None:
        st = self._stats[sink.name]
        if time.monotonic() < st["retry_at"]:
            return
        for message in self.store.pending(sink.name):
            try:
                sink.send(message)
            except Exception as exc:  # DeliveryError, or a sink's own bug: never kill the thread
                st["failures"] += 1
                st["last_error"] = str(exc)
                delay = self._delay[sink.name]
                st["retry_at"] = time.monotonic() + delay * random.uniform(0.8, 1.2)
                self._delay[sink.name] = min(delay * 2, self.backoff[1])
                log.warning("delivery to %s failed (%s); retrying in %.0f s", sink.name, exc, delay)
                if self.on_result:
                    self.on_result(sink.name, False)
                return
            self.store.mark_delivered(sink.name, message.seq)
            st["delivered"] += 1
            st["last_error"], st["retry_at"] = None, 0.0
            self._delay[sink.name] = self.backoff[0]
            if self.on_result:
                self.on_result(sink.name, True)
            if once and self._stop.is_set() and time.monotonic() > self._deadline:
                return
