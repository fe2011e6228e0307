"""Events and their outbox, in SQLite (WAL, ``synchronous=FULL``), with each event's snapshot and clip on disk.

Writing an event and the message that announces it is one transaction, so a crash never leaves one without the
other; files are written (and fsynced) before the row that names them. Each delivery target ("sink") has a
cursor into the outbox: messages reach a sink in order, each marked only once it was accepted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
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
        )


@dataclass
class Message:
    seq: int
    msg_id: str
    event_id: str
    type: str
    body: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_file(path: Path, data: bytes) -> None:
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
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        conn.executescript(SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
    return conn


class EventStore:
    """Events under ``root``: ``events.db`` and ``media/<event id>/{snapshot.jpg, clip.mp4}``."""

    def __init__(self, root: Path, db_path: Path | None = None) -> None:
        self.root = Path(root)
        self.db_path = Path(db_path) if db_path else self.root / "events.db"
        self.media = self.root / "media"
        self._conn = connect(self.db_path)
        self._lock = threading.Lock()
        self.dropped: dict[str, int] = {}  # per sink: messages removed before it received them (disk budget)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ writing

    def _message(self, event: Event, kind: str, now: float) -> None:
        """The message announcing this change; its id is the event's, the kind and the outbox sequence number,
        so it is unique even after older messages were pruned."""
        body = json.dumps({"type": f"alarm.{kind}", "timestamp": _iso(now), "data": event.to_dict()})
        cursor = self._conn.execute(
            "INSERT INTO outbox (msg_id, event_id, type, created, body) VALUES (?, ?, ?, ?, ?)",
            (f"pending-{secrets.token_hex(8)}", event.id, kind, now, body),
        )
        seq = cursor.lastrowid
        self._conn.execute("UPDATE outbox SET msg_id = ? WHERE seq = ?", (f"{event.id}-{kind}-{seq}", seq))

    def _save(self, event: Event, kind: str, snapshot: bytes | None = None, clip: bytes | None = None) -> None:
        if snapshot:
            _write_file(self.media / event.id / "snapshot.jpg", snapshot)
            event.has_snapshot = True
        if clip:
            _write_file(self.media / event.id / "clip.mp4", clip)
            event.has_clip = True
        now = time.time()
        row = (
            event.id, event.stream, event.label, event.class_id, event.track_id, event.start, event.end, now,
            event.top_score, json.dumps([float(v) for v in event.box]), event.frames, json.dumps(event.extra),
            int(event.has_snapshot), int(event.has_clip),
        )  # fmt: skip
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT OR REPLACE INTO events VALUES (" + ",".join("?" * len(row)) + ")", row)
                self._message(event, kind, now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def begin(self, event: Event, snapshot: bytes | None = None) -> None:
        self._save(event, "new", snapshot=snapshot)

    def update(self, event: Event, snapshot: bytes | None = None) -> None:
        self._save(event, "update", snapshot=snapshot)

    def end(self, event: Event, clip: bytes | None = None) -> None:
        if event.end is None:
            event.end = time.time()
        self._save(event, "end", clip=clip)

    def close_active(self, now: float) -> list[Event]:
        """End the events a previous run left running (at the time they were last seen)."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM events WHERE end IS NULL").fetchall()
        ended = []
        for row in rows:
            event = Event.from_row(row)
            event.end = min(now, row["last_seen"] or now)
            event.extra = event.extra | {"ended_by": "restart"}
            self._save(event, "end")
            ended.append(event)
        return ended

    # ------------------------------------------------------------------ reading

    def get(self, event_id: str) -> Event | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return Event.from_row(row) if row else None

    def query(
        self,
        stream: str | None = None,
        label: str | None = None,
        since: float | None = None,
        until: float | None = None,
        active: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Event]:
        """Events, newest first, filtered by stream, label, start time and whether they are running."""
        where, args = [], []
        for column, op, value in (("stream", "=", stream), ("label", "=", label), ("start", ">=", since)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        if until is not None:
            where.append("start < ?")
            args.append(until)
        if active is not None:
            where.append("end IS NULL" if active else "end IS NOT NULL")
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY start DESC LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [Event.from_row(r) for r in rows]

    def snapshot_path(self, event_id: str) -> Path | None:
        path = self.media / event_id / "snapshot.jpg"
        return path if "/" not in event_id and path.is_file() else None

    def clip_path(self, event_id: str) -> Path | None:
        path = self.media / event_id / "clip.mp4"
        return path if "/" not in event_id and path.is_file() else None

    # ------------------------------------------------------------------ outbox

    def forget_sinks(self, keep: list[str]) -> list[str]:
        """Drop the cursors of sinks not in ``keep`` (removed or renamed): they no longer hold back retention."""
        with self._lock:
            gone = [r[0] for r in self._conn.execute("SELECT name FROM sinks").fetchall() if r[0] not in keep]
            for name in gone:
                self._conn.execute("DELETE FROM sinks WHERE name = ?", (name,))
        return gone

    def register_sink(self, name: str, legacy: str | None = None) -> None:
        """A new sink starts after the messages already written (it does not replay history); one known under
        its ``legacy`` name (an earlier version's) keeps its cursor."""
        with self._lock:
            if legacy and legacy != name:
                self._conn.execute(
                    "UPDATE sinks SET name = ? WHERE name = ? AND NOT EXISTS (SELECT 1 FROM sinks WHERE name = ?)",
                    (name, legacy, name),
                )
            last = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
            self._conn.execute("INSERT OR IGNORE INTO sinks VALUES (?, ?)", (name, last))

    def pending(self, sink: str, limit: int = 100) -> list[Message]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, msg_id, event_id, type, body FROM outbox WHERE seq > "
                "(SELECT delivered_seq FROM sinks WHERE name = ?) ORDER BY seq LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [Message(*r) for r in rows]

    def mark_delivered(self, sink: str, seq: int) -> None:
        with self._lock:
            self._conn.execute("UPDATE sinks SET delivered_seq = MAX(delivered_seq, ?) WHERE name = ?", (seq, sink))

    def depth(self, sink: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE seq > (SELECT delivered_seq FROM sinks WHERE name = ?)", (sink,)
            ).fetchone()
        return row[0]

    # ------------------------------------------------------------------ retention

    def prune(self, max_age_s: float | None = None, max_bytes: int | None = None) -> int:
        """Delete ended events older than ``max_age_s``, then the oldest while media exceed ``max_bytes``; never
        a running event. An event with a message some sink has not received yet stays, unless the media are
        still over ``max_bytes`` without it: then the oldest go, delivered or not (a receiver that is down for
        good must not fill the disk), and :attr:`dropped` counts the messages each sink lost."""
        with self._lock:
            floor = self._conn.execute("SELECT MIN(delivered_seq) FROM sinks").fetchone()[0]
            rows = self._conn.execute(
                "SELECT id, start FROM events WHERE end IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox o "
                "WHERE o.event_id = events.id AND o.seq > ?) ORDER BY start",
                (floor if floor is not None else 1 << 62,),
            ).fetchall()
        doomed = [r["id"] for r in rows if max_age_s is not None and r["start"] < time.time() - max_age_s]
        if max_bytes is not None:
            sizes = {p.name: self._size(p.name) for p in self.media.iterdir()} if self.media.is_dir() else {}
            total = sum(sizes.values()) - sum(sizes.get(i, 0) for i in doomed)
            for r in rows:
                if total <= max_bytes:
                    break
                if r["id"] not in doomed:
                    doomed.append(r["id"])
                    total -= sizes.get(r["id"], 0)
            if total > max_bytes:
                doomed += self._over_budget(total - max_bytes, set(doomed), sizes)
        for event_id in doomed:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
                self._conn.execute("DELETE FROM events WHERE id = ?", (event_id,))
                self._conn.execute("COMMIT")
            shutil.rmtree(self.media / event_id, ignore_errors=True)
        return len(doomed)

    def _over_budget(self, excess: int, doomed: set[str], sizes: dict[str, int]) -> list[str]:
        """The oldest ended events whose media make up ``excess`` bytes, undelivered messages or not; their
        undelivered messages are counted per sink in :attr:`dropped` (``sizes``: each media folder's bytes, as
        measured by this pass). Nothing, when the ended events could not
        make up the excess anyway (running events' media are not theirs to pay for)."""
        with self._lock:
            rows = self._conn.execute("SELECT id FROM events WHERE end IS NOT NULL ORDER BY start").fetchall()
        candidates = [(r["id"], sizes.get(r["id"], 0)) for r in rows if r["id"] not in doomed]
        if sum(size for _, size in candidates) < excess:
            return []
        chosen = []
        for event_id, size in candidates:
            if excess <= 0:
                break
            chosen.append(event_id)
            excess -= size
        with self._lock:
            sinks = self._conn.execute("SELECT name, delivered_seq FROM sinks").fetchall()
            for start in range(0, len(chosen), 500):  # SQLite's limit on parameters
                part = chosen[start : start + 500]
                for sink, cursor in sinks:
                    lost = self._conn.execute(
                        f"SELECT COUNT(*) FROM outbox WHERE seq > ? AND event_id IN ({','.join('?' * len(part))})",
                        (cursor, *part),
                    ).fetchone()[0]
                    self.dropped[sink] = self.dropped.get(sink, 0) + lost
        return chosen

    def _size(self, event_id: str) -> int:
        folder = self.media / event_id
        return sum(f.stat().st_size for f in folder.iterdir()) if folder.is_dir() else 0
