"""Evidence clips against a real RTSP camera (ffmpeg publishing into an RTSP server) watched by a real server:
the clip is the camera's own H.264 packets (no re-encoding), starts at least 5 s before the firing frame, runs
past the alarm's end, has every frame the camera sent (ffprobe counts them), and its manifest's digests match the
files; it comes as its own alarm.clip message."""

from __future__ import annotations

import hashlib
import json
import subprocess

import httpx

from ..server_process import ServerProcess, free_port
from ..stream_peers import SECRET, WEAPONS_MODEL, RtspServer, WebhookReceiver, alarm_clip, wait_for

KEY = "evidence-key-0123456789"
A = {"X-API-Key": KEY}


def probe(path) -> dict:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_the_evidence_clip_is_the_cameras_own_stream_around_the_alarm(tmp_path):
    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=1)  # 2 s scene, 2.5 s pistol, 2 s scene, looped
    camera, receiver = RtspServer(clip), WebhookReceiver(free_port())
    srv = None
    try:
        srv = ServerProcess(
            "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", KEY, "--alarm", "pistol",
            "--stream", f"door={camera.url}", "--events-dir", str(tmp_path / "ev"), "--webhook", receiver.url,
            "--webhook-secret", SECRET, "--public-url", "http://127.0.0.1:1",
            log=tmp_path / "server.log",
        )  # fmt: skip
        # the second appearance's clip: by then the camera has sent more than 5 s of video
        clips = wait_for(lambda: len(receiver.of("clip")) >= 2 and receiver.of("clip"))
        message = clips[1]
        event = message["data"]
        assert event["extra"]["evidence"] is True and set(message["links"]) >= {"evidence", "manifest"}
        order = [m["type"] for m in receiver.received if m["data"]["id"] == event["id"]]
        assert order[0] == "alarm.new" and order[-1] == "alarm.clip" and "alarm.end" in order
        got = httpx.get(f"{srv.url}/v1/events/{event['id']}/evidence.mp4", headers=A)
        link = message["links"]["evidence"].replace("http://127.0.0.1:1", srv.url)
        assert got.status_code == 200 and httpx.get(link).content == got.content  # the link opens it, no key
        manifest = httpx.get(f"{srv.url}/v1/events/{event['id']}/evidence.json", headers=A).json()
        snapshot = httpx.get(f"{srv.url}/v1/events/{event['id']}/snapshot.jpg", headers=A).content
        assert manifest["clip_sha256"] == hashlib.sha256(got.content).hexdigest()
        assert manifest["snapshot_sha256"] == hashlib.sha256(snapshot).hexdigest()
        assert manifest["rule"]["label"] == "pistol" and manifest["model"].startswith("weapons=")
        assert manifest["clip_starts"] <= manifest["fired"] - 5.0  # at least 5 s before the firing frame
        assert manifest["frames"] and max(score for _, score in manifest["frames"]) >= 0.5
        path = tmp_path / "evidence.mp4"
        path.write_bytes(got.content)
        info = probe(path)
        video = info["streams"][0]
        assert video["codec_name"] == "h264" and info["format"]["format_name"].startswith("mov,mp4")
        duration = float(info["format"]["duration"])
        alarm_seconds = event["end"] - event["start"]
        assert duration >= 5.0 + alarm_seconds + 4.0, (duration, alarm_seconds)  # before, during, ~5 s after
        frames = int(video["nb_read_frames"])
        assert abs(frames - duration * 10) <= 3, (frames, duration)  # every frame of the 10 fps camera: no gap
    finally:
        if srv is not None:
            assert srv.stop(), srv.log()
        camera.kill()
        receiver.close()


def test_a_camera_with_a_detect_substream_records_its_main_stream(tmp_path):
    """``detect_url`` (the substream the model reads) and ``url`` (the main stream, twice the size): the alarm is
    raised on the substream, its evidence clip is the main stream's own packets."""
    detect, _ = alarm_clip(tmp_path / "sub.mp4", appearances=1)
    main = tmp_path / "main.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(detect), "-vf", "scale=iw*2:ih*2", "-c:v", "libx264", "-g", "10",
         "-pix_fmt", "yuv420p", str(main)], check=True,
    )  # fmt: skip
    sub_camera, main_camera, receiver = RtspServer(detect), RtspServer(main), WebhookReceiver(free_port())
    srv = None
    try:
        srv = ServerProcess(
            "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", KEY, "--alarm", "pistol",
            "--events-dir", str(tmp_path / "ev"), "--webhook", receiver.url, "--webhook-secret", SECRET,
            "--source-host", "127.0.0.1", log=tmp_path / "server.log",
        )  # fmt: skip
        door = {"name": "door", "url": main_camera.url, "detect_url": sub_camera.url, "fps": 10}
        put = httpx.put(f"{srv.url}/v1/cameras/door", json=door, headers=A)
        assert put.status_code == 200, put.text
        assert put.json()["url"] == sub_camera.url and put.json()["record"]["url"] == main_camera.url
        refused = door | {"record_url": "rtsp://169.254.169.254/live"}  # the API's cameras pass the policy
        assert httpx.put(f"{srv.url}/v1/cameras/door", json=refused, headers=A).status_code == 422
        event = wait_for(lambda: receiver.of("clip"))[0]["data"]
        stream = httpx.get(f"{srv.url}/v1/streams/door", headers=A).json()
        assert stream["record"]["state"] == "streaming", stream
        path = tmp_path / "evidence.mp4"
        path.write_bytes(httpx.get(f"{srv.url}/v1/events/{event['id']}/evidence.mp4", headers=A).content)
        video = probe(path)["streams"][0]
        size = probe(detect)["streams"][0]
        assert (video["width"], video["height"]) == (2 * size["width"], 2 * size["height"]), video  # the main's
        assert video["codec_name"] == "h264" and int(video["nb_read_frames"]) >= 30
    finally:
        if srv is not None:
            assert srv.stop(), srv.log()
        sub_camera.kill()
        main_camera.kill()
        receiver.close()
