"""Events over HTTP: ``/v1/events`` (query, one event, its snapshot, frame and clip, its reviews) and reviewing
them. Reading needs a key with the ``view`` scope (an event's files also open with a link the server signed, as
delivered messages carry them), reviewing ``review``."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import LinkError
from ..streams.eventdb import MAX_NOTE, MAX_REVIEWER, REVIEW_STATES, UNREVIEWED
from .auth import api_key, key_of
from .errors import APIError
from .streams import manager_of

router = APIRouter(tags=["events"])
VIEW, REVIEW = [api_key("view")], [api_key("review")]
ReviewState = Literal[REVIEW_STATES]
ReviewFilter = Literal[(UNREVIEWED, *REVIEW_STATES)]


def _view_or_link():
    """An event's file: a key with the ``view`` scope, or a link this server signed (``expires`` and ``sig``,
    as delivered messages carry them) that has not expired: 403 when forged, 410 when expired."""
    view = VIEW[0].dependency

    async def check(request: Request, event_id: str) -> None:
        query = request.query_params
        if "sig" not in query and "expires" not in query:
            await view(request)
            return
        signer = manager_of(request).signer
        file = request.url.path.rsplit("/", 1)[-1]
        try:
            signer.check(event_id, file, query.get("expires", ""), query.get("sig", ""))
        except LinkError as exc:
            raise APIError(exc.status, str(exc)) from None

    check.scope = "view"  # type: ignore[attr-defined]  # what it stands for, for the docs and the tests
    return Depends(check)


LINKED = [_view_or_link()]


@router.get("/v1/events", summary="Stored events, newest first", dependencies=VIEW)
async def list_events(
    request: Request,
    stream: str | None = Query(None, max_length=64),
    label: str | None = Query(None, max_length=100),
    since: float | None = Query(None, allow_inf_nan=False, description="Start time at or after (Unix seconds)."),
    until: float | None = Query(None, allow_inf_nan=False, description="Start time before (Unix seconds)."),
    active: bool | None = None,
    review: ReviewFilter | None = Query(None, description="Review state, or unreviewed: nobody has looked yet."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000_000),
) -> dict:
    store = manager_of(request).store
    events = await asyncio.to_thread(
        lambda: store.query(
            stream=stream,
            label=label,
            since=since,
            until=until,
            active=active,
            limit=limit,
            offset=offset,
            review=review,
        )
    )
    return {"events": [e.to_dict() for e in events]}


class ReviewRequest(BaseModel):
    """A person's verdict on an event."""

    model_config = ConfigDict(extra="forbid")

    state: ReviewState = Field(
        description="acknowledged (seen, not judged yet), confirmed (a real threat) or false_alarm (nothing "
        "dangerous: a hard negative for training)."
    )
    note: str | None = Field(default=None, max_length=MAX_NOTE, description="What the reviewer saw.")
    by: str | None = Field(
        default=None, min_length=1, max_length=MAX_REVIEWER, description="Who (default: the API key's holder)."
    )


@router.post("/v1/events/{event_id}/review", summary="Review an event", dependencies=REVIEW)
async def review_event(request: Request, event_id: str, body: ReviewRequest) -> dict:
    """Acknowledge an event, confirm it or mark it a false alarm; the change is delivered to every webhook and
    MQTT receiver as its own ``alarm.review`` message (in order, at least once). Needs the ``review`` scope."""
    holder, _ = await key_of(request)
    manager = manager_of(request)
    event = await manager.review(event_id, body.state, body.by or holder, body.note)
    if event is None:
        raise APIError(404, f"no event {event_id!r}")
    return event.to_dict()


@router.get("/v1/events/{event_id}/reviews", summary="Every review of an event", dependencies=VIEW)
async def event_reviews(request: Request, event_id: str) -> dict:
    store, _ = await _event(request, event_id)
    return {"reviews": await asyncio.to_thread(store.reviews, event_id)}


async def _event(request: Request, event_id: str):
    store = manager_of(request).store
    event = await asyncio.to_thread(store.get, event_id)  # off the loop: a write may hold the store for an fsync
    if event is None:
        raise APIError(404, f"no event {event_id!r}")
    return store, event


@router.get("/v1/events/{event_id}", summary="One event", dependencies=VIEW)
async def get_event(request: Request, event_id: str) -> dict:
    return (await _event(request, event_id))[1].to_dict()


@router.get("/v1/events/{event_id}/snapshot.jpg", summary="The event's annotated snapshot", dependencies=LINKED)
async def snapshot(request: Request, event_id: str) -> FileResponse:
    return await _file(request, event_id, "snapshot.jpg", "image/jpeg", "has no snapshot")


@router.get("/v1/events/{event_id}/frame.jpg", summary="The snapshot's frame, undrawn", dependencies=LINKED)
async def frame(request: Request, event_id: str) -> FileResponse:
    return await _file(request, event_id, "frame.jpg", "image/jpeg", "has no frame")


@router.get("/v1/events/{event_id}/clip.mp4", summary="The event's clip", dependencies=LINKED)
async def clip(request: Request, event_id: str) -> FileResponse:
    return await _file(request, event_id, "clip.mp4", "video/mp4", "has no clip", "is still running")


@router.get(
    "/v1/events/{event_id}/evidence.mp4", summary="The evidence clip, cut from the camera's stream", dependencies=LINKED
)
async def evidence(request: Request, event_id: str) -> FileResponse:
    running = "is still running or within its last seconds"
    return await _file(request, event_id, "evidence.mp4", "video/mp4", "has no evidence clip", running)


@router.get("/v1/events/{event_id}/evidence.json", summary="The evidence clip's manifest", dependencies=LINKED)
async def evidence_manifest(request: Request, event_id: str) -> FileResponse:
    running = "is still running or within its last seconds"
    return await _file(request, event_id, "evidence.json", "application/json", "has no evidence clip", running)


async def _file(
    request: Request, event_id: str, name: str, media_type: str, missing: str, running: str | None = None
) -> FileResponse:
    """One of an event's files; 404 saying why when it has none (``running``: while the event still runs)."""
    store, event = await _event(request, event_id)
    path = store.file_path(event_id, name)
    if path is None:
        why = running if running and event.end is None else missing
        raise APIError(404, f"event {event_id} {why}")
    return FileResponse(path, media_type=media_type)
