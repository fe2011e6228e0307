"""The web UI: Streamlit's AppTest for the page logic and one end-to-end run in headless Chromium, both
against real servers on loopback."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from hebbian_mirror.ui import client as client_module
from hebbian_mirror.ui.client import Client, ServerError, load_image_source

from ..conftest import DOG, KNIFE, REPO, SHARED, WEIGHTS
from ..helpers import huge_png
from ..server_process import ServerProcess, UiProcess, free_port

PAGE = REPO / "src" / "hebbian_mirror" / "ui" / "app.py"
KEY = "ui-key"
WEAPONS = "weapons"  # a trained checkpoint, served by this name: its classes have display names
PISTOL = (
    SHARED
    / "data"
    / "weapons"
    / "pistols"
    / "valid"
    / "images"
    / "armas--1007-_jpg.rf.36376d4887e8fbb596d2274af028689c.jpg"
)
ARTIFACTS = REPO / "runs" / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(
        "--model",
        "yolov4-tiny",
        "--model",
        "yolov3-tiny",
        "--model",
        f"{WEAPONS}={WEIGHTS / 'weapons4-yolov4-tiny.pt'}",
        "--workers",
        "1",  # a worker process per model (test_workers.py has two)
        "--api-key",
        KEY,
        log=tmp_path_factory.mktemp("ui-server") / "server.log",
    )
    yield srv
    assert srv.stop(), srv.log()


SOURCES = [str(SHARED / "data"), tempfile.gettempdir()]  # where these tests let the page read images


def page(
    url: str,
    key: str | None = KEY,
    dangerous: str | None = None,
    sources: list[str] = SOURCES,
    configured_key: str | None = None,
) -> AppTest:
    """The page as `hebbian-mirror ui` would start it (``configured_key``: its --api-key), with ``key`` typed into
    the sidebar."""
    os.environ["HEBBIAN_MIRROR_UI_API"] = url
    os.environ["HEBBIAN_MIRROR_UI_SOURCES"] = "\n".join(sources)
    os.environ.pop("HEBBIAN_MIRROR_UI_API_KEY", None)
    if configured_key:
        os.environ["HEBBIAN_MIRROR_UI_API_KEY"] = configured_key
    if dangerous is None:
        os.environ.pop("HEBBIAN_MIRROR_UI_DANGEROUS", None)
    else:
        os.environ["HEBBIAN_MIRROR_UI_DANGEROUS"] = dangerous
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    if key:
        at.text_input(key="api_key").set_value(key)
        at.run()
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_status_models_and_detection_table(server):
    at = page(server.url)
    assert not at.exception
    (status,) = texts(at.sidebar.success)
    assert "Server ready" in status and "3 model(s)" in status and "yolov4-tiny on cpu" in status
    assert at.selectbox(key="model").options == ["yolov4-tiny", "yolov3-tiny", WEAPONS]
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    assert not at.exception and not at.error  # no alert: the default dangerous classes are not in this photo
    (table,) = at.table
    rows = table.value
    assert {"dog", "bicycle", "truck"} <= set(rows["label"])
    assert list(rows.columns) == ["label", "display name", "confidence", "x1", "y1", "x2", "y2"]
    assert (rows["confidence"] >= 0.25).all()
    assert any("found by `yolov4-tiny`" in m for m in texts(at.markdown))
    assert any(c.startswith("server timing: queue") for c in texts(at.caption))
    assert any("knows: knife" in c for c in texts(at.sidebar.caption))  # of pistol, knife, gun, rifle
    dangerous = at.multiselect(key="dangerous")  # only what the chosen model can find is offered, and said so
    assert dangerous.value == ["knife"] and "pistol" not in dangerous.options
    assert "Not known to the chosen model(s), so never alerted: pistol, gun, rifle" in texts(at.sidebar.caption)


def test_thresholds_classes_and_alert(server):
    at = page(server.url, dangerous="dog,knife")
    at.text_input(key="source").set_value(str(DOG))
    at.slider(key="conf").set_value(0.5)
    at.multiselect(key="classes").set_value(["dog", "truck", "bicycle"])
    at.run()
    (alert,) = texts(at.error)
    assert "ALERT" in alert and "1 × dog" in alert
    rows = at.table[0].value
    assert set(rows["label"]) <= {"dog", "truck", "bicycle"} and (rows["confidence"] >= 0.5).all()
    at.slider(key="alert_conf").set_value(0.95)  # the dog scores 0.87: no alert above 0.95
    at.run()
    assert not at.error


def test_box_voting_moves_boxes_and_keeps_scores(server):
    at = page(server.url)
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    plain = at.table[0].value
    assert not at.toggle(key="merge").value and not at.toggle(key="merge").disabled  # yolov4-tiny has it
    at.toggle(key="merge").set_value(True)
    at.run()
    merged = at.table[0].value
    assert not at.exception and list(merged["label"]) == list(plain["label"])
    assert list(merged["confidence"]) == list(plain["confidence"])
    boxes = ["x1", "y1", "x2", "y2"]
    assert (merged[boxes].to_numpy() != plain[boxes].to_numpy()).any()


def test_the_alert_says_who_holds_the_knife(server):
    at = page(server.url)  # the default dangerous classes: pistol, knife, gun, rifle
    at.text_input(key="source").set_value(str(KNIFE))
    at.slider(key="conf").set_value(0.03)  # COCO's yolov4-tiny sees the knife at 0.05
    at.slider(key="alert_conf").set_value(0.03)
    at.run()
    (alert,) = texts(at.error)
    assert "1 × knife" in alert and "Person holding a knife." in alert


def test_compare_two_models(server):
    at = page(server.url)
    at.text_input(key="source").set_value(str(DOG))
    at.checkbox(key="compare").check()
    at.run()
    at.selectbox(key="model_b").set_value("yolov3-tiny")
    at.run()
    found = [m for m in texts(at.markdown) if "found by" in m]
    assert len(found) == 2 and "`yolov4-tiny`" in found[0] and "`yolov3-tiny`" in found[1]
    assert len(at.table) == 2


def test_display_names_and_what_each_compared_model_knows(server):
    """The weapons checkpoint calls its class `pistol` "Pistol": the page shows that name (pickers, captions, the
    alert, the table) and sends `pistol`; with two models each says which dangerous classes it knows."""
    at = page(server.url)
    at.text_input(key="source").set_value(str(PISTOL))
    at.checkbox(key="compare").check()
    at.run()
    at.selectbox(key="model_b").set_value(WEAPONS)
    at.run()
    assert not at.exception
    knows = [c for c in texts(at.sidebar.caption) if "knows:" in c]
    assert knows == ["yolov4-tiny knows: knife", f"{WEAPONS} knows: Pistol"]
    assert "Pistol" in at.multiselect(key="classes").options and "dog" in at.multiselect(key="classes").options
    assert "Pistol" in at.multiselect(key="dangerous").options and "pistol" in at.multiselect(key="dangerous").value
    (alert,) = texts(at.error)  # the weapons model's column only
    assert "ALERT: 1 dangerous object" in alert and "1 × Pistol" in alert
    weapons_rows = at.table[-1].value
    assert list(weapons_rows["label"]) == ["pistol"] and list(weapons_rows["display name"]) == ["Pistol"]
    at.multiselect(key="classes").set_value(["pistol"])  # a class only the second model knows
    at.run()
    assert not at.exception
    assert any("yolov4-tiny knows none of the chosen classes" in i for i in texts(at.info))
    assert len(at.table) == 1 and list(at.table[0].value["display name"]) == ["Pistol"]
    at.checkbox(key="compare").uncheck()  # the chosen class leaves the picker with the model that knew it
    at.run()
    assert not at.exception and at.multiselect(key="classes").value == [] and len(at.table) == 1


def test_image_beside_its_table_and_downloads(server):
    at = page(server.url)
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    picture, table = at.main.columns  # one model: the photo and its table side by side
    assert len(picture.get("image")) == 1 and len(table.table) == 1
    buttons = table.get("download_button")  # under the table
    assert [b.label for b in buttons] == ["Annotated image", "Detections (JSON)"]
    assert all(b.proto.ignore_rerun for b in buttons)  # a download does not run the page again


def detect_requests(url: str) -> dict[str, float]:
    """The server's count of /v1/detect requests by status."""
    text = httpx.get(url + "/metrics", headers={"X-API-Key": KEY}, timeout=30).text
    found = re.findall(r'hm_requests_total\{route="/v1/detect",status="(\d+)"\} (\S+)', text)
    return {status: float(n) for status, n in found}


