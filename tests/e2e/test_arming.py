"""Arming against a real server watching a real clip (played live, in a loop), a webhook receiver and a real MQTT
broker: a disarmed camera's alarms are stored but not delivered; armed from MQTT or the API they are; the state
is retained on MQTT, shown by the API and /metrics, kept across a restart; bad schedules and modes are refused."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from ..server_process import ServerProcess, free_port
from ..stream_peers import SECRET, WEAPONS_MODEL, Mosquitto, WebhookReceiver, alarm_clip, wait_for

ADMIN, VIEW = "arming-admin-0123456789", "arming-view-0123456789"
A, V = {"X-API-Key": ADMIN}, {"X-API-Key": VIEW}
NEVER = {"windows": ["mon 00:00-00:01"], "timezone": "UTC"}  # armed one minute a week


def test_a_disarmed_camera_stores_alarms_without_delivering_them_until_armed(tmp_path):
    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=1)
    receiver = WebhookReceiver(free_port())
    broker = Mosquitto(tmp_path)
    retained: dict[str, str] = {}
    client = broker.client(lambda c, u, m: retained.__setitem__(m.topic, m.payload.decode()))
    common = [
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", ADMIN, "--scoped-key", f"view:{VIEW}",
        "--alarm", "pistol", "--events-dir", str(tmp_path / "ev"), "--allow-source", str(tmp_path),
        "--webhook", receiver.url, "--webhook-secret", SECRET, "--mqtt", f"{broker.url}/shop",
    ]  # fmt: skip
    body = {"name": "door", "url": str(clip), "loop": True, "realtime": True, "arming": NEVER}
    srv = again = None
    try:
        client.subscribe("shop/cameras/#", qos=1)
        srv = ServerProcess(*common, log=tmp_path / "first.log")
        bad = {**body, "arming": {"windows": ["someday 10:00-11:00"]}}
        refused = httpx.post(srv.url + "/v1/streams", json=bad, headers=A, timeout=30)
        assert refused.status_code == 422 and "days are" in refused.text
        assert httpx.post(srv.url + "/v1/streams", json=body, headers=A, timeout=30).status_code == 201
        door = httpx.get(srv.url + "/v1/streams/door", headers=V).json()
        assert door["armed"] is False and door["arming"] == NEVER | {"mode": "schedule"}
        wait_for(lambda: retained.get("shop/cameras/door/arm") == "OFF", timeout=15)
        stored = wait_for(lambda: httpx.get(srv.url + "/v1/events?stream=door", headers=V).json()["events"])
        assert stored[0]["extra"]["armed"] is False
        time.sleep(1.5)
        assert receiver.received == []  # stored, shown, not delivered
        assert 'hm_stream_armed{stream="door"} 0.0' in httpx.get(srv.url + "/metrics", headers=V).text
        client.publish("shop/cameras/door/arm/set", "ON", qos=1)
        wait_for(lambda: retained.get("shop/cameras/door/arm") == "ON", timeout=15)
        assert httpx.get(srv.url + "/v1/streams/door", headers=V).json()["arming"]["mode"] == "armed"
        new = wait_for(lambda: receiver.of("new"), timeout=60)  # the next appearance's alarm is delivered
        assert new[0]["data"]["extra"]["armed"] is True and new[0]["data"]["stream"] == "door"
        answers = [
            httpx.post(srv.url + "/v1/streams/door/arming", json={"mode": "disarmed"}, headers=V),
            httpx.post(srv.url + "/v1/streams/door/arming", json={"mode": "maybe"}, headers=A),
            httpx.post(srv.url + "/v1/streams/nope/arming", json={"mode": "armed"}, headers=A),
            httpx.post(srv.url + "/v1/streams/door/arming", json={"mode": "disarmed"}, headers=A),
        ]
        assert [a.status_code for a in answers] == [403, 422, 404, 200]
        assert answers[-1].json()["armed"] is False and answers[-1].json()["arming"]["mode"] == "disarmed"
        wait_for(lambda: retained.get("shop/cameras/door/arm") == "OFF", timeout=15)
        assert srv.stop(), srv.log()
        srv = None
        # a restart keeps the camera (its camera file) and the mode a person set: still disarmed
        again = ServerProcess(*common, log=tmp_path / "second.log")
        door = httpx.get(again.url + "/v1/streams/door", headers=V).json()
        assert door["armed"] is False and door["arming"]["mode"] == "disarmed"
    finally:
        for server in (srv, again):
            if server is not None:
                assert server.stop(), server.log()
        client.loop_stop()
        client.disconnect()
        broker.stop()
        receiver.close()


def test_a_schedule_that_does_not_parse_stops_the_server_with_a_clear_line(tmp_path):
    with pytest.raises(RuntimeError, match="expected DAYS HH:MM-HH:MM") as failed:
        ServerProcess("--model", "yolov4-tiny", "--arm-schedule", "mon-fri 18:00", log=tmp_path / "bad.log")
    assert "Traceback" not in str(failed.value)


def test_disarming_from_the_browser(tmp_path):
    """Real headless Chromium on the UI's Cameras page: Disarm, then Follow schedule; the server agrees."""
    from playwright.sync_api import sync_playwright

    from ..server_process import UiProcess

    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=1)
    srv = ServerProcess(
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", ADMIN, "--alarm", "pistol",
        "--stream", f"door={clip}", "--events-dir", str(tmp_path / "ev"), log=tmp_path / "server.log",
    )  # fmt: skip
    ui = UiProcess(srv.url, "--api-key", ADMIN)
    try:
        with sync_playwright() as p:
            browser = UiProcess.browser(p)
            tab = browser.new_page(viewport={"width": 1400, "height": 1400})
            tab.goto(f"{ui.url}/cameras", wait_until="domcontentloaded")
            tab.get_by_text("Armed (as its schedule says)").wait_for(timeout=60_000)
            tab.get_by_role("button", name="Disarm").click()
            tab.get_by_text(re.compile(r"Disarmed \(set by")).wait_for(timeout=30_000)
            assert httpx.get(srv.url + "/v1/streams/door", headers=A).json()["arming"]["mode"] == "disarmed"
            tab.get_by_role("button", name="Follow schedule").click()
            tab.get_by_text("Armed (as its schedule says)").wait_for(timeout=30_000)
            browser.close()
        door = httpx.get(srv.url + "/v1/streams/door", headers=A).json()
        assert door["arming"]["mode"] == "schedule" and door["armed"] is True
    finally:
        ui.stop()
        assert srv.stop(), srv.log()
