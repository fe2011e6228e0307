"""Events and their outbox, in SQLite (WAL, ``synchronous=FULL``), with each event's snapshot and clip on disk.

Writing an event and the message that announces it is one transaction, so a crash never leaves one without the
other; files are written (and fsynced) before the row that names them. Each delivery target ("sink") has a
cursor into the outbox: messages reach a sink in order, each marked only once it was accepted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .eventdb import (  # noqa: F401  (Event, Message, new_event_id: the store's objects, imported from here too)
    COLUMNS,
    FILES,
    MAX_NOTE,
    MAX_REVIEWER,
    REVIEW_STATES,
    UNREVIEWED,
    Event,
    Message,
    connect,
    iso_time,
    new_event_id,
    review_of,
    write_file,
)
from .outbox import OutboxCursors

log = logging.getLogger(__name__)


class EventStore(OutboxCursors):
    """Events under ``root``: ``events.db`` and ``media/<event id>/{snapshot.jpg, clip.mp4}``."""

    def __init__(self, root: Path, db_path: Path | None = None) -> None:
        self.root = Path(root)
        self.db_path = Path(db_path) if db_path else self.root / "events.db"
        self.media = self.root / "media"
        self._conn = connect(self.db_path)
        self._lock = threading.Lock()
        self.extras: Callable[[Event, str, bytes | None, float], dict[str, Any]] | None = None  # links, thumbnail
        self.dropped: dict[str, int] = {}  # per sink: messages removed before it received them (disk budget)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ writing

    def _extras(self, event: Event, kind: str, snapshot: bytes | None, now: float) -> dict[str, Any]:
        """Links and a thumbnail for the message (made before the transaction: shrinking a picture takes time)."""
        try:
            return self.extras(event, kind, snapshot, now) if self.extras is not None else {}
        except Exception:  # a picture that cannot be shrunk never costs the event its message
            log.exception("event %s: the message's links or thumbnail failed; sent without", event.id)
            return {}

    def _message(self, event: Event, kind: str, now: float, extras: dict[str, Any] | None = None) -> None:
        """The message announcing this change; its id is the event's, the kind and the outbox sequence number,
        so it is unique even after older messages were pruned."""
        if event.extra.get("armed") is False:  # raised while its camera was disarmed: stored, not delivered
            return
        kind_type = kind if "." in kind else f"alarm.{kind}"  # camera.offline ...: a camera's own events
        body = json.dumps({"type": kind_type, "timestamp": iso_time(now), "data": event.to_dict()} | (extras or {}))
        cursor = self._conn.execute(
            "INSERT INTO outbox (msg_id, event_id, type, created, body) VALUES (?, ?, ?, ?, ?)",
            (f"pending-{secrets.token_hex(8)}", event.id, kind, now, body),
        )
        seq = cursor.lastrowid
        self._conn.execute("UPDATE outbox SET msg_id = ? WHERE seq = ?", (f"{event.id}-{kind}-{seq}", seq))

    def _save(
        self,
        event: Event,
        kind: str,
        snapshot: bytes | None = None,
        clip: bytes | None = None,
        frame: bytes | None = None,
    ) -> None:
        if frame:  # the snapshot's frame without drawings: what training takes (data from-events)
            write_file(self.media / event.id / "frame.jpg", frame)
        if snapshot:
            write_file(self.media / event.id / "snapshot.jpg", snapshot)
            event.has_snapshot = True
        if clip:
            write_file(self.media / event.id / "clip.mp4", clip)
            event.has_clip = True
        now = time.time()
        row = (
            event.id, event.stream, event.label, event.class_id, event.track_id, event.start, event.end, now,
            event.top_score, json.dumps([float(v) for v in event.box]), event.frames, json.dumps(event.extra),
            int(event.has_snapshot), int(event.has_clip),
        )  # fmt: skip
        extras = self._extras(event, kind, snapshot, now)
        upsert = (
            f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT(id) "
            f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[1:])}"
        )  # a review made while the alarm runs stays
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(upsert, row)
                if kind != "new" and (current := self._review_of(event.id)) is not None:
                    event.review = current
                self._message(event, kind, now, extras)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _review_of(self, event_id: str) -> dict[str, Any] | None:
        sql = "SELECT review, reviewed_by, reviewed_at, review_note FROM events WHERE id = ?"
        return review_of(self._conn.execute(sql, (event_id,)).fetchone())

    def review(self, event_id: str, state: str, by: str | None = None, note: str | None = None) -> Event | None:
        """Record a person's verdict on an event (``state``: acknowledged, confirmed or false_alarm), and the
        message that tells every receiver (``alarm.review``), in one transaction; ``None`` for an unknown event.
        Every change is kept (:meth:`reviews`); the event shows the latest."""
        if state not in REVIEW_STATES:
            raise ValueError(f"a review state is one of {', '.join(REVIEW_STATES)}, got {state!r}")
        if (note and len(note) > MAX_NOTE) or (by and len(by) > MAX_REVIEWER):
            raise ValueError(f"a review note has at most {MAX_NOTE} characters, a reviewer's name {MAX_REVIEWER}")
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
                if row is None:
                    self._conn.execute("ROLLBACK")
                    return None
                event = Event.from_row(row)
                if event.extra.get("problem"):
                    raise ValueError("a camera's problem (offline, frozen, covered) is not an alarm to review")
                self._conn.execute(
                    "UPDATE events SET review = ?, reviewed_by = ?, reviewed_at = ?, review_note = ? WHERE id = ?",
                    (state, by, now, note, event_id),
                )
                self._conn.execute(
                    "INSERT INTO reviews (event_id, state, by, at, note) VALUES (?, ?, ?, ?, ?)",
                    (event_id, state, by, now, note),
                )
                event.review = {"state": state, "by": by, "at": now, "note": note}
                self._message(event, "review", now, self._extras(event, "review", None, now))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return event

    def reviews(self, event_id: str) -> list[dict[str, Any]]:
        """Every review of an event, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, by, at, note FROM reviews WHERE event_id = ? ORDER BY seq", (event_id,)
            ).fetchall()
        return [dict(r) for r in rows]

    def unreviewed(self) -> int:
        """How many events nobody has reviewed yet."""
        with self._lock:
            sql = "SELECT COUNT(*) FROM events WHERE review IS NULL AND class_id >= 0"  # alarms, not camera problems
            return self._conn.execute(sql).fetchone()[0]

    def begin(self, event: Event, snapshot: bytes | None = None, frame: bytes | None = None) -> None:
        self._save(event, "new", snapshot=snapshot, frame=frame)

    def update(self, event: Event, snapshot: bytes | None = None, frame: bytes | None = None) -> None:
        self._save(event, "update", snapshot=snapshot, frame=frame)

    def end(self, event: Event, clip: bytes | None = None) -> None:
        if event.end is None:
            event.end = time.time()
        self._save(event, "end", clip=clip)

    def evidence(self, event: Event, clip: bytes, details: dict[str, Any]) -> None:
        """An alarm's evidence clip (cut from the camera's own stream) and its manifest: the digests of the clip
        and the snapshot, and ``details``; announced as ``alarm.clip``."""
        snapshot = self.snapshot_path(event.id)
        manifest = {"event": event.id, "stream": event.stream, "label": event.label} | details
        manifest["clip_sha256"] = hashlib.sha256(clip).hexdigest()
        manifest["snapshot_sha256"] = hashlib.sha256(snapshot.read_bytes()).hexdigest() if snapshot else None
        write_file(self.media / event.id / "evidence.json", json.dumps(manifest, indent=2).encode())
        write_file(self.media / event.id / "evidence.mp4", clip)
        event.extra = event.extra | {"evidence": True}
        self._save(event, "clip")

    def camera(self, event: Event, kind: str) -> None:
        """A camera's problem begins (``camera.offline``, ``.frozen``, ``.covered``) or ends (``camera.ok``)."""
        self._save(event, kind)

    def close_active(self, now: float) -> list[Event]:
        """End the events a previous run left running (at the time they were last seen)."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM events WHERE end IS NULL").fetchall()
        ended = []
        for row in rows:
            event = Event.from_row(row)
            event.end = min(now, row["last_seen"] or now)
            event.extra = event.extra | {"ended_by": "restart"}
            self._save(event, "camera.ok" if event.extra.get("problem") else "end")
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
        review: str | None = None,
    ) -> list[Event]:
        """Events, newest first, filtered by stream, label, start time, whether they are running and their review
        state (:data:`UNREVIEWED` for none yet)."""
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
        if review == UNREVIEWED:
            where.append("review IS NULL AND class_id >= 0")
        elif review is not None:
            where.append("review = ?")
            args.append(review)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY start DESC LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [Event.from_row(r) for r in rows]

    def file_path(self, event_id: str, name: str) -> Path | None:
        """One of an event's stored files (:data:`FILES`: snapshot.jpg, frame.jpg, clip.mp4, evidence.mp4,
        evidence.json), when it has it; ``None`` for any other name or an id that would leave its folder."""
        path = self.media / event_id / name
        return path if "/" not in event_id and name in FILES and path.is_file() else None

    def snapshot_path(self, event_id: str) -> Path | None:
        return self.file_path(event_id, "snapshot.jpg")

    def frame_path(self, event_id: str) -> Path | None:
        """The snapshot's frame as the camera gave it (no drawings), when the event has one."""
        return self.file_path(event_id, "frame.jpg")

    def clip_path(self, event_id: str) -> Path | None:
        return self.file_path(event_id, "clip.mp4")

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
                for table, column in (("outbox", "event_id"), ("reviews", "event_id"), ("events", "id")):
                    self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (event_id,))
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
