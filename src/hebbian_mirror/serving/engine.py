"""The engine: every served model hosted (loaded and warmed in its worker processes, or a thread), its batcher,
the options the server applies to it, and the one way frames and requests reach it. No HTTP here: errors are
the product's own (:mod:`hebbian_mirror.errors`); ``server/`` maps them to statuses, ``watch`` and
``evaluate-alarms`` run the engine without a server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..detection import Detections, DetectOptions, Detector
from ..errors import HebbianMirrorError, ModelLoadError, ModelNotFoundError, UnavailableError
from .batcher import Batcher, BatchStats, DynamicBatcher
from .runners import ModelInfo, Runner, ThreadRunner, load_and_warm
from .workers import WorkerProcess, worker_specs

log = logging.getLogger(__name__)

Detect = Callable[[Any, DetectOptions], Awaitable[Detections]]  # an image (bytes or pixels) → its detections


@dataclass
class ModelHost:
    """A served model: what it is (``detector``: the model itself, or what its worker processes report of it)
    and its batcher once loaded, or the error that stopped it."""

    name: str
    source: str
    detector: Detector | ModelInfo | None = None
    batcher: Batcher | None = None
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
class Engine:
    """The models of ``settings.served_models``, each in a :class:`ModelHost`. ``connect`` reaches models served
    elsewhere (Ray Serve deployments) instead of loading them; ``observe(name)`` gives a model's per-batch
    callback (the server's metrics)."""

    settings: Settings
    hosts: dict[str, ModelHost]
    ready: bool = False
    on_load_failure: Callable[[], None] | None = None  # called once loading is over if a model failed
    connect: Connect | None = None
    observe: Callable[[str], Callable[[BatchStats], None] | None] = lambda _name: None
    on_restart: Callable[[Runner], None] | None = None  # a worker process was restarted (the server counts them)
    started: float = field(default_factory=time.time)

    @classmethod
    def hosting(cls, settings: Settings, **kwargs: Any) -> Engine:
        """An engine for ``settings.served_models``, nothing loaded yet (:meth:`load_models`)."""
        return cls(
            settings=settings, hosts={m.name: ModelHost(m.name, m.source) for m in settings.served_models}, **kwargs
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
                on_batch=self.observe(host.name),
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
                    runner.detector = await runner.call(load_and_warm, host.source, s, s, s.max_batch_size)
                except BaseException:
                    await runner.stop()
                    raise
                log.info("model %s (%s) ready on %s in the server process", host.name, host.source, runner.device)
            return [runner], runner.detector
        specs, cores = worker_specs(host.name, host.source, s)
        timeout = s.request_timeout + 10
        workers = [WorkerProcess(spec, timeout, self.on_restart, cores) for spec in specs]
        try:
            infos = await asyncio.gather(*(w.start() for w in workers))
        except BaseException:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            raise
        log.info(
            "model %s (%s) ready on %s in %d worker process(es)", host.name, host.source, infos[0].device, len(workers)
        )
        return list(workers), infos[0]

    def frame_detector(self, model: str | None = None) -> Detect:
        """Frames through the batcher of ``model`` (a served model's name; default the first), as the streams and
        the alarm evaluation send them (with the served ``merge`` and ``augment``): the same batches as the
        detection requests."""
        timeout = self.settings.request_timeout

        async def detect(image: Any, options: DetectOptions) -> Detections:
            host = self.host(model)
            options = self.settings.served(options, host.detector)
            try:
                result = await host.batcher.detect(image, options, timeout=timeout)
            except TimeoutError as exc:
                raise HebbianMirrorError(f"no detection within {timeout:g} s") from exc
            return result.detections

        return detect

    async def close(self) -> None:
        """Drain every queued request, then stop the batchers (and their workers)."""
        for host in self.hosts.values():
            if host.batcher is not None:
                await host.batcher.close()
