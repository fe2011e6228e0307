"""Running the server: uvicorn with the connection guard, and an access log that never shows a secret."""

from __future__ import annotations

import logging
import re

from ..config import Settings
from ..errors import ConfigError, ModelNotFoundError
from .protocol import guarded_protocol

_SECRET_PARAM = re.compile(r"(?i)([?&](?:api[_-]?key|apikey|key|token|access[_-]?token|password)=)[^&\s\"]*")


def scrub(text: str) -> str:
    """``text`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", text)


class ScrubSecrets(logging.Filter):
    """Rewrites uvicorn's access-log records so that a key sent in the query string is not written down."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        return True


def serve(settings: Settings) -> None:
    """Serve ``settings.served_models`` until SIGINT / SIGTERM, then drain. A model that fails to load stops
    the server: :class:`ModelNotFoundError` names it and why."""
    import uvicorn

    from .app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(settings.header_timeout, settings.body_timeout, settings.max_connections),
        log_level=settings.log_level,
        access_log=settings.log_level in ("info", "debug"),
        timeout_graceful_shutdown=int(settings.request_timeout) + 1,
    )
    logging.getLogger("uvicorn.access").addFilter(ScrubSecrets())  # after uvicorn.Config set up logging
    server = uvicorn.Server(config)
    state = app.state.hm
    state.on_load_failure = state.on_config_error = lambda: setattr(server, "should_exit", True)
    server.run()
    if state.config_error:
        raise ConfigError(state.config_error)
    if failed := [f"{h.name} ({h.source}): {h.error}" for h in state.hosts.values() if h.error]:
        raise ModelNotFoundError("could not load " + "; ".join(failed))
