"""The camera file: cameras put, replaced and removed in a TOML file that keeps its comments and other settings,
from nothing, down to none and back, and from an inline array written by hand."""

from __future__ import annotations

import tomllib

import pytest

from hebbian_mirror.errors import ConfigError
from hebbian_mirror.streams.camerafile import Camera, CameraFile, parse_cameras


def test_put_replace_remove_keep_the_rest_of_the_file(tmp_path):
    path = tmp_path / "hebbian-mirror.toml"
    path.write_text('# the shop\nalarm = ["pistol"]  # only pistols\n\n[server]\nport = 8001\n')
    cameras = CameraFile(path)
    cameras.put(Camera(name="door", url="rtsp://cam/1", rules=[{"label": "pistol", "held": True}]))
    cameras.put(Camera(name="till", url="rtsp://cam/2", fps=5))
    cameras.put(Camera(name="door", url="rtsp://cam/3"))  # replaced in place
    text = path.read_text()
    assert text.startswith('# the shop\nalarm = ["pistol"]  # only pistols') and "port = 8001" in text
    assert [c["name"] for c in tomllib.loads(text)["cameras"]] == ["door", "till"]
    assert cameras.entries()[0] == {"name": "door", "url": "rtsp://cam/3"}
    assert cameras.remove("door") and cameras.remove("till") and not cameras.remove("till")
    assert "cameras" not in tomllib.loads(path.read_text())
    cameras.put(Camera(name="back", url="rtsp://cam/4"))  # after none: still tables, not an inline array
    assert tomllib.loads(path.read_text())["cameras"] == [{"name": "back", "url": "rtsp://cam/4"}]


def test_an_inline_array_written_by_hand_becomes_tables(tmp_path):
    path = tmp_path / "cameras.toml"
    path.write_text('cameras = [{name = "d", url = "rtsp://cam/d"}]\n')
    CameraFile(path).put(Camera(name="e", url="rtsp://cam/e"))
    assert [c["name"] for c in tomllib.loads(path.read_text())["cameras"]] == ["d", "e"]


def test_a_broken_file_is_a_clear_error_and_is_left_alone(tmp_path):
    path = tmp_path / "cameras.toml"
    path.write_text("cameras = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        CameraFile(path).put(Camera(name="e", url="rtsp://cam/e"))
    assert path.read_text() == "cameras = [\n"


def test_each_bad_entry_is_one_line_naming_the_camera_and_field_and_the_rest_are_kept():
    cameras, problems = parse_cameras(
        [
            {"name": "ok", "url": "rtsp://cam/1"},
            {"name": "bad", "url": "rtsp://cam/2", "rules": [{"label": "pistol", "frames": 0}]},
            {"url": "rtsp://cam/3"},
            {"name": "ok", "url": "rtsp://cam/4"},
            {"name": "typo", "url": "rtsp://cam/5", "fsp": 5},
        ]
    )
    assert [c.name for c in cameras] == ["ok"]
    assert problems[0].startswith("camera 'bad': rules: rule 1: pistol: frames")
    assert problems[1] == "camera 3: name: Field required"
    assert problems[2] == "camera 'ok': a second camera of that name (the first is kept)"
    assert problems[3] == "camera 'typo': fsp: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ("rtsp://cam/main", None)),  # one stream: detected and recorded
        ({"detect_url": "rtsp://cam/sub"}, ("rtsp://cam/sub", "rtsp://cam/main")),  # the main stream recorded
        ({"detect_url": "rtsp://cam/main"}, ("rtsp://cam/main", None)),  # the same stream twice: one connection
        ({"record_url": "rtsp://cam/rec"}, ("rtsp://cam/main", "rtsp://cam/rec")),
        ({"detect_url": "rtsp://cam/sub", "record_url": "rtsp://cam/sub"}, ("rtsp://cam/sub", None)),
    ],
)
def test_which_stream_is_detected_and_which_recorded(fields, expected):
    assert Camera(name="door", url="rtsp://cam/main", **fields).addresses() == expected
