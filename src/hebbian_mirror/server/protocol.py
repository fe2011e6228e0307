"""The HTTP connection guard: uvicorn's httptools protocol with the limits uvicorn leaves out.

- A request's headers must arrive within ``header_timeout`` seconds of the connection opening (or of the first
  byte of a later request on a kept-alive connection): else 408 and the connection closes. uvicorn restarts
  its only timer on every byte, so a client trickling one byte a second is held forever without this.
- A body the application has stopped reading (its answer was sent early) must still end within
  ``body_timeout`` seconds, else the connection closes; while the application reads, the request guard
  middleware answers 408 itself.
- At most ``max_connections`` connections: one more closes the longest-idle connection (no request in
  progress), or when every connection is busy, is answered 503 and closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def _response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message, "status": status}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """Configure with :func:`guarded_protocol`; uvicorn makes one per connection."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._last_active = 0.0

    # ------------------------------------------------------------------------------------- timers

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self._reading_headers and not self.transport.is_closing():
            message = f"the request headers did not arrive within {self.header_timeout:g} s"
            self.transport.write(_response(408, "Request Timeout", message))
            self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            message = f"the request body did not arrive within {self.body_timeout:g} s"
            self.transport.write(_response(408, "Request Timeout", message))
        self.transport.close()

    # ------------------------------------------------------------------------- uvicorn's callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._last_active = self.loop.time()
        self._arm(self.header_timeout, self._headers_late)
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_active = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._reading_headers = True
        if self._timer is None:  # a later request on a kept-alive connection
            self._arm(self.header_timeout, self._headers_late)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._arm(self.body_timeout + 1.0, self._body_late)  # the guard middleware answers first, at body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._reading_headers = True  # until the next request's headers are in, the connection is idle
        super().on_response_complete()

    # -------------------------------------------------------------------------------- the cap

    def _idle(self) -> bool:
        return self._reading_headers and (self.cycle is None or self.cycle.response_complete)

    def _make_room(self) -> None:
        """Over the cap: close the longest-idle other connection, or refuse this one."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol) and c._idle()]
        if idle:
            oldest = min(idle, key=lambda c: c._last_active)
            oldest.transport.close()
            return
        log.warning("%d connections open, all busy: refusing a new one", len(self.connections))
        message = f"server busy: {self.max_connections} connections open"
        self.transport.write(_response(503, "Service Unavailable", message, "retry-after: 1\r\n"))
        self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedProtocol]:
    """The protocol class to hand uvicorn (``http=``), with these limits."""
    limits = {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections}
    return type("GuardedProtocol", (GuardedProtocol,), limits)
