"""The outbox's delivery cursors: each sink (webhook, MQTT, e-mail) has its own position in the outbox, moved
only once a message was accepted, so every sink gets every message in order, at least once. A part of
:class:`~.events.EventStore` (its connection and lock)."""

from __future__ import annotations

import sqlite3
import threading

from .eventdb import Message


class OutboxCursors:
    """Per-sink cursors into the outbox (mixed into the event store, which opens ``_conn`` and ``_lock``)."""

    _conn: sqlite3.Connection
    _lock: threading.Lock

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
