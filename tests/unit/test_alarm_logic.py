"""The alarm logic for weapons, on constructed detections through the real ByteTrack: class locking over a track's
recent frames, stationary objects, held objects, exclusion masks, frame-relative zones and area/shape filters."""

from __future__ import annotations

import pytest

from hebbian_mirror.detection import Detection
from hebbian_mirror.errors import RuleError
from hebbian_mirror.streams.alarms import AlarmTracker
from hebbian_mirror.streams.rules import AlarmRule

SIZE = (640, 480)


def thing(label: str, x: float, y: float = 100, score: float = 0.8, size: float = 60) -> Detection:
    return Detection((x, y, x + size, y + size), score, 0 if label == "pistol" else 67, label)


def person(x: float) -> Detection:
    return Detection((x - 40, 40, x + 120, 460), 0.95, 1, "person")


def starts(tracker: AlarmTracker, frames: list[list[Detection]], fps: float = 10.0) -> list[tuple[str, int]]:
    out = []
    for i, dets in enumerate(frames):
        _, transitions = tracker.update(dets, i / fps, i, i / fps, SIZE)
        out += [(t.kind, i) for t in transitions]
    return out


def labels(sequence: str, x0: float = 100) -> list[list[Detection]]:
    """A moving object whose class per frame is P (pistol) or C (cell phone)."""
    names = {"P": "pistol", "C": "cell phone"}
    return [[thing(names[c], x0 + 3 * i)] for i, c in enumerate(sequence)]


def test_a_pistol_called_phone_for_one_frame_keeps_its_streak_only_with_the_class_lock():
    frames = labels("PPPCPP")
    assert starts(AlarmTracker([AlarmRule("pistol", frames=5)]), frames) == [("new", 5)]
    assert starts(AlarmTracker([AlarmRule("pistol", frames=5, class_lock=False)]), frames) == []


def test_a_phone_called_pistol_for_a_frame_now_and_then_is_no_pistol():
    frames = labels("CCCCCPCCCCPCCCCCPCC")
    assert starts(AlarmTracker([AlarmRule("pistol", frames=1)]), frames) == []
    assert ("new", 5) in starts(AlarmTracker([AlarmRule("pistol", frames=1, class_lock=False)]), frames)


def test_a_still_knife_stops_alarming_and_alarms_again_when_picked_up():
    rule = AlarmRule("knife", frames=5, end_after=3, stationary_after=2.0)
    jitter = [(0, 0), (1, -1), (-1, 1), (2, 0), (0, 2)]
    still = [[thing("knife", 300 + jitter[i % 5][0], 200 + jitter[i % 5][1])] for i in range(60)]
    moved = [[thing("knife", 330 + 4 * i, 190)] for i in range(15)]
    events = starts(AlarmTracker([rule]), still + moved)
    assert events[:2] == [("new", 4), ("end", 22)]  # still from frame 0: 2 s later (frame 20) it stops counting
    assert events[2:] == [("new", 64)]  # picked up at frame 60: five moving frames alarm again
    assert starts(AlarmTracker([AlarmRule("knife", frames=5, end_after=3, stationary_after=None)]), still) == [
        ("new", 4)
    ]


def test_held_counts_only_a_weapon_in_a_persons_hands_and_the_alarm_keeps_the_holder():
    rule = AlarmRule("pistol", frames=3, held=True)
    alone = [[thing("pistol", 100 + 3 * i)] for i in range(10)]
    assert starts(AlarmTracker([rule]), alone) == []
    tracker = AlarmTracker([rule])
    held = [[person(400 + 2 * i), thing("pistol", 420 + 2 * i, 200, size=40)] for i in range(10)]
    assert starts(tracker, held)[0] == ("new", 2)
    alarm = tracker.active["pistol"]
    tracked, _ = tracker.update(held[-1], 1.0, 10, 1.0, SIZE)
    holder = next(t for t in tracked if t.label == "person")
    assert alarm.holder_track == holder.track_id >= 0 and alarm.held_by is not None


