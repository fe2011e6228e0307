"""A model served elsewhere (Ray Serve replicas) behind the batcher's interface, so the request pipeline, the
streams and the operational routes work unchanged: admission with a bounded number of requests in flight,
``submit`` returning a future, and ``close``. The batching itself happens where the model is."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ..detection import DetectOptions
from ..errors import QueueFullError, WorkerCrashedError
from .batcher import Result
from .runners import Item

log = logging.getLogger(__name__)

Call = Callable[[Item, DetectOptions], Awaitable[Result]]


class RemoteBatcher:
    """Sends each image to ``call`` (a replica picked by the engine's router). An image whose replica died
    before answering is sent again (detection has no side effects), up to ``retries`` times; then the request
    gets :class:`WorkerCrashedError` (503, try again)."""

    runners: tuple = ()  # no local workers: the engine keeps the replicas alive

    def __init__(
        self, name: str, call: Call, max_queue: int, lost: tuple[type[BaseException], ...], retries: int = 2
    ) -> None:
        self.name, self.call, self.max_queue, self.lost, self.retries = name, call, max_queue, lost, retries
        self.in_flight = 0
        self.retried = 0
        self._closing = False
        self._tasks: set[asyncio.Task] = set()

    @property
    def depth(self) -> int:
        return self.in_flight

    def start(self) -> None:
        pass

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self._closing:
            raise QueueFullError(f"model {self.name}: the server is shutting down", 1)
        if self.in_flight >= self.max_queue:
            raise QueueFullError(f"model {self.name}: {self.max_queue} requests in progress", 1)
        self.in_flight += 1
        try:
            yield
        except BaseException:
            self.in_flight -= 1
            raise

    def submit(self, item: Item, options: DetectOptions) -> asyncio.Future[Result]:
        """Called inside :meth:`admit`; the place is given back when the answer comes."""
        task = asyncio.ensure_future(self._send(item, options))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1

    async def _send(self, item: Item, options: DetectOptions) -> Result:
        for attempt in range(self.retries + 1):
            try:
                return await self.call(item, options)
            except self.lost as exc:
                if attempt == self.retries:
                    raise WorkerCrashedError(f"model {self.name}: its replica died: {type(exc).__name__}") from exc
                self.retried += 1
                log.warning("model %s: a replica died with a request (%s); sending it again", self.name, exc)
        raise AssertionError("unreachable")

    async def detect(self, item: Item, options: DetectOptions, timeout: float | None = None) -> Result:
        async with self.admit():
            future = self.submit(item, options)
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        """Stop taking requests and wait for those in flight."""
        self._closing = True
        if self._tasks:
            await asyncio.wait(set(self._tasks))
