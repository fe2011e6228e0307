"""The API families the server speaks. Adding one is a module with an :class:`~..openapi.APISpec` and one line
here."""

from __future__ import annotations

from ..openapi import APISpec, plain_error
from . import deepstack, hebbian, native, oip, weapons

SPECS: tuple[APISpec, ...] = (
    native.SPEC,
    deepstack.SPEC,
    hebbian.SPEC,
    weapons.SPEC,
    oip.SPEC,
)


def error_body(path: str, status: int, message: str) -> dict:
    """An error's JSON body in the shape of the API family that owns ``path``."""
    spec = next((s for s in SPECS if s.owns(path)), None)
    return spec.error_body(status, message) if spec else plain_error(status, message)
