"""Reviewing events against a real server, a real webhook receiver and a real MQTT broker (mosquitto) on loopback:
a review made through the API or published to the broker is stored, listed, counted, and reaches every receiver
as its own signed ``alarm.review`` message, after the event's own messages; scopes and bad reviews are refused."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import httpx
import pytest

from hebbian_mirror.streams.events import Event, EventStore, new_event_id

from ..server_process import ServerProcess, UiProcess, free_port
from ..stream_peers import SECRET, Mosquitto, WebhookReceiver, wait_for

ADMIN, VIEW, GUARD = "admin-key-0123456789", "view-key-0123456789", "guard-key-0123456789"


@pytest.fixture
def broker(tmp_path):
    mosquitto = Mosquitto(tmp_path)
    got: list[dict] = []
    online = threading.Event()

    def on_message(c, u, m) -> None:
        if m.topic == "shop/availability":
            online.set() if m.payload == b"online" else online.clear()
        else:
            got.append(json.loads(m.payload))

    client = mosquitto.client(on_message)
    client.subscribe([("shop/events", 1), ("shop/availability", 1)])
    yield mosquitto.port, client, got, online
    client.loop_stop()
    client.disconnect()
    mosquitto.stop()


def stored_events(folder) -> list[Event]:
    """Two ended alarms, stored before the server starts (as a previous run left them)."""
    store = EventStore(folder)
    events, now = [], time.time() - 60  # recent: retention keeps them
    for i, label in enumerate(("pistol", "knife")):
        e = Event(new_event_id(now + i), "door", label, i, 3, now + i, None, 0.8, (1.0, 2.0, 30.0, 40.0), 5)
        store.begin(e)
        store.end(e)
        events.append(e)
    store.close()
    return events


def test_reviews_from_the_api_and_the_broker_reach_every_receiver_in_order(tmp_path, broker):
    port, client, on_broker, online = broker
    pistol, knife = stored_events(tmp_path / "events")
    receiver = WebhookReceiver(free_port())
    guard = json.dumps({"key": GUARD, "scopes": ["review", "view"], "name": "night-guard"})
    srv = ServerProcess(
        "--model", "yolov4-tiny", "--workers", "0", "--api-key", ADMIN, "--scoped-key", f"view:{VIEW}",
        "--scoped-key", guard, "--events-dir", str(tmp_path / "events"), "--webhook", receiver.url,
        "--webhook-secret", SECRET, "--mqtt", f"mqtt://127.0.0.1:{port}/shop",
        log=tmp_path / "server.log",
    )  # fmt: skip
    try:
        url, as_guard, as_viewer = srv.url, {"X-API-Key": GUARD}, {"X-API-Key": VIEW}
        metrics = lambda: httpx.get(url + "/metrics", headers=as_viewer).text  # noqa: E731
        assert "hm_unreviewed_alarms 2.0" in metrics()
        answer = httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "acknowledged"}, headers=as_guard)
        assert answer.status_code == 200, answer.text
        assert answer.json()["review"]["state"] == "acknowledged" and answer.json()["review"]["by"] == "night-guard"
        refused = [
            httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "confirmed"}, headers=as_viewer),
            httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "fine"}, headers=as_guard),
            httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "confirmed", "x": 1}, headers=as_guard),
            httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "confirmed", "note": "n" * 3000},
                       headers=as_guard),
            httpx.post(f"{url}/v1/events/0000000000000-00000000/review", json={"state": "confirmed"},
                       headers=as_guard),
            httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "confirmed"}),
        ]  # fmt: skip
        assert [r.status_code for r in refused] == [403, 422, 422, 422, 404, 401]
        # from the broker: whoever may publish to PREFIX/review (the broker's ACL decides)
        assert online.wait(30)  # the server is connected, and subscribed in the same breath
        time.sleep(0.3)
        client.publish("shop/review", json.dumps({"id": knife.id, "state": "false_alarm", "note": "a phone"}), qos=1)
        client.publish("shop/review", b"not json", qos=1)  # refused and logged: delivery goes on
        client.publish("shop/review", json.dumps({"id": "nope", "state": "confirmed"}), qos=1)
        wait_for(lambda: httpx.get(f"{url}/v1/events/{knife.id}", headers=as_viewer).json()["review"])
        knife_now = httpx.get(f"{url}/v1/events/{knife.id}", headers=as_viewer).json()
        assert knife_now["review"]["state"] == "false_alarm" and knife_now["review"]["note"] == "a phone"
        assert knife_now["review"]["by"].startswith("mqtt")  # no name given: the sink it came through
        httpx.post(f"{url}/v1/events/{pistol.id}/review", json={"state": "confirmed", "note": "a real one"},
                   headers=as_guard)  # fmt: skip
        # every receiver: the reviews only (the events' own messages were sent by the earlier run), in order
        expected = [(pistol.id, "acknowledged"), (knife.id, "false_alarm"), (pistol.id, "confirmed")]
        for messages in (receiver.received, on_broker):
            wait_for(lambda m=messages: len(m) >= 3)
            assert [(m["type"], m["data"]["id"], m["data"]["review"]["state"]) for m in messages] == [
                ("alarm.review", i, s) for i, s in expected
            ]
        assert len({m["id"] for m in receiver.received}) == 3  # idempotent ids, one per review
        listed = httpx.get(url + "/v1/events?review=false_alarm", headers=as_viewer).json()["events"]
        assert [e["id"] for e in listed] == [knife.id]
        assert httpx.get(url + "/v1/events?review=unreviewed", headers=as_viewer).json()["events"] == []
        assert httpx.get(url + "/v1/events?review=bogus", headers=as_viewer).status_code == 422
        history = httpx.get(f"{url}/v1/events/{pistol.id}/reviews", headers=as_viewer).json()["reviews"]
        assert [(r["state"], r["by"]) for r in history] == [
            ("acknowledged", "night-guard"),
            ("confirmed", "night-guard"),
        ]
        assert "hm_unreviewed_alarms 0.0" in metrics()
        assert "review command on shop/review refused" in srv.log() and "no event 'nope'" in srv.log()
    finally:
        assert srv.stop(), srv.log()
        receiver.close()
    assert " 500 " not in srv.log() and "Traceback" not in srv.log(), srv.log()[-3000:]
    # a restart keeps every review
    again = EventStore(tmp_path / "events")
    assert again.get(pistol.id).review["state"] == "confirmed" and len(again.reviews(pistol.id)) == 2


def test_a_false_alarm_marked_in_the_browser_is_stored_with_its_note(tmp_path):
    """Real headless Chromium on the UI's Events page: a note typed, "False alarm" clicked; the server has the
    review, by the key's holder, and the page shows it."""
    from playwright.sync_api import sync_playwright

    pistol, _ = stored_events(tmp_path / "events")
    guard = json.dumps({"key": GUARD, "scopes": ["review", "view"], "name": "night-guard"})
    srv = ServerProcess(
        "--workers", "0", "--api-key", ADMIN, "--scoped-key", guard, "--events-dir", str(tmp_path / "events"),
        log=tmp_path / "server.log",
    )  # fmt: skip
    ui = UiProcess(srv.url, "--api-key", GUARD)
    try:
        with sync_playwright() as p:
            browser = UiProcess.browser(p)
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            tab.goto(f"{ui.url}/events", wait_until="domcontentloaded")
            tab.get_by_text("2 alarm(s) not reviewed yet").wait_for(timeout=60_000)
            card = tab.locator("[data-testid=stHorizontalBlock]").filter(has_text=pistol.id).first  # its row
            card.get_by_placeholder("what you saw").fill("a toy in the window")
            card.get_by_placeholder("what you saw").press("Enter")
            card.get_by_role("button", name="False alarm").click()
            tab.get_by_text("1 alarm(s) not reviewed yet").wait_for(timeout=30_000)
            card.get_by_text(re.compile("False alarm by night-guard.*a toy in the window")).wait_for(timeout=30_000)
            browser.close()
        stored = httpx.get(f"{srv.url}/v1/events/{pistol.id}", headers={"X-API-Key": ADMIN}).json()["review"]
        assert stored["state"] == "false_alarm" and stored["by"] == "night-guard"
        assert stored["note"] == "a toy in the window"
    finally:
        ui.stop()
        assert srv.stop(), srv.log()


