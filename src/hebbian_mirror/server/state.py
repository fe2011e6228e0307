"""What the server holds: the engine (its models, their batchers) plus what only HTTP needs, its metrics and the
decoder that checks each request's image."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from ..config import Settings
from ..serving.engine import Engine
from .decoder import Decoder
from .metrics import Metrics


@dataclass
class ServerState(Engine):
    metrics: Metrics = field(default_factory=Metrics)
    decoder: Decoder | None = None

    def __post_init__(self) -> None:
        self.observe, self.on_restart = self.metrics.batch_observer, self.metrics.worker_restarted

    @classmethod
    def create(cls, settings: Settings) -> ServerState:
        """The state for ``settings.served_models``, nothing loaded yet (:meth:`Engine.load_models`)."""
        decoder = Decoder(settings.decode_workers, settings.decode_timeout, settings.max_pixels, settings.pixel_budget)
        return cls.hosting(settings, decoder=decoder)

    async def close(self) -> None:
        """Drain every queued request, then stop the batchers (and their workers) and the decoder."""
        await super().close()
        if self.decoder is not None:
            self.decoder.close()


def state_of(request: Request) -> ServerState:
    return request.app.state.hm
