"""Camera health against a real server and real cameras on loopback: an RTSP camera (ffmpeg into an RTSP server)
killed and brought back is offline, then ok; an MJPEG camera that sends one flat picture over and over is frozen
and covered. Each change is an event of its own kind, delivered to a webhook and MQTT (with the camera's
availability retained there) and shown in /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ..hostile_peers import MjpegService
from ..server_process import ServerProcess, free_port
from ..stream_peers import SECRET, Mosquitto, RtspServer, WebhookReceiver, alarm_clip, wait_for

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "event-message.schema.json"


def test_a_camera_that_goes_dark_freezes_or_drops_out_raises_its_own_events(tmp_path):
    from jsonschema import Draft202012Validator

    clip, _ = alarm_clip(tmp_path / "scene.mp4", appearances=1)
    rtsp, flat, receiver = RtspServer(clip), MjpegService(fps=5.0), WebhookReceiver(free_port())
    broker = Mosquitto(tmp_path)
    retained: dict[str, str] = {}
    sub = broker.client(lambda c, u, m: retained.__setitem__(m.topic, m.payload.decode()))
    srv = None
    try:
        sub.subscribe("shop/cameras/#", qos=1)
        srv = ServerProcess(
            "--model", "yolov4-tiny", "--workers", "0", "--alarm", "knife", "--stream-fps", "3",
            "--stream", f"door={rtsp.url}", "--stream", f"flat={flat.url}", "--events-dir", str(tmp_path / "ev"),
            "--webhook", receiver.url, "--webhook-secret", SECRET, "--mqtt", f"{broker.url}/shop",
            "--camera-offline-after", "3", "--camera-frozen-after", "2", "--camera-covered-after", "2",
            log=tmp_path / "server.log",
        )  # fmt: skip

        def seen(kind: str, stream: str) -> list[dict]:
            return [m for m in receiver.received if m["type"] == kind and m["data"]["stream"] == stream]

        wait_for(lambda: seen("camera.frozen", "flat") and seen("camera.covered", "flat"))
        assert "featureless" in seen("camera.covered", "flat")[0]["data"]["extra"]["detail"]
        door = lambda: httpx.get(srv.url + "/v1/streams/door").json()  # noqa: E731
        wait_for(lambda: door()["state"] == "streaming" and not door()["problems"])  # (slow to connect: offline, ok)
        assert not seen("camera.frozen", "door") and not seen("camera.covered", "door")  # a moving picture
        before = len(seen("camera.offline", "door"))
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'hm_camera_problem{problem="frozen",stream="flat"} 1.0' in metrics
        assert 'hm_camera_problem{problem="offline",stream="door"} 0.0' in metrics
        rtsp.kill()
        offline = wait_for(lambda: seen("camera.offline", "door")[before:], timeout=60)[0]
        assert offline["data"]["label"] == "offline" and offline["data"]["end"] is None
        wait_for(lambda: retained.get("shop/cameras/door/availability") == "offline", timeout=10)
        assert 'hm_camera_problem{problem="offline",stream="door"} 1.0' in httpx.get(srv.url + "/metrics").text
        rtsp.start()
        back = wait_for(lambda: [m for m in seen("camera.ok", "door") if m["data"]["id"] == offline["data"]["id"]], 90)
        assert back[0]["data"]["label"] == "offline" and back[0]["data"]["end"] is not None
        wait_for(lambda: retained.get("shop/cameras/door/availability") == "online", timeout=10)
        stored = httpx.get(srv.url + "/v1/events?stream=door").json()["events"]
        assert {e["label"] for e in stored} == {"offline"} and stored[0]["extra"]["problem"] == "offline"
        validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
        for message in receiver.received:
            validator.validate({k: v for k, v in message.items() if k != "id"})
    finally:
        if srv is not None:
            assert srv.stop(), srv.log()
        sub.loop_stop()
        sub.disconnect()
        broker.stop()
        rtsp.kill()
        flat.close()
        receiver.close()
    # stopping the server ended the flat camera's problems as "no longer watched", not as fixed
    from hebbian_mirror.streams.events import EventStore

    ended = EventStore(tmp_path / "ev").query(stream="flat")
    assert {e.label for e in ended} == {"frozen", "covered"} and all(e.end is not None for e in ended)
    assert all(e.extra["ended_by"] == "stopped" for e in ended)
