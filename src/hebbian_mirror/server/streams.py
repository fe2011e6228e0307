"""Streams over HTTP: ``/v1/streams`` (add, list, remove, arm; the annotated latest frame and an MJPEG live view;
events are in :mod:`.events`). Frames go through the same batcher as the detection requests. Reading needs a key
with the ``view`` scope, adding, removing and arming streams ``admin`` (when the server has keys); sources pass
the server's :class:`~hebbian_mirror.streams.policy.SourcePolicy`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..classes import DANGEROUS_CLASSES
from ..errors import (
    ConfigError,
    HebbianMirrorError,
    InvalidOptionError,
    RuleError,
    SourceError,
    StreamError,
    StreamLimitError,
)
from ..streams.arming import MODES, Schedule
from ..streams.camerafile import URL_FIELDS, Camera, CameraFile, parse_cameras
from ..streams.manager import StreamManager, split_stream
from ..streams.media import mask_url
from ..streams.rules import model_classes, parse_zones, stream_rules
from ..streams.watcher import StreamConfig
from .auth import api_key, key_of
from .errors import APIError
from .state import ServerState, state_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])
VIEW, ADMIN = [api_key("view")], [api_key("admin")]


BOUNDARY = "frame"
MAX_BODY = 64_000  # bytes of a stream request (the guard middleware cuts a longer one off as it arrives)


class ArmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal[MODES] = Field(
        description="armed or disarmed (until changed), or schedule (follow the stream's arming windows)."
    )


def create_manager(state: ServerState) -> StreamManager:
    return StreamManager.from_settings(state.settings, state.frame_detector(), forget_removed_sinks=True, commands=True)


def stream_config(state: ServerState, body: Camera, operator: bool = False) -> StreamConfig:
    """The stream a camera entry (a request's, the settings file's, or with ``operator`` the settings'
    ``--stream``) asks for; 422s for a model the server does not serve and rules that cannot work with it."""
    s = state.settings
    if body.model is not None and body.model not in state.hosts:
        raise InvalidOptionError(
            f"model: this server serves no model {body.model!r}; it serves {', '.join(state.hosts)}"
        )
    names = list(state.host(body.model).detector.class_names)
    if (rules := body.alarm_rules()) is not None:
        if unknown := model_classes([r.label for r in rules], names)[1]:
            raise RuleError(f"rules: the model does not know {', '.join(unknown)}; it knows: {', '.join(names)}")
        rules = [replace(r, label=model_classes([r.label], names)[0][0]) for r in rules]  # as the model spells it
    else:
        masks = parse_zones(body.masks, "masks")
        rules = [replace(r, masks=r.masks + masks) for r in stream_rules(s, names, body.alarm)]
    if any(r.held for r in rules) and not model_classes(["person"], names)[0]:
        raise RuleError("rules: held needs a model that knows people (person); this one does not")
    tls = None if operator else body.tls_verify
    arming = Schedule.parse(body.arming.windows, body.arming.timezone or s.arm_timezone) if body.arming else None
    detect_url, record_url = body.addresses()
    config = StreamConfig.from_settings(
        s, body.name, detect_url, rules, body.fps, body.realtime, body.loop, operator=operator,
        tls_verify=tls,
        arming=arming,
    )  # fmt: skip
    config.served, config.model = body.model, body.model or config.model
    config.record_url = record_url  # evidence from another stream than the detector's, if any
    if body.motion_gate is not None:  # else the server's, as from_settings set it
        config.motion_gate = body.motion_gate
    return config


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
        if not problems:
            await _start_cameras(state, manager)
    except Exception as exc:  # the events store cannot open, or a bug: the server must not run half-started
        log.exception("streams not started")
        problems = [f"streams not started: {exc}"]
    if problems:
        state.fail_config("; ".join(problems))
        return
    state.streams_started = True
    s = state.settings
    watching = f"; watching {len(manager.watchers)} stream(s)" if manager.watchers else ""
    labels = {r.label for c in configs for r in c.rules} or model_classes(s.alarm, _names(state))[0]
    alarms = f"; alarms for {', '.join(sorted(labels))}" if labels else "; no alarm class this model knows"
    log.info("ready: http://%s:%d serves %s%s%s", s.host, s.port, ", ".join(state.hosts), watching, alarms)


async def _start_cameras(state: ServerState, manager: StreamManager) -> None:
    """The cameras of the camera file: each valid, enabled one watched; one that cannot be (a field wrong, a
    model not served, a source refused) is logged and listed in ``GET /v1/streams``'s ``problems``, and the others
    go on."""
    s = state.settings
    where = CameraFile(s.camera_file)
    entries = await asyncio.to_thread(where.entries)
    cameras, state.camera_problems = parse_cameras(entries)
    if s.cameras and where.path != getattr(s, "_config_file", None):
        state.camera_problems.insert(0, f"[[cameras]] of the settings file not read: cameras_file is {where.path}")
    elif s.cameras and not entries:  # under [hebbian_mirror] or [alarm]: the settings read them, the file does not
        state.camera_problems.insert(0, f"{where.path}: write the cameras as top-level [[cameras]] tables")
    for camera in cameras:
        if not camera.enabled:
            continue
        try:
            config = stream_config(state, camera)
            await manager.add(config, _detector(state, config))
        except Exception as exc:  # whatever one camera's trouble, the others start
            state.camera_problems.append(f"camera {camera.name!r}: {' '.join(str(exc).split())}")
    for problem in state.camera_problems:
        log.error("%s (%s)", problem, where.path)


def _detector(state: ServerState, config: StreamConfig):
    """The frames of ``config`` through its own model's batcher (None: the manager's, the first model's)."""
    return state.frame_detector(config.served) if config.served else None


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
            configs.append(stream_config(state, Camera(name=name, url=url), operator=True))
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
    return {"streams": manager_of(request).describe(), "problems": state_of(request).camera_problems}


