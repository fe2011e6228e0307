"""What the server holds: the engine (its models, their batchers) plus what only HTTP needs, its metrics and the
decoder that checks each request's image."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from ..config import Settings
from ..serving.engine import Engine
from .decoder import Decoder
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class ServerState(Engine):
    metrics: Metrics = field(default_factory=Metrics)
    decoder: Decoder | None = None
    streams_started: bool = False  # the configured streams are being watched (ready needs it)
    config_error: str | None = None  # a configuration mistake found once the model was loaded: the server stops
    on_config_error: Callable[[], None] | None = None
    camera_problems: list[str] = field(default_factory=list)  # cameras of the camera file that are not watched

    def __post_init__(self) -> None:
        self.observe, self.on_restart = self.metrics.batch_observer, self.metrics.worker_restarted

    @classmethod
    def create(cls, settings: Settings) -> ServerState:
        """The state for ``settings.served_models``, nothing loaded yet (:meth:`Engine.load_models`)."""
        decoder = Decoder(settings.decode_workers, settings.decode_timeout, settings.max_pixels, settings.pixel_budget)
        return cls.hosting(settings, decoder=decoder)

    @property
    def is_ready(self) -> bool:
        """Every model loaded and warm, and the configured streams being watched."""
        return Engine.is_ready.fget(self) and self.streams_started

    def fail_config(self, message: str) -> None:
        """A configuration mistake: said in one line, and the server stops (``serve`` exits non-zero with it)."""
        self.config_error = message
        log.critical("configuration: %s", message)
        if self.on_config_error is not None:
            self.on_config_error()

    async def close(self) -> None:
        """Drain every queued request, then stop the batchers (and their workers) and the decoder."""
        await super().close()
        if self.decoder is not None:
            self.decoder.close()


def state_of(request: Request) -> ServerState:
    return request.app.state.hm
