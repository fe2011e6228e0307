"""The events database's layer of rows: its schema and migrations, the connection, and the objects its rows
become (:class:`Event`, the outbox's :class:`Message`)."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, stream TEXT NOT NULL, label TEXT NOT NULL, class_id INTEGER, track_id INTEGER,
    start REAL NOT NULL, end REAL, last_seen REAL, top_score REAL, box TEXT, frames INTEGER, extra TEXT,
    has_snapshot INTEGER DEFAULT 0, has_clip INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_start ON events(start);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT UNIQUE NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL,
    created REAL NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, delivered_seq INTEGER NOT NULL);
"""
# version 2: review states (the latest on the event, every change in ``reviews``); 3: arming modes set by people
MIGRATIONS = {
    2: """
ALTER TABLE events ADD COLUMN review TEXT;
ALTER TABLE events ADD COLUMN reviewed_by TEXT;
ALTER TABLE events ADD COLUMN reviewed_at REAL;
ALTER TABLE events ADD COLUMN review_note TEXT;
CREATE INDEX IF NOT EXISTS events_review ON events(review);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, state TEXT NOT NULL, by TEXT, at REAL NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS reviews_event ON reviews(event_id);
""",
    3: """
CREATE TABLE IF NOT EXISTS arming (stream TEXT PRIMARY KEY, mode TEXT NOT NULL, by TEXT, at REAL NOT NULL);
""",
}
COLUMNS = [
    "id",
    "stream",
    "label",
    "class_id",
    "track_id",
    "start",
    "end",
    "last_seen",
    "top_score",
    "box",
    "frames",
    "extra",
    "has_snapshot",
    "has_clip",
]
REVIEW_STATES = ("acknowledged", "confirmed", "false_alarm")
FILES = ("snapshot.jpg", "frame.jpg", "clip.mp4", "evidence.mp4", "evidence.json")  # an event's stored files
UNREVIEWED = "unreviewed"  # a filter: alarms nobody has looked at yet
MAX_NOTE, MAX_REVIEWER = 2000, 200


def new_event_id(start: float) -> str:
    """Unique and sortable by time: milliseconds since the epoch, then random hex."""
    return f"{int(start * 1000):013d}-{secrets.token_hex(4)}"


@dataclass
class Event:
    id: str
    stream: str
    label: str
    class_id: int
    track_id: int
    start: float
    end: float | None
    top_score: float
    box: tuple[float, float, float, float]
    frames: int = 0
    extra: dict = field(default_factory=dict)
    has_snapshot: bool = False
    has_clip: bool = False
    review: dict[str, Any] | None = None  # the latest review: state, by, at, note (None: nobody looked yet)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"box": [round(float(v), 1) for v in self.box], "active": self.end is None}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Event:
        return cls(
            id=row["id"],
            stream=row["stream"],
            label=row["label"],
            class_id=row["class_id"],
            track_id=row["track_id"],
            start=row["start"],
            end=row["end"],
            top_score=row["top_score"],
            box=tuple(json.loads(row["box"])),
            frames=row["frames"],
            extra=json.loads(row["extra"] or "{}"),
            has_snapshot=bool(row["has_snapshot"]),
            has_clip=bool(row["has_clip"]),
            review=review_of(row),
        )


@dataclass
class Message:
    seq: int
    msg_id: str
    event_id: str
    type: str
    body: str


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection to the events database (created and migrated when needed)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")  # one process migrates; another starting meanwhile waits, then sees it done
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            version = 1
        for target in range(version + 1, SCHEMA_VERSION + 1):  # stored events are kept
            for statement in filter(str.strip, MIGRATIONS[target].split(";")):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={max(version, SCHEMA_VERSION)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return conn


def review_of(row: sqlite3.Row | None) -> dict[str, Any] | None:
    """An events row's latest review (``None``: not reviewed)."""
    if row is None or not row["review"]:
        return None
    return {"state": row["review"], "by": row["reviewed_by"], "at": row["reviewed_at"], "note": row["review_note"]}
