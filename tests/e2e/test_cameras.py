"""Cameras as configuration, with a real server process: ``[[cameras]]`` in the settings file watched at start (a
broken entry named with its field while the others run), cameras added, changed, disabled and removed through
the API written back into that file (its comments kept), and all of it still so after a restart."""

from __future__ import annotations

import tomllib

import httpx
import pytest

from ..server_process import ServerProcess
from ..stream_peers import WEAPONS_MODEL, alarm_clip

KEY = "camera-key"
HEADERS = {"X-API-Key": KEY}
LEFT_THIRD = [[0, 0], [0.33, 0], [0.33, 1], [0, 1]]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return alarm_clip(tmp_path_factory.mktemp("camera-clips") / "pistol.mp4", appearances=1)[0]


def serve(settings, events, clip, log):
    return ServerProcess(
        "--config",
        str(settings),
        "--model",
        f"weapons={WEAPONS_MODEL}",
        "--model",
        "coco=yolov4-tiny",  # knows people: held works with it
        "--workers",
        "0",
        "--api-key",
        KEY,
        "--events-dir",
        str(events),
        "--allow-source",
        str(clip.parent),
        log=log,
    )


def test_cameras_in_the_settings_file_survive_api_changes_and_a_restart(clip, tmp_path):
    settings = tmp_path / "hebbian-mirror.toml"
    settings.write_text(
        f"""# the shop's cameras (this comment must survive the API's writes)
alarm = ["pistol"]

[[cameras]]
name = "till"
url = "{clip}"
loop = true
realtime = true
fps = 5
masks = [[[0.9, 0.9], [1, 0.9], [1, 1]]]
[[cameras.rules]]
label = "pistol"
frames = 3
held = false

[[cameras]]
name = "broken"
url = "{clip}"
rules = [{{label = "pistol", held = "yes"}}]

[[cameras]]
name = "typo"
url = "{clip}"
colour = "red"
""",
        encoding="utf-8",
    )
    events = tmp_path / "events"
    srv = serve(settings, events, clip, tmp_path / "first.log")
    try:
        url = srv.url
        answer = httpx.get(url + "/v1/streams", headers=HEADERS).json()
        assert [s["name"] for s in answer["streams"]] == ["till"]
        till = answer["streams"][0]
        assert till["rules"][0]["frames"] == 3 and till["rules"][0]["masks"] == [[[0.9, 0.9], [1, 0.9], [1, 1]]]
        problems = " | ".join(answer["problems"])
        assert "camera 'broken': rules: rule 1: pistol: held must be true or false, got 'yes'" in problems, problems
        assert "camera 'typo': colour: Extra inputs are not permitted" in problems, problems
        assert "camera 'broken'" in srv.log() and "held" in srv.log()

        door = {
            "name": "door",
            "url": str(clip),
            "loop": True,
            "realtime": True,
            "fps": 5,
            "model": "coco",
            "rules": [{"label": "knife", "held": True, "stationary_after": 20, "zones": [LEFT_THIRD]}],
        }
        put = httpx.put(url + "/v1/cameras/door", json=door, headers=HEADERS)
        assert put.status_code == 200, put.text
        assert put.json()["rules"][0]["held"] is True and put.json()["rules"][0]["label"] == "knife"
        weapons_held = door | {"model": "weapons", "rules": [{"label": "pistol", "held": True}]}
        bad = httpx.put(url + "/v1/cameras/door", json=weapons_held, headers=HEADERS)
        assert bad.status_code == 422 and "held needs a model that knows people" in bad.text
        bad = httpx.put(url + "/v1/cameras/door", json=door | {"model": "nope"}, headers=HEADERS)
        assert bad.status_code == 422 and "model" in bad.text and "nope" in bad.text
        bad = httpx.put(
            url + "/v1/cameras/door", json=door | {"rules": [{"label": "pistol", "zones": 5}]}, headers=HEADERS
        )
        assert bad.status_code == 422 and "zones must be a list" in bad.text
        assert httpx.put(url + "/v1/cameras/else", json=door, headers=HEADERS).status_code == 422
        assert httpx.get(url + "/v1/streams/door", headers=HEADERS).json()["rules"][0]["held"] is True

        outside = door | {"url": "/etc/hostname"}  # the source policy refuses it: the running door goes on
        refused = httpx.put(url + "/v1/cameras/door", json=outside, headers=HEADERS)
        assert refused.status_code == 422, refused.text
        assert httpx.get(url + "/v1/streams/door", headers=HEADERS).json()["rules"][0]["label"] == "knife"
        assert httpx.put(url + "/v1/cameras/door", json=door | {"rules": [{"label": "knife", "cooldown": None}]},
                         headers=HEADERS).status_code == 422  # fmt: skip

        secret = {"name": "cam", "url": "rtsp://shop:s3cret@127.0.0.1:9/live", "enabled": False}
        secret["detect_url"] = "rtsp://shop:s3cret@127.0.0.1:9/sub"
        assert httpx.put(url + "/v1/cameras/cam", json=secret, headers=HEADERS).status_code == 200
        shown = next(c for c in httpx.get(url + "/v1/cameras", headers=HEADERS).json()["cameras"] if c["name"] == "cam")
        assert "s3cret" not in str(shown) and "***" in shown["url"] and "***" in shown["detect_url"]
        assert httpx.put(url + "/v1/cameras/cam", json=shown | {"fps": 5}, headers=HEADERS).status_code == 200
        kept = {c["name"]: c for c in tomllib.loads(settings.read_text())["cameras"]}["cam"]
        assert kept["url"] == secret["url"] and kept["fps"] == 5  # the masked URL sent back kept the password
        assert kept["detect_url"] == secret["detect_url"]
        moved = shown | {"detect_url": "rtsp://shop:***@127.0.0.1:9/other"}  # a *** that matches nothing stored
        assert httpx.put(url + "/v1/cameras/cam", json=moved, headers=HEADERS).status_code == 422
        assert httpx.delete(url + "/v1/cameras/cam", headers=HEADERS).status_code == 204

        tmp = {"name": "tmp", "url": str(clip), "loop": True, "realtime": True}
        assert httpx.post(url + "/v1/streams", json=tmp, headers=HEADERS).status_code == 201
        assert "tmp" in [c["name"] for c in tomllib.loads(settings.read_text())["cameras"]]
        assert httpx.delete(url + "/v1/streams/tmp", headers=HEADERS).status_code == 204
        till_off = {"name": "till", "url": str(clip), "enabled": False}
        assert httpx.put(url + "/v1/cameras/till", json=till_off, headers=HEADERS).status_code == 200
        assert sorted(s["name"] for s in httpx.get(url + "/v1/streams", headers=HEADERS).json()["streams"]) == ["door"]
        assert httpx.delete(url + "/v1/cameras/typo", headers=HEADERS).status_code == 204  # a problem removed
        listed = httpx.get(url + "/v1/cameras", headers=HEADERS).json()
        assert [c["name"] for c in listed["cameras"]] == ["till", "broken", "door"]
        assert [p.split(":")[0] for p in listed["problems"]] == ["camera 'broken'"], listed["problems"]
    finally:
        assert srv.stop(), srv.log()

    text = settings.read_text()
    assert text.startswith("# the shop's cameras (this comment must survive the API's writes)")
    stored = {c["name"]: c for c in tomllib.loads(text)["cameras"]}
    assert stored["till"] == {"name": "till", "url": str(clip), "enabled": False}
    assert stored["door"]["rules"][0]["zones"] == [LEFT_THIRD] and "tmp" not in stored

    again = serve(settings, events, clip, tmp_path / "second.log")
    try:
        streams = httpx.get(again.url + "/v1/streams", headers=HEADERS).json()["streams"]
        assert [s["name"] for s in streams] == ["door"]  # till disabled, tmp and typo removed, broken still not
        rule = streams[0]["rules"][0]
        assert rule["held"] is True and rule["stationary_after"] == 20 and rule["zones"] == [LEFT_THIRD]
    finally:
        assert again.stop(), again.log()
