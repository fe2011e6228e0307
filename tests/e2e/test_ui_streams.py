"""The UI's Cameras and Events pages (Streamlit's AppTest) against a real server watching a real clip."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from ..conftest import KNIFE as KNIFE_PHOTO
from ..conftest import REPO
from ..server_process import ServerProcess
from ..stream_peers import WEAPONS_MODEL, alarm_clip

UI = REPO / "src" / "hebbian_mirror" / "ui"
KEY = "ui-stream-key"
VIEW_KEY = "ui-view-only-key"


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    clip, _ = alarm_clip(tmp_path_factory.mktemp("ui-clips") / "door.mp4", appearances=1)
    srv = ServerProcess(
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", KEY, "--alarm", "pistol",
        "--stream", f"door={clip}", "--events-dir", str(tmp_path_factory.mktemp("ui-events")),
        "--allow-source", str(tmp_path_factory.getbasetemp()), "--allow-source", str(REPO / "runs"),
        "--scoped-key", f"view:{VIEW_KEY}",
        log=tmp_path_factory.mktemp("ui-stream-server") / "server.log",
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the clip has been watched to its end, its alarm stored
        events = httpx.get(srv.url + "/v1/events?active=false", headers={"X-API-Key": KEY}).json()["events"]
        if events and httpx.get(srv.url + "/v1/streams/door", headers={"X-API-Key": KEY}).json()["state"] == "ended":
            break
        time.sleep(0.5)
    yield srv, clip
    assert srv.stop(), srv.log()


def page(name: str, url: str, key: str = KEY) -> AppTest:
    os.environ["HEBBIAN_MIRROR_UI_API"] = url
    os.environ["HEBBIAN_MIRROR_UI_API_KEY"] = key
    os.environ["HEBBIAN_MIRROR_UI_SOURCES"] = str(Path(tempfile.gettempdir()).resolve())
    at = AppTest.from_file(str(UI / name), default_timeout=60)
    at.run()
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_cameras_page_shows_each_stream_adds_refuses_and_removes(watched, tmp_path):
    srv, clip = watched
    at = page("cameras.py", srv.url)
    assert not at.exception
    assert "door" in texts(at.subheader) and len(at.get("image")) == 1
    assert any("finished" in m for m in texts(at.markdown))
    at.text_input(key="new_name").set_value("bad")
    at.text_input(key="new_url").set_value(str(tmp_path / "missing.mp4"))
    at.get("form_submit_button")[0].click()
    at.run()
    assert not at.exception and any("missing.mp4" in e for e in texts(at.error)), texts(at.error)
    at.text_input(key="new_name").set_value("lobby")
    at.text_input(key="new_url").set_value(str(clip))
    at.get("form_submit_button")[0].click()
    at.run()
    assert any("Watching lobby" in s for s in texts(at.success)), texts(at.error)
    at.run()
    assert {"door", "lobby"} <= set(texts(at.subheader))
    at.button(key="remove-lobby").click()
    at.run()
    names = [s["name"] for s in httpx.get(srv.url + "/v1/streams", headers={"X-API-Key": KEY}).json()["streams"]]
    assert names == ["door"]


def test_cameras_page_offers_only_what_its_key_may_do_and_only_its_folders(watched):
    srv, _ = watched
    viewer = page("cameras.py", srv.url, VIEW_KEY)
    assert not viewer.exception and "door" in texts(viewer.subheader)
    assert not viewer.get("form_submit_button") and not viewer.button  # no adding, no removing
    assert any("admin scope" in c for c in texts(viewer.caption))
    admin = page("cameras.py", srv.url)
    admin.text_input(key="new_name").set_value("passwd")
    admin.text_input(key="new_url").set_value("/etc/passwd")  # the server would refuse it too; the page first
    admin.get("form_submit_button")[0].click()
    admin.run()
    assert any("only from the folders this page allows" in e for e in texts(admin.error)), texts(admin.error)
    names = [s["name"] for s in httpx.get(srv.url + "/v1/streams", headers={"X-API-Key": KEY}).json()["streams"]]
    assert "passwd" not in names


def test_cameras_page_banner_while_an_alarm_runs(watched):
    srv, _ = watched
    from hebbian_mirror.streams.clipset import encode_clip

    from ..stream_peers import PISTOL_IMAGE, _panned

    clip = encode_clip(_panned(PISTOL_IMAGE, 30), REPO / "runs" / "ui-pistol-loop.mp4", 10)
    body = {"name": "vault", "url": str(clip), "loop": True, "realtime": True, "alarm": ["pistol"]}
    assert httpx.post(srv.url + "/v1/streams", json=body, headers={"X-API-Key": KEY}).status_code == 201
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            at = page("cameras.py", srv.url)
            if any("ALARM: pistol on vault" in e for e in texts(at.error)):
                break
            time.sleep(1)
        else:
            raise AssertionError(texts(at.error))
        assert not at.exception
    finally:
        httpx.delete(srv.url + "/v1/streams/vault", headers={"X-API-Key": KEY})


def test_events_page_lists_events_with_snapshots_and_filters(watched):
    srv, _ = watched
    at = page("events.py", srv.url)
    assert not at.exception
    assert "pistol on door" in texts(at.subheader)
    assert len(at.get("image")) >= 1 and any("top score" in m for m in texts(at.markdown))
    at.selectbox(key="ev_label").set_value("pistol")
    at.run()
    assert "pistol on door" in texts(at.subheader)
    at.checkbox(key="ev_active").check()
    at.run()
    assert not at.exception and "pistol on door" not in texts(at.subheader)
    assert any("No event matches" in i for i in texts(at.info))


def test_events_page_reviews_an_event_and_a_view_key_only_sees_the_state(watched):
    srv, _ = watched
    viewer = page("events.py", srv.url, VIEW_KEY)
    assert not viewer.exception and any("Not reviewed yet" in w for w in texts(viewer.warning))
    assert not [b for b in viewer.button if b.label == "False alarm"]  # no review scope: no buttons
    at = page("events.py", srv.url)
    assert any("not reviewed yet" in w for w in texts(at.warning))
    event_id = httpx.get(srv.url + "/v1/events", headers={"X-API-Key": KEY}).json()["events"][0]["id"]
    at.text_input(key=f"note_{event_id}").set_value("a toy in a shop window")
    next(b for b in at.button if b.key == f"false_alarm_{event_id}").click()
    at.run()
    assert not at.exception
    stored = httpx.get(f"{srv.url}/v1/events/{event_id}", headers={"X-API-Key": KEY}).json()["review"]
    assert stored["state"] == "false_alarm" and stored["note"] == "a toy in a shop window"
    assert any(t.startswith("False alarm") and "a toy in a shop window" in t for t in texts(at.success))
    at.selectbox(key="ev_review").set_value("Not reviewed")
    at.run()
    assert not at.exception and event_id not in " ".join(texts(at.caption))
    at.selectbox(key="ev_review").set_value("False alarm")
    at.run()
    assert any(event_id in c for c in texts(at.caption))


def test_an_event_whose_object_was_held_says_who_holds_it(tmp_path):
    """An alarm stored with its holder (``extra.held_by``, as the watcher writes it) reads "Person holding a knife"
    after a restart; one without a holder keeps the bare label."""
    from hebbian_mirror.streams.events import Event, EventStore, new_event_id

    store = EventStore(tmp_path / "events")
    now = time.time()
    for label, held in (("knife", [10.0, 5.0, 400.0, 470.0]), ("pistol", None)):
        event = Event(new_event_id(now), "shop", label, 0, 1, now - 5, None, 0.8, (1, 2, 3, 4), 9, {"held_by": held})
        store.begin(event, KNIFE_PHOTO.read_bytes())
        event.end = now
        store.end(event)
    store.close()
    srv = ServerProcess(
        "--workers", "0", "--api-key", KEY, "--events-dir", str(tmp_path / "events"), log=tmp_path / "server.log"
    )
    try:
        at = page("events.py", srv.url)
        assert not at.exception
        assert {"Person holding a knife on shop", "pistol on shop"} <= set(texts(at.subheader)), texts(at.subheader)
    finally:
        assert srv.stop(), srv.log()


def test_pages_say_when_the_server_is_down():
    for name in ("cameras.py", "events.py"):
        at = page(name, "http://127.0.0.1:9")
        assert not at.exception and any("Cannot reach the server" in e for e in texts(at.error)), name
