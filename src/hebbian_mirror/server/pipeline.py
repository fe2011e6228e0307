"""The one request pipeline every API family runs: admit → read → check → batch (decode, detect) → await → encode.

An API family (see :mod:`hebbian_mirror.server.specs`) supplies how to read a request's body into
:class:`Inputs` and how to encode an :class:`Outcome`; authentication runs before, as a route dependency. The
model is chosen and a place in its queue reserved before the body is read, so a busy server answers 503 without
taking the upload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request

from ..detection import DetectOptions, Detector, refusal
from ..errors import (
    InvalidOptionError,
)
from ..images import draw_detections, encode_jpeg
from ..serving.batcher import Result
from ..serving.engine import ModelHost
from ..serving.runners import Item
from .errors import APIError, api_error
from .state import ServerState, state_of


@dataclass
class Inputs:
    """What one detection request asks for. ``read`` reads the body once the request is admitted and returns
    the image bytes (or its pixels, H×W×3 RGB uint8); it may complete the other fields from the body (a form's
    ``min_confidence``)."""

    read: Callable[[Inputs], Awaitable[Item]]
    model: str | None = None
    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: str | None = None  # names or ids, comma-separated
    merge: bool | None = None


@dataclass
class Outcome:
    """A finished request: the model that ran it, its result and when the request started."""

    host: ModelHost
    result: Result
    started: float  # time.perf_counter() at the start of the pipeline
    data: Item  # the request's image: as sent, or its pixels where the encoder draws on them (``run(draws=True)``)

    @property
    def total_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


Encoder = Callable[[Request, Outcome], Awaitable[Any]]


async def run(request: Request, inputs: Inputs, encode: Encoder, draws: bool = False) -> Any:
    """Run one detection request through its model's batcher and encode the answer; every failure is an
    :class:`APIError` or a product error the status table maps (400 bad image, 404 unknown model, 413 too many
    pixels, 422 bad option or an image past its decode budget, 499 client gone, 503 busy or loading, 504 past the
    request timeout).

    ``draws``: the encoder draws on the image (:func:`annotated_jpeg`), so it is decoded here, once, under the
    request's one reservation of pixels, and its pixels go to the model instead of its bytes."""
    started = time.perf_counter()  # the request's deadline counts from here
    state = state_of(request)
    timeout = state.settings.request_timeout
    deadline = started + timeout
    host = state.host(inputs.model)
    async with AsyncExitStack() as held:  # the decoded pixels stay reserved until the answer is encoded
        async with host.batcher.admit():
            data = await inputs.read(inputs)
            options = detect_options(state, host.detector, inputs)
            if isinstance(data, np.ndarray):  # pixels sent as such count against the same budget
                check_pixels(data, state.settings.max_pixels)
                pixels = data.shape[0] * data.shape[1]
                await held.enter_async_context(state.decoder.pixels.hold(pixels, deadline))
            elif not data:
                raise APIError(400, "empty image: the request carried no image bytes")
            elif draws:
                data = await held.enter_async_context(state.decoder.decoded(data, deadline))
            else:
                await held.enter_async_context(state.decoder.checked(data, deadline))
            future = host.batcher.submit(data, options)
        result = await _result(request, future, deadline, timeout)
        return await encode(request, Outcome(host, result, started, data))


def check_pixels(pixels: np.ndarray, max_pixels: int) -> None:
    """Pixels sent as such: H×W×3 uint8, at least 1×1 and within the pixel limit (else 400 / 413)."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise APIError(400, f"pixels must be a non-empty H×W×3 uint8 RGB array, got {pixels.dtype} {pixels.shape}")
    if pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise APIError(413, f"image has {pixels.shape[0] * pixels.shape[1]} pixels, over the {max_pixels} allowed")


def detect_options(state: ServerState, detector: Detector, inputs: Inputs) -> DetectOptions:
    """The request's thresholds over the server's defaults; 422 for a bad value or unknown class, or ``merge``
    asked of a model without it (the server's ``merge`` and ``augment`` apply to the models that have them)."""
    try:
        if problem := refusal(detector, bool(inputs.merge), augment=False):
            raise InvalidOptionError(problem)
        return state.settings.detect_options(
            detector,
            conf=inputs.conf,
            iou=inputs.iou,
            max_det=inputs.max_det,
            classes=inputs.classes,
            merge=inputs.merge,
        )
    except InvalidOptionError as exc:  # its answer as the request's (422), for callers outside a route too
        raise api_error(exc) from exc


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _result(request: Request, future: asyncio.Future[Result], deadline: float, timeout: float) -> Result:
    """The job's own result, unless ``deadline`` passes or the client leaves first (then the job leaves the
    queue)."""
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {future, watcher}, timeout=max(deadline - time.perf_counter(), 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
    if future in done:  # its result, or its error (the image's own, a worker that died, a busy remote model)
        return future.result()
    future.cancel()  # the batcher skips cancelled jobs
    if watcher in done:
        raise APIError(499, "client disconnected")
    raise APIError(504, f"no result within the {timeout:g} s request timeout")


async def annotated_jpeg(request: Request, outcome: Outcome) -> bytes:
    """The image with its detections drawn under their display names, JPEG-encoded in the decoder pool (within
    the request's deadline). The request ran with ``draws=True``: its pixels are still held, nothing is decoded
    again."""
    if not isinstance(outcome.data, np.ndarray):
        raise TypeError("annotated_jpeg needs the request's pixels: run the request with draws=True")
    names = outcome.host.detector.display_names if outcome.host.detector is not None else {}
    shown = outcome.result.detections.renamed(names)
    state = state_of(request)
    deadline = outcome.started + state.settings.request_timeout
    image = outcome.data
    return await state.decoder.run(lambda: encode_jpeg(draw_detections(image, shown)), deadline=deadline)
