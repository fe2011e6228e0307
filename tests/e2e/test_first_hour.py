"""The first hour with a camera, as a new user meets it: configuration mistakes stop `serve` at start with one line
naming the camera and what is accepted; a camera that is only unreachable keeps retrying; the server says when it
is ready; class names are matched as everywhere else; models are named after what they are."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from hebbian_mirror.streams.clipset import encode_clip

from ..conftest import DOG, WEIGHTS
from ..server_process import ServerProcess, free_port
from ..stream_peers import WEAPONS_MODEL


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = [np.full((120, 160, 3), 10 * i, np.uint8) for i in range(20)]
    return encode_clip(frames, tmp_path_factory.mktemp("first-hour") / "door.mp4", 10)


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``hebbian-mirror serve`` that is expected to stop by itself."""
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--port", str(free_port()), "--workers", "0", *args]
    env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), COLUMNS="200")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in said, said
    errors = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, said
    return errors[0]


def test_a_camera_mistake_stops_serve_at_start_in_one_line(clip):
    started = time.monotonic()
    line = one_error_line(serve("--stream", "shop=/nope/door.mp4"))
    assert "source shop: no such file: /nope/door.mp4" in line and time.monotonic() - started < 30  # before loading
    line = one_error_line(serve("--stream", "shop=rtsp:/192.168.1.64:554/stream1"))
    assert "source shop: the rtsp: URL given is not valid; expected rtsp://HOST" in line
    line = one_error_line(serve("--stream", f"shop={clip}", "--alarm", "pistols"))  # the COCO model: no pistols
    assert "stream shop" in line and "pistols: the model does not know them; it knows: person" in line, line
    line = one_error_line(serve("--stream", f"front door={clip}"))
    assert "source front door: a stream's name is letters, digits" in line
    line = one_error_line(serve("--alarm", "knif"))  # no stream yet: the alarm classes are still checked
    assert "alarm class(es) knif" in line
    line = one_error_line(serve("--webhook-secret", "whsec_hunter2", "--stream", f"shop={clip}"))
    assert "hebbian-mirror new-secret" in line and "hunter2" not in line


def test_ready_means_the_cameras_are_watched_and_the_log_says_so(clip, tmp_path):
    dead = f"rtsp://127.0.0.1:{free_port()}/live"  # well-formed, unreachable: retried, not a mistake
    srv = ServerProcess(
        "--workers", "0", "--stream", f"door={clip}", "--stream", f"yard={dead}", "--alarm", "Knife",
        "--events-dir", str(tmp_path / "events"), log=tmp_path / "server.log",
    )  # fmt: skip
    try:
        streams = {s["name"]: s for s in httpx.get(srv.url + "/v1/streams").json()["streams"]}
        assert set(streams) == {"door", "yard"}  # /ready was 200: both were already being watched
        assert [r["label"] for r in streams["door"]["rules"]] == ["knife"]  # "Knife" is the model's "knife"
        assert (
            f"ready: http://127.0.0.1:{srv.port} serves yolov4-tiny; watching 2 stream(s); alarms for knife"
            in srv.log()
        )
        time.sleep(2)
        assert httpx.get(srv.url + "/v1/streams/yard").json()["state"] in ("connecting", "reconnecting")
        body = {"name": "hall", "url": dead, "rules": [{"label": "KNIFE", "frames": 3}]}
        added = httpx.post(srv.url + "/v1/streams", json=body, timeout=30)
        assert added.status_code == 422 and "--source-host" in added.text  # loopback, through the API
        body["url"] = "rtsp://192.0.2.10/live"  # TEST-NET: well-formed, never answers
        added = httpx.post(srv.url + "/v1/streams", json=body, timeout=30)
        assert added.status_code == 201 and added.json()["rules"][0]["label"] == "knife", added.text
        twice = {"name": "zones", "url": body["url"], "rules": [{"label": "knife"}, {"label": "Knife", "frames": 3}]}
        assert httpx.post(srv.url + "/v1/streams", json=twice, timeout=30).status_code == 201  # one class, two rules
        wrong = httpx.post(srv.url + "/v1/streams", json={"name": "x", "url": body["url"], "alarm": ["Pistol"]})
        assert wrong.status_code == 422 and "it knows: person" in wrong.text
    finally:
        assert srv.stop(), srv.log()


def test_a_checkpoint_is_named_after_what_it_is():
    done = subprocess.run(
        [sys.executable, "-m", "hebbian_mirror", "predict", str(DOG), "--model", str(WEAPONS_MODEL), "--json"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS)),
    )  # fmt: skip
    assert done.returncode == 0 and '"model": "weapons4-yolov4-tiny"' in done.stdout, done.stdout + done.stderr
