"""Arming schedules (weekly windows in a time zone) and the modes people set, kept in the events database."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hebbian_mirror.errors import RuleError
from hebbian_mirror.streams.arming import ArmingModes, Schedule, Window
from hebbian_mirror.streams.events import EventStore


def at(text: str, zone: str = "UTC") -> float:
    """Unix time of a local ``YYYY-MM-DD HH:MM`` (2026-12-07 is a Monday)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_windows_cover_their_days_and_hours_overnight_included():
    evenings = Schedule.parse(["mon-fri 18:00-08:00", "sat,sun 00:00-24:00"])
    cases = {
        "2026-12-07 17:59": False,  # Monday, business hours
        "2026-12-07 18:00": True,
        "2026-12-08 07:59": True,  # Tuesday morning: Monday's window, past midnight
        "2026-12-08 08:00": False,
        "2026-12-11 23:00": True,  # Friday night
        "2026-12-12 07:00": True,  # Saturday: Friday's window and Saturday's own
        "2026-12-13 23:59": True,  # Sunday
        "2026-12-14 07:00": False,  # Monday morning: Sunday's window ended at midnight, Monday's opens at 18:00
    }
    for text, armed in cases.items():
        assert evenings.armed_at(at(text)) is armed, text
    assert Schedule.parse([]).armed_at(at("2026-12-07 12:00"))  # no window: always armed
    assert str(Window.parse("Daily 22:00-06:00")) == "daily 22:00-06:00"
    assert Window.parse("fri-mon 10:00-11:00").days == frozenset({4, 5, 6, 0})


def test_a_schedule_follows_its_time_zone():
    madrid = Schedule.parse(["daily 09:00-17:00"], "Europe/Madrid")
    assert madrid.armed_at(at("2026-12-07 09:30", "Europe/Madrid"))
    assert not madrid.armed_at(at("2026-12-07 12:30", "America/New_York"))  # 18:30 in Madrid
    assert madrid.armed_at(at("2026-12-07 09:30", "UTC"))  # 10:30 in Madrid
    assert not madrid.armed_at(at("2026-12-07 16:30", "UTC"))  # 17:30 in Madrid


@pytest.mark.parametrize(
    "windows, zone, words",
    [
        (["weekdays 18:00-08:00"], "UTC", "days are"),
        (["mon 25:00-26:00"], "UTC", "not a time of day"),
        (["mon 18:00"], "UTC", "expected DAYS"),
        (["mon 10:00-10:00"], "UTC", "starts when it ends"),
        (["mon 10:00-11:00"], "Mars/Olympus", "time zone"),
        (["mon 10:00-11:00"] * 29, "UTC", "at most 28"),
    ],
)
def test_bad_schedules_say_what_is_wrong(windows, zone, words):
    with pytest.raises(RuleError, match=words):
        Schedule.parse(windows, zone)


def test_modes_people_set_override_the_schedule_and_survive_a_reopen(tmp_path):
    store = EventStore(tmp_path)
    never = Schedule.parse(["mon 00:00-00:01"])
    modes = ArmingModes(store.db_path)
    assert modes.armed("door", never, at("2026-12-08 12:00")) is False and modes.get("door") is None
    modes.set("door", "armed", by="owner")
    assert modes.armed("door", never, at("2026-12-08 12:00")) is True
    modes.set("yard", "disarmed")
    assert modes.armed("yard", Schedule(), at("2026-12-08 12:00")) is False
    with pytest.raises(RuleError, match="one of"):
        modes.set("door", "maybe")
    modes.close()
    again = ArmingModes(store.db_path)
    assert again.get("door")["mode"] == "armed" and again.get("door")["by"] == "owner"
    assert again.get("yard")["mode"] == "disarmed"
    again.set("door", "schedule")
    assert again.armed("door", never, at("2026-12-08 12:00")) is False
