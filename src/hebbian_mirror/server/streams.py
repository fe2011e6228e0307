"""Streams and events over HTTP: ``/v1/streams`` (add, list, remove; the annotated latest frame and an MJPEG
live view) and ``/v1/events`` (query, one event, its snapshot and clip). Frames go through the same batcher as
the detection requests. Every route sits behind the API key when the server has one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from ..config import DeliverySettings, EventSettings
from ..errors import HebbianMirrorError, RuleError, SourceError, StreamError
from ..streams.manager import StreamManager, split_stream
from ..streams.rules import AlarmRule, stream_rules
from ..streams.watcher import StreamConfig
from .auth import api_key
from .errors import APIError
from .state import ServerState, state_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"], dependencies=[api_key()])
BOUNDARY = "frame"


class StreamRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="The stream's name.")
    url: str = Field(min_length=1, description="Video file, stream URL, /dev/videoN or image folder / glob.")
    alarm: list[str] | None = Field(default=None, description="Alarm classes (default: the server's).")
    rules: list[dict[str, Any]] | None = Field(default=None, description="Full alarm rules, one per class.")
    fps: float | None = Field(default=None, gt=0, description="Frames per second to process.")
    realtime: bool | None = Field(default=None, description="Play a file at its own pace, as if live.")
    loop: bool = Field(default=False, description="Replay a file forever.")


def create_manager(state: ServerState) -> StreamManager:
    s = state.settings
    return StreamManager.from_settings(s.part(EventSettings), s.part(DeliverySettings), state.frame_detector())


def stream_config(state: ServerState, body: StreamRequest) -> StreamConfig:
    """The stream a request (or the settings' ``--stream``) asks for; :class:`RuleError` (422) for rules that
    cannot work with the default model."""
    s = state.settings
    names = list(state.host(None).detector.class_names)
    if body.rules is not None:
        rules = [AlarmRule.from_dict(r) for r in body.rules]
        if unknown := [r.label for r in rules if r.label not in names]:
            raise RuleError(f"the model does not know {', '.join(unknown)}")
    else:
        rules = stream_rules(s, names, body.alarm)
    return StreamConfig.from_settings(s, body.name, body.url, rules, body.fps, body.realtime, body.loop)


async def start_configured(state: ServerState, manager: StreamManager) -> None:
    """Start the manager and the streams named in the settings, once the default model is ready."""
    await manager.start()
    default = state.hosts[state.default_model]
    while state.settings.streams and default.batcher is None and not default.error:
        await asyncio.sleep(0.1)
    for i, entry in enumerate(state.settings.streams, 1):
        name, url = split_stream(entry, i)
        try:
            await manager.add(stream_config(state, StreamRequest(name=name, url=url)))
        except (HebbianMirrorError, ValueError) as exc:
            log.error("stream %s (%s) not started: %s", name, url, exc)


def manager_of(request: Request) -> StreamManager:
    manager = getattr(request.app.state, "streams", None)
    if manager is None or manager.store is None:
        raise APIError(503, "streams are starting", {"Retry-After": "1"})
    return manager


@router.get("/v1/streams", summary="The watched streams and their state")
async def list_streams(request: Request) -> dict:
    return {"streams": manager_of(request).describe()}


@router.post("/v1/streams", status_code=201, summary="Watch a stream")
async def add_stream(request: Request, body: StreamRequest) -> dict:
    manager = manager_of(request)
    config = stream_config(state_of(request), body)
    try:
        watcher = await manager.add(config)
    except StreamError as exc:
        raise APIError(409, str(exc)) from exc
    except (SourceError, HebbianMirrorError) as exc:
        raise APIError(422, str(exc)) from exc
    return watcher.describe()


def _watcher(request: Request, name: str):
    try:
        return manager_of(request).get(name)
    except StreamError as exc:
        raise APIError(404, str(exc)) from exc


@router.get("/v1/streams/{name}", summary="One stream's state")
async def get_stream(request: Request, name: str) -> dict:
    return _watcher(request, name).describe()


@router.delete("/v1/streams/{name}", status_code=204, summary="Stop watching a stream")
async def delete_stream(request: Request, name: str) -> Response:
    _watcher(request, name)
    await manager_of(request).remove(name)
    return Response(status_code=204)


@router.get("/v1/streams/{name}/latest.jpg", summary="The newest processed frame, annotated")
async def latest(request: Request, name: str) -> Response:
    watcher = _watcher(request, name)
    data = await asyncio.to_thread(watcher.latest_jpeg)
    if data is None:
        raise APIError(503, f"stream {name}: no frame processed yet", {"Retry-After": "1"})
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/v1/streams/{name}/live.mjpg", summary="Live annotated view (MJPEG)")
async def live(request: Request, name: str) -> StreamingResponse:
    watcher = _watcher(request, name)

    async def frames() -> AsyncIterator[bytes]:
        while not await request.is_disconnected() and name in manager_of(request).watchers:
            async with watcher.new_frame:
                try:
                    await asyncio.wait_for(watcher.new_frame.wait(), timeout=2.0)
                except TimeoutError:
                    continue
            data = await asyncio.to_thread(watcher.latest_jpeg)
            if data:
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                yield head.encode() + data + b"\r\n"

    return StreamingResponse(frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


@router.get("/v1/events", summary="Stored events, newest first")
async def list_events(
    request: Request,
    stream: str | None = None,
    label: str | None = None,
    since: float | None = Query(None, description="Start time at or after (Unix seconds)."),
    until: float | None = Query(None, description="Start time before (Unix seconds)."),
    active: bool | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> dict:
    store = manager_of(request).store
    events = await asyncio.to_thread(
        lambda: store.query(
            stream=stream, label=label, since=since, until=until, active=active, limit=limit, offset=offset
        )
    )
    return {"events": [e.to_dict() for e in events]}


def _event(request: Request, event_id: str):
    store = manager_of(request).store
    event = store.get(event_id)
    if event is None:
        raise APIError(404, f"no event {event_id!r}")
    return store, event


@router.get("/v1/events/{event_id}", summary="One event")
async def get_event(request: Request, event_id: str) -> dict:
    return _event(request, event_id)[1].to_dict()


@router.get("/v1/events/{event_id}/snapshot.jpg", summary="The event's annotated snapshot")
async def snapshot(request: Request, event_id: str) -> FileResponse:
    store, _ = _event(request, event_id)
    path = store.snapshot_path(event_id)
    if path is None:
        raise APIError(404, f"event {event_id} has no snapshot")
    return FileResponse(path, media_type="image/jpeg")


@router.get("/v1/events/{event_id}/clip.mp4", summary="The event's clip")
async def clip(request: Request, event_id: str) -> FileResponse:
    store, event = _event(request, event_id)
    path = store.clip_path(event_id)
    if path is None:
        why = "is still running" if event.end is None else "has no clip"
        raise APIError(404, f"event {event_id} {why}")
    return FileResponse(path, media_type="video/mp4")
