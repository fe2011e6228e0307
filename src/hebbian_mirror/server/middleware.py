"""ASGI middleware: the request guard (admission, upload size, body deadline, connection hygiene) and
per-route request metrics."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, BodyTooLargeError, ErrorBody
from .metrics import Metrics

UNLIMITED = ("/health", "/ready", "/metrics")  # cheap, and what an operator needs most when the server is busy


class RequestGuardMiddleware:
    """What is known before a request's body is read is answered before it is read, and a body must arrive
    in time:

    - more than ``max_requests`` in progress → 503 with ``Retry-After`` (health, readiness and metrics exempt);
    - a ``Content-Length`` over ``max_bytes`` (or over the smaller limit ``bodies`` gives a path prefix: the
      control routes take small JSON documents) → 413; a streamed body is cut off as soon as it passes the
      limit, so an oversized upload is never held in memory whole;
    - a body not complete ``body_timeout`` seconds after the request started (trickled, or shorter than its
      ``Content-Length``) → 408.

    An error answered while the body is still unread carries ``Connection: close`` when the rest cannot be
    skipped cheaply (408, 413, or no length given); otherwise the server skips the rest of the body and the
    connection stays usable, so a keep-alive client never meets a reset."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_timeout: float,
        max_requests: int,
        error_body: ErrorBody,
        bodies: dict[str, int] | None = None,
    ) -> None:
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout
        self.max_requests, self.error_body = max_requests, error_body
        self.bodies = bodies or {}
        self.in_progress = 0

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str, headers: dict[str, str]) -> None:
        body = json.dumps(self.error_body(scope["path"], status, message)).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")  # None with a body: chunked, its size unknown
        complete = b"transfer-encoding" not in headers and length in (None, b"0")  # no body at all
        received = 0
        limit = next((n for prefix, n in self.bodies.items() if scope["path"].startswith(prefix)), self.max_bytes)

        async def hygienic_send(message: Message) -> None:
            start = message["type"] == "http.response.start"
            if start and not complete and (length is None or message["status"] in (408, 413)):
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(scope, hygienic_send, 413, BodyTooLargeError(limit).message, {})
            return
        if self.in_progress >= self.max_requests and scope["path"] not in UNLIMITED:
            message = f"server busy: {self.max_requests} requests in progress"
            await self._refuse(scope, hygienic_send, 503, message, {"Retry-After": "1"})
            return
        deadline = time.monotonic() + self.body_timeout

        async def guarded_receive() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise APIError(408, f"the request body did not arrive within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
                complete = not message.get("more_body", False)
            return message

        self.in_progress += 1
        try:
            await self.app(scope, guarded_receive, hygienic_send)
        finally:
            self.in_progress -= 1


class MetricsMiddleware:
    """Count requests by route template and status (499: the client left before its answer), and time them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - start)
