"""API keys and their scopes, as route dependencies: checked before the request's body is read (except for a
DeepStack client that sends its key as a form field, the only place it can put one).

A server has no key (everything open), one ``api_key`` (every scope), and/or ``api_keys`` each with its scopes:
``detect`` (detection routes), ``view`` (streams, events, their pictures, metrics), ``review`` (judging events),
``admin`` (adding and removing cameras). A missing or unknown key is 401; a known key without the route's scope
is 403."""

from __future__ import annotations

from fastapi import Depends, Request

from ..config.components import SCOPES
from .bodies import FORM_TYPES, media_type, read_form
from .errors import APIError
from .state import state_of

WHAT = {
    "detect": "run detection",
    "view": "see streams, events and metrics",
    "review": "review events",
    "admin": "add or remove cameras",
}


async def key_of(request: Request, form_field: str | None = None) -> tuple[str | None, frozenset[str]]:
    """(holder, scopes) of the key the request carries: ``X-API-Key``, ``Authorization: Bearer`` or, with
    ``form_field``, that field of a form body; 401 when the server has keys and this is none of them."""
    settings = state_of(request).settings
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    for candidate in (request.headers.get("x-api-key"), bearer):
        if (found := settings.scopes_of(candidate)) is not None:
            return found
    if form_field and media_type(request) in FORM_TYPES:
        value = (await read_form(request)).get(form_field)
        if isinstance(value, str) and (found := settings.scopes_of(value)) is not None:
            return found
    raise APIError(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def api_key(scope: str = "detect", form_field: str | None = None):
    """A dependency requiring a key with ``scope`` (see the module docstring)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")

    async def check(request: Request) -> None:
        _, scopes = await key_of(request, form_field)
        if scope not in scopes:
            raise APIError(403, f"this API key may not {WHAT[scope]}: that needs a key with the {scope!r} scope")

    check.scope = scope  # type: ignore[attr-defined]  # what the route needs, for the docs and the tests
    return Depends(check)
