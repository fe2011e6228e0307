"""What the batcher runs a model's batches on: the :class:`Runner` interface, :func:`detect_items` (the unit of
work: decode a batch's images where the model is, then detect), and :class:`ThreadRunner`, the model in one
thread of the server process (``--workers 0``). Worker processes are in :mod:`.workers`.

The images are decoded where the model runs, just before the forward pass, as LitServe's ``decode_request``
does: on a CPU a decode that runs *during* a forward pass takes a core from one of its OpenMP threads and
stalls the others at the next barrier (measured: −10% throughput, benchmarks/README.md). The server has
already checked each image's header (format, size, pixel limit, JPEG scans) before it gets here; a decode
that fails is its own request's error, and one past its time budget is abandoned with
:class:`DecodeTimeoutError` while its batch mates run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..config import DetectSettings, ModelSettings
from ..detection import Detections, DetectOptions, Detector
from ..errors import DecodeTimeoutError, HebbianMirrorError, InvalidImageError
from ..images import DEFAULT_MAX_PIXELS, decode_image
from ..meta import Described, ModelMeta

T = TypeVar("T")


Item = bytes | np.ndarray  # an encoded image, or pixels already decoded (H×W×3 RGB uint8)
ItemResult = Detections | HebbianMirrorError  # an image's detections (with its size), or its own error


def detect_items(
    detector: Detector,
    items: Sequence[Item],
    options: Sequence[DetectOptions],
    decoders: ThreadPoolExecutor,
    max_pixels: int | None,
    budget: float,
) -> list[ItemResult]:
    """Decode the encoded items (in ``decoders``, in parallel, each within ``budget`` seconds), then run the
    model once on every image that decoded; each item's detections and size, or its own error."""
    started = time.monotonic()
    pending = [decoders.submit(decode_image, it, max_pixels) if isinstance(it, bytes) else None for it in items]
    images: list[np.ndarray | HebbianMirrorError] = []
    for item, future in zip(items, pending, strict=True):
        if future is None:
            images.append(item)
            continue
        try:
            images.append(future.result(timeout=max(budget - (time.monotonic() - started), 0.0)))
        except FutureTimeout:
            future.add_done_callback(lambda f: f.exception())  # left to finish on its own; its outcome is read
            images.append(DecodeTimeoutError(f"the image took longer than {budget:g} s to decode: refusing it"))
        except HebbianMirrorError as exc:
            images.append(exc)
        except Exception as exc:  # whatever a damaged file makes the decoder raise is that image's error
            images.append(InvalidImageError(f"the image could not be decoded ({type(exc).__name__}: {exc})"))
    good = [i for i, img in enumerate(images) if isinstance(img, np.ndarray)]
    found = detector.detect([images[i] for i in good], [options[i] for i in good]) if good else []
    out: list[ItemResult] = list(images)  # errors stay in place
    for i, detections in zip(good, found, strict=True):
        out[i] = detections
    return out


class Runner(Protocol):
    """Runs batches of one model for the batcher: a list of images in, a list of results out."""

    name: str  # this runner's name (``model/index`` for a worker process)
    model: str  # the served model's name
    pid: int | None  # its process (None: a thread of the server)
    restarts: int

    @property
    def device(self) -> str: ...

    @property
    def up(self) -> bool:
        """Batches can run now (False while a worker process restarts)."""
        ...

    async def run(self, items: Sequence[Item], options: Sequence[DetectOptions]) -> list[ItemResult]:
        """Each item's detections and size, or its own error (see :func:`detect_items`)."""
        ...

    async def stop(self) -> None: ...


@dataclass
class ModelInfo(Described):
    """What the server knows of a model loaded in a worker process: its metadata and its ``info()``."""

    meta: ModelMeta
    details: dict[str, Any]

    @property
    def display_names(self) -> dict[str, str]:
        return dict(self.meta.display_names)

    @property
    def device(self) -> str:
        return str(self.details["device"])

    @property
    def family(self) -> str:
        return str(self.details["family"])

    @property
    def refines(self) -> bool:
        """Whether it honours ``merge`` (see :class:`~hebbian_mirror.detection.DetectOptions`)."""
        return bool(self.details.get("refines"))

    @property
    def augments(self) -> bool:
        """Whether it honours ``augment``."""
        return bool(self.details.get("augments"))

    def info(self) -> dict[str, Any]:
        return dict(self.details)


class ThreadRunner:
    """The model in a thread of the server process (``--workers 0``). All of its torch work (load, warm-up,
    batches) runs in that one thread: one OpenMP team."""

    def __init__(
        self,
        detector: Detector | None = None,
        name: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode_timeout: float = 10.0,
    ) -> None:
        self.detector = detector
        self.name = self.model = name or (detector.name if detector is not None else "model")
        self.pid, self.restarts = None, 0
        self.max_pixels, self.decode_timeout = max_pixels, decode_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.name}")
        self._decoders = decode_pool()

    @property
    def up(self) -> bool:
        return self.detector is not None

    @property
    def device(self) -> str:
        return str(self.detector.device) if self.detector is not None else "?"

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, items: Sequence[Item], options: Sequence[DetectOptions]) -> list[ItemResult]:
        args = (self.detector, items, options, self._decoders, self.max_pixels, self.decode_timeout)
        return await self.call(detect_items, *args)

    async def stop(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._decoders.shutdown(wait=False, cancel_futures=True)


def load_and_warm(source: str, loading: ModelSettings, detect: DetectSettings, max_batch_size: int) -> Detector:
    """The model, loaded and warmed up (first calls allocate: a batch of 1 and one of up to 4 before real
    traffic)."""
    from ..models.loader import load_detector

    detector = load_detector(source, loading)
    warm = np.full((480, 640, 3), 114, dtype=np.uint8)
    for n in (1, min(max_batch_size, 4)):
        detector.detect([warm] * n, detect.detect_options(detector))
    return detector


def decode_pool() -> ThreadPoolExecutor:
    """Threads that decode a batch's images in parallel (as many as cores, plus room for abandoned ones)."""
    return ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 4, thread_name_prefix="decode")
