"""The ASGI application: state and lifespan, middleware, the API families and the operational routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__
from ..config import Settings
from ..detection import Detector
from .auth import api_key
from .errors import install_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware
from .specs import SPECS, error_body
from .state import ModelHost, ServerState, state_of

log = logging.getLogger(__name__)


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
        loader = asyncio.create_task(state.load_models(detectors or {}))
        try:
            yield
        finally:
            await loader
            await state.close()  # uvicorn has finished in-flight requests; drain anything still queued

    app = FastAPI(
        title="Hebbian Mirror",
        version=__version__,
        description="Object detection over HTTP: native API, DeepStack / CodeProject.AI compatible API, "
        "and the original Hebbian Mirror routes.",
        lifespan=lifespan,
    )
    app.state.hm = state
    install_handlers(app, error_body)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_upload_mb * 1_000_000), error_body=error_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for spec in SPECS:
        app.include_router(spec.router)

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["operations"], summary="Every model is loaded and warmed up")
    async def ready(request: Request) -> JSONResponse:
        st = state_of(request)
        models = {h.name: h.status if h.status != "failed" else "failed: " + str(h.error) for h in st.hosts.values()}
        return JSONResponse({"ready": st.ready, "models": models}, status_code=200 if st.ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", dependencies=[api_key()])
    async def prometheus(request: Request) -> Response:
        st = state_of(request)
        depths = {h.name: h.batcher.depth for h in st.hosts.values() if h.batcher}
        return Response(st.metrics.render(depths), media_type=CONTENT_TYPE_LATEST)

    return app
