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


PLAIN_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["error", "status"],
}

# What each error status means on this server (the schema's descriptions; the UI says the same in its words).
STATUS_MEANINGS = {
    400: "The image cannot be read (not an image, damaged, empty), or the form is malformed.",
    401: "Missing or wrong API key (only when the server has one).",
    404: "No model of that name on this server.",
    408: "The request body did not arrive within the body timeout; the connection is closed.",
    413: "The body is over the upload limit, or the image has more pixels than allowed.",
    415: "Unsupported Content-Type for this route.",
    422: "A parameter is out of range or names an unknown class, or the image took too long to decode.",
    503: "Busy (queue full, too many requests) or the model is still loading: try again after Retry-After.",
    504: "No result within the request timeout.",
}
IMAGE_ERRORS = (400, 401, 404, 408, 413, 415, 422, 503, 504)  # a detection route can answer each of these
DEFAULT_MODEL_ERRORS = tuple(s for s in IMAGE_ERRORS if s != 404)  # a detection route with no model choice
READ_ERRORS = (401, 503)  # a route that only reads the server's state


def error_responses(schema: dict, statuses: tuple[int, ...]) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for ``statuses``, each with its meaning and the family's error ``schema``."""
    return {
        status: {"description": STATUS_MEANINGS[status], "content": {"application/json": {"schema": schema}}}
        for status in statuses
    }


@dataclass(frozen=True)
class APISpec:
    name: str
    router: APIRouter
    prefixes: tuple[str, ...] = ()  # paths whose errors (also the ones raised before routing) take this shape
    error_body: Callable[[int, str], dict] = plain_error

    def owns(self, path: str) -> bool:
        return path.startswith(self.prefixes)
