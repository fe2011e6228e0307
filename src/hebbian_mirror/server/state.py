"""What the server holds: its settings, metrics and one host per served model (detector + batcher)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ..config import Settings
from ..detection import Detector
from ..errors import ModelLoadError, ModelNotFoundError, UnavailableError
from .batcher import DynamicBatcher
from .decoder import Decoder
from .metrics import Metrics
from .runners import ModelInfo, Runner, ThreadRunner, load_and_warm
from .workers import WorkerProcess, worker_specs

log = logging.getLogger(__name__)


@dataclass
class ModelHost:
    """A served model: what it is (``detector``: the model itself, or what its worker processes report of it)
    and its batcher once loaded, or the error that stopped it."""

    name: str
    source: str
    detector: Detector | ModelInfo | None = None
    batcher: DynamicBatcher | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """loading, ready, restarting (a worker process is coming back) or failed."""
        if self.batcher is not None:
            return "ready" if all(r.up for r in self.batcher.runners) else "restarting"
        return "failed" if self.error else "loading"

    def workers(self) -> list[dict]:
        """Each worker: its name, process id (None: a thread of the server), state and restarts."""
        runners = self.batcher.runners if self.batcher is not None else []
        return [{"name": r.name, "pid": r.pid, "up": r.up, "restarts": r.restarts, "device": r.device} for r in runners]


Connect = Callable[[ModelHost], Awaitable[tuple[Any, ModelInfo]]]


@dataclass
class ServerState:
    settings: Settings
    metrics: Metrics
    hosts: dict[str, ModelHost]
    decoder: Decoder
    ready: bool = False
    on_load_failure: Callable[[], None] | None = None  # called once loading is over if a model failed
    # models served elsewhere (Ray Serve): their batcher stand-in and what they report of themselves
    connect: Connect | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, settings: Settings) -> ServerState:
        """The state for ``settings.served_models``, nothing loaded yet (:meth:`load_models`)."""
        return cls(
            settings=settings,
            metrics=Metrics(),
            hosts={m.name: ModelHost(m.name, m.source) for m in settings.served_models},
            decoder=Decoder(
                settings.decode_workers, settings.decode_timeout, settings.max_pixels, settings.pixel_budget
            ),
        )

    @property
    def is_ready(self) -> bool:
        """Every model loaded and every one of its workers warm."""
        return self.ready and all(h.status == "ready" for h in self.hosts.values())

    @property
    def default_model(self) -> str:
        return next(iter(self.hosts))

    def host(self, name: str | None) -> ModelHost:
        """The loaded model called ``name`` (default: the first); :class:`ModelNotFoundError` if unknown,
        :class:`UnavailableError` while loading or when it failed to."""
        host = self.hosts.get(name or self.default_model)
        if host is None:
            raise ModelNotFoundError(f"unknown model {name!r}; this server has: {', '.join(self.hosts)}")
        if host.error:
            raise ModelLoadError(f"model {host.name} failed to load: {host.error}")
        if host.batcher is None:
            raise UnavailableError(f"model {host.name} is still loading", retry_after=2)
        return host

    async def load_models(self, preloaded: dict[str, Detector]) -> None:
        """Load and warm every model (in its worker processes, or in a thread with ``workers = 0``), then
        start its batcher."""
        s = self.settings
        for host in self.hosts.values():
            try:
                if self.connect is not None:
                    host.batcher, host.detector = await self.connect(host)
                    continue
                runners, host.detector = await self._start_runners(host, preloaded.get(host.name))
            except Exception as exc:
                log.error("model %s (%s) failed to load: %s", host.name, host.source, exc)
                host.error = str(exc)
                continue
            batcher = DynamicBatcher(
                runners,
                max_batch_size=s.max_batch_size,
                max_batch_delay=s.max_batch_delay_ms / 1000,
                max_queue=s.max_queue,
                on_batch=self.metrics.batch_observer(host.name),
            )
            batcher.start()
            host.batcher = batcher
        self.ready = all(h.batcher is not None for h in self.hosts.values())
        if not self.ready and self.on_load_failure is not None:
            self.on_load_failure()

    async def _start_runners(
        self, host: ModelHost, preloaded: Detector | None
    ) -> tuple[list[Runner], Detector | ModelInfo]:
        s = self.settings
        if preloaded is not None or s.workers == 0:
            runner = ThreadRunner(preloaded, host.name, s.max_pixels, s.decode_timeout)
            if runner.detector is None:
                try:
                    runner.detector = await runner.call(load_and_warm, host.source, s)
                except BaseException:
                    await runner.stop()
                    raise
                log.info("model %s (%s) ready on %s in the server process", host.name, host.source, runner.device)
            return [runner], runner.detector
        specs, cores = worker_specs(host.name, host.source, s)
        timeout = s.request_timeout + 10
        workers = [WorkerProcess(spec, timeout, self.metrics.worker_restarted, cores) for spec in specs]
        try:
            infos = await asyncio.gather(*(w.start() for w in workers))
        except BaseException:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            raise
        log.info(
            "model %s (%s) ready on %s in %d worker process(es)", host.name, host.source, infos[0].device, len(workers)
        )
        return list(workers), infos[0]

    async def close(self) -> None:
        """Drain every queued request, then stop the batchers (and their workers) and the decoder."""
        for host in self.hosts.values():
            if host.batcher is not None:
                await host.batcher.close()
        self.decoder.close()


def state_of(request: Request) -> ServerState:
    return request.app.state.hm
