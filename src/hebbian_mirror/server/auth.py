"""API-key authentication, as a route dependency: checked before the request's body is read (except for
a DeepStack client that sends its key as a form field, the only place it can put one)."""

from __future__ import annotations

import secrets

from fastapi import Depends, Request

from .bodies import FORM_TYPES, media_type, read_form
from .errors import APIError
from .state import state_of


def _matches(candidate: str | None, expected: str) -> bool:
    return bool(candidate) and secrets.compare_digest(candidate.encode(), expected.encode())


def api_key(form_field: str | None = None):
    """A dependency requiring the server's API key, when it has one: ``X-API-Key``, ``Authorization: Bearer``
    or, with ``form_field``, that field of a form body."""

    async def check(request: Request) -> None:
        expected = state_of(request).settings.api_key
        if not expected:
            return
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if _matches(request.headers.get("x-api-key"), expected) or _matches(bearer, expected):
            return
        if form_field and media_type(request) in FORM_TYPES:
            value = (await read_form(request)).get(form_field)
            if isinstance(value, str) and _matches(value, expected):
                return
        raise APIError(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})

    return Depends(check)