def test_unchanged_requests_are_not_sent_again_failed_ones_are(server, tmp_path):
    at = page(server.url, dangerous="dog")
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    assert len(at.table) == 1
    before = detect_requests(server.url).get("200", 0)
    at.slider(key="alert_conf").set_value(0.9)  # settings the server never sees: nothing is sent
    at.multiselect(key="dangerous").set_value(["dog", "truck"])
    at.run()
    at.slider(key="conf").set_value(0.37)  # a new request ...
    at.run()
    at.slider(key="conf").set_value(0.25)  # ... and back to one the page has made before
    at.run()
    assert not at.exception and len(at.table) == 1
    assert detect_requests(server.url).get("200", 0) == before + 1
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    at.text_input(key="source").set_value(str(bad))
    at.run()
    failed = detect_requests(server.url).get("400", 0)
    at.slider(key="alert_conf").set_value(0.8)
    at.run()
    assert "could not read this image" in texts(at.error)[0]
    assert detect_requests(server.url).get("400", 0) == failed + 1  # a failure is asked again, not remembered


EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\U0001f1e6-\U0001f1ff\ufe0f]")


def test_no_emoji_anywhere_on_the_page(server):
    """Emoji show as empty boxes where the machine has no emoji font: the page uses Material icons instead."""
    for module in PAGE.parent.glob("*.py"):
        assert not EMOJI.findall(module.read_text(encoding="utf-8")), module
    at = page(server.url, dangerous="dog")
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    (alert,) = at.error
    assert alert.icon == ":material/warning:" and alert.value.startswith("## ALERT")
    assert texts(at.sidebar.title) == ["Hebbian Mirror"]


