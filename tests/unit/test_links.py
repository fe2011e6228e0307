"""Signed, expiring links to events' files, and the extras a message carries (links, thumbnail), checked against
the documented message schema."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hebbian_mirror.errors import LinkError
from hebbian_mirror.images import encode_jpeg
from hebbian_mirror.streams.events import Event, EventStore, new_event_id
from hebbian_mirror.streams.links import Extras, Signer, link_key

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "event-message.schema.json"


def test_a_link_opens_its_own_file_until_it_expires_and_nothing_else(tmp_path):
    signer = Signer(link_key(tmp_path), "https://shop.example:8000", ttl_s=3600)
    url = signer.link("0000000001000-0badcafe", "snapshot.jpg", now=1000.0)
    assert url.startswith("https://shop.example:8000/v1/events/0000000001000-0badcafe/snapshot.jpg?expires=4600&sig=")
    sig = url.rsplit("sig=", 1)[1]
    signer.check("0000000001000-0badcafe", "snapshot.jpg", "4600", sig, now=4599.0)
    refusals = [
        ("0000000001000-0badcafe", "clip.mp4", "4600", sig, 1000.0),  # another file
        ("0000000001000-deadbeef", "snapshot.jpg", "4600", sig, 1000.0),  # another event
        ("0000000001000-0badcafe", "snapshot.jpg", "9999", sig, 1000.0),  # a longer life, not signed
        (
            "0000000001000-0badcafe",
            "snapshot.jpg",
            "4600",
            sig[:-1] + ("B" if sig[-1] == "A" else "A"),
            1000.0,
        ),  # forged
        ("0000000001000-0badcafe", "snapshot.jpg", "soon", sig, 1000.0),
        ("0000000001000-0badcafe", "../events.db", "4600", sig, 1000.0),
    ]
    for args in refusals:
        with pytest.raises(LinkError) as caught:
            signer.check(*args[:4], now=args[4])
        assert caught.value.status == 403
    with pytest.raises(LinkError) as caught:
        signer.check("0000000001000-0badcafe", "snapshot.jpg", "4600", sig, now=4601.0)
    assert caught.value.status == 410
    other = Signer(link_key(tmp_path / "elsewhere"))  # another server's key signs nothing of this one's
    with pytest.raises(LinkError):
        other.check("0000000001000-0badcafe", "snapshot.jpg", "4600", sig, now=1000.0)


def test_the_key_is_made_once_kept_private_and_reused(tmp_path):
    key = link_key(tmp_path)
    assert len(key) == 32 and link_key(tmp_path) == key
    assert os.stat(tmp_path / "link.key").st_mode & 0o777 == 0o600
    (tmp_path / "link.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="link key"):
        link_key(tmp_path)


def test_messages_carry_links_and_a_thumbnail_as_documented(tmp_path):
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    store = EventStore(tmp_path)
    store.register_sink("x")
    store.extras = Extras(Signer(link_key(tmp_path), "http://127.0.0.1:8000", 600), thumbnails=True)
    pixels = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    start = time.time()
    event = Event(new_event_id(start), "door", "pistol", 0, 1, start, None, 0.9, (1.0, 2.0, 30.0, 40.0), 5)
    store.begin(event, encode_jpeg(pixels), encode_jpeg(pixels))
    store.update(event)  # no new snapshot: links, no thumbnail
    store.end(event, b"mp4")
    store.review(event.id, "confirmed")
    bodies = [json.loads(m.body) for m in store.pending("x")]
    for body in bodies:
        validator.validate(body)
    assert [("thumbnail" in b, sorted(b["links"])) for b in bodies] == [
        (True, ["expires", "snapshot"]),
        (False, ["expires", "snapshot"]),
        (False, ["clip", "expires", "snapshot"]),
        (False, ["clip", "expires", "snapshot"]),
    ]
    small = Image.open(io.BytesIO(base64.b64decode(bodies[0]["thumbnail"].split(",", 1)[1])))
    assert small.format == "JPEG" and max(small.size) == 320 and small.size == (320, 180)
    assert bodies[0]["links"]["expires"] >= int(start) + 599
    store.extras = Extras(Signer(link_key(tmp_path)))  # no public URL: no links
    store.update(event)
    assert "links" not in json.loads(store.pending("x")[-1].body)
