"""Errors over HTTP, in one place: :data:`STATUS` maps the product's errors (:mod:`hebbian_mirror.errors`) to status
codes; :class:`APIError` is an error that only HTTP has (a status of its own); both are answered as JSON in the
shape each API family expects."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import (
    DecodeTimeoutError,
    HebbianMirrorError,
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    InvalidOptionError,
    NotFoundError,
    QueueFullError,
    SourceError,
    StreamLimitError,
    UnavailableError,
    WorkerCrashedError,
)

log = logging.getLogger(__name__)


class APIError(HebbianMirrorError):
    """An error only HTTP has: its own status code (and headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# The product's errors as HTTP: the first entry the error is an instance of wins (the most specific first); the
# message is the error's own, in the entry's words.
STATUS: list[tuple[type[HebbianMirrorError], int, str]] = [
    (ImageTooLargeError, 413, "{}"),
    (DecodeTimeoutError, 422, "{}"),
    (InvalidImageError, 400, "{}"),
    (InvalidOptionError, 422, "invalid parameter: {}"),
    (InputError, 422, "{}"),
    (NotFoundError, 404, "{}"),
    (QueueFullError, 503, "server busy: {}"),
    (WorkerCrashedError, 503, "{}; it is being restarted: try again"),
    (UnavailableError, 503, "{}"),
    (SourceError, 422, "{}"),
    (StreamLimitError, 422, "{}"),
]


def api_error(exc: HebbianMirrorError) -> APIError:
    """``exc`` as its HTTP answer (500 for one :data:`STATUS` does not list: a bug to fix, not a user's error)."""
    if isinstance(exc, APIError):
        return exc
    for kind, status, words in STATUS:
        if isinstance(exc, kind):
            retry = getattr(exc, "retry_after", None)
            return APIError(status, words.format(exc), {"Retry-After": str(retry)} if retry else None)
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}", {"Connection": "close"})


class BodyTooLargeError(APIError):
    def __init__(self, limit: int) -> None:
        if limit >= 1_000_000:
            super().__init__(413, f"request body is over the {limit / 1e6:g} MB upload limit")
        else:  # a route that takes a small JSON document
            super().__init__(413, f"request body is over this route's {limit / 1e3:g} kB limit")


ErrorBody = Callable[[str, int, str], dict]  # (path, status, message) → the JSON body, in the path's API shape


def install_handlers(app: FastAPI, error_body: ErrorBody) -> None:
    """Answer every error as JSON shaped by ``error_body``."""

    def error_response(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(path, status, message), status_code=status, headers=headers)

    @app.exception_handler(HebbianMirrorError)
    async def _product_error(request: Request, exc: HebbianMirrorError) -> JSONResponse:
        answer = api_error(exc)
        if answer.status == 500:
            log.error("unmapped product error on %s: %r", request.url.path, exc)
        return error_response(request.url.path, answer.status, answer.message, answer.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(request.url.path, 422, "invalid parameter: " + "; ".join(parts))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:  # never delivered; counted as 499
        return error_response(request.url.path, 499, "client disconnected before its request was read")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(request.url.path, 500, f"internal error: {type(exc).__name__}", {"Connection": "close"})
