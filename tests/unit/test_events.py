"""The event store (SQLite + outbox, retention, restart) and the dispatcher against a real loopback receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hebbian_mirror.streams.delivery import WebhookSink, sign
from hebbian_mirror.streams.dispatch import Dispatcher
from hebbian_mirror.streams.events import Event, EventStore, new_event_id

from ..server_process import free_port
from ..stream_peers import SECRET, WebhookReceiver


def event(stream: str = "door", label: str = "pistol", start: float | None = None) -> Event:
    start = time.time() if start is None else start
    return Event(new_event_id(start), stream, label, 0, 7, start, None, 0.8, (1.0, 2.0, 30.0, 40.0), frames=5)


def test_events_round_trip_filters_and_survive_a_reopen(tmp_path):
    store = EventStore(tmp_path)
    a, b = event(start=1000.0), event("yard", "knife", start=2000.0)
    store.begin(a, b"\xff\xd8snapshot")
    store.begin(b)
    a.top_score = 0.9
    store.update(a, b"\xff\xd8better")
    store.end(a, b"mp4 bytes")
    store.close()
    store = EventStore(tmp_path)
    got = store.get(a.id)
    assert got.top_score == 0.9 and got.end is not None and got.has_snapshot and got.has_clip
    assert store.snapshot_path(a.id).read_bytes() == b"\xff\xd8better"
    assert store.clip_path(a.id).read_bytes() == b"mp4 bytes" and store.clip_path(b.id) is None
    assert [e.id for e in store.query()] == [b.id, a.id]  # newest first
    assert [e.id for e in store.query(label="knife")] == [b.id]
    assert [e.id for e in store.query(stream="door")] == [a.id]
    assert [e.id for e in store.query(since=1500)] == [b.id] and [e.id for e in store.query(until=1500)] == [a.id]
    assert [e.id for e in store.query(active=True)] == [b.id]
    assert store.get("../etc") is None and store.snapshot_path("../x") is None


def test_close_active_ends_what_a_killed_run_left_and_announces_it(tmp_path):
    store = EventStore(tmp_path)
    store.register_sink("hook")
    left = event()
    store.begin(left)
    store.close()
    store = EventStore(tmp_path)  # the next run
    (ended,) = store.close_active(time.time() + 100)
    assert ended.id == left.id and store.get(left.id).end <= time.time()
    kinds = [json.loads(m.body)["type"] for m in store.pending("hook")]
    assert kinds == ["alarm.new", "alarm.end"]


def test_retention_removes_old_and_large_ended_events_but_never_undelivered_or_running_ones(tmp_path):
    store = EventStore(tmp_path)
    old, big, running = event(start=time.time() - 10 * 86400), event(), event()
    for e, clip in ((old, b"x" * 1000), (big, b"y" * 5000)):
        store.begin(e)
        store.end(e, clip)
    store.begin(running, b"z" * 5000)
    store.register_sink("hook")  # starts after these messages: nothing pending for it
    assert (
        store.prune(max_age_s=86400) == 1 and store.get(old.id) is None and not (tmp_path / "media" / old.id).exists()
    )
    assert store.prune(max_bytes=6000) == 1 and store.get(big.id) is None  # the running event's 5000 bytes stay
    assert store.get(running.id) is not None
    pending = event(start=time.time() - 10 * 86400)
    store.begin(pending)
    store.end(pending)
    assert store.prune(max_age_s=86400) == 0  # "hook" has not received its messages yet
    for message in store.pending("hook"):
        store.mark_delivered("hook", message.seq)
    assert store.prune(max_age_s=86400) == 1


def test_a_receiver_that_fails_first_gets_every_message_once_in_order(tmp_path):
    store = EventStore(tmp_path)
    receiver = WebhookReceiver(free_port(), fail_first=3)
    sink = WebhookSink(receiver.url, secret=SECRET, timeout=5)
    dead = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", timeout=1)  # never up: must not hold the other
    dispatcher = Dispatcher(store.db_path, [sink, dead], backoff=(0.05, 0.2))
    dispatcher.start()
    try:
        events = [event(start=1000.0 + i) for i in range(4)]
        for e in events:
            store.begin(e)
            store.end(e)
            dispatcher.notify()
        deadline = time.monotonic() + 30
        while len(receiver.received) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert receiver.failed == 3 and receiver.rejected == 0
        assert [(m["data"]["id"], m["type"]) for m in receiver.received] == [
            (e.id, kind) for e in events for kind in ("alarm.new", "alarm.end")
        ]
        assert len(set(receiver.ids())) == 8
        stats = dispatcher.stats()
        assert stats[sink.name]["delivered"] == 8 and stats[sink.name]["depth"] == 0
        assert stats[dead.name]["depth"] == 8 and stats[dead.name]["failures"] >= 1 and stats[dead.name]["last_error"]
    finally:
        dispatcher.stop(timeout=1)
        receiver.close()


def test_signatures_follow_standard_webhooks():
    from standardwebhooks.webhooks import Webhook

    body, ts = '{"type": "alarm.new"}', int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(SECRET, "msg_1", ts, body),
    }
    assert Webhook(SECRET).verify(body, headers) == {"type": "alarm.new"}


def test_a_removed_sink_no_longer_holds_back_retention_and_a_dead_one_cannot_fill_the_disk(tmp_path):
    store = EventStore(tmp_path)
    store.register_sink("webhook:http://old/hook")  # a webhook since removed from the settings
    store.register_sink("webhook:http://dead/hook")  # configured, but down for good
    old = []
    for i in range(10):
        e = event(start=time.time() - (20 - i) * 86400)
        store.begin(e, b"s" * 1000)
        store.end(e)
        old.append(e)
    assert store.prune(max_age_s=86400) == 0  # undelivered to both: kept while the disk allows
    assert store.forget_sinks(["webhook:http://dead/hook"]) == ["webhook:http://old/hook"]
    assert store.prune(max_age_s=86400, max_bytes=3500) == 7  # over the budget: the oldest go, undelivered
    assert sum(f.stat().st_size for f in (tmp_path / "media").rglob("*") if f.is_file()) <= 3500
    assert [e.id for e in store.query()] == [e.id for e in reversed(old[7:])]
    assert store.dropped == {"webhook:http://dead/hook": 14}  # new + end of each event it never received
    assert [m.event_id for m in store.pending("webhook:http://dead/hook")][::2] == [e.id for e in old[7:]]
    ids = [m.msg_id for m in store.pending("webhook:http://dead/hook")]
    assert len(set(ids)) == len(ids) and ids[0].startswith(old[7].id + "-new-")


def test_the_disk_budget_takes_no_ended_event_for_media_it_cannot_free(tmp_path):
    store = EventStore(tmp_path)
    store.register_sink("webhook:http://dead/hook")
    running = event()
    store.begin(running, b"r" * 5000)  # a running alarm's media: never deleted
    ended = event(start=time.time() - 3600)
    store.begin(ended, b"s" * 100)
    store.end(ended)
    assert store.prune(max_bytes=1000) == 0 and store.get(ended.id) is not None  # deleting it would not help
    assert store.dropped == {}


SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "event-message.schema.json"


def test_every_message_and_the_documented_examples_match_the_documented_schema(tmp_path):
    import re

    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    store = EventStore(tmp_path)
    store.register_sink("x")
    e = event()
    e.extra = {"tracks": [7], "first_frame": 12, "held_by": [1.0, 2.0, 50.0, 80.0]}
    store.begin(e, b"\xff\xd8jpg")
    e.top_score = 0.95
    store.update(e, b"\xff\xd8better")
    store.end(e, b"mp4")
    running = event(start=time.time() + 1)
    store.begin(running)
    store.close_active(time.time() + 2)  # what a restart sends: ended_by
    bodies = [json.loads(m.body) for m in store.pending("x")]
    assert [b["type"] for b in bodies] == ["alarm.new", "alarm.update", "alarm.end", "alarm.new", "alarm.end"]
    assert bodies[-1]["data"]["extra"]["ended_by"] == "restart"
    for body in bodies:
        validator.validate(body)
    page = (SCHEMA.parents[1] / "cameras.md").read_text()
    section = page.split("## Delivered messages", 1)[1].split("\n## ", 1)[0]
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    assert [x["type"] for x in examples] == ["alarm.new", "alarm.update", "alarm.end", "alarm.review"]
    for example in examples:
        validator.validate(example)
    assert set(examples[0]["data"]) == set(bodies[0]["data"])  # the examples show every field a message has


V1_SCHEMA = """
CREATE TABLE events (
    id TEXT PRIMARY KEY, stream TEXT NOT NULL, label TEXT NOT NULL, class_id INTEGER, track_id INTEGER,
    start REAL NOT NULL, end REAL, last_seen REAL, top_score REAL, box TEXT, frames INTEGER, extra TEXT,
    has_snapshot INTEGER DEFAULT 0, has_clip INTEGER DEFAULT 0
);
CREATE INDEX events_start ON events(start);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT UNIQUE NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL,
    created REAL NOT NULL, body TEXT NOT NULL
);
CREATE TABLE sinks (name TEXT PRIMARY KEY, delivered_seq INTEGER NOT NULL);
INSERT INTO events VALUES ('0000000001000-0badcafe', 'door', 'knife', 43, 2, 1000.0, 1010.0, 1010.0, 0.7,
    '[1, 2, 3, 4]', 6, '{}', 0, 0);
