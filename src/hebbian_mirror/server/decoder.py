"""Checking a request's image (and, for the annotated routes, decoding it): off the event loop, within a time
budget per image and a memory budget for all of them together. For detection the model's runner decodes it
(:func:`.runners.detect_items`) after the checks here.

Every request decodes its own image, so whatever a malformed file makes the decoder do (raise anything,
run for a minute) is that request's answer alone. The steps:

1. read the header in a decoder thread: format, size, the pixel limit and the JPEG scan limit
   (:func:`~hebbian_mirror.images.image_pixels`) — a bomb is refused before any pixel is decoded;
2. reserve the image's pixels from the server's budget of decoded pixels in flight, waiting for others to
   finish if it is spent (decoded images are the server's memory: 16 PNGs of 6000×6000, 50 KB each on the
   wire, are 1.7 GB once decoded);
3. decode in a decoder thread, for at most ``timeout`` seconds. A decode past its budget answers 422 and is
   abandoned: its thread finishes on its own, spare threads take its place, so a runaway costs CPU but never
   holds up another request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

import numpy as np

from ..images import decode_image, image_pixels
from .errors import APIError

T = TypeVar("T")

SPARE_THREADS = 4  # decodes that may be abandoned (past their budget, still running) before new ones wait


class PixelBudget:
    """Decoded pixels in flight, server-wide: ``hold`` waits (until a deadline) for room under ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int, deadline: float) -> AsyncIterator[None]:
        async with self._freed:
            try:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self.used + pixels <= self.limit), _remaining(deadline)
                )
            except TimeoutError:
                raise APIError(
                    503, f"server busy: {self.used:,} pixels are being processed", {"Retry-After": "1"}
                ) from None
            self.used += pixels
        try:
            yield
        finally:
            async with self._freed:
                self.used -= pixels
                self._freed.notify_all()


class Decoder:
    """The server's image decoder: ``workers`` threads at once, ``timeout`` seconds per image, at most
    ``max_pixels`` per image and ``pixel_budget`` decoded pixels held by requests at any time."""

    def __init__(self, workers: int, timeout: float, max_pixels: int | None, pixel_budget: int) -> None:
        self.timeout, self.max_pixels = timeout, max_pixels
        self.pixels = PixelBudget(pixel_budget)
        self.pool = ThreadPoolExecutor(workers + SPARE_THREADS, thread_name_prefix="decode")
        self._slots = asyncio.Semaphore(workers)
        self.abandoned = 0  # decodes past their budget whose threads are still running

    @asynccontextmanager
    async def checked(self, data: bytes, deadline: float) -> AsyncIterator[int]:
        """Step 1 and 2 only, for an image the model's runner decodes: its header checked, its pixels held from
        the budget while the block runs (yields their number)."""
        pixels = await self.run(image_pixels, data, self.max_pixels, deadline=deadline)
        async with self.pixels.hold(pixels, deadline):
            yield pixels

    @asynccontextmanager
    async def decoded(self, data: bytes, deadline: float) -> AsyncIterator[np.ndarray]:
        """The image in ``data`` as an RGB array, its pixels held from the budget while the block runs.
        Raises the request's own error: 400/413 for a bad or too large image (from
        :class:`~hebbian_mirror.errors.HebbianMirrorError`, mapped by the caller), 422 past the decode budget,
        503 when the pixel budget stays spent, 504 at ``deadline`` (``time.perf_counter()``)."""
        async with self.checked(data, deadline):
            yield await self.run(decode_image, data, self.max_pixels, deadline=deadline)

    async def run(self, fn: Callable[..., T], *args: object, deadline: float) -> T:
        """``fn(*args)`` in a decoder thread, within the per-image budget and the request's deadline."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._slots.acquire(), _remaining(deadline))
        except TimeoutError:
            raise _late() from None
        future = loop.run_in_executor(self.pool, fn, *args)
        budget = min(self.timeout, _remaining(deadline))
        try:
            done, _ = await asyncio.wait({future}, timeout=budget)
        except BaseException:  # cancelled (the client left): the slot comes back when the thread is done
            future.add_done_callback(lambda _: self._slots.release())
            raise
        if done:
            self._slots.release()
            return future.result()
        self._abandon(future)
        if budget < self.timeout:
            raise _late()
        raise APIError(422, f"the image took longer than {self.timeout:g} s to decode: refusing it")

    def _abandon(self, future: asyncio.Future) -> None:
        """Give up waiting for a runaway decode. While spare threads remain its slot is handed on now, else
        when its thread finishes, so the threads running never outnumber the pool (nothing queues behind it)."""
        if self.abandoned < SPARE_THREADS:
            self.abandoned += 1
            self._slots.release()

            def finished(_: asyncio.Future) -> None:
                self.abandoned -= 1

            future.add_done_callback(finished)
        else:
            future.add_done_callback(lambda _: self._slots.release())
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieve its outcome: no warning

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


def _late() -> APIError:
    return APIError(504, "no result within the request timeout")
