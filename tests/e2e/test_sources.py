"""Video sources on real files and real stream servers: order, sampling, live dropping, damaged and hostile
inputs, an MJPEG stream served by ffmpeg, unreachable cameras."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

from hebbian_mirror.errors import SourceError
from hebbian_mirror.streams.clipset import encode_clip
from hebbian_mirror.streams.sources import SourceEnded, open_source

from ..conftest import COCO_VAL, SHARED
from ..server_process import free_port


def frames_of(source, limit: int = 1000, timeout: float = 5.0) -> list:
    out = []
    source.start()
    try:
        while len(out) < limit:
            frame = source.read(timeout)
            if frame is None:
                break
            out.append(frame)
    except SourceEnded:
        pass
    finally:
        source.stop()
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = [np.full((240, 320, 3), 8 * i, np.uint8) for i in range(30)]  # brightness = frame number × 8
    return encode_clip(frames, tmp_path_factory.mktemp("src") / "ramp.mp4", 10)


def test_a_file_goes_frame_by_frame_in_order_and_fps_samples_by_time(clip):
    frames = frames_of(open_source(str(clip)))
    assert [f.index for f in frames] == list(range(30))
    assert [round(f.pts, 2) for f in frames[:3]] == [0.0, 0.1, 0.2]
    assert abs(float(frames[10].image.mean()) - 80) < 4 and frames[0].image.shape == (240, 320, 3)
    sampled = open_source(str(clip), fps=2.5)
    got = frames_of(sampled)
    assert [f.index for f in got] == [0, 4, 8, 12, 16, 20, 24, 28] and sampled.stats.skipped == 22


def test_a_file_played_in_real_time_keeps_only_the_newest_frame(clip):
    source = open_source(str(clip), realtime=True)
    source.start()
    try:
        time.sleep(1.5)  # a slow consumer
        frame = source.read(2)
        assert frame.index >= 12 and source.stats.dropped >= 10  # no backlog: the newest frame, not the first
    finally:
        source.stop()


def test_image_folders_and_globs_are_sequences_and_bad_images_are_skipped(tmp_path):
    for name in ("000000000139.jpg", "000000000285.jpg"):
        shutil.copy(COCO_VAL / "images" / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    folder = open_source(str(tmp_path))
    assert len(frames_of(folder)) == 2 and folder.stats.errors == 1 and folder.stats.state == "ended"
    assert len(frames_of(open_source(str(tmp_path / "0000*.jpg")))) == 2
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "*.png"))


def test_damaged_hostile_and_missing_videos_are_clear_errors(clip, tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    for path in sorted((SHARED / "data" / "hostile").iterdir()):  # malformed pictures that broke a decoder once
        try:
            source = open_source(str(path))
        except SourceError as exc:
            assert any(w in str(exc) for w in ("not a readable video", "no video stream", "not a video or image file"))
        else:  # FFmpeg reads some pictures as one-frame videos: a frame or nothing, then the end; no crash
            assert len(frames_of(source)) <= 1 and source.stats.state == "ended", path
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        open_source("gopher://camera/1")
    # an MPEG-TS cut in the middle (a recording interrupted): the frames before the cut, then the end
    ts = tmp_path / "cut.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(clip), "-c", "copy", str(ts)], check=True)
    ts.write_bytes(ts.read_bytes()[: ts.stat().st_size // 2])
    cut = frames_of(open_source(str(ts)))
    assert 5 <= len(cut) < 30


def test_an_mjpeg_stream_over_http_is_read_live(clip):
    port = free_port()
    server = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-f", "mpjpeg", "-q:v", "5",
         "-listen", "1", f"http://127.0.0.1:{port}/feed.mjpg"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1)
        source = open_source(f"http://127.0.0.1:{port}/feed.mjpg", backoff=(0.2, 1))
        got = frames_of(source, limit=10, timeout=15)
        assert len(got) == 10 and source.live and got[0].image.shape == (240, 320, 3)
    finally:
        server.kill()
        server.wait()


def test_an_unreachable_camera_is_retried_with_backoff_and_stops_promptly():
    source = open_source(f"rtsp://user:secret@127.0.0.1:{free_port()}/live", backoff=(0.1, 0.4))
    source.start()
    try:
        time.sleep(1.5)
        assert source.read(0.1) is None
        assert source.stats.state == "reconnecting" and source.stats.reconnects >= 2
        assert "secret" not in source.stats.url and "***" in source.stats.url
    finally:
        started = time.monotonic()
        source.stop()
        assert time.monotonic() - started < 5