async def _add(request: Request, camera: Camera, replacing: bool = False) -> dict:
    """Check ``camera`` (enabled or not), watch it if enabled, then keep it in the camera file. Whatever fails
    leaves things as they were: a camera that cannot be watched or kept is not, and (``replacing``) the one it
    would replace goes on."""
    manager, state = manager_of(request), state_of(request)
    config = stream_config(state, camera)  # a mistake is a 422 before anything changes
    old = manager.watchers.get(camera.name)
    if old is not None and not replacing:
        raise APIError(409, f"a stream called {camera.name!r} is already being watched: remove it first")
    try:  # a refused address of a camera to watch is a 422 before the running camera stops
        if camera.enabled:
            await asyncio.to_thread(config.check, manager.policy)
    except SourceError as exc:
        raise _api_error(exc, state.settings.camera_file) from exc
    watcher = None
    try:
        if old is not None:
            await manager.remove(camera.name)
        if camera.enabled:
            watcher = await manager.add(config, _detector(state, config))
        await asyncio.to_thread(CameraFile(state.settings.camera_file).put, camera)
    except Exception as exc:
        if watcher is not None:
            await manager.remove(camera.name)
        if old is not None:  # the camera it was to replace goes on as it was
            try:
                await manager.add(old.config, _detector(state, old.config))
            except Exception:
                log.exception("camera %s: not restarted as it was", camera.name)
        raise _api_error(exc, state.settings.camera_file) from exc
    _solved(state, camera.name)
    return watcher.describe() if watcher else {"name": camera.name, "state": "disabled"}


def _solved(state: ServerState, name: str) -> None:
    """The start-up problems of camera ``name`` are gone once it is replaced or removed."""
    state.camera_problems = [p for p in state.camera_problems if not p.startswith(f"camera {name!r}:")]


def _api_error(exc: Exception, where) -> APIError:
    """What a failed camera change answers: the client's mistake a 4xx, the server's file a 503 that says so."""
    if isinstance(exc, StreamLimitError | SourceError):
        return APIError(422, str(exc))
    if isinstance(exc, StreamError):
        return APIError(409, str(exc))
    if isinstance(exc, OSError | ConfigError):
        return APIError(503, f"the camera file {where} cannot be changed: {exc}")
    if isinstance(exc, HebbianMirrorError):
        return APIError(422, str(exc))
    raise exc


@router.post("/v1/streams", status_code=201, summary="Watch a stream (kept in the camera file)", dependencies=ADMIN)
async def add_stream(request: Request, body: Camera) -> dict:
    return await _add(request, body)


@router.get("/v1/cameras", summary="The configured cameras, as the camera file has them", dependencies=ADMIN)
async def list_cameras(request: Request) -> dict:
    """Passwords in URLs masked (``***``); a PUT that sends such a URL back keeps the stored one."""
    state = state_of(request)
    entries = await asyncio.to_thread(CameraFile(state.settings.camera_file).entries)
    shown = [e | {k: mask_url(e[k]) for k in URL_FIELDS if isinstance(e.get(k), str)} for e in entries]
    return {"file": str(state.settings.camera_file), "cameras": shown, "problems": state.camera_problems}


@router.put("/v1/cameras/{name}", summary="Add or change a camera (kept in the camera file)", dependencies=ADMIN)
async def put_camera(request: Request, name: str, body: Camera) -> dict:
    """Replaces the camera of that name: its stream restarts with the new settings (a running alarm ends)."""
    if body.name != name:
        raise APIError(422, f"name: the body names {body.name!r}, the URL {name!r}")
    masked = [k for k in URL_FIELDS if "***" in (getattr(body, k) or "")]
    if masked:  # sent back as GET /v1/cameras showed it: the stored URL, password included
        stored = await asyncio.to_thread(CameraFile(state_of(request).settings.camera_file).entries)
        entry = next((e for e in stored if e.get("name") == name), {})
        kept = {k: entry[k] for k in masked if isinstance(entry.get(k), str) and mask_url(entry[k]) == getattr(body, k)}
        if lost := [k for k in masked if k not in kept]:  # never a literal *** as the password
            raise APIError(422, f"{', '.join(lost)}: '***' stands for a stored password, and none matches here")
        body = body.model_copy(update=kept)
    return await _add(request, body, replacing=True)


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
    """Stops it and removes it from the camera file (a ``--stream`` of the command line comes back at restart)."""
    manager, state = manager_of(request), state_of(request)
    try:
        kept = await asyncio.to_thread(CameraFile(state.settings.camera_file).remove, name)
    except (OSError, HebbianMirrorError) as exc:
        raise _api_error(exc, state.settings.camera_file) from exc
    if name in manager.watchers:
        await manager.remove(name)
    elif not kept:
        _watcher(request, name)  # 404
    _solved(state, name)
    return Response(status_code=204)


router.delete("/v1/cameras/{name}", status_code=204, summary="Remove a camera", dependencies=ADMIN)(delete_stream)


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
