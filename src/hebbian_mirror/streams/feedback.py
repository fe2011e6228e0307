"""Reviewed events as training data (``hebbian-mirror data from-events``): what people judged goes back into the
model. A false alarm becomes a hard negative (its frame, no label of the alarm's class); a confirmed alarm becomes
a labelled image (its frame and the detector's box, to be checked by a person before it teaches anything).
Acknowledged and unreviewed events are left out: nobody has judged them yet.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..datasets import Box, DetectionDataset, Sample, write_splits
from ..errors import DatasetError
from .events import EventStore

USED = ("confirmed", "false_alarm")  # the review states that become training data
PAGE = 1000


@dataclass
class Exported:
    """What :func:`from_events` wrote."""

    data: Path  # the dataset's data.yaml
    confirmed: int
    false_alarms: int
    skipped: int  # reviewed, but without a stored frame (an event from before frames were kept)


def from_events(events_dir: Path, out: Path, since: float | None = None, streams: list[str] | None = None) -> Exported:
    """The reviewed events of ``events_dir`` (started at or after ``since``, of ``streams``) as a YOLO dataset
    of one ``train`` split in ``out``, with ``events.json`` beside it: each image's event, review and box."""
    if not (Path(events_dir) / "events.db").is_file():
        raise DatasetError(f"{events_dir} holds no events (no events.db): give the server's --events-dir")
    store = EventStore(events_dir)
    try:
        found = {e.id: e for state in USED for e in _all(store, state, since)}  # once each, even if reviewed meanwhile
        events = sorted(
            (e for e in found.values() if not e.extra.get("problem") and (streams is None or e.stream in streams)),
            key=lambda e: e.start,
        )
        with tempfile.TemporaryDirectory() as tmp:
            samples, manifest, skipped = [], [], 0
            classes = sorted({e.label for e in events if store.frame_path(e.id) is not None})
            for e in events:
                frame = store.frame_path(e.id)
                if frame is None:
                    skipped += 1
                    continue
                named = Path(tmp) / f"{e.stream}-{e.id}.jpg"  # the file name says which event it was
                named.symlink_to(frame)
                with Image.open(frame) as im:
                    width, height = im.size
                confirmed = e.review["state"] == "confirmed"
                box = tuple(e.extra.get("frame_box") or e.box)  # the box drawn on this very frame
                boxes = [Box(box, classes.index(e.label))] if confirmed else []
                samples.append(Sample(named, width, height, boxes))
                manifest.append(_entry(e, named.name))
            if not samples:
                raise DatasetError(
                    f"no confirmed or false-alarm event with a stored frame in {events_dir}"
                    + (f" (of streams {', '.join(streams)})" if streams else "")
                    + ": review alarms first (the API, the UI's Events page or MQTT)"
                )
            ds = DetectionDataset(classes, samples, source=f"events in {events_dir}")
            data = write_splits({"train": ds}, out, "yolo")
        (Path(out) / "events.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        confirmed = sum(1 for m in manifest if m["review"]["state"] == "confirmed")
        return Exported(data, confirmed, len(manifest) - confirmed, skipped)
    finally:
        store.close()


def _all(store: EventStore, state: str, since: float | None) -> list:
    out, offset = [], 0
    while page := store.query(review=state, since=since, limit=PAGE, offset=offset):
        out += page
        offset += PAGE
    return out


def _entry(event, image: str) -> dict[str, Any]:
    return {
        "image": image,
        "event": event.id,
        "stream": event.stream,
        "label": event.label,
        "start": event.start,
        "top_score": event.top_score,
        "box": [round(float(v), 1) for v in (event.extra.get("frame_box") or event.box)],
        "box_from": "detector",  # a person should check it before training on it
        "review": event.review,
    }
