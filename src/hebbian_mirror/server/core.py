"""Server state and the request lifecycle shared by every route: auth → read → decode → batch → result."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile

from ..config import Settings
from ..detection import DetectOptions, Detector, resolve_classes
from ..errors import HebbianMirrorError, ImageTooLargeError, InvalidImageError
from ..images import decode_image, draw_detections, encode_jpeg
from .batcher import DynamicBatcher, QueueFullError, Result
from .errors import APIError
from .metrics import Metrics

log = logging.getLogger(__name__)

RAW_IMAGE_TYPES = ("image/", "application/octet-stream", "application/x-www-form-urlencoded")


@dataclass
class ModelHost:
    """A served model: its detector and batcher once loaded, or the error that stopped it."""

    name: str
    detector: Detector | None = None
    batcher: DynamicBatcher | None = None
    error: str | None = None


@dataclass
class ServerState:
    settings: Settings
    metrics: Metrics
    hosts: dict[str, ModelHost]
    decode_pool: ThreadPoolExecutor
    ready: bool = False
    started: float = field(default_factory=time.time)

    @property
    def default_model(self) -> str:
        return next(iter(self.hosts))

    def host(self, name: str | None) -> ModelHost:
        """The loaded model called ``name`` (default: the first): 404 if unknown, 503 while loading."""
        host = self.hosts.get(name or self.default_model)
        if host is None:
            raise APIError(404, f"unknown model {name!r}; this server has: {', '.join(self.hosts)}")
        if host.error:
            raise APIError(503, f"model {host.name} failed to load: {host.error}")
        if host.batcher is None:
            raise APIError(503, f"model {host.name} is still loading", {"Retry-After": "2"})
        return host


def state_of(request: Request) -> ServerState:
    return request.app.state.hm


def check_api_key(request: Request, form_key: str | None = None) -> None:
    """When the server has an API key, require it: ``X-API-Key``, ``Authorization: Bearer``, or (DeepStack)
    the ``api_key`` form field."""
    expected = state_of(request).settings.api_key
    if not expected:
        return
    auth = request.headers.get("authorization", "")
    candidates = [request.headers.get("x-api-key"), form_key]
    if auth.lower().startswith("bearer "):
        candidates.append(auth[7:].strip())
    if not any(c and secrets.compare_digest(c.encode(), expected.encode()) for c in candidates):
        raise APIError(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def raw_image_body(request: Request) -> bytes:
    """The body of a raw-image request (curl --data-binary, the original Hebbian Mirror clients)."""
    kind = media_type(request)
    if kind and not kind.startswith(RAW_IMAGE_TYPES):
        raise APIError(415, f"unsupported media type {kind!r}: send the image bytes (image/*) as the body")
    return await request.body()


async def form_image(request: Request, field: str) -> tuple[bytes, dict[str, str]]:
    """The file in multipart field ``field`` and the form's text fields."""
    kind = media_type(request)
    if kind != "multipart/form-data":
        raise APIError(
            415, f"unsupported media type {kind or 'none'!r}: send multipart/form-data with a '{field}' file field"
        )
    try:
        form = await request.form(max_files=4, max_fields=32)
    except APIError:
        raise
    except Exception as exc:
        raise APIError(400, f"malformed multipart body: {exc}") from exc
    texts = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get(field)
    if upload is None:
        raise APIError(400, f"no image: the form has no '{field}' field")
    if isinstance(upload, UploadFile):
        data = await upload.read()
        await form.close()
    else:
        data = upload.encode()
    return data, texts


async def decode(request: Request, data: bytes) -> np.ndarray:
    """Decode in the decoder pool, off the event loop; 400 for bad data, 413 for too many pixels."""
    state = state_of(request)
    if not data:
        raise APIError(400, "empty image: the request carried no image bytes")
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(state.decode_pool, decode_image, data, state.settings.max_pixels)
    except ImageTooLargeError as exc:
        raise APIError(413, str(exc)) from exc
    except InvalidImageError as exc:
        raise APIError(400, str(exc)) from exc


def detect_options(
    state: ServerState,
    detector: Detector,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: str | None = None,
) -> DetectOptions:
    s = state.settings
    try:
        wanted = resolve_classes(classes.split(","), detector.class_names) if classes else None
        return DetectOptions(
            conf=s.conf if conf is None else conf,
            iou=s.iou if iou is None else iou,
            max_det=s.max_det if max_det is None else max_det,
            classes=wanted,
        )
    except ValueError as exc:
        raise APIError(422, f"invalid parameter: {exc}") from exc


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_detection(
    request: Request, host: ModelHost, body: bytes | Awaitable[bytes], options: DetectOptions
) -> Result:
    """Read the image (``body``), queue it on the model's batcher and wait for its own result, the request's
    deadline or the client's departure, whichever comes first; a request that gives up leaves the queue.

    While the body is read (and, on CUDA, decoded in the decoder pool while the GPU works) the request counts
    as on its way, so a forming batch may wait for it; on the CPU the batch's thread decodes the images
    itself, so decoding never competes with inference for the cores."""
    state = state_of(request)
    assert host.batcher is not None and host.detector is not None
    host.batcher.admit()
    try:
        data = body if isinstance(body, bytes) else await body
        if not data:
            raise APIError(400, "empty image: the request carried no image bytes")
        payload: np.ndarray | bytes = data
        if host.detector.device.type != "cpu":
            payload = await decode(request, data)
    finally:
        host.batcher.withdraw()
    try:
        future = host.batcher.submit(payload, options)
    except QueueFullError as exc:
        raise APIError(503, f"server busy: {exc}", {"Retry-After": "1"}) from exc
    remaining = state.settings.request_timeout - (time.perf_counter() - request.scope["hm_start"])
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {future, watcher}, timeout=max(remaining, 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
    if future in done:
        try:
            return future.result()
        except ImageTooLargeError as exc:
            raise APIError(413, str(exc)) from exc
        except HebbianMirrorError as exc:
            raise APIError(400, str(exc)) from exc
    future.cancel()  # the batcher skips cancelled jobs
    if watcher in done:
        request.scope["hm_disconnected"] = True
        raise APIError(499, "client disconnected")
    raise APIError(504, f"no result within the {state.settings.request_timeout:g} s request timeout")


async def annotate(request: Request, result: Result) -> bytes:
    """The image with its detections drawn, JPEG-encoded in the decoder pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        state_of(request).decode_pool, lambda: encode_jpeg(draw_detections(result.image, result.detections))
    )