def test_masks_and_frame_relative_zones_decide_where_detections_count():
    left_half = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    masked = AlarmRule.from_dict({"label": "pistol", "frames": 3, "masks": [left_half]})
    assert starts(AlarmTracker([masked]), labels("PPPPP", x0=50)) == []
    assert starts(AlarmTracker([masked]), labels("PPPPP", x0=450)) == [("new", 2)]
    zoned = AlarmRule.from_dict({"label": "pistol", "frames": 3, "zones": [left_half]})
    assert starts(AlarmTracker([zoned]), labels("PPPPP", x0=50)) == [("new", 2)]
    assert starts(AlarmTracker([zoned]), labels("PPPPP", x0=450)) == []
    pixels = AlarmRule.from_dict({"label": "pistol", "frames": 3, "zones": ["0,0,320,0,320,480,0,480"]})
    assert starts(AlarmTracker([pixels]), labels("PPPPP", x0=50)) == [("new", 2)]


def test_area_as_a_fraction_of_the_frame_and_shape_filters():
    box = thing("pistol", 100)  # 60 x 60 = 3600 px = 1.2% of 640 x 480
    assert AlarmRule("pistol", max_area=0.01).counts(box.box, 0.8, SIZE) is False
    assert AlarmRule("pistol", max_area=0.02).counts(box.box, 0.8, SIZE) is True
    assert AlarmRule("pistol", min_area=4000).counts(box.box, 0.8, SIZE) is False
    assert AlarmRule("pistol", min_ratio=1.5).counts(box.box, 0.8, SIZE) is False
    assert AlarmRule("pistol", max_ratio=1.5).counts(box.box, 0.8, SIZE) is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"held": "yes"}, "held must be true or false"),
        ({"class_lock": 1}, "class_lock must be true or false"),
        ({"stationary_after": -1}, "stationary_after cannot be negative"),
        ({"max_area": float("nan")}, "max_area must be a finite number"),
        ({"masks": 5}, "masks must be a list of polygons"),
        ({"masks": [[[0, 0], [1, 1]]]}, "at least 3 points"),
    ],
)
def test_bad_new_rule_fields_are_clear_errors(fields, message):
    with pytest.raises(RuleError, match=message):
        AlarmRule.from_dict({"label": "pistol", **fields})


def test_a_still_knife_the_detector_misses_for_a_few_frames_stays_still():
    """ByteTrack gives it a new id after the gap; where a lost track had settled, the new one goes on from it."""
    rule = AlarmRule("knife", frames=5, end_after=3, stationary_after=2.0)
    seen = [[thing("knife", 300, 200)] for _ in range(12)]
    gap = [[] for _ in range(25)]  # 2.5 s unseen: longer than ByteTrack keeps a lost id
    events = starts(AlarmTracker([rule]), seen + gap + seen + seen)
    assert events[:2] == [("new", 4), ("end", 14)]  # the first sighting alarms
    assert ("new", 41) not in events and len(events) == 2  # back, still in place: no second alarm


def test_detections_kept_from_an_earlier_frame_never_fire_an_alarm_and_ask_for_checked_frames():
    """Behind the motion gate a still frame keeps the last detections: they hold a streak, never add to it, and
    while an object is on its way to an alarm every frame must be checked."""
    tracker = AlarmTracker([AlarmRule("pistol", frames=5)])
    one = [thing("pistol", 200)]
    _, fired = tracker.update(one, 0.0, 0, 0.0, SIZE)
    _, fired = tracker.update(one, 0.1, 1, 0.1, SIZE)  # tracked from here on
    assert not fired and tracker.busy
    for i in range(2, 30):  # the same detections, never checked again: no alarm however long
        _, fired = tracker.update(one, i / 10, i, i / 10, SIZE, checked=False)
        assert not fired
    for i in range(30, 33):  # checked again: the streak held goes on (2 + 3 = 5)
        _, fired = tracker.update(one, i / 10, i, i / 10, SIZE)
    assert [t.kind for t in fired] == ["new"]
