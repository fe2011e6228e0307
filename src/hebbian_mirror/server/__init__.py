"""The HTTP server: FastAPI on uvicorn, one dynamic batcher per model."""

from .app import create_app

__all__ = ["create_app"]
