"""The dynamic batcher: one per loaded model.

Requests queue with their own future; whenever an inference worker is free, the batcher takes up to
``max_batch_size`` of them (waiting at most ``max_batch_delay`` after the oldest arrived, and only while more
requests are on their way), runs the detector on the list in that worker's thread and resolves each future
with that request's own result. Every reply is bound to its request's future, so two clients can never
receive each other's boxes.

Each model has one inference thread, which also loads and warms the model: all of a model's torch work in
one thread means one OpenMP team. (A second team makes libgomp count more threads than cores and stop its
worker threads spinning between operations; measured here, that made the forward pass of yolov4-tiny 20%
slower.) On the CPU that thread also decodes the images of its batch, so decoding never competes with
inference for the cores; on other devices the batcher decodes in the decoder pool while the GPU works. Either
way a request's decoding error is its own: its batch-mates are untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from ..detection import Detection, DetectOptions, Detector
from ..errors import HebbianMirrorError
from ..images import decode_image

log = logging.getLogger(__name__)


def inference_thread(name: str) -> ThreadPoolExecutor:
    """The single thread that runs one model's torch work (load, warm-up, batches)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")


class QueueFullError(HebbianMirrorError):
    """The model's queue is at ``max_queue`` (or the server is shutting down): try again later."""


@dataclass
class Result:
    detections: list[Detection]
    queue_ms: float
    inference_ms: float
    batch_size: int
    image: np.ndarray  # the decoded image the detections refer to


@dataclass
class Job:
    image: np.ndarray | bytes  # encoded bytes are decoded by the worker, in the batch
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


class DynamicBatcher:
    def __init__(
        self,
        detector: Detector,
        max_batch_size: int = 8,
        max_batch_delay: float = 0.002,
        max_queue: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
        max_pixels: int | None = None,
        executor: ThreadPoolExecutor | None = None,
        decode_pool: ThreadPoolExecutor | None = None,
    ) -> None:
        """``executor``: the model's inference thread (made here when not given). ``decode_pool``: where images
        are decoded off the CPU (without one, or on the CPU, the inference thread decodes its batch)."""
        self.detector = detector
        self.max_batch_size = max_batch_size
        self.max_batch_delay = max_batch_delay
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.max_pixels = max_pixels
        self.incoming = 0  # requests admitted for this model and still decoding: company on its way
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._loop_task: asyncio.Task | None = None
        self._executor = executor or inference_thread(detector.name)
        self._decode_pool = decode_pool if detector.device.type != "cpu" else None

    @property
    def depth(self) -> int:
        """Requests waiting (including ones already given up, until the worker discards them)."""
        return len(self._pending)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.detector.name}")

    @asynccontextmanager
    async def arriving(self) -> AsyncIterator[None]:
        """While a request for this model is on its way (its body being read), a forming batch may wait for it."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1
            self._wakeup.set()

    def _check_room(self) -> None:
        if self._closing:
            raise QueueFullError("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(f"model {self.detector.name} has {self.max_queue} requests queued")

    async def submit(self, image: np.ndarray | bytes, options: DetectOptions) -> asyncio.Future[Result]:
        """Queue one image (decoded, or encoded bytes); the returned future resolves with its own result, or
        fails with its own decoding error. Cancel it to withdraw. :class:`QueueFullError` when there is no room.

        Encoded bytes are decoded in the decoder pool first when the model is not on the CPU (the GPU keeps
        working meanwhile), else by the inference thread, in the batch."""
        self._check_room()
        if isinstance(image, bytes) and self._decode_pool is not None:
            async with self.arriving():
                loop = asyncio.get_running_loop()
                image = await loop.run_in_executor(self._decode_pool, decode_image, image, self.max_pixels)
            self._check_room()
        job = Job(image, options, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return job.future

    async def close(self) -> None:
        """Stop taking requests, finish every queued batch, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        self._executor.shutdown(wait=True)

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
            if dropped and self.on_batch is not None:
                self.on_batch(BatchStats(0, [], 0.0, dropped))
            if batch:
                return batch

    async def _run(self) -> None:
        """Form a batch whenever the inference thread is free (so batches grow under load) and run it."""
        loop = asyncio.get_running_loop()
        while (batch := await self._next_batch()) is not None:
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._execute, batch)
            except Exception as exc:
                log.exception("batch of %d failed on %s", len(batch), self.detector.name)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            for job, outcome in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, Exception):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(
                        Result(outcome, (started - job.enqueued) * 1000, elapsed * 1000, len(batch), job.image)
                    )
            if self.on_batch is not None:
                self.on_batch(BatchStats(len(batch), [started - j.enqueued for j in batch], elapsed))

    def _execute(self, batch: list[Job]) -> list[list[Detection] | Exception]:
        """The unit of work, in the inference thread: a list of requests in, a list of results (or errors) out."""
        outcomes: list[list[Detection] | Exception] = [[] for _ in batch]
        ready: list[int] = []
        for i, job in enumerate(batch):
            if isinstance(job.image, bytes):
                try:
                    job.image = decode_image(job.image, self.max_pixels)
                except HebbianMirrorError as exc:  # decode_image raises nothing else: one bad image fails alone
                    outcomes[i] = exc
                    continue
            ready.append(i)
        if ready:
            detections = self.detector.detect([batch[i].image for i in ready], [batch[i].options for i in ready])
            for i, dets in zip(ready, detections, strict=True):
                outcomes[i] = dets
        return outcomes
