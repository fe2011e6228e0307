"""Draining the outbox: one worker per sink (a thread with its own event loop), so that a receiver that hangs,
trickles its answer or never ends its body delays only its own messages.

Each sink gets its messages in order; one that fails is retried with exponential backoff while the others go
on. On stop each worker makes one last attempt within the stop's deadline; what it cannot deliver stays in the
outbox for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DeliveryError
from .delivery import Sink
from .events import EventStore

log = logging.getLogger(__name__)


class SinkWorker:
    """Delivers one sink's pending messages, in order, in a thread of its own."""

    def __init__(
        self,
        sink: Sink,
        store: EventStore,
        backoff: tuple[float, float],
        on_result: Callable[[str, bool], None] | None,
    ) -> None:
        self.sink, self.store, self.backoff, self.on_result = sink, store, backoff, on_result
        self.stats: dict[str, Any] = {"delivered": 0, "failures": 0, "last_error": None, "retry_at": 0.0}
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.deadline = float("inf")
        self._delay = backoff[0]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"deliver-{sink.name}")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> None:
        self.deadline = deadline
        self.stopping.set()
        self.wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def _main(self) -> None:
        try:
            while True:
                stopping = self.stopping.is_set()
                if stopping or time.monotonic() >= self.stats["retry_at"]:
                    try:
                        await self._drain()
                    except Exception:  # the store itself failed (disk full, closed): try again later
                        log.exception("delivery to %s", self.sink.name)
                        self.stats["retry_at"] = time.monotonic() + self.backoff[1]
                if stopping:
                    return
                await self._sleep()
        finally:
            try:
                await asyncio.wait_for(self.sink.aclose(), 2.0)
            except Exception as exc:
                log.debug("closing %s: %s", self.sink.name, exc)

    async def _sleep(self) -> None:
        """Until a message is written, the retry is due, or a second passed."""
        retry = self.stats["retry_at"]
        until = min(time.monotonic() + 1.0, retry) if retry else time.monotonic() + 1.0
        while not self.wake.is_set() and time.monotonic() < until:
            await asyncio.sleep(0.05)
        self.wake.clear()

    async def _drain(self) -> None:
        st = self.stats
        for message in self.store.pending(self.sink.name):
            left = self.deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self.sink.deliver(message), left if left < 1e9 else None)
            except Exception as exc:  # DeliveryError, the stop's deadline, or a sink's own bug: never kill the worker
                st["failures"] += 1
                st["last_error"] = str(exc) or type(exc).__name__
                st["retry_at"] = time.monotonic() + self._delay * random.uniform(0.8, 1.2)
                log.warning("delivery to %s failed (%s); retrying in %.1f s", self.sink.name, exc, self._delay)
                self._delay = min(self._delay * 2, self.backoff[1])
                if self.on_result:
                    self.on_result(self.sink.name, False)
                return
            self.store.mark_delivered(self.sink.name, message.seq)
            st["delivered"] += 1
            st["last_error"], st["retry_at"] = None, 0.0
            self._delay = self.backoff[0]
            if self.on_result:
                self.on_result(self.sink.name, True)


class Dispatcher:
    """The sinks' workers, started and stopped together; sinks no longer configured lose their cursors (so
    that they no longer hold back retention)."""

    def __init__(
        self,
        db_path: Path,
        sinks: Sequence[Sink],
        on_result: Callable[[str, bool], None] | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.store = EventStore(Path(db_path).parent, db_path)
        self.sinks = list(sinks)
        names = [s.name for s in self.sinks]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise DeliveryError(f"the same delivery target twice: {', '.join(twice)}")
        for sink in self.sinks:
            self.store.register_sink(sink.name, getattr(sink, "legacy_name", None))
        self.workers = {s.name: SinkWorker(s, self.store, backoff, on_result) for s in self.sinks}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def notify(self) -> None:
        """A message was written: look now."""
        for worker in self.workers.values():
            worker.wake.set()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: w.stats | {"depth": self.store.depth(name)} for name, w in self.workers.items()}

    def stop(self, timeout: float = 5.0) -> None:
        """One last attempt at what is pending (bounded by ``timeout``), then stop; the rest waits in the
        outbox for the next start."""
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.stop(deadline)
        for worker in self.workers.values():
            worker.join(max(0.0, deadline - time.monotonic()) + 3.0)
        if running := [name for name, w in self.workers.items() if w.alive]:
            log.warning("delivery to %s still in progress at exit; it resumes at the next start", ", ".join(running))
            return  # the store stays open for them: closing it under a worker would lose its last mark
        self.store.close()
