"""Arming: when a camera's alarms are delivered. A weekly schedule of windows in a time zone ("a shop: after
business hours"), and a mode set by a person (the API, the UI, MQTT) that overrides it until changed: ``armed``,
``disarmed``, or ``schedule``. Outside the armed time, alarms are still detected, stored and shown, but not
delivered (their messages are not written to the outbox); a camera's own problems (offline, covered) are always
delivered. The modes set by people are kept in the events database, so a restart keeps them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ..config.schedule import Schedule, Window  # noqa: F401  (imported from here too)
from ..errors import RuleError
from .eventdb import connect

MODES = ("schedule", "armed", "disarmed")


class ArmingModes:
    """The modes people set, per stream, in the events database (its own connection; a restart keeps them)."""

    def __init__(self, db_path: Path) -> None:
        self._conn: sqlite3.Connection = connect(db_path)
        self._lock = threading.Lock()
        with self._lock:
            rows = self._conn.execute("SELECT stream, mode, by, at FROM arming").fetchall()
        self._modes = {r["stream"]: dict(r) for r in rows}

    def get(self, stream: str) -> dict | None:
        """``{mode, by, at}`` set for ``stream``, or ``None`` (it follows its schedule)."""
        return self._modes.get(stream)

    def set(self, stream: str, mode: str, by: str | None = None) -> dict:
        if mode not in MODES:
            raise RuleError(f"an arming mode is one of {', '.join(MODES)}, got {mode!r}")
        entry = {"stream": stream, "mode": mode, "by": by, "at": time.time()}
        with self._lock:
            self._conn.execute(
                "INSERT INTO arming (stream, mode, by, at) VALUES (?, ?, ?, ?) ON CONFLICT(stream) DO UPDATE SET "
                "mode = excluded.mode, by = excluded.by, at = excluded.at",
                (stream, mode, by, entry["at"]),
            )
        self._modes[stream] = entry
        return entry

    def armed(self, stream: str, schedule: Schedule, now: float | None = None) -> bool:
        mode = (self._modes.get(stream) or {}).get("mode", "schedule")
        if mode != "schedule":
            return mode == "armed"
        return schedule.armed_at(time.time() if now is None else now)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
