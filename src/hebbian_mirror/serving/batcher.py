"""The dynamic batcher: one per loaded model.

A request is first *admitted* (a place in the model's queue is reserved before its body is read, so a full
queue answers 503 at once); once its image's header is checked it joins the queue with its own future.
Whenever a runner is free, the batcher takes up to ``max_batch_size`` queued requests (waiting at most
``max_batch_delay`` after the oldest arrived, and only while admitted requests are still on their way), runs
the model on the list and resolves each future with that request's own result, or its image's own error.
Every reply is bound to its request's future, so two clients can never receive each other's boxes.

Batches run on the model's runners (:mod:`.workers`): worker processes, or one thread of this process. Each
runner takes the next batch as soon as it is free, so batches grow under load and several workers of one
model share its queue. The batcher takes each request's checked, still encoded image: it is decoded where the
model runs, just before the forward pass (:func:`.runners.detect_items`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ..detection import Detections, DetectOptions
from ..errors import QueueFullError
from .runners import Item, Runner

log = logging.getLogger(__name__)


@dataclass
class Result:
    detections: Detections  # with the (width, height) of the decoded image its boxes refer to
    queue_ms: float
    inference_ms: float  # the batch's time in the model: decoding its images, then detecting
    batch_size: int
    worker: str = ""  # what ran it: a worker process, or a Ray Serve replica

    @property
    def size(self) -> tuple[int, int]:
        return self.detections.image_size


@dataclass
class Job:
    item: Item  # encoded bytes (decoded where the model runs) or pixels
    options: DetectOptions
    future: asyncio.Future[Result]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one executed batch looked like, for metrics."""

    size: int
    queue_waits: list[float]  # seconds, per request
    inference: float  # seconds
    dropped: int = 0  # requests that timed out or disconnected before their batch ran
    runner: str = ""  # the worker that ran it


class Batcher(Protocol):
    """What the engine, the pipeline and the streams need of a model's queue, wherever the model runs: the local
    :class:`DynamicBatcher` over worker processes, or :class:`~.remote.RemoteBatcher` over Ray Serve replicas."""

    runners: Sequence[Runner]  # the local runners (none for a remote model)

    @property
    def depth(self) -> int:
        """Requests queued and not yet in a batch."""
        ...

    def start(self) -> None: ...

    def admit(self) -> AbstractAsyncContextManager[None]:
        """Hold a place in the queue (:class:`QueueFullError` when there is none) while the request is read."""
        ...

    def submit(self, item: Item, options: DetectOptions) -> asyncio.Future[Result]:
        """Queue an admitted item; its future gets its :class:`Result` or its own error."""
        ...

    async def detect(self, item: Item, options: DetectOptions, timeout: float | None = None) -> Result:
        """Admit, submit and wait: what a stream's frame does."""
        ...

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        ...


