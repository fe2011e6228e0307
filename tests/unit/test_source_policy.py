"""The source policy on real paths, devices and addresses: what a camera URL may be, which local files a source
may read, that a refusal tells nothing about files outside the allowed folders; secrets masked in every text;
alarm rules bounded and typed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hebbian_mirror.errors import RuleError, SourceError
from hebbian_mirror.streams.media import mask_url, redact
from hebbian_mirror.streams.policy import SourcePolicy, is_local, within
from hebbian_mirror.streams.rules import AlarmRule, make_rules

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


@pytest.fixture
def folders(tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "a.jpg").write_bytes(JPEG)
    (allowed / "clip.mp4").write_bytes(b"\0" * 10)
    (allowed / "notes.txt").write_text("the safe's code is 1234")
    (other / "secret.jpg").write_bytes(JPEG)
    os.symlink("/dev/zero", allowed / "zero.jpg")
    os.symlink(other / "secret.jpg", allowed / "escape.jpg")
    os.mkfifo(allowed / "fifo.jpg")
    (allowed / "big.jpg").write_bytes(JPEG + b"\0" * 5000)
    return allowed, other


def test_cameras_need_a_camera_scheme_and_may_not_listen_or_bind():
    policy = SourcePolicy()
    for url in (
        "tcp://10.0.0.5:9000?listen=1",
        "gopher://10.0.0.5/1",
        "data:text/plain,hello",
        "concat:/etc/passwd",
        "udp://0.0.0.0:5000",
        "udp://10.0.0.5:5000",
        "udp://239.1.1.1:5000?localport=80",
        "srt://10.0.0.5:9000?mode=listener",
        "rtsp://10.0.0.5/live?listen=1",
        "rtsp:/10.0.0.5:554/stream1",
        "rtsp://10.0.0.5:99999/live",
        "http://10.0.0.5/a\x00b",
        "srt://10.0.0.5:9000#?mode=listener",  # FFmpeg reads options after the first '?', fragment or not
        "srt://10.0.0.5:9000?mode=listener&mode=caller",  # FFmpeg takes the first, Python the last
        "udp://239.1.1.1:5000?local%70ort=80",
        "http://[::1/x",
        "rtsp://u:p@[zz]/live",
    ):
        with pytest.raises(SourceError):
            policy.check(url)
    checked = policy.check("rtsp://user:pw@10.0.0.5:554/live")
    assert checked.kind == "stream" and checked.av_options["tls_verify"] == "1"
    assert "file" not in checked.av_options["protocol_whitelist"].split(",")
    assert checked.av_options["max_redirects"] == "0"
    assert policy.check("https://10.0.0.5/cam.mjpg", tls_verify=False).av_options["tls_verify"] == "0"
    assert policy.check("udp://239.1.1.1:5000").kind == "stream"


def test_the_servers_own_and_link_local_addresses_need_the_allowlist():
    from hebbian_mirror.streams.addresses import own_addresses

    default = SourcePolicy()
    for address in own_addresses():  # a service listening on every interface, reached at the LAN address
        with pytest.raises(SourceError, match="--source-host"):
            default.check(f"http://[{address}]:8000/" if address.version == 6 else f"http://{address}:8000/")
    for url in (
        "http://127.0.0.1:8000/metrics",
        "http://localhost:8000/",
        "http://[::1]:8000/",
        "http://[::ffff:127.0.0.1]:8000/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8000/",
        "http://100.100.100.200/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ):
        with pytest.raises(SourceError, match="--source-host"):
            default.check(url)
    assert default.check("rtsp://192.168.1.64:554/stream1").kind == "stream"  # cameras live on private networks
    assert default.check("http://127.0.0.1:8000/", operator=True).kind == "stream"  # the operator said so
    listed = SourcePolicy(hosts=("127.0.0.1", "10.1.0.0/16"))
    assert listed.check("rtsp://127.0.0.1/live").kind == "stream"
    assert listed.check("rtsp://10.1.2.3/live").kind == "stream"
    with pytest.raises(SourceError, match="--source-host"):
        listed.check("rtsp://192.168.1.64/live")


def test_local_sources_only_inside_allowed_folders_and_only_regular_image_or_video_files(folders):
    allowed, other = folders
    policy = SourcePolicy(folders=(allowed.resolve(),), max_file_bytes=1000)
    images = policy.check(str(allowed / "*.jpg"))
    assert [p.name for p in images.images] == ["a.jpg"]  # no device, link out, FIFO or oversized file
    assert [p.name for p in policy.check(str(allowed)).images] == ["a.jpg"]
    assert policy.check(str(allowed / "clip.mp4")).kind == "file"
    with pytest.raises(SourceError, match="not a video or image file"):
        policy.check(str(allowed / "notes.txt"))
    with pytest.raises(SourceError, match=r"'\.\.'"):
        policy.check(str(allowed / ".." / "other" / "*.jpg"))
    # outside: the same words whether the file exists or not, and nothing read
    texts = set()
    for path in (other / "secret.jpg", other / "missing.jpg", "/etc/passwd", "/etc/nope", "file:///etc/hosts"):
        with pytest.raises(SourceError) as refused:
            policy.check(str(path))
        texts.add(str(refused.value).split(": ", 1)[1])
    assert texts == {"not inside a folder this server allows streams from (--allow-source)"}
    with pytest.raises(SourceError, match="--allow-source"):
        SourcePolicy().check(str(allowed / "a.jpg"))  # no folder allowed: no local source through the API
    with pytest.raises(SourceError, match="no images"):  # the operator's own glob: still no device read
        SourcePolicy().check(str(allowed / "zero.*"), operator=True)
    for device in ("/dev/zero", "/dev/*", "/dev/video0/../zero"):
        with pytest.raises(SourceError, match="cameras"):
            SourcePolicy().check(device)


def test_an_image_swapped_for_a_device_after_listing_is_not_read(folders):
    allowed, _ = folders
    policy = SourcePolicy(folders=(allowed.resolve(),), max_file_bytes=1000)
    checked = policy.check(str(allowed / "a.jpg"))
    assert policy.read_image(checked.images[0], checked.roots) == JPEG
    (allowed / "a.jpg").unlink()
    os.symlink("/dev/zero", allowed / "a.jpg")
    with pytest.raises((SourceError, OSError)):
        policy.read_image(checked.images[0], checked.roots)


def test_the_uis_check_of_local_paths(folders):
    allowed, other = folders
    assert is_local("/data/x.mp4") and is_local("file:///x") and not is_local("rtsp://h/x")
    assert not is_local("/dev/video0")
    assert within(str(allowed / "*.jpg"), [allowed]) and not within(str(other / "a.jpg"), [allowed])
    assert not within(str(allowed / ".." / "other" / "a.jpg"), [allowed])


def test_a_refusal_never_echoes_a_password():
    for url in ("rtsp:cam/?password=hunter2", "rtsp://admin:hunter2@10.0.0.5:99999/x", "rtsp://a:hunter2@[zz]/"):
        with pytest.raises(SourceError) as refused:
            SourcePolicy().check(url)
        assert "hunter2" not in str(refused.value)


def test_sinks_that_differ_only_in_a_token_stay_two_and_keep_their_old_cursor(tmp_path):
    from hebbian_mirror.streams.events import EventStore
    from hebbian_mirror.streams.media import sink_name

    a, legacy_a = sink_name("webhook", "https://hooks.example/x?token=aaa")
    b, _ = sink_name("webhook", "https://hooks.example/x?token=bbb")
    assert a != b and "aaa" not in a and legacy_a == "webhook:https://hooks.example/x?token=aaa"
    assert sink_name("webhook", "http://10.0.0.9/hook") == ("webhook:http://10.0.0.9/hook",) * 2
    store = EventStore(tmp_path)
    store.register_sink(legacy_a)  # a cursor written by the version before
    store.mark_delivered(legacy_a, 7)
    store.register_sink(a, legacy_a)
    assert (
        store.forget_sinks([a]) == [] and store._conn.execute("SELECT delivered_seq FROM sinks").fetchall()[0][0] == 7
    )


def test_secrets_are_masked_in_urls_and_error_texts():
    url = "rtsp://admin:hunter2@10.0.0.5:554/live?user=admin&password=hunter3&channel=1"
    masked = mask_url(url)
    assert "hunter2" not in masked and "hunter3" not in masked and "channel=1" in masked
    error = f"[Errno 111] Connection refused: '{url}' (auth hunter2 rejected)"
    assert "hunter" not in redact(error, url)
    for name in ("passphrase", "access_token", "X-Auth", "sessionid", "pass%77ord"):
        assert "s3cr3t" not in mask_url(f"srt://10.0.0.5:9000?{name}=s3cr3t"), name
    assert mask_url("rtsp://a:b@h:99999/x") == "rtsp://***"  # malformed: nothing that could be a secret


def test_rules_are_typed_and_bounded():
    for bad in (
        {"label": "knife", "frames": 1e308},
        {"label": "knife", "frames": 5.5},
        {"label": "knife", "frames": True},
        {"label": "knife", "min_score": float("nan")},
        {"label": "knife", "cooldown": float("inf")},
        {"label": "knife", "zones": 5},
        {"label": "knife", "zones": [[[0, 0], [1, 0]]]},
        {"label": "knife", "zones": [[[i, i * i] for i in range(101)]]},
        {"label": "knife", "zones": [[[0, 0], [1, 0], [0, 1]]] * 17},
        {"label": "knife", "zones": [[[0, 0], [1e309, 0], [0, 1]]]},
        {"label": "knife", "zones": [["a", "b", "c"]]},
        {"label": 5},
    ):
        with pytest.raises(RuleError):
            AlarmRule.from_dict(bad)
    with pytest.raises(RuleError):
        make_rules([])
    rule = AlarmRule.from_dict({"label": "knife", "frames": 3, "zones": ["0,0,100,0,100,100"]})
    assert rule.frames == 3 and len(rule.zones[0]) == 3


def test_a_camera_url_without_its_scheme_says_so():
    with pytest.raises(SourceError, match="has no scheme: a camera URL starts with rtsp://"):
        SourcePolicy(folders=(Path("/"),)).check("192.168.1.64:554/stream1")
