"""The dynamic batcher: one per loaded model.

Requests queue with their own future; one worker takes up to ``max_batch_size`` of them, waiting at
most ``max_batch_delay`` after the oldest arrived, runs the detector on the list in its own thread and
resolves each future with that request's own result. Every reply is bound to its request's future, so
two clients can never receive each other's boxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..detection import Detection, DetectOptions, Detector
from ..errors import HebbianMirrorError, InvalidImageError
from ..images import decode_image

log = logging.getLogger(__name__)


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
    dropped: int  # requests that timed out or disconnected before their batch ran


class DynamicBatcher:
    def __init__(
        self,
        detector: Detector,
        max_batch_size: int = 8,
        max_batch_delay: float = 0.002,
        max_queue: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
        max_pixels: int | None = None,
    ) -> None:
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
        self._worker: asyncio.Task | None = None
        # one thread per model: the detector runs batches one at a time, off the event loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{detector.name}")

    @property
    def depth(self) -> int:
        """Requests waiting (including ones already given up, until the worker discards them)."""
        return len(self._pending)

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.detector.name}")

    def admit(self) -> None:
        """A request for this model has started decoding; :meth:`submit` or :meth:`withdraw` follows."""
        self.incoming += 1

    def withdraw(self) -> None:
        self.incoming -= 1
        self._wakeup.set()

    def submit(self, image: np.ndarray | bytes, options: DetectOptions) -> asyncio.Future[Result]:
        """Queue one image (decoded, or encoded bytes for the worker to decode); the returned future resolves
        with its own result, or fails with its own decoding error. Cancel it to withdraw."""
        if self._closing:
            raise QueueFullError("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(f"model {self.detector.name} has {self.max_queue} requests queued")
        job = Job(image, options, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wakeup.set()
        return job.future

    async def close(self) -> None:
        """Stop taking requests, finish every queued one, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
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
            if not batch:
                if dropped and self.on_batch is not None:
                    self.on_batch(BatchStats(0, [], 0.0, dropped))
                continue
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
                self.on_batch(BatchStats(len(batch), [started - j.enqueued for j in batch], elapsed, dropped))

    def _execute(self, batch: list[Job]) -> list[list[Detection] | Exception]:
        """The unit of work: a list of requests in, a list of results (or per-request errors) out."""
        outcomes: list[list[Detection] | Exception] = [[] for _ in batch]
        ready: list[int] = []
        for i, job in enumerate(batch):
            if isinstance(job.image, bytes):
                try:
                    job.image = decode_image(job.image, self.max_pixels)
                except InvalidImageError as exc:
                    outcomes[i] = exc
                    continue
            ready.append(i)
        if ready:
            detections = self.detector.detect([batch[i].image for i in ready], [batch[i].options for i in ready])
            for i, dets in zip(ready, detections, strict=True):
                outcomes[i] = dets
        return outcomes