def test_reviews_made_while_every_receiver_is_down_survive_a_kill_and_arrive_once_in_order(tmp_path):
    """A webhook receiver refusing, an SMTP server answering 451 and an MQTT broker not running while three
    reviews are made; the server is killed (SIGKILL, no goodbye); with all three back, the next start delivers
    the three reviews to each, in the order they were made, none lost (a resend carries the same id)."""
    from ..stream_peers import SmtpServer

    pistol, knife = stored_events(tmp_path / "events")
    receiver = WebhookReceiver(free_port(), fail_first=1_000_000)  # refuses everything: an outage
    smtp = SmtpServer(tmp_path)
    smtp.refuse = True
    port = free_port()  # the broker's, not running yet
    common = ["--workers", "0", "--events-dir", str(tmp_path / "events"), "--webhook", receiver.url]
    common += ["--webhook-secret", SECRET, "--mqtt", f"mqtt://127.0.0.1:{port}/shop", "--smtp", smtp.url]
    common += ["--smtp-ca-file", str(smtp.ca), "--email-to", "owner@shop.example"]
    broker = None
    try:
        srv = ServerProcess(*common, log=tmp_path / "first.log")
        made = [(pistol.id, "acknowledged"), (knife.id, "false_alarm"), (pistol.id, "confirmed")]
        for event_id, state in made:
            answer = httpx.post(f"{srv.url}/v1/events/{event_id}/review", json={"state": state, "by": "guard"})
            assert answer.status_code == 200
        wait_for(lambda: receiver.failed >= 2)  # tried, refused, backing off
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
        receiver.fail_first, smtp.refuse = 0, False  # the receivers are back, and the broker
        broker = Mosquitto(tmp_path, port)
        on_broker: list[dict] = []
        client = broker.client(lambda c, u, m: on_broker.append(json.loads(m.payload)))
        client.subscribe("shop/events", qos=1)
        again = ServerProcess(*common, log=tmp_path / "second.log")
        try:
            wait_for(lambda: len(receiver.received) >= 3 and len(on_broker) >= 3 and len(smtp.received) >= 3, 90)
            time.sleep(2)  # nothing more arrives
            # at least once: a resend (a receiver slow to answer) is the same message, which receivers drop by its
            # id (webhook-id, Message-ID) or, on MQTT, by its type, event and timestamp
            hooks = list({m["id"]: m for m in receiver.received}.values())
            broker_side = list({(m["type"], m["data"]["id"], m["timestamp"]): m for m in on_broker}.values())
            mails = list({m["Message-ID"]: m for m in smtp.received}.values())
            for messages in (hooks, broker_side):
                assert [(m["data"]["id"], m["data"]["review"]["state"]) for m in messages] == made
            assert receiver.rejected == 0
            verdicts = ["acknowledged", "a false alarm", "CONFIRMED"]
            assert [m["Subject"].rsplit(" — ", 1)[1] for m in mails] == [f"{v} by guard" for v in verdicts]
        finally:
            client.loop_stop()
            client.disconnect()
            assert again.stop(), again.log()
    finally:
        receiver.close()
        smtp.close()
        if broker is not None:
            broker.stop()


