"""Alarm rules and the tracker-driven alarm life cycle, on constructed detections through the real ByteTrack."""

from __future__ import annotations

import pytest

from hebbian_mirror.detection import Detection
from hebbian_mirror.errors import RuleError
from hebbian_mirror.streams.alarms import AlarmTracker
from hebbian_mirror.streams.rules import AlarmRule, make_rules, parse_zone, point_in_polygon


def pistol(x: float, score: float = 0.8, y: float = 100, size: float = 60) -> Detection:
    return Detection((x, y, x + size, y + size), score, 0, "pistol")


def run(tracker: AlarmTracker, frames: list[list[Detection]], fps: float = 10.0) -> list[tuple[str, int, int]]:
    """(kind, frame index, alarm start index) for every transition."""
    out = []
    for i, dets in enumerate(frames):
        _, transitions = tracker.update(dets, i / fps, i, 1000 + i / fps)
        out += [(t.kind, i, t.alarm.start_index) for t in transitions]
    return out


def moving(n: int, start: float = 100, score: float = 0.8) -> list[list[Detection]]:
    return [[pistol(start + 3 * i, score)] for i in range(n)]


def test_five_successive_frames_raise_the_alarm_on_the_fifth_and_it_ends_after_end_after_empty_frames():
    tracker = AlarmTracker([AlarmRule("pistol", frames=5, end_after=3)])
    events = run(tracker, [[]] * 2 + moving(8) + [[]] * 5)
    assert events == [("new", 6, 6), ("end", 12, 6)]  # frames 2..6 are the five; 10, 11, 12 are empty


def test_four_frames_then_a_gap_then_four_frames_raise_nothing():
    tracker = AlarmTracker([AlarmRule("pistol", frames=5, end_after=3)])
    assert run(tracker, [*moving(4), [], *moving(4, start=112)]) == []


def test_detections_below_min_score_do_not_count_and_reset_the_streak():
    tracker = AlarmTracker([AlarmRule("pistol", min_score=0.5, frames=5)])
    frames = [*moving(3), [pistol(109, 0.3)], *moving(4, start=112)]
    assert run(tracker, frames) == []
    assert run(tracker, moving(1, start=124)) == [("new", 0, 0)]  # the streak goes on: 4 + 1 counting frames


def test_two_appearances_give_two_alarms_and_a_cooldown_holds_the_second_back():
    appearance = moving(6)
    frames = appearance + [[]] * 12 + appearance
    assert [e[0] for e in run(AlarmTracker([AlarmRule("pistol", end_after=10)]), frames)] == ["new", "end", "new"]
    held = AlarmTracker([AlarmRule("pistol", end_after=10, cooldown=60)])
    assert [e[0] for e in run(held, frames)] == ["new", "end"]
    assert held.suppressed == 1


def test_median_rule_fires_on_the_median_of_the_last_k_scores():
    scores = [0.4, 0.6, 0.7, 0.3, 0.8, 0.9]  # median of the first five counting scores (≥0.3): 0.6
    frames = [[pistol(100 + 3 * i, s)] for i, s in enumerate(scores)]
    tracker = AlarmTracker([AlarmRule("pistol", min_score=0.3, median_of=5, threshold=0.55)])
    assert run(tracker, frames) == [("new", 4, 4), ("update", 5, 4)]  # 0.9 beats the top score 0.8
    strict = AlarmTracker([AlarmRule("pistol", min_score=0.3, median_of=5, threshold=0.65)])
    assert run(strict, frames) == [("new", 5, 5)]  # last five: 0.6 0.7 0.3 0.8 0.9 → 0.7


def test_zones_and_min_area_decide_what_counts():
    zone = parse_zone("0,0,200,0,200,200,0,200")
    assert point_in_polygon((100, 100), zone) and not point_in_polygon((300, 100), zone)
    inside = AlarmTracker([AlarmRule("pistol", zones=(zone,))])
    assert run(inside, moving(5, start=50))[0][0] == "new"
    outside = AlarmTracker([AlarmRule("pistol", zones=(zone,))])
    assert run(outside, moving(8, start=400)) == []
    small = AlarmTracker([AlarmRule("pistol", min_area=60 * 60 + 1)])
    assert run(small, moving(8)) == []


def test_a_second_pistol_joins_the_running_alarm_and_a_higher_score_reports_an_update():
    tracker = AlarmTracker([AlarmRule("pistol", end_after=3)])
    frames = moving(5) + [[pistol(115 + 3 * i), pistol(400 + 3 * i, 0.9)] for i in range(5)]
    events = run(tracker, frames)
    assert [e[0] for e in events] == ["new", "update"]
    alarm = tracker.active["pistol"]
    assert len(alarm.tracks) == 2 and alarm.top_score == pytest.approx(0.9)


def test_other_classes_are_tracked_but_raise_nothing_and_finish_ends_running_alarms():
    tracker = AlarmTracker([AlarmRule("pistol")])
    person = Detection((0, 0, 50, 150), 0.99, 1, "person")
    for i in range(6):
        tracked, transitions = tracker.update([person], i / 10, i, i / 10)
        assert [t.label for t in tracked] == ["person"] and not transitions
    assert tracked[0].track_id >= 0
    run(tracker, moving(6))
    assert [t.kind for t in tracker.finish(1.0)] == ["end"] and not tracker.active


def test_bad_rules_are_clear_errors():
    with pytest.raises(RuleError, match="unknown alarm rule field"):
        AlarmRule.from_dict({"label": "pistol", "frame": 5})
    with pytest.raises(RuleError, match="at least 3 points"):
        parse_zone("0,0,10,10")
    with pytest.raises(RuleError, match="min_score"):
        AlarmRule("pistol", min_score=2)
    with pytest.raises(RuleError, match="no alarm classes"):
        make_rules([])
    rule = AlarmRule.from_dict({"label": "knife", "zones": [[[0, 0], [10, 0], [10, 10]]], "frames": 3})
    assert AlarmRule.from_dict(rule.to_dict()) == rule
