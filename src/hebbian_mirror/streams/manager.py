"""The streams of one process (the server, or ``hebbian-mirror watch``): their watchers, the event store and the
delivery of events, started and stopped together.

On start, alarms left running by a process that was killed are ended (their ``end`` messages join the outbox)
and every undelivered message is sent; on close, running alarms end and the dispatcher makes a last attempt —
what it cannot deliver stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from ..config import AlarmSettings, DeliverySettings, EventSettings, LimitSettings
from ..errors import HebbianMirrorError, StreamError, StreamLimitError
from .arming import ArmingModes
from .camerafile import STREAM_NAME
from .delivery import MqttSink, WebhookSink
from .dispatch import Dispatcher
from .events import Event, EventStore
from .homeassistant import discovery
from .links import Extras, Signer, link_key
from .mail import EmailSettings, EmailSink
from .policy import OPERATOR, SourcePolicy
from .sources import open_source
from .watcher import Detect, OnEvent, StreamConfig, StreamWatcher

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0  # seconds between retention passes


def split_stream(entry: str, index: int) -> tuple[str, str]:
    """``NAME=URL`` → (name, url); a bare URL (even one with ``=`` in its query) is named ``stream<index>``."""
    name, sep, url = entry.partition("=")
    if sep and "://" not in name and "/" not in name:
        return name, url
    return f"stream{index}", entry


def check_sources(settings, entries: Sequence[str]) -> list[str]:
    """Each ``NAME=URL`` entry an operator gave (``watch``'s sources, ``serve --stream``) through the source
    policy, files opened as videos too: one line per entry that cannot work, naming it (empty: all can)."""
    policy = SourcePolicy.from_settings(settings.part(AlarmSettings), settings.part(LimitSettings))
    problems = []
    for i, entry in enumerate(entries, 1):
        name, url = split_stream(entry, i)
        if not re.fullmatch(STREAM_NAME, name):
            problems.append(f"source {name}: a stream's name is letters, digits, '.', '_' and '-' (64 at most)")
            continue
        try:
            tls = name not in settings.tls_unverified
            open_source(url, name=name, policy=policy, tls_verify=tls, max_pixels=settings.max_pixels)
        except HebbianMirrorError as exc:
            problems.append(f"source {name}: {exc}")
    return problems


def make_sinks(
    webhooks: Sequence[str] = (),
    secret: str | None = None,
    mqtt: str | None = None,
    email: EmailSettings | None = None,
    home_assistant: str | None = None,
) -> list:
    """The delivery targets named on the command line or in the config."""
    sinks: list = [WebhookSink(url, secret=secret) for url in dict.fromkeys(webhooks)]
    if mqtt:
        sinks.append(MqttSink(mqtt))
        sinks[-1].home_assistant = home_assistant
    if email is not None:
        sinks.append(EmailSink(email))
    return sinks


class StreamManager:
    def __init__(
        self,
        detect: Detect,
        events_dir: Path,
        sinks: Sequence = (),
        max_age_s: float | None = None,
        max_bytes: int | None = None,
        on_event: OnEvent | None = None,
        on_delivery: Callable[[str, bool], None] | None = None,
        policy: SourcePolicy = OPERATOR,
        max_streams: int = 16,
        forget_removed_sinks: bool = False,
        commands: bool = False,
        public_url: str | None = None,
        link_hours: float = 24.0,
        thumbnails: bool = False,
    ) -> None:
        self.detect = detect
        self.events_dir = Path(events_dir)
        self.sinks = list(sinks)
        self.retention = (max_age_s, max_bytes)
        self.on_event = on_event
        self.on_delivery = on_delivery
        self.store: EventStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.watchers: dict[str, StreamWatcher] = {}
        self.policy, self.max_streams = policy, max_streams
        self.forget_removed_sinks = forget_removed_sinks  # the server owns its events folder; `watch` borrows it
        self.links = (public_url, link_hours * 3600, thumbnails)
        self.commands = commands  # take reviews and arming from MQTT (the server; one process, not every one)
        self.signer: Signer | None = None  # signs and checks links to events' files (made with the store)
        self.modes: ArmingModes | None = None  # the arming modes people set (opened with the store)
        self._armed: dict[str, bool] = {}  # each stream's arming state as last announced
        self._arming_task: asyncio.Task | None = None
        self._adding: set[str] = set()  # names being set up: taken, so that a second add with one fails
        self._setup = ThreadPoolExecutor(2, thread_name_prefix="stream-setup")  # probing files, resolving hosts
        self._tasks: dict[str, asyncio.Task] = {}
        self._pruner: asyncio.Task | None = None

    @classmethod
    def from_settings(
        cls, settings, detect: Detect, forget_removed_sinks: bool = False, commands: bool = False
    ) -> StreamManager:
        """The manager the server and ``watch`` run: events where the settings say, kept as long as they say,
        delivered to their sinks; sources under their policy and limits; frames detected by ``detect``. The
        server (``forget_removed_sinks``) drops the delivery cursors of sinks its settings no longer name."""
        events, delivery = settings.part(EventSettings), settings.part(DeliverySettings)
        alarms, limits = settings.part(AlarmSettings), settings.part(LimitSettings)
        return cls(
            detect,
            events.events_dir,
            make_sinks(
                delivery.webhooks,
                delivery.webhook_secret,
                delivery.mqtt,
                EmailSettings.of(delivery),
                delivery.home_assistant_prefix if delivery.home_assistant else None,
            ),
            max_age_s=events.events_max_age_days * 86400 if events.events_max_age_days else None,
            max_bytes=int(events.events_max_mb * 1_000_000) if events.events_max_mb else None,
            policy=SourcePolicy.from_settings(alarms, limits),
            max_streams=alarms.max_streams,
            forget_removed_sinks=forget_removed_sinks,
            commands=commands,
            public_url=delivery.public_url,
            link_hours=delivery.link_hours,
            thumbnails=delivery.thumbnails,
        )

    async def start(self) -> None:
        """Open the store, end alarms a killed run left open, start delivering."""
        loop = asyncio.get_running_loop()
        store = await loop.run_in_executor(None, EventStore, self.events_dir)
        public_url, ttl_s, thumbnails = self.links
        self.signer = Signer(await loop.run_in_executor(None, link_key, self.events_dir), public_url, ttl_s)
        store.extras = Extras(self.signer, thumbnails)
        self.modes = await loop.run_in_executor(None, ArmingModes, store.db_path)
        self.store = store  # last: the routes wait for it (503) until signer and modes are there too
        closed = await loop.run_in_executor(None, self.store.close_active, time.time())
        if closed:
            log.warning("ended %d alarm(s) left running by the previous run", len(closed))
        gone = []
        if self.forget_removed_sinks:
            keep = [n for s in self.sinks for n in (s.name, getattr(s, "legacy_name", s.name))]
            gone = await loop.run_in_executor(None, self.store.forget_sinks, keep)
        if gone:
            log.info("forgot the delivery cursors of %s: no longer configured", ", ".join(gone))
        if self.sinks:
            self.dispatcher = Dispatcher(self.store.db_path, self.sinks, on_result=self.on_delivery)
            self.dispatcher.start()
        for sink in self.sinks:
            if getattr(sink, "home_assistant", None):  # the camera entity shows the latest alarm's snapshot
                sink.snapshot_of = self._snapshot
            if self.commands and hasattr(sink, "listen"):  # reviews and arming published to the broker
                sink.listen(partial(self._review_command, loop, sink.name), partial(self._arm_command, loop, sink.name))
        self._pruner = loop.create_task(self._prune_forever(), name="events-retention")
        self._arming_task = loop.create_task(self._follow_schedules(), name="arming")

    async def _prune_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if any(v is not None for v in self.retention):
                try:
                    removed = await loop.run_in_executor(None, self.store.prune, *self.retention)
                    if removed:
                        log.info("retention: removed %d old event(s)", removed)
                except Exception:
                    log.exception("retention pass failed")
            await asyncio.sleep(PRUNE_EVERY)

    def _event(self, kind: str, event: Event) -> None:
        if self.dispatcher is not None:
            self.dispatcher.notify()
        if self.on_event is not None:
            self.on_event(kind, event)

    async def review(self, event_id: str, state: str, by: str | None = None, note: str | None = None) -> Event | None:
        """A person's verdict on an event, stored and delivered (``alarm.review``) like every change; ``None`` for
        an unknown event, :class:`ValueError` for a state or note the store refuses."""
        event = await asyncio.get_running_loop().run_in_executor(None, self.store.review, event_id, state, by, note)
        if event is not None:
            log.info("event %s reviewed: %s%s", event_id, state, f" by {by}" if by else "")
            self._event("review", event)
        return event

    async def arm(self, name: str, mode: str, by: str | None = None) -> dict[str, Any]:
        """Set a stream's arming mode (armed, disarmed, schedule), kept across restarts; its state, announced."""
        watcher = self.get(name)
        await asyncio.get_running_loop().run_in_executor(None, self.modes.set, name, mode, by)
        log.info("stream %s: arming %s%s", name, mode, f" by {by}" if by else "")
        self._announce(watcher)
        return watcher.describe()

    def _snapshot(self, event_id: str) -> bytes | None:
        path = self.store.snapshot_path(event_id) if self.store is not None else None
        return path.read_bytes() if path is not None else None

    def _announce(self, watcher: StreamWatcher) -> None:
        """Publish a stream's arming state where it is shown (MQTT, retained) when it changed."""
        armed = watcher.armed()
        if self._armed.get(watcher.name) == armed:
            return
        self._armed[watcher.name] = armed
        for sink in self.sinks:
            if hasattr(sink, "state"):
                sink.state(f"cameras/{watcher.name}/arm", "ON" if armed else "OFF")

    async def _follow_schedules(self) -> None:
        """A schedule's window opening or closing changes the state shown (checked every 20 s)."""
        while True:
            await asyncio.sleep(20)
            for watcher in list(self.watchers.values()):
                self._announce(watcher)

    def _arm_command(self, loop: asyncio.AbstractEventLoop, source: str, stream: str, payload: str) -> None:
        """``PREFIX/cameras/NAME/arm/set`` from MQTT: ON / OFF / SCHEDULE (or armed, disarmed, schedule)."""
        mode = {"on": "armed", "off": "disarmed"}.get(payload.strip().lower(), payload.strip().lower())
        _applied(asyncio.run_coroutine_threadsafe(self.arm(stream, mode, source), loop), f"arming {stream}")

    def _review_command(self, loop: asyncio.AbstractEventLoop, source: str, command: dict[str, Any]) -> None:
        """A review from a sink (MQTT), on its thread: applied on the event loop; refusals logged."""
        unknown = set(command) - {"id", "state", "note", "by"}
        event_id, state, note, by = (command.get(k) for k in ("id", "state", "note", "by"))
        if unknown or not isinstance(event_id, str) or not isinstance(state, str):
            raise ValueError(f"a review is {{id, state, note?, by?}} (strings), got keys {sorted(command)}")
        if not all(v is None or isinstance(v, str) for v in (note, by)):
            raise ValueError("a review's note and by are strings")
        done = asyncio.run_coroutine_threadsafe(self.review(event_id, state, by or source, note), loop)
        _applied(done, f"review of {event_id}", missing=f"no event {event_id!r}")

    async def add(self, config: StreamConfig, detect: Detect | None = None) -> StreamWatcher:
        """Start watching a stream; :class:`StreamError` if the name is taken, :class:`StreamLimitError` past
        ``max_streams``, the policy's or the source's own error if its URL or file cannot work."""
        if config.name in self.watchers or config.name in self._adding:
            raise StreamError(f"a stream called {config.name!r} is already being watched: remove it first")
        if len(self.watchers) + len(self._adding) >= self.max_streams:
            raise StreamLimitError(f"this server watches at most {self.max_streams} streams (--max-streams)")
        self._adding.add(config.name)  # taken before the first await: two adds with one name cannot both pass
        loop = asyncio.get_running_loop()
        try:
            watcher = await loop.run_in_executor(
                self._setup,
                lambda: StreamWatcher(
                    config, detect or self.detect, self.store, self._event, policy=self.policy, modes=self.modes
                ),
            )
        finally:
            self._adding.discard(config.name)
        self.watchers[config.name] = watcher
        self._tasks[config.name] = loop.create_task(self._run(watcher), name=f"stream-{config.name}")
        for sink in (s for s in self.sinks if hasattr(s, "state")):  # MQTT: the camera, retained
            if prefix := getattr(sink, "home_assistant", None):
                labels = [r.label for r in config.rules]
                for topic, payload in discovery(sink.cfg["prefix"], prefix, config.name, labels).items():
                    sink.state(topic, payload, absolute=True)
            sink.state(f"cameras/{config.name}/availability", "online")
        self._armed.pop(config.name, None)
        self._announce(watcher)
        log.info("watching stream %s (%s)", config.name, watcher.describe()["url"])
        return watcher

    async def _run(self, watcher: StreamWatcher) -> None:
        try:
            await watcher.run()
        except Exception as exc:  # a bug must not take the other streams down
            watcher.error = f"stopped by an internal error: {exc}"
            log.exception("stream %s stopped", watcher.name)

    def get(self, name: str) -> StreamWatcher:
        try:
            return self.watchers[name]
        except KeyError:
            raise StreamError(f"no stream called {name!r}; watching: {', '.join(self.watchers) or 'none'}") from None

    async def remove(self, name: str) -> None:
        """Stop watching (running alarms end) and forget the stream."""
        watcher = self.get(name)
        watcher.stop()
        await self._tasks.pop(name)
        del self.watchers[name]
        for sink in (s for s in self.sinks if hasattr(s, "state")):  # MQTT: no longer watched
            sink.state(f"cameras/{name}/availability", "offline")

    async def wait(self) -> None:
        """Until every stream has finished (files end; live streams run until stopped)."""
        await asyncio.gather(*self._tasks.values())

    def describe(self) -> list[dict[str, Any]]:
        return [w.describe() for w in self.watchers.values()]

    def delivery(self) -> dict[str, Any]:
        """Per sink: delivered, failures, last error, depth, and messages dropped undelivered (disk budget)."""
        if self.dispatcher is None or self.store is None:
            return {}
        return {name: st | {"dropped": self.store.dropped.get(name, 0)} for name, st in self.dispatcher.stats().items()}

    async def close(self, timeout: float = 5.0) -> None:
        """Stop every stream (their alarms end), then deliver what can be delivered within ``timeout``."""
        for watcher in self.watchers.values():
            watcher.stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for task in (self._pruner, self._arming_task):
            if task is not None:
                task.cancel()
        loop = asyncio.get_running_loop()
        if self.dispatcher is not None:
            await loop.run_in_executor(None, self.dispatcher.stop, timeout)
        if self.store is not None:
            await loop.run_in_executor(None, self.store.close)
        if self.modes is not None:
            self.modes.close()
        self._setup.shutdown(wait=False, cancel_futures=True)


def _applied(done, what: str, missing: str | None = None) -> None:
    """Log how a command from the broker ended, without holding its thread (paho's network loop) meanwhile."""

    def report(future) -> None:
        try:
            result = future.result()
        except Exception as exc:
            log.warning("MQTT command refused: %s: %s", what, exc)
        else:
            if result is None and missing:
                log.warning("MQTT command refused: %s", missing)

    done.add_done_callback(report)
