"""What the server holds: its settings, metrics and one host per served model (detector + batcher)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request

from ..config import Settings
from ..detection import DetectOptions, Detector
from ..models.loader import load_detector
from .batcher import DynamicBatcher, inference_thread
from .decoder import Decoder
from .errors import APIError
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class ModelHost:
    """A served model: its detector and batcher once loaded, or the error that stopped it."""

    name: str
    source: str
    detector: Detector | None = None
    batcher: DynamicBatcher | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        return "ready" if self.batcher else ("failed" if self.error else "loading")


@dataclass
class ServerState:
    settings: Settings
    metrics: Metrics
    hosts: dict[str, ModelHost]
    decoder: Decoder
    ready: bool = False
    on_load_failure: Callable[[], None] | None = None  # called once loading is over if a model failed
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

    async def load_models(self, preloaded: dict[str, Detector]) -> None:
        """Load and warm every model in its own inference thread, then start its batcher."""
        s = self.settings
        loop = asyncio.get_running_loop()
        for host in self.hosts.values():
            executor = inference_thread(host.name)
            try:
                detector = await loop.run_in_executor(executor, _load_and_warm, host, s, preloaded.get(host.name))
            except Exception as exc:
                log.error("model %s (%s) failed to load: %s", host.name, host.source, exc)
                host.error = str(exc)
                executor.shutdown(wait=False)
                continue
            batcher = DynamicBatcher(
                detector,
                max_batch_size=s.max_batch_size,
                max_batch_delay=s.max_batch_delay_ms / 1000,
                max_queue=s.max_queue,
                on_batch=self.metrics.batch_observer(host.name),
                executor=executor,
            )
            batcher.start()
            host.detector, host.batcher = detector, batcher
        self.ready = all(h.batcher is not None for h in self.hosts.values())
        if not self.ready and self.on_load_failure is not None:
            self.on_load_failure()

    async def close(self) -> None:
        """Drain every queued request, then stop the batchers and the decoder."""
        for host in self.hosts.values():
            if host.batcher is not None:
                await host.batcher.close()
        self.decoder.close()


def _load_and_warm(host: ModelHost, settings: Settings, preloaded: Detector | None) -> Detector:
    detector = preloaded or load_detector(host.source, settings)
    warm = np.full((480, 640, 3), 114, dtype=np.uint8)
    for n in (1, min(settings.max_batch_size, 4)):  # first calls allocate; do it before real traffic
        detector.detect([warm] * n, DetectOptions())
    log.info("model %s (%s) ready on %s", host.name, host.source, detector.device)
    return detector


def state_of(request: Request) -> ServerState:
    return request.app.state.hm
