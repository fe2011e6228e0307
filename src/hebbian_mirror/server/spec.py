"""An API family as a small spec: its routes (each reading a request into pipeline inputs and encoding the
outcome) and the shape of its errors. Register one in :mod:`hebbian_mirror.server.specs`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter


def body_schema(file_field: str | None = None, raw: bool = False, **fields: dict) -> dict:
    """OpenAPI ``requestBody`` of an image route: a multipart form with ``file_field`` (and ``fields``), and/or
    the raw image bytes as the body."""
    content: dict = {}
    if file_field:
        properties = {file_field: {"type": "string", "format": "binary"}} | fields
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": properties, "required": [file_field]}
        }
    if raw:
        content["image/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"content": content, "required": True}}


def plain_error(status: int, message: str) -> dict:
    return {"error": message, "status": status}


@dataclass(frozen=True)
class APISpec:
    name: str
    router: APIRouter
    prefixes: tuple[str, ...] = ()  # paths whose errors (also the ones raised before routing) take this shape
    error_body: Callable[[int, str], dict] = plain_error

    def owns(self, path: str) -> bool:
        return path.startswith(self.prefixes)
