"""The HTTP server: FastAPI on uvicorn over the engine (:mod:`hebbian_mirror.serving`): the API families, limits,
auth, metrics, the status table of the product's errors."""

from .app import create_app

__all__ = ["create_app"]
