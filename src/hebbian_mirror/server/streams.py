"""Streams over HTTP: ``/v1/streams`` (add, list, remove, arm; the annotated latest frame and an MJPEG live view;
events are in :mod:`.events`). Frames go through the same batcher as the detection requests. Reading needs a key
with the ``view`` scope, adding, removing and arming streams ``admin`` (when the server has keys); sources pass
the server's :class:`~hebbian_mirror.streams.policy.SourcePolicy`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..classes import DANGEROUS_CLASSES
from ..errors import HebbianMirrorError, RuleError, SourceError, StreamError, StreamLimitError
from ..streams.arming import MODES, Schedule
from ..streams.manager import STREAM_NAME, StreamManager, split_stream
from ..streams.media import mask_url
from ..streams.rules import MAX_RULES, AlarmRule, model_classes, stream_rules
from ..streams.watcher import MAX_FPS, StreamConfig
from .auth import api_key, key_of
from .errors import APIError
from .state import ServerState, state_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])
VIEW, ADMIN = [api_key("view")], [api_key("admin")]


BOUNDARY = "frame"
MAX_BODY = 64_000  # bytes of a stream request (the guard middleware cuts a longer one off as it arrives)


class StreamRequest(BaseModel):
    name: str = Field(pattern=STREAM_NAME, description="The stream's name.")
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="Camera URL (rtsp, rtmp, http(s), srt, udp multicast), /dev/videoN, or a video file, image "
        "folder or glob inside a folder the server allows (--allow-source).",
    )
    alarm: list[str] | None = Field(
        default=None, max_length=MAX_RULES, description="Alarm classes (default: the server's)."
    )
    rules: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_RULES, description="Full alarm rules, one per class."
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=MAX_FPS,
        allow_inf_nan=False,
        description=f"Frames per second to process (≤ {MAX_FPS:g}).",
    )
    realtime: bool | None = Field(default=None, description="Play a file at its own pace, as if live.")
    loop: bool = Field(default=False, description="Replay a file forever.")
    tls_verify: bool = Field(default=True, description="Check the camera's TLS certificate (false: self-signed).")
    arming: ArmingRequest | None = Field(
        default=None, description="When its alarms are delivered (default: the server's arm-schedule)."
    )


class ArmingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: list[str] = Field(
        default_factory=list, max_length=28, description="DAYS HH:MM-HH:MM, e.g. mon-fri 18:00-08:00; none: always."
    )
    timezone: str | None = Field(default=None, max_length=64, description="e.g. Europe/Madrid (default: the server's).")


class ArmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal[MODES] = Field(
        description="armed or disarmed (until changed), or schedule (follow the stream's arming windows)."
    )


def create_manager(state: ServerState) -> StreamManager:
    return StreamManager.from_settings(state.settings, state.frame_detector(), forget_removed_sinks=True, commands=True)


def stream_config(state: ServerState, body: StreamRequest, operator: bool = False) -> StreamConfig:
    """The stream a request (or, with ``operator``, the settings' ``--stream``) asks for; :class:`RuleError`
    (422) for rules that cannot work with the default model."""
    s = state.settings
    names = list(state.host(None).detector.class_names)
    if body.rules is not None:
        rules = [AlarmRule.from_dict(r) for r in body.rules]
        if unknown := model_classes([r.label for r in rules], names)[1]:
            raise RuleError(f"the model does not know {', '.join(unknown)}; it knows: {', '.join(names)}")
        rules = [replace(r, label=model_classes([r.label], names)[0][0]) for r in rules]  # as the model spells it
    else:
        rules = stream_rules(s, names, body.alarm)
    tls = None if operator else body.tls_verify
    arming = Schedule.parse(body.arming.windows, body.arming.timezone or s.arm_timezone) if body.arming else None
    return StreamConfig.from_settings(
        s, body.name, body.url, rules, body.fps, body.realtime, body.loop, operator=operator, tls_verify=tls,
        arming=arming,
    )  # fmt: skip


async def start_configured(state: ServerState, manager: StreamManager, loading: asyncio.Task) -> None:
    """Once the models are loaded: start the manager and the streams named in the settings; a configuration
    mistake among them (an alarm class the model does not know, a source the policy refuses, a file that is no
    video) stops the server, with one line naming the stream, before any of them starts. Then say that the
    server is ready."""
    try:
        await manager.start()
        await loading
        if not state.ready:  # a model failed: that stops the server already
            return
        problems, configs = _configured(state)
        for config in configs if not problems else ():
            try:
                await manager.add(config)
            except HebbianMirrorError as exc:  # e.g. a file gone since the command line checked it
                problems.append(f"stream {config.name} ({mask_url(config.url)}): {exc}")
    except Exception as exc:  # the events store cannot open, or a bug: the server must not run half-started
        log.exception("streams not started")
        problems = [f"streams not started: {exc}"]
    if problems:
        state.fail_config("; ".join(problems))
        return
    state.streams_started = True
    s = state.settings
    watching = f"; watching {len(s.streams)} stream(s)" if s.streams else ""
    labels = {r.label for c in configs for r in c.rules} or model_classes(s.alarm, _names(state))[0]
    alarms = f"; alarms for {', '.join(sorted(labels))}" if labels else "; no alarm class this model knows"
    log.info("ready: http://%s:%d serves %s%s%s", s.host, s.port, ", ".join(state.hosts), watching, alarms)


def _names(state: ServerState) -> list[str]:
    return list(state.host(None).detector.class_names)


def _configured(state: ServerState) -> tuple[list[str], list[StreamConfig]]:
    """(problems, stream configs) of the settings' streams and alarm classes, nothing started."""
    s, problems, configs = state.settings, [], []
    if not s.streams and list(s.alarm) != list(DANGEROUS_CLASSES):
        try:
            stream_rules(s, _names(state))
        except HebbianMirrorError as exc:
            problems.append(f"alarm: {exc}")
    for i, entry in enumerate(s.streams, 1):
        name, url = split_stream(entry, i)
        try:
            configs.append(stream_config(state, StreamRequest(name=name, url=url), operator=True))
        except (HebbianMirrorError, ValueError) as exc:  # ValueError: pydantic's, for a name the API refuses
            problems.append(f"stream {name} ({mask_url(url)}): {' '.join(str(exc).split())}")
    return problems, configs


def manager_of(request: Request) -> StreamManager:
    manager = getattr(request.app.state, "streams", None)
    if manager is None or manager.store is None:
        raise APIError(503, "streams are starting", {"Retry-After": "1"})
    return manager


@router.get("/v1/streams", summary="The watched streams and their state", dependencies=VIEW)
async def list_streams(request: Request) -> dict:
    return {"streams": manager_of(request).describe()}


@router.post("/v1/streams", status_code=201, summary="Watch a stream", dependencies=ADMIN)
async def add_stream(request: Request, body: StreamRequest) -> dict:
    manager = manager_of(request)
    config = stream_config(state_of(request), body)
    try:
        watcher = await manager.add(config)
    except StreamLimitError as exc:
        raise APIError(422, str(exc)) from exc
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


@router.get("/v1/streams/{name}", summary="One stream's state", dependencies=VIEW)
async def get_stream(request: Request, name: str) -> dict:
    return _watcher(request, name).describe()


@router.delete("/v1/streams/{name}", status_code=204, summary="Stop watching a stream", dependencies=ADMIN)
async def delete_stream(request: Request, name: str) -> Response:
    _watcher(request, name)
    await manager_of(request).remove(name)
    return Response(status_code=204)


@router.post("/v1/streams/{name}/arming", summary="Arm or disarm a stream's alarms", dependencies=ADMIN)
async def arm_stream(request: Request, name: str, body: ArmRequest) -> dict:
    """armed: alarms delivered whatever the schedule; disarmed: stored, not delivered; schedule: as its windows
    say. Kept across restarts, published on MQTT (``PREFIX/cameras/NAME/arm``, retained)."""
    _watcher(request, name)
    holder, _ = await key_of(request)
    return await manager_of(request).arm(name, body.mode, holder)


@router.get("/v1/streams/{name}/latest.jpg", summary="The newest processed frame, annotated", dependencies=VIEW)
async def latest(request: Request, name: str) -> Response:
    watcher = _watcher(request, name)
    data = await asyncio.to_thread(watcher.latest_jpeg)
    if data is None:
        raise APIError(503, f"stream {name}: no frame processed yet", {"Retry-After": "1"})
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/v1/streams/{name}/live.mjpg", summary="Live annotated view (MJPEG)", dependencies=VIEW)
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
