"""Streams end to end, with real peers on loopback: `hebbian-mirror watch` and `serve --stream` on a clip made
from real images, with the shared weapons checkpoint; signed webhooks verified by the official Standard Webhooks
library; the stream and event routes; bad sources; SIGTERM during an event with the receiver down, then a
restart: every message delivered once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import av
import httpx
import pytest

from ..conftest import REPO, WEIGHTS
from ..server_process import ServerProcess, free_port
from ..stream_peers import SECRET, WEAPONS_MODEL, RtspServer, WebhookReceiver, alarm_clip

KEY = "stream-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return alarm_clip(tmp_path_factory.mktemp("clips") / "pistol-twice.mp4", appearances=2)


def wait_for(predicate, timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def test_watch_raises_one_alarm_per_appearance_and_the_webhook_receives_each_signed(clip, tmp_path):
    path, visible = clip
    receiver = WebhookReceiver(free_port())
    try:
        cmd = [sys.executable, "-m", "hebbian_mirror", "watch", str(path), "--model", str(WEAPONS_MODEL)]
        cmd += ["--alarm", "pistol", "--webhook", receiver.url, "--webhook-secret", SECRET, "--out", str(tmp_path)]
        cmd += ["--workers", "0", "--device", "cpu"]
        env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), COLUMNS="160")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("ALARM NEW") == len(visible), done.stdout
        new, end = receiver.of("new"), receiver.of("end")
        assert len(new) == len(end) == len(visible), receiver.received
        assert receiver.rejected == 0 and len(set(receiver.ids())) == len(receiver.ids())
        for message, (first, _last) in zip(new, visible, strict=True):
            event = message["data"]
            assert event["label"] == "pistol" and event["stream"] == "stream1" and event["top_score"] > 0.8
            assert first <= event["extra"]["first_frame"] <= first + 6  # the 5th pistol frame, give or take one
        assert {m["data"]["id"] for m in new} == {m["data"]["id"] for m in end}
        from jsonschema import Draft202012Validator

        schema = json.loads((REPO / "docs" / "schemas" / "event-message.schema.json").read_text())
        for message in receiver.received:  # what was really sent is what the docs say
            Draft202012Validator(schema).validate({k: v for k, v in message.items() if k != "id"})
        assert all((tmp_path / "media" / m["data"]["id"] / "snapshot.jpg").is_file() for m in new)
        assert all((tmp_path / "media" / m["data"]["id"] / "clip.mp4").is_file() for m in end)
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def stream_server(clip, tmp_path_factory):
    path, _ = clip
    events = tmp_path_factory.mktemp("events")
    srv = ServerProcess(
        "--model",
        f"weapons={WEAPONS_MODEL}",
        "--workers",
        "0",
        "--api-key",
        KEY,
        "--alarm",
        "pistol",
        "--stream",
        f"door={path}",
        "--events-dir",
        str(events),
        "--allow-source",
        str(tmp_path_factory.getbasetemp()),
        "--source-host",
        "127.0.0.1",
        log=tmp_path_factory.mktemp("stream-server") / "server.log",
    )
    yield srv
    assert srv.stop(), srv.log()


def test_serve_stream_stores_events_with_snapshot_and_clip_and_counts_them(stream_server, clip):
    url, (_, visible) = stream_server.url, clip
    assert httpx.get(url + "/v1/events").status_code == 401
    ended = wait_for(
        lambda: (
            len(e := httpx.get(url + "/v1/events?active=false", headers=HEADERS).json()["events"]) == len(visible) and e
        )
    )
    assert [e["label"] for e in ended] == ["pistol"] * len(visible) and ended[0]["start"] > ended[1]["start"]
    event = ended[0]
    one = httpx.get(f"{url}/v1/events/{event['id']}", headers=HEADERS)
    assert one.status_code == 200 and one.json()["id"] == event["id"] and one.json()["end"] is not None
    snap = httpx.get(f"{url}/v1/events/{event['id']}/snapshot.jpg", headers=HEADERS)
    assert snap.status_code == 200 and snap.content[:3] == b"\xff\xd8\xff"
    clip_answer = httpx.get(f"{url}/v1/events/{event['id']}/clip.mp4", headers=HEADERS)
    assert clip_answer.status_code == 200
    with av.open(__import__("io").BytesIO(clip_answer.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 25  # pre-roll + the pistol's frames
    assert httpx.get(f"{url}/v1/events/nope", headers=HEADERS).status_code == 404
    filtered = httpx.get(url + "/v1/events?label=knife", headers=HEADERS).json()["events"]
    assert filtered == []
    door = wait_for(
        lambda: (s := httpx.get(url + "/v1/streams/door", headers=HEADERS).json())["state"] == "ended" and s
    )
    assert door["alarms"] == len(visible) and door["frames_in"] > 100, door
    assert door["processed"] + door["still"] == door["frames_in"] and door["still"] < door["frames_in"] / 2, door
    latest = httpx.get(url + "/v1/streams/door/latest.jpg", headers=HEADERS)
    assert latest.status_code == 200 and latest.headers["content-type"] == "image/jpeg"
    metrics = httpx.get(url + "/metrics", headers=HEADERS).text
    assert f'hm_stream_alarms_total{{stream="door"}} {float(len(visible))}' in metrics
    assert 'hm_stream_processed_total{stream="door"}' in metrics


def test_streams_api_refuses_bad_sources_clearly_and_keeps_serving(stream_server, tmp_path):
    url = stream_server.url
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(20000))

    def add(**body):
        return httpx.post(url + "/v1/streams", json=body, headers=HEADERS, timeout=30)

    bad = add(name="bad", url=str(corrupt))
    assert bad.status_code == 422 and "corrupt.mp4" in bad.text, bad.text
    missing = add(name="gone", url=str(tmp_path / "nope.mp4"))
    assert missing.status_code == 422 and "nope.mp4" in missing.text
    assert add(name="door", url=str(corrupt)).status_code == 409
    assert add(name="x", url=str(corrupt), alarm=["bazooka"]).status_code == 422
    assert add(name="bad name!", url=str(corrupt)).status_code == 422
    dead = add(name="dead", url=f"rtsp://127.0.0.1:{free_port()}/live")
    assert dead.status_code == 201, dead.text
    state = wait_for(
        lambda: (
            s := httpx.get(url + "/v1/streams/dead", headers=HEADERS).json(),
            s["reconnects"] >= 1 and s,
        )[1],
        timeout=30,
    )
    assert state["state"] in ("connecting", "reconnecting") and state["error"]
    image = (WEIGHTS.parent / "data/photos/darknet-samples/dog.jpg").read_bytes()
    assert httpx.post(url + "/v1/detect", content=image, headers=HEADERS, timeout=30).status_code == 200
    started = time.monotonic()
    assert httpx.delete(url + "/v1/streams/dead", headers=HEADERS, timeout=30).status_code == 204
    assert time.monotonic() - started < 10
    assert httpx.get(url + "/v1/streams/dead", headers=HEADERS).status_code == 404


def test_sigterm_during_an_event_then_restart_delivers_every_message_once(tmp_path):
    """The receiver is down while the alarm runs; SIGTERM ends the event and keeps its messages; the next
    start delivers new and end once each."""
    from hebbian_mirror.streams.clipset import encode_clip

    from ..stream_peers import PISTOL_IMAGE, _panned

    pistol_only = tmp_path / "pistol.mp4"
    encode_clip(_panned(PISTOL_IMAGE, 30), pistol_only, 10)
    port, events = free_port(), tmp_path / "events"
    hook = f"http://127.0.0.1:{port}/hook"
    common = ["--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--events-dir", str(events)]
    common += ["--webhook", hook, "--webhook-secret", SECRET, "--alarm", "pistol"]
    common += ["--allow-source", str(tmp_path)]
    srv = ServerProcess(*common, log=tmp_path / "first.log")
    # a file played in real time, in a loop: the alarm is still running when SIGTERM comes
    body = {"name": "live", "url": str(pistol_only), "loop": True, "realtime": True}
    assert httpx.post(srv.url + "/v1/streams", json=body, timeout=30).status_code == 201
    active = wait_for(lambda: httpx.get(srv.url + "/v1/events?active=true").json()["events"])
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(60) in (0, -signal.SIGTERM), srv.log()
    receiver = WebhookReceiver(port)
    try:
        again = ServerProcess(*common, log=tmp_path / "second.log")
        try:
            wait_for(lambda: len(receiver.of("end")) >= len(active) and receiver.of("new"), timeout=60)
            ids = [e["id"] for e in active]
            assert [m["data"]["id"] for m in receiver.of("new")][-len(ids) :] == ids
            stored = httpx.get(f"{again.url}/v1/events/{ids[0]}").json()
            assert stored["end"] is not None
            time.sleep(2)  # nothing more arrives: each message once
            assert len(set(receiver.ids())) == len(receiver.ids()) and receiver.rejected == 0
        finally:
            assert again.stop(), again.log()
    finally:
        receiver.close()


def test_rtsp_camera_killed_and_restarted_reconnects_and_the_alarm_fires_again(clip, tmp_path):
    path, _ = clip
    camera = RtspServer(path)
    srv = ServerProcess(
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--alarm", "pistol",
        "--stream", f"shop={camera.url}", "--events-dir", str(tmp_path / "events"),
        log=tmp_path / "server.log",
    )  # fmt: skip
    try:

        def alarms() -> int:
            return len(httpx.get(srv.url + "/v1/events").json()["events"])

        wait_for(lambda: alarms() >= 1, timeout=90)
        # the camera may have refused a first connection while its publisher was starting (a reconnect already)
        earlier = httpx.get(srv.url + "/v1/streams/shop").json()["reconnects"]
        camera.kill()
        down = wait_for(lambda: (s := httpx.get(srv.url + "/v1/streams/shop").json())["reconnects"] > earlier and s, 60)
        assert down["state"] in ("reconnecting", "connecting"), down
        before = alarms()
        camera.start()
        wait_for(lambda: httpx.get(srv.url + "/v1/streams/shop").json()["state"] == "streaming", timeout=90)
        wait_for(lambda: alarms() > before, timeout=90)  # the pistol appears again in the looping clip
        assert httpx.get(srv.url + "/ready").status_code == 200
    finally:
        camera.kill()
        assert srv.stop(), srv.log()


def test_mqtt_broker_gets_the_event_envelopes_and_the_last_will(clip, tmp_path):
    import json
    import threading

    import paho.mqtt.client as mqtt

    path, visible = clip
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: list[tuple[str, str]] = []
    seen = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: (got.append((m.topic, m.payload.decode())), seen.set())
    try:

        def connected() -> bool:
            try:
                return sub.connect("127.0.0.1", port) == 0
            except ConnectionRefusedError:
                return False

        wait_for(connected, timeout=10)
        sub.subscribe("shop/#", qos=1)
        sub.loop_start()
        cmd = [sys.executable, "-m", "hebbian_mirror", "watch", str(path), "--model", str(WEAPONS_MODEL)]
        cmd += ["--alarm", "pistol", "--mqtt", f"mqtt://127.0.0.1:{port}/shop", "--out", str(tmp_path / "ev")]
        cmd += ["--workers", "0", "--device", "cpu"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="160"))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: len([p for t, p in got if t == "shop/events"]) >= 2 * len(visible), timeout=10)
        events = [json.loads(p) for t, p in got if t == "shop/events"]
        assert [e["type"] for e in events if e["type"] != "alarm.update"] == ["alarm.new", "alarm.end"] * len(visible)
        assert all(e["data"]["label"] == "pistol" for e in events)
        availability = [p for t, p in got if t == "shop/availability"]
        assert availability[0] == "online" and availability[-1] == "offline"  # a clean stop says so itself
        # a publisher that dies without a word: the broker publishes its last will
        got.clear()
        code = (
            "import time, sys; from hebbian_mirror.streams.delivery import MqttSink; "
            "from hebbian_mirror.streams.events import Message; "
            f"s = MqttSink('mqtt://127.0.0.1:{port}/shop'); s.send(Message(1, 'm1', 'e1', 'new', '{{}}')); "
            "print('sent', flush=True); time.sleep(60)"
        )
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "sent"
        child.kill()
        child.wait()
        wait_for(lambda: ("shop/availability", "offline") in got, timeout=60)
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.kill()
        broker.wait()