def test_the_key_the_page_was_started_with(server):
    """`hebbian-mirror ui --api-key`: the page reaches a server that needs a key with nothing typed, and never
    puts the key into the page; a key typed in the sidebar wins."""
    at = page(server.url, key=None, configured_key=KEY)
    assert not at.exception and not at.sidebar.error
    assert "Server ready" in texts(at.sidebar.success)[0]
    assert at.text_input(key="api_key").value == ""
    assert "Using the API key the page was started with." in texts(at.sidebar.caption)
    at.text_input(key="source").set_value(str(DOG))
    at.run()
    assert len(at.table) == 1
    at.text_input(key="api_key").set_value("wrong")
    at.run()
    assert "needs an API key" in texts(at.sidebar.error)[0]


def test_server_down_is_a_message_not_a_traceback():
    at = page(f"http://127.0.0.1:{free_port()}", key=None)
    assert not at.exception
    (message,) = texts(at.sidebar.error)
    assert "Cannot reach the server" in message and "make serve" in message
    assert any("Connect to a ready server" in i for i in texts(at.info))


def test_server_errors_in_plain_words(server, tmp_path):
    no_key = page(server.url, key=None)
    assert not no_key.exception
    assert "needs an API key" in texts(no_key.sidebar.error)[0]
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not an image")
    at = page(server.url)
    at.text_input(key="source").set_value(str(text_file))
    at.run()
    assert not at.exception
    assert "could not read this image (HTTP 400" in texts(at.error)[0]
    missing = page(server.url)
    missing.text_input(key="source").set_value(str(tmp_path / "nope.jpg"))
    missing.run()
    assert "No image file at" in texts(missing.error)[0]


def test_the_url_and_path_field_is_off_unless_allowed(server, tmp_path):
    closed = page(server.url, sources=[])
    assert not closed.exception
    assert not [t for t in closed.text_input if t.key == "source"]  # no field at all
    only_tmp = page(server.url, sources=[str(tmp_path)])
    only_tmp.text_input(key="source").set_value(str(DOG))  # a real image, outside the allowed folder
    only_tmp.run()
    assert "outside the folders this page may read" in texts(only_tmp.error)[0]
    sneaky = page(server.url, sources=[str(tmp_path)])
    sneaky.text_input(key="source").set_value(str(tmp_path / ".." / ".." / "etc" / "passwd"))
    sneaky.run()
    assert "outside the folders" in texts(sneaky.error)[0]


