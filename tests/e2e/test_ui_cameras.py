"""Zones and masks drawn in the UI, in real headless Chromium against a real server watching a looping clip with
a pistol: a zone clicked in a corner away from the pistol stops its alarms; the camera's settings edited as TOML
(the zone taken out) bring them back; a mask clicked over the whole picture stops them again. Each save is in
the server's camera file."""

from __future__ import annotations

import time

import httpx
import pytest

from ..conftest import REPO
from ..server_process import ServerProcess, UiProcess
from ..stream_peers import WEAPONS_MODEL, alarm_clip

KEY = "ui-camera-key"
HEADERS = {"X-API-Key": KEY}
COMPONENT = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'
ARTIFACTS = REPO / "runs" / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    clip, _ = alarm_clip(tmp_path_factory.mktemp("ui-camera-clips") / "till.mp4", appearances=1)
    events = tmp_path_factory.mktemp("ui-camera-events")
    srv = ServerProcess(
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", KEY, "--events-dir", str(events),
        "--allow-source", str(clip.parent), log=tmp_path_factory.mktemp("ui-camera-server") / "server.log",
    )  # fmt: skip
    camera = {"name": "till", "url": str(clip), "loop": True, "realtime": True, "fps": 10}
    camera["rules"] = [{"label": "pistol", "frames": 3, "end_after": 5}]
    assert httpx.put(srv.url + "/v1/cameras/till", json=camera, headers=HEADERS).status_code == 200
    yield srv, events
    assert srv.stop(), srv.log()


def alarms(url: str) -> int:
    return httpx.get(url + "/v1/streams/till", headers=HEADERS).json()["alarms"]


def alarm_within(url: str, seconds: float) -> bool:
    """Whether the camera alarms within ``seconds``; it must be checking frames all the while (a camera that
    stopped raises no alarm either)."""
    before = httpx.get(url + "/v1/streams/till", headers=HEADERS).json()["processed"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if alarms(url) > 0:
            return True
        time.sleep(0.5)
    till = httpx.get(url + "/v1/streams/till", headers=HEADERS).json()
    assert till["state"] == "streaming" and till["processed"] > before + 20, till
    return False


def saved(url: str, check) -> None:
    """Wait until the camera file's entry passes ``check`` and the restarted camera is watched again (the UI's
    "Saved" line may still be the last save's)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        camera = httpx.get(url + "/v1/cameras", headers=HEADERS).json()["cameras"][0]
        if check(camera) and httpx.get(url + "/v1/streams/till", headers=HEADERS).status_code == 200:
            return
        time.sleep(0.3)
    raise AssertionError(f"not saved: {camera}")


def draw(tab, corners: list[tuple[float, float]], target: str) -> None:
    """Click ``corners`` (fractions of the picture) on the camera's frame, then save them as ``target``."""
    for i, (fx, fy) in enumerate(corners, 1):
        picture = tab.frame_locator(COMPONENT).locator("img")
        picture.wait_for(timeout=60_000)
        box = picture.bounding_box()
        tab.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        tab.get_by_text(f"{i} corner(s) clicked").wait_for(timeout=30_000)
    tab.get_by_text(target).first.click()
    tab.get_by_role("button", name="Save outline").click()
    tab.get_by_text("Saved till").wait_for(timeout=60_000)


def test_a_zone_and_a_mask_drawn_in_the_browser_change_which_detections_count(server):
    from playwright.sync_api import sync_playwright

    srv, _ = server
    assert alarm_within(srv.url, 30)  # the pistol alarms as configured
    ui = UiProcess(srv.url, "--api-key", KEY)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = UiProcess.browser(p)
            tab = browser.new_page(viewport={"width": 1400, "height": 2400})
            tab.goto(ui.url + "/cameras", wait_until="domcontentloaded")
            tab.get_by_text("Edit a camera").wait_for(timeout=60_000)

            corner = [(0.02, 0.02), (0.15, 0.02), (0.15, 0.15), (0.02, 0.15)]
            draw(tab, corner, "a zone of the pistol rule")
            saved(srv.url, lambda camera: "zones" in camera["rules"][0])
            rule = httpx.get(srv.url + "/v1/streams/till", headers=HEADERS).json()["rules"][0]
            assert len(rule["zones"]) == 1 and all(0 <= c <= 0.2 for p in rule["zones"][0] for c in p), rule
            assert not alarm_within(srv.url, 8)  # the pistol is not in the corner: a whole loop (6.5 s), no alarm

            settings = tab.get_by_label("Its settings")
            text = settings.input_value()
            assert "zones" in text
            settings.fill("\n".join(line for line in text.splitlines() if not line.startswith("zones")))
            tab.get_by_role("button", name="Save settings").click()
            saved(srv.url, lambda camera: "zones" not in camera["rules"][0])
            assert alarm_within(srv.url, 30)  # no zone: alarms again

            tab.reload(wait_until="domcontentloaded")  # the restarted camera's frame to draw on
            tab.get_by_text("Edit a camera").wait_for(timeout=60_000)
            whole = [(0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99)]
            draw(tab, whole, "a mask: detections there are ignored")
            saved(srv.url, lambda camera: len(camera.get("masks", [])) == 1)
            tab.screenshot(path=str(ARTIFACTS / "ui-camera-mask.png"), full_page=True)
            browser.close()
        camera = next(c for c in httpx.get(srv.url + "/v1/cameras", headers=HEADERS).json()["cameras"])
        assert len(camera["masks"]) == 1 and "zones" not in camera["rules"][0], camera
        assert not alarm_within(srv.url, 8)  # masked everywhere: a whole loop, no alarm
    finally:
        ui.stop()