class DynamicBatcher:
    def __init__(
        self,
        runners: Runner | Sequence[Runner],
        max_batch_size: int = 8,
        max_batch_delay: float = 0.002,
        max_queue: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        """``runners``: where the model's batches run (one batch at a time each)."""
        self.runners = [runners] if not isinstance(runners, Sequence) else list(runners)
        self.name = self.runners[0].model
        self.max_batch_size = max_batch_size
        self.max_batch_delay = max_batch_delay
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.incoming = 0  # requests admitted and still being read or decoded: company on its way
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._waiters: deque[asyncio.Future[bool]] = deque()  # requests waiting in line for a place
        self._closing = False
        self._tasks: list[asyncio.Task] = []
        self._seconds_per_image = 0.05  # running estimate, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting (including ones already given up, until the worker discards them)."""
        return len(self._pending)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(r), name=f"batcher-{r.name}") for r in self.runners]

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Reserve a place in the queue for a request about to be read and decoded (``submit`` it inside). When
        the queue, counting the requests already admitted, is full, wait in line at most about one batch's time
        for a place (cheap: nothing is read meanwhile, and a client that retries at once is slowed to that pace),
        then :class:`QueueFullError`. Places freed go to the waiters first come, first served, one wake-up each.
        While admitted requests are on their way, a forming batch may wait for them."""
        if self._closing:
            raise QueueFullError(f"model {self.name}: the server is shutting down", 1)
        if self._waiters or self._full():
            await self._wait_in_line()  # returns holding a place
        else:
            self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1
            self._wakeup.set()
            self._hand_over()

    def _full(self) -> bool:
        return len(self._pending) + self.incoming >= self.max_queue

    async def _wait_in_line(self) -> None:
        """Wait for ``_hand_over`` to give this request a place (it counts it in ``incoming``), at most about
        one batch's time."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=min(1.0, self.max_batch_size * self._seconds_per_image))
        except asyncio.CancelledError:
            if waiter.done() and waiter.result():  # given a place just as this request was cancelled: pass it on
                self.incoming -= 1
                self._hand_over()
            elif not waiter.done():
                waiter.cancel()
                self._waiters.remove(waiter)
            raise
        if not waiter.done():  # no place within the wait
            waiter.cancel()
            self._waiters.remove(waiter)
        if waiter.cancelled() or not waiter.result():
            why = "the server is shutting down" if self._closing else f"{self.max_queue} requests queued"
            raise QueueFullError(f"model {self.name}: {why}", self.retry_after())

    def _hand_over(self) -> None:
        """Give the places now free to the requests waiting in line, oldest first."""
        while self._waiters and (self._closing or not self._full()):
            waiter = self._waiters.popleft()
            if not waiter.done():
                if not self._closing:
                    self.incoming += 1
                waiter.set_result(not self._closing)

    def retry_after(self) -> int:
        """Seconds after which a refused client should try again: about the time to work off what is queued,
        spread at random over ±50% so that refused clients do not all come back at once."""
        backlog = (len(self._pending) + self.incoming + self.max_batch_size) * self._seconds_per_image
        return max(1, math.ceil(backlog * random.uniform(0.5, 1.5)))

    def submit(self, item: Item, options: DetectOptions) -> asyncio.Future[Result]:
        """Queue one admitted image (its checked bytes, or pixels); the returned future resolves with its own
        result, or its image's own error. Cancel it to withdraw."""
        job = Job(item, options, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return job.future

    async def detect(self, item: Item, options: DetectOptions, timeout: float | None = None) -> Result:
        """Admit, queue and await one image (a stream's frame): :class:`QueueFullError` when the queue stays
        full, :class:`TimeoutError` past ``timeout``, or the image's own error."""
        async with self.admit():
            future = self.submit(item, options)
        return await asyncio.wait_for(future, timeout)  # a timeout cancels the job: the batcher skips it

    async def close(self) -> None:
        """Stop taking requests, finish every queued batch, then stop the runners. Requests left over (every
        worker down) fail with :class:`QueueFullError`."""
        self._closing = True
        self._wakeup.set()
        self._hand_over()  # every waiter is refused
        await asyncio.gather(*self._tasks)
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(QueueFullError(f"model {self.name}: the server is shutting down"))
        await asyncio.gather(*(r.stop() for r in self.runners))

    async def _next_batch(self) -> list[Job] | None:
        """Wait for requests and take a batch of them; ``None`` once closing and drained."""
        while True:
            while not self._pending:
                if self._closing:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
            # wait for company while some is on its way (being decoded), at most max_batch_delay after the
            # oldest request arrived; a lone request runs at once
            deadline = self._pending[0].enqueued + self.max_batch_delay
            while len(self._pending) < self.max_batch_size and self.incoming > 0 and not self._closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch: list[Job] = []
            dropped = 0
            while self._pending and len(batch) < self.max_batch_size:
                job = self._pending.popleft()
                if job.future.done():  # timed out or client gone: never run it
                    dropped += 1
                else:
                    batch.append(job)
            self._hand_over()
            if dropped and self.on_batch is not None:
                self.on_batch(BatchStats(0, [], 0.0, dropped))
            if batch:
                return batch

    async def _run(self, runner: Runner) -> None:
        """Whenever ``runner`` is free (and up), form a batch and run it on ``runner``."""
        while True:
            if not runner.up:  # a worker process restarting: the others (or the queue) carry on
                if self._closing:
                    return
                await asyncio.sleep(0.05)
                continue
            batch = await self._next_batch()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                results = await runner.run([job.item for job in batch], [job.options for job in batch])
            except Exception as exc:
                log.error("batch of %d failed on %s: %s", len(batch), runner.name, exc)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed / len(batch) / len(self.runners)
            for job, outcome in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, Exception):  # that image's own error
                    job.future.set_exception(outcome)
                else:
                    queued = (started - job.enqueued) * 1000
                    job.future.set_result(Result(outcome, queued, elapsed * 1000, len(batch), runner.name))
            if self.on_batch is not None:
                self.on_batch(
                    BatchStats(len(batch), [started - j.enqueued for j in batch], elapsed, runner=runner.name)
                )