class _Images(BaseHTTPRequestHandler):
    """A loopback web server: /dog.jpg, /hop → /dog.jpg (a redirect into the private network)."""

    def do_GET(self) -> None:
        if self.path == "/dog.jpg":
            body = DOG.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(302)
            self.send_header("Location", "/dog.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_urls_only_from_allowed_prefixes_and_no_redirect_into_the_private_network():
    web = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{web.server_port}"
    try:
        name, data = load_image_source(f"{base}/dog.jpg", [base + "/"])  # explicitly allowed: fine
        assert name == "dog.jpg" and data == DOG.read_bytes()
        with pytest.raises(ServerError, match=r"redirects to .*/dog.jpg, which this page may not fetch"):
            load_image_source(f"{base}/hop", [base + "/"])  # the hop leads to a loopback address
        with pytest.raises(ServerError, match="not under an address this page may fetch"):
            load_image_source(f"{base}/dog.jpg", ["https://example.com/"])
        with pytest.raises(ServerError, match="outside the folders"):
            load_image_source(str(DOG), [base + "/"])
    finally:
        web.shutdown()


def test_a_redirect_target_that_resolves_private_when_fetched_is_refused(monkeypatch):
    """DNS rebinding: the target's name looks public when checked and leads to loopback when connected."""
    web = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{web.server_port}"
    monkeypatch.setattr(client_module, "_public", lambda host: True)  # the check was fooled
    try:
        with pytest.raises(ServerError, match="led to a private address"):
            load_image_source(f"{base}/hop", [base + "/"])
    finally:
        web.shutdown()


def test_client_explains_every_4xx(server, tmp_path):
    client = Client(server.url, KEY)
    cases = {
        400: lambda: client.detect(b"garbage", "x.jpg", "yolov4-tiny", 0.25, 0.45, []),
        404: lambda: client.detect(DOG.read_bytes(), "d.jpg", "nope", 0.25, 0.45, []),
        413: lambda: client.detect(huge_png(50_000, 50_000), "big.png", "yolov4-tiny", 0.25, 0.45, []),
        422: lambda: client.detect(DOG.read_bytes(), "d.jpg", "yolov4-tiny", 0.25, 0.45, ["unicorn"]),
        415: lambda: client._call("POST", "/v1/detect", content=b"hi", headers={"Content-Type": "text/plain"}),
        401: lambda: Client(server.url, "wrong").models(),
    }
    words = {
        400: "could not read this image",
        401: "needs an API key",
        404: "does not have that model",
        413: "too large",
        415: "does not accept this kind of file",
        422: "rejected a setting",
    }
    for status, call in cases.items():
        with pytest.raises(ServerError) as info:
            call()
        assert f"HTTP {status}" in str(info.value) and words[status] in str(info.value), str(info.value)


def test_browser_end_to_end(server):
    """Real headless Chromium: upload the photo, see the detections and the alert; screenshot kept."""
    from playwright.sync_api import sync_playwright

    ui = UiProcess(server.url, "--dangerous", "dog,knife", "--api-key", KEY)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ui-end-to-end.png"
    try:
        with sync_playwright() as p:
            browser = UiProcess.browser(p)
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            tab.goto(ui.url, wait_until="domcontentloaded")
            tab.get_by_text("Server ready").wait_for(timeout=60_000)  # with the key from --api-key, none typed
            tab.locator("input[type=file]").first.set_input_files([str(DOG), str(KNIFE)])  # KNIFE: 958×1280
            alert = tab.get_by_text(re.compile(r"ALERT: \d")).first
            alert.wait_for(timeout=60_000)
            assert "1 × dog" in alert.inner_text()
            tab.get_by_text("found by").first.wait_for(timeout=30_000)
            assert "objects" in tab.get_by_text("found by").first.inner_text()
            table = tab.locator("[data-testid=stTable]").first.inner_text()
            for label in ("dog", "bicycle", "truck"):
                assert label in table
            tab.get_by_text("server timing").first.wait_for(timeout=30_000)
            tab.locator("[data-testid=stImage] img").nth(1).wait_for(timeout=60_000)  # the tall photo's too
            for i in range(2):  # each photo beside its table, not above it; the tall one shrunk to fit
                picture = tab.locator("[data-testid=stImage] img").nth(i).bounding_box()
                beside = tab.get_by_text("found by").nth(i).bounding_box()  # the top of the table's column
                assert picture and beside and beside["x"] >= picture["x"] + picture["width"], (picture, beside)
                assert beside["y"] < picture["y"] + picture["height"] <= beside["y"] + 600, (picture, beside)
            with tab.expect_download() as download:
                tab.get_by_role("button", name="Detections (JSON)").first.click()
            assert download.value.suggested_filename == "dog-yolov4-tiny.json"
            record = json.loads(Path(download.value.path()).read_text())
            assert record["file"] == "dog.jpg" and record["model"] == "yolov4-tiny"
            assert {"dog", "bicycle", "truck"} <= {d["label"] for d in record["detections"]}
            assert record["settings"] == {"conf": 0.25, "iou": 0.45, "merge": False, "classes": []}
            assert all(d["display_name"] == d["label"] for d in record["detections"])  # COCO names read as is
            with tab.expect_download() as download:
                tab.get_by_role("button", name="Annotated image").first.click()
            assert download.value.suggested_filename == "dog-yolov4-tiny.jpg"
            with Image.open(download.value.path()) as drawn:
                assert drawn.format == "JPEG" and drawn.size == (768, 576)
            assert tab.locator("[data-testid=stAppDeployButton]").count() == 0  # --client.toolbarMode viewer
            assert tab.get_by_text("Deploy", exact=True).count() == 0
            assert tab.locator("[data-testid=stMainMenu]").count() == 1  # the viewer's menu (theme, print) stays
            tab.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        ui.stop()
