"""The ASGI application: model loading, batchers, middleware, and the operational routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__
from ..config import Settings
from ..detection import DetectOptions, Detector
from ..zoo import load_detector
from .batcher import DynamicBatcher, inference_thread
from .core import ModelHost, ServerState, check_api_key, state_of
from .errors import install_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware

log = logging.getLogger(__name__)


def _load_and_warm(name: str, settings: Settings, preloaded: Detector | None) -> Detector:
    detector = preloaded or load_detector(name, settings)
    warm = np.full((480, 640, 3), 114, dtype=np.uint8)
    for n in (1, min(settings.max_batch_size, 4)):  # first calls allocate; do it before real traffic
        detector.detect([warm] * n, DetectOptions())
    log.info("model %s ready on %s", detector.name, detector.device)
    return detector


async def _load_models(state: ServerState, preloaded: dict[str, Detector]) -> None:
    s = state.settings
    loop = asyncio.get_running_loop()
    for host in state.hosts.values():
        executor = inference_thread(host.name)
        try:
            detector = await loop.run_in_executor(executor, _load_and_warm, host.name, s, preloaded.get(host.name))
        except Exception as exc:
            log.error("model %s failed to load: %s", host.name, exc)
            host.error = str(exc)
            executor.shutdown(wait=False)
            continue
        batcher = DynamicBatcher(
            detector,
            s.max_batch_size,
            s.max_batch_delay_ms / 1000,
            s.max_queue,
            on_batch=state.metrics.batch_observer(host.name),
            max_pixels=s.max_pixels,
            executor=executor,
        )
        batcher.start()
        host.detector, host.batcher = detector, batcher
    state.ready = all(h.batcher is not None for h in state.hosts.values())


def create_app(settings: Settings, detectors: dict[str, Detector] | None = None) -> FastAPI:
    """The server for ``settings.served_models``; ``detectors`` may hand in already loaded models."""
    metrics = Metrics()
    state = ServerState(
        settings=settings,
        metrics=metrics,
        hosts={name: ModelHost(name) for name in settings.served_models},
        decode_pool=ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode"),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load_models(state, detectors or {}))
        try:
            yield
        finally:
            await loader
            # uvicorn has finished in-flight requests; drain anything still queued, then stop
            for host in state.hosts.values():
                if host.batcher is not None:
                    await host.batcher.close()
            state.decode_pool.shutdown(wait=True)

    app = FastAPI(
        title="Hebbian Mirror",
        version=__version__,
        description="Object detection over HTTP: native API, DeepStack / CodeProject.AI compatible API, "
        "and the original Hebbian Mirror routes.",
        lifespan=lifespan,
    )
    app.state.hm = state
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_upload_mb * 1_000_000))
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    from .deepstack import router as deepstack_router
    from .hebbian import router as hebbian_router
    from .native import router as native_router

    app.include_router(native_router)
    app.include_router(deepstack_router)
    app.include_router(hebbian_router)

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["operations"], summary="Every model is loaded and warmed up")
    async def ready(request: Request) -> JSONResponse:
        st = state_of(request)
        models = {
            h.name: "ready" if h.batcher else ("failed: " + h.error if h.error else "loading")
            for h in st.hosts.values()
        }
        return JSONResponse({"ready": st.ready, "models": models}, status_code=200 if st.ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus(request: Request) -> Response:
        check_api_key(request)
        st = state_of(request)
        depths = {h.name: h.batcher.depth for h in st.hosts.values() if h.batcher}
        return Response(st.metrics.render(depths), media_type=CONTENT_TYPE_LATEST)

    return app
