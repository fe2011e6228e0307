"""The ASGI application: state and lifespan, middleware, the API families and the operational routes."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__
from ..config import Settings
from ..config.components import SCOPES
from ..detection import Detector
from ..serving.engine import Connect
from .auth import api_key, key_of
from .errors import install_handlers
from .events import router as events_router
from .metrics import StreamCollector
from .middleware import MetricsMiddleware, RequestGuardMiddleware
from .openapi import PLAIN_ERROR_SCHEMA, error_responses
from .specs import SPECS, error_body
from .state import ServerState, state_of
from .streams import MAX_BODY as STREAM_BODY
from .streams import create_manager, start_configured
from .streams import router as streams_router

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, detectors: dict[str, Detector] | None = None, connect: Connect | None = None
) -> FastAPI:
    """The server for ``settings.served_models``; ``detectors`` may hand in already loaded models, ``connect``
    reach models served elsewhere (Ray Serve deployments) instead of loading them."""
    state = ServerState.create(settings)
    state.connect = connect
    metrics = state.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(state.load_models(detectors or {}))
        manager = app.state.streams = create_manager(state)
        metrics.registry.register(StreamCollector(manager))
        streams = asyncio.create_task(start_configured(state, manager, loader))
        try:
            yield
        finally:
            await loader
            await asyncio.gather(streams, return_exceptions=True)  # its own errors are already said
            await manager.close()  # running alarms end and their messages are stored before the model stops
            await state.close()  # uvicorn has finished in-flight requests; drain anything still queued

    app = FastAPIOffline(  # /docs and /redoc with their scripts served from the package: they work offline
        title="Hebbian Mirror",
        version=__version__,
        description="Object detection over HTTP: native API, DeepStack / CodeProject.AI compatible API, "
        "and the original Hebbian Mirror routes.",
        lifespan=lifespan,
    )
    app.state.hm = state
    install_handlers(app, error_body)
    app.add_middleware(
        RequestGuardMiddleware,
        max_bytes=int(settings.max_upload_mb * 1_000_000),
        body_timeout=settings.body_timeout,
        max_requests=settings.max_requests,
        error_body=error_body,
        bodies={"/v1/streams": STREAM_BODY, "/v1/cameras": STREAM_BODY},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for spec in SPECS:
        app.include_router(spec.router)
    app.include_router(streams_router)
    app.include_router(events_router)

    @app.get("/", include_in_schema=False)
    async def landing(request: Request) -> HTMLResponse:
        return HTMLResponse(landing_page(state_of(request), str(request.base_url).rstrip("/")))

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Every model is loaded and every worker warm (503 while loading or restarting, or when one failed)",
        responses={
            503: {"description": "Still loading, a worker restarting, or a model failed to load (see `models`)."}
        },
    )
    async def ready(request: Request) -> JSONResponse:
        st = state_of(request)
        models = {h.name: h.status if h.status != "failed" else "failed: " + str(h.error) for h in st.hosts.values()}
        ready = st.is_ready
        return JSONResponse({"ready": ready, "models": models}, status_code=200 if ready else 503)

    @app.get("/v1/auth", tags=["operations"], summary="What the request's API key may do (its scopes)")
    async def whoami(request: Request) -> dict:
        name, scopes = await key_of(request)
        return {
            "name": name,
            "scopes": [s for s in SCOPES if s in scopes],
            "keys": bool(settings.api_key or settings.api_keys),
        }

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text exposition format)",
        dependencies=[api_key("view")],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
            **error_responses(PLAIN_ERROR_SCHEMA, (401,)),
        },
    )
    async def prometheus(request: Request) -> Response:
        st = state_of(request)
        depths = {h.name: h.batcher.depth for h in st.hosts.values() if h.batcher}
        workers = {h.name: h.workers() for h in st.hosts.values()}
        body = st.metrics.render(depths, st.decoder.pixels.used, st.decoder.abandoned, workers)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def landing_page(state: ServerState, base: str) -> str:
    """What a browser sees at ``/``: the models and where to go next."""
    base = html.escape(base)
    models = "".join(
        f"<li><code>{html.escape(h.name)}</code>{' (default)' if h.name == state.default_model else ''}: "
        f"{html.escape(h.status)}</li>"
        for h in state.hosts.values()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hebbian Mirror</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}}</style></head>
<body><h1>Hebbian Mirror {html.escape(__version__)}</h1>
<p>Object detection over HTTP. Models on this server:</p><ul>{models}</ul>
<ul>
<li><a href="docs">API documentation</a>: every route, try it in the browser (or <a href="redoc">ReDoc</a>,
the <a href="openapi.json">OpenAPI schema</a>)</li>
<li><a href="v1/models">/v1/models</a>: the models, their classes and display names</li>
<li><a href="ready">/ready</a>, <a href="health">/health</a>, <a href="metrics">/metrics</a></li>
</ul>
<p>Try it: <code>curl --data-binary @photo.jpg {base}/v1/detect</code>. The web UI runs beside the server:
<code>hebbian-mirror ui --api {base}</code>.</p>
</body></html>
"""
