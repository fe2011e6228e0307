"""Reading request bodies: raw image bytes, and multipart forms (parse errors are the client's 400)."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect

from .errors import APIError

RAW_IMAGE_TYPES = ("image/", "application/octet-stream", "application/x-www-form-urlencoded")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def raw_image_body(request: Request) -> bytes:
    """The body of a raw-image request (curl --data-binary, the original Hebbian Mirror clients)."""
    kind = media_type(request)
    if kind and not kind.startswith(RAW_IMAGE_TYPES):
        raise APIError(415, f"unsupported media type {kind!r}: send the image bytes (image/*) as the body")
    return await request.body()


async def read_form(request: Request) -> FormData:
    """The request's form (parsed once; Starlette keeps it for later calls)."""
    try:
        return await request.form(max_files=4, max_fields=32)
    except (APIError, ClientDisconnect):
        raise
    except Exception as exc:
        raise APIError(400, f"malformed multipart body: {exc}") from exc


async def form_image(request: Request, field: str) -> tuple[bytes, dict[str, str]]:
    """The file in multipart field ``field`` and the form's text fields."""
    kind = media_type(request)
    if kind != "multipart/form-data":
        raise APIError(
            415, f"unsupported media type {kind or 'none'!r}: send multipart/form-data with a '{field}' file field"
        )
    form = await read_form(request)
    texts = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get(field)
    if upload is None:
        raise APIError(400, f"no image: the form has no '{field}' field")
    if isinstance(upload, UploadFile):
        data = await upload.read()
        await form.close()
    else:
        data = upload.encode()
    return data, texts


async def image_body(request: Request, field: str = "image") -> bytes:
    """Multipart field ``field``, or the raw body."""
    if media_type(request) == "multipart/form-data":
        return (await form_image(request, field))[0]
    return await raw_image_body(request)