INSERT INTO outbox (msg_id, event_id, type, created, body) VALUES ('m1', '0000000001000-0badcafe', 'end', 1010.0, '{}');
INSERT INTO sinks VALUES ('x', 0);
PRAGMA user_version=1;
"""


def test_a_review_is_kept_announced_in_order_and_survives_later_changes(tmp_path):
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    store = EventStore(tmp_path)
    store.register_sink("x")
    a, b = event(start=1000.0), event(start=2000.0)
    store.begin(a)
    store.begin(b)
    assert store.unreviewed() == 2 and store.get(a.id).review is None
    reviewed = store.review(a.id, "acknowledged", by="guard")
    assert reviewed.review["state"] == "acknowledged" and reviewed.review["by"] == "guard"
    a.top_score = 0.95
    store.update(a)  # the alarm still runs: its review stays, and its messages carry it
    store.review(a.id, "false_alarm", by="guard", note="a black phone")
    store.end(a)
    got = store.get(a.id)
    assert got.review["state"] == "false_alarm" and got.review["note"] == "a black phone" and got.top_score == 0.95
    assert [r["state"] for r in store.reviews(a.id)] == ["acknowledged", "false_alarm"]
    bodies = [json.loads(m.body) for m in store.pending("x")]
    assert [(b_["type"], b_["data"]["id"] == a.id) for b_ in bodies] == [
        ("alarm.new", True), ("alarm.new", False), ("alarm.review", True), ("alarm.update", True),
        ("alarm.review", True), ("alarm.end", True),
    ]  # fmt: skip
    assert bodies[3]["data"]["review"]["state"] == "acknowledged"
    assert bodies[-1]["data"]["review"]["state"] == "false_alarm"
    for body in bodies:
        validator.validate(body)
    ids = [m.msg_id for m in store.pending("x")]
    assert len(set(ids)) == len(ids) and all(
        "-review-" in i for i, b_ in zip(ids, bodies, strict=True) if b_["type"] == "alarm.review"
    )
    assert store.unreviewed() == 1
    assert [e.id for e in store.query(review="unreviewed")] == [b.id]
    assert [e.id for e in store.query(review="false_alarm")] == [a.id]
    assert store.review("0000000000000-00000000", "confirmed") is None  # no such event
    for bad in ({"state": "fine"}, {"state": "confirmed", "note": "x" * 5000}):
        with pytest.raises(ValueError):
            store.review(b.id, **bad)
    assert store.get(b.id).review is None


def test_a_database_from_before_reviews_keeps_its_events_and_outbox(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "events.db")
    conn.executescript(V1_SCHEMA)
    conn.close()
    store = EventStore(tmp_path)
    old = store.get("0000000001000-0badcafe")
    assert old is not None and old.label == "knife" and old.review is None and old.frames == 6
    assert [m.msg_id for m in store.pending("x")] == ["m1"]
    assert store.review(old.id, "confirmed", by="owner").review["state"] == "confirmed"
    store.close()
    assert EventStore(tmp_path).get(old.id).review["by"] == "owner"
