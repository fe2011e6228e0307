"""Weekly time windows in a time zone (``mon-fri 18:00-08:00``): when a camera's alarms are delivered (arming,
:mod:`hebbian_mirror.streams.arming`). Parsed here, where the settings are checked, so a window that does not
parse stops a server before it starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import RuleError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WINDOWS = 28
WINDOW = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


def _minutes(text: str, where: str) -> int:
    hours, minutes = (int(v) for v in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise RuleError(f"arming window {where!r}: {text} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _days(text: str, where: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise RuleError(f"arming window {where!r}: days are {', '.join(DAYS)}, ranges (mon-fri) or daily")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a time range in minutes; ``end`` ≤ ``start`` runs past midnight into
    the next day."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"mon-fri 18:00-08:00"``, ``"sat,sun 00:00-24:00"``, ``"daily 22:00-06:00"``."""
        if not isinstance(text, str) or not (m := WINDOW.match(text.lower())):
            raise RuleError(f"arming window {text!r}: expected DAYS HH:MM-HH:MM, e.g. mon-fri 18:00-08:00")
        start, end = _minutes(m["start"], text), _minutes(m["end"], text)
        if start == end:
            raise RuleError(f"arming window {text!r}: starts when it ends")
        return cls(_days(m["days"], text), start, end)

    def contains(self, local: datetime) -> bool:
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)

    def __str__(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days)) if len(self.days) < 7 else "daily"
        return f"{days} {self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


@dataclass(frozen=True)
class Schedule:
    """Weekly windows in a time zone; no window at all: always armed."""

    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"

    @classmethod
    def parse(cls, windows: list[str] | tuple[str, ...] | None, timezone: str | None = None) -> Schedule:
        windows = list(windows or [])
        if len(windows) > MAX_WINDOWS:
            raise RuleError(f"at most {MAX_WINDOWS} arming windows, got {len(windows)}")
        zone = timezone or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleError(f"time zone {zone!r}: not a known one (e.g. Europe/Madrid, UTC)") from None
        return cls(tuple(Window.parse(w) for w in windows), zone)

    def armed_at(self, ts: float) -> bool:
        if not self.windows:
            return True
        local = datetime.fromtimestamp(ts, ZoneInfo(self.timezone))
        return any(w.contains(local) for w in self.windows)

    def to_dict(self) -> dict:
        return {"windows": [str(w) for w in self.windows], "timezone": self.timezone}