def test_reviewed_events_become_a_dataset_that_a_recipe_takes(tmp_path, cli, tiny):
    """The loop: `watch` raises two alarms on a clip (real model); one is marked a false alarm, the other
    confirmed; `data from-events` writes the hard negative and the labelled frame (undrawn), and a recipe that
    lists the folder prepares its data with them."""
    from hebbian_mirror.config import load_settings
    from hebbian_mirror.datasets import load_splits
    from hebbian_mirror.images import decode_image
    from hebbian_mirror.train import recipe as recipes

    from ..stream_peers import WEAPONS_MODEL, alarm_clip

    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=2)
    events = tmp_path / "events"
    code, out, err = cli("watch", clip, "--model", WEAPONS_MODEL, "--alarm", "pistol", "--out", events,
                         "--workers", "0", "--device", "cpu")  # fmt: skip
    assert code == 0, out + err
    store = EventStore(events)
    first, second = sorted(store.query(), key=lambda e: e.start)
    assert store.frame_path(first.id) and store.snapshot_path(first.id)
    store.review(first.id, "false_alarm", by="owner", note="a toy")
    store.review(second.id, "confirmed", by="owner")
    store.close()
    code, out, err = cli("data", "from-events", tmp_path / "feedback", "--events-dir", events)
    assert code == 0 and "1 confirmed, 1 false alarms" in out, out + err
    train = load_splits(tmp_path / "feedback" / "data.yaml")["train"]
    by_event = {s.image.stem.split("-", 1)[1]: s for s in train.samples}
    assert train.classes == ["pistol"] and set(by_event) == {first.id, second.id}
    assert by_event[first.id].boxes == [] and len(by_event[second.id].boxes) == 1
    assert by_event[second.id].boxes[0].xyxy == pytest.approx(second.extra["frame_box"], abs=0.1)  # its frame's box
    frame = decode_image(by_event[second.id].image.read_bytes())
    drawn = decode_image((events / "media" / second.id / "snapshot.jpg").read_bytes())
    assert frame.shape == drawn.shape and abs(frame.astype(int) - drawn.astype(int)).mean() > 0.5  # no drawings
    manifest = json.loads((tmp_path / "feedback" / "events.json").read_text())
    assert {m["event"]: m["review"]["state"] for m in manifest} == {first.id: "false_alarm", second.id: "confirmed"}
    code, _, err = cli("data", "from-events", tmp_path / "nothing", "--events-dir", tmp_path / "none")
    assert code != 0 and "no events.db" in err
    spec = tmp_path / "feedback.yaml"
    spec.write_text(
        f"name: feedback\ndatasets:\n  - path: {tmp_path / 'feedback'}\n  - path: {tiny}\n"
        f"train: {{model: yolov4-tiny, keep_classes: true, out: {tmp_path / 'run'}}}\n"
    )
    data, report = recipes.prepare_data(recipes.read(spec), load_settings(device="cpu"), "yolov4-tiny", sample=True)
    merged = load_splits(data)["train"]
    assert report["sources"][0]["train"] == 2 and any(first.id in s.image.name for s in merged.samples)
