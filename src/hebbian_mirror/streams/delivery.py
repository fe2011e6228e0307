"""Where events are delivered: webhooks signed per Standard Webhooks, and MQTT (paho). :mod:`.dispatch` drains
the outbox into them, each sink on its own.

At least once, with idempotent ids: a message is marked delivered only after a 2xx (webhook) or the broker's
PUBACK (MQTT, QoS 1). A crash between the two resends it with the same ``webhook-id`` / envelope id, which the
receiver uses to drop the duplicate. One attempt has a total deadline (a receiver that trickles its answer or
never ends its body is cut off), and a webhook's answer body is read only up to a few kilobytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ..errors import DeliveryError
from .events import Message
from .homeassistant import states
from .media import mask_url, sink_name

log = logging.getLogger(__name__)


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64 (``hebbian-mirror
    new-secret`` prints one)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Sink(Protocol):
    """A delivery target; its methods run in its own worker's event loop."""

    name: str

    async def deliver(self, message: Message) -> None:
        """Hand over one message, or :class:`DeliveryError`; returns within the sink's total deadline."""
        ...

    async def aclose(self) -> None: ...


class WebhookSink:
    """JSON POSTs to ``url``, signed when a secret is set; ``timeout``: the whole attempt, connect to answer."""

    MAX_ANSWER = 4096  # bytes of a refusal's body kept for the error text; the rest is never read

    def __init__(self, url: str, secret: str | None = None, timeout: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise DeliveryError(f"webhook URL {mask_url(url)!r}: must be http:// or https://")
        if secret is not None:
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except ValueError as exc:
                raise DeliveryError(
                    "the webhook secret must be whsec_ + base64 (Standard Webhooks): make one with "
                    "`hebbian-mirror new-secret`"
                ) from exc
        self.url, self.secret, self.timeout = url, secret, timeout
        self.name, self.legacy_name = sink_name("webhook", url)
        self._client = None  # made in the worker's own event loop, on the first delivery

    async def deliver(self, message: Message) -> None:
        import httpx

        now = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": message.msg_id, "webhook-timestamp": str(now)}
        if self.secret:
            headers["webhook-signature"] = sign(self.secret, message.msg_id, now, message.body)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", self.url, content=message.body.encode(), headers=headers) as r:
                    if 200 <= r.status_code < 300:
                        return  # the body is not read: a receiver's endless answer costs nothing
                    answer = b""
                    async for chunk in r.aiter_raw():
                        answer += chunk
                        if len(answer) >= self.MAX_ANSWER:
                            break
        except TimeoutError:
            raise DeliveryError(f"{self.name}: no complete answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {mask_url(str(exc))}") from exc
        text = answer[:200].decode("utf-8", "replace").strip()
        raise DeliveryError(f"{self.name}: answered {r.status_code}" + (f": {text}" if text else ""))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


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
    while connected and the broker's last will ``offline`` when this process dies; a camera going offline and
    coming back sets ``PREFIX/cameras/NAME/availability`` (retained). With :meth:`listen`, it
    also takes reviews published to ``PREFIX/review`` (JSON: ``id``, ``state``, optionally ``note``, ``by``)
    and arming commands on ``PREFIX/cameras/NAME/arm/set`` (ON, OFF, SCHEDULE; the state is retained on
    ``PREFIX/cameras/NAME/arm``): whoever the broker lets publish there may do both."""

    MAX_COMMAND = 8192  # bytes of one review command

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        self.cfg = parse_mqtt_url(url)
        self.name, self.legacy_name = sink_name("mqtt", url)
        self.timeout = timeout
        prefix = self.cfg["prefix"]
        self.events_topic, self.availability = f"{prefix}/events", f"{prefix}/availability"
        self.review_topic, self.cameras_topic = f"{prefix}/review", f"{prefix}/cameras"
        self._on_review: Callable[[dict[str, Any]], None] | None = None
        self._on_arm: Callable[[str, str], None] | None = None
        self._states: dict[str, str | bytes] = {}  # retained states (arming, Home Assistant's), again on reconnect
        self.home_assistant: str | None = None  # Home Assistant's discovery prefix, when it is on
        self.snapshot_of: Callable[[str], bytes | None] | None = None  # an event's snapshot (the camera entity)
        self._problems: dict[str, set[str]] = {}  # each camera's problems, for its problem sensor
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
            if self._on_review is not None:
                client.subscribe([(self.review_topic, 1), (f"{self.cameras_topic}/+/arm/set", 1)])
            for topic, payload in list(self._states.items()):  # the retained states, again after a reconnect
                client.publish(topic, payload, qos=1, retain=True)

    def listen(self, on_review: Callable[[dict[str, Any]], None], on_arm: Callable[[str, str], None]) -> None:
        """Connect now; hand each review command (a JSON object) to ``on_review`` and each arming command
        (``PREFIX/cameras/NAME/arm/set``: ON, OFF, SCHEDULE) to ``on_arm(name, payload)``, on paho's thread."""
        self._on_review, self._on_arm = on_review, on_arm
        self._client.message_callback_add(self.review_topic, self._command)
        self._client.message_callback_add(f"{self.cameras_topic}/+/arm/set", self._arm_command)
        self._start()

    def state(self, suffix: str, payload: str | bytes, absolute: bool = False) -> None:
        """Publish a retained state (``PREFIX/SUFFIX``, or the topic ``SUFFIX`` itself with ``absolute``): now if
        connected, and again on every reconnection."""
        topic = suffix if absolute else f"{self.cfg['prefix']}/{suffix}"
        self._states[topic] = payload
        if self._client.is_connected():
            self._client.publish(topic, payload, qos=1, retain=True)

    def _home_assistant(self, message: Message, body: dict[str, Any]) -> None:
        """The states a message changes, and a new alarm's snapshot for the camera entity (retained)."""
        for suffix, payload in states(body, self._problems):
            self.state(f"cameras/{suffix}", payload)
        fresh = message.type in ("new", "update") and self.snapshot_of is not None
        if fresh and (picture := self.snapshot_of(body["data"]["id"])) is not None:
            self.state(f"cameras/{body['data']['stream']}/snapshot", picture)

    def _arm_command(self, client, userdata, message) -> None:
        if message.retain:
            log.warning("%s: a retained arming command on %s ignored", self.name, message.topic)
            return
        try:
            name = message.topic[len(self.cameras_topic) + 1 :].rsplit("/arm/set", 1)[0]
            self._on_arm(name, message.payload[:64].decode("utf-8", "replace"))
        except Exception as exc:  # a bad command from the broker never stops delivery
            log.warning("%s: arming command on %s refused: %s", self.name, message.topic, exc)

    def _command(self, client, userdata, message) -> None:
        if message.retain:  # an old command the broker kept: applying it at every reconnection would undo later ones
            log.warning("%s: a retained review command on %s ignored", self.name, message.topic)
            return
        try:
            if len(message.payload) > self.MAX_COMMAND:
                raise ValueError(f"at most {self.MAX_COMMAND} bytes")
            command = json.loads(message.payload)
            if not isinstance(command, dict):
                raise ValueError("expected a JSON object")
            self._on_review(command)
        except Exception as exc:  # a bad command from the broker never stops delivery
            log.warning("%s: review command on %s refused: %s", self.name, self.review_topic, exc)

    def _start(self) -> None:
        if self._started:
            return
        try:
            self._client.connect_async(self.cfg["host"], self.cfg["port"], keepalive=30)
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"{self.name}: {exc}") from exc
        self._client.loop_start()
        self._started = True

    def send(self, message: Message) -> None:
        self._start()
        if not self._client.is_connected():
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while not self._client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._client.is_connected():
                raise DeliveryError(f"{self.name}: not connected to the broker")
        if message.type.startswith("camera.") or self.home_assistant:
            body = json.loads(message.body)
            if message.type.startswith("camera.") and (state := _availability(body)) is not None:
                stream, online = state  # the camera's availability, retained, before the message that explains it
                self.state(f"cameras/{stream}/availability", online)
            if self.home_assistant:
                self._home_assistant(message, body)
        info = self._client.publish(self.events_topic, message.body, qos=1)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"{self.name}: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"{self.name}: no PUBACK within {self.timeout:g} s")

    async def deliver(self, message: Message) -> None:
        await asyncio.to_thread(self.send, message)  # paho waits in its own way, bounded by ``timeout``

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        if self._started and self._client.is_connected():
            self._client.publish(self.availability, "offline", qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()


def _availability(message: dict[str, Any]) -> tuple[str, str] | None:
    """(stream, ``offline`` / ``online``) from a camera message about its connection, else ``None``."""
    data = message.get("data") or {}
    if data.get("label") != "offline" or data.get("extra", {}).get("ended_by"):
        return None
    return data["stream"], "offline" if message["type"] == "camera.offline" else "online"
