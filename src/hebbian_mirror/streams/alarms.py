"""From detections per frame to alarms: objects tracked across frames (:mod:`.tracking`: ByteTrack over every
class, each track's class locked by a vote over its recent frames, how long it stood still, who holds it), each
class's :class:`~.rules.AlarmRule` applied to every tracked object, and an alarm's life as transitions
(``new`` → ``update`` … → ``end``). Pure logic, no I/O: the watcher, the alarm evaluation and the tests share it.

One alarm per class per stream at a time: a second pistol while the first is still in view joins the running
alarm (its track id is recorded) rather than raising another.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..detection import Detection
from .rules import AlarmRule, Size
from .tracking import FORGET_AFTER, ObjectTracker, Tracked

UPDATE_STEP = 0.05  # a running alarm reports again when its top score rises by this much


@dataclass
class Alarm:
    """A running (or just ended) alarm of one class on one stream."""

    rule: AlarmRule
    class_id: int
    track_id: int  # the tracked object that raised it
    start_index: int
    start_wall: float
    top_score: float
    top_box: tuple[float, float, float, float]
    top_index: int
    frames: int = 1  # processed frames in which an object of the class counted
    missing: int = 0  # successive processed frames without one
    tracks: set[int] = field(default_factory=set)
    reported_score: float = 0.0
    end_wall: float | None = None
    event_id: str | None = None  # set by whoever stores it
    held_by: tuple[float, float, float, float] | None = None  # the box of the person holding the top object
    holder_track: int | None = None  # that person's track id
    top_parts: dict[str, float] = field(default_factory=dict)  # the top detection's detector and verifier scores

    @property
    def label(self) -> str:
        return self.rule.label


@dataclass
class Transition:
    kind: str  # new | update | end
    alarm: Alarm


@dataclass
class _Track:
    scores: deque[float]
    streak: int = 0
    last_index: int = -1


class AlarmTracker:
    """Feeds one stream's frames through the tracker and the rules.

    ``update(detections, pts, index, wall, size)`` returns the tracked detections (for drawing) and the alarm
    transitions this frame caused. ``finish()`` ends every running alarm (the stream ended).
    """

    def __init__(self, rules: Sequence[AlarmRule], fps: float = 10.0) -> None:
        self.rules = {r.label: r for r in rules}
        self.min_score = min(r.min_score for r in rules)
        self.objects = ObjectTracker(fps, self.min_score)
        self._tracks: dict[tuple[int, str], _Track] = {}  # (track id, rule label) → its counting
        self.active: dict[str, Alarm] = {}
        self._cooldown_until: dict[str, float] = {}
        self.suppressed = 0  # alarms held back by a cooldown
        self._held_back: set[int] = set()  # tracks whose alarm a cooldown held back (counted once)
        self.fps = fps
        self._clock = 0.0  # seconds of stream time, always increasing (a looped file or a reconnect restarts pts)
        self._last_pts: float | None = None
        self._n = 0  # processed frames so far (a source's own frame index skips the frames not processed)

    @property
    def detect_conf(self) -> float:
        """The detector threshold to watch with: below the rules' ``min_score``, so the tracker also sees the
        weaker detections of objects it already follows (ByteTrack's second association)."""
        return max(0.05, self.min_score / 2)

    @property
    def busy(self) -> bool:
        """An alarm runs, or an object counted in the last frame is on its way to one: every frame should be
        checked by the model (a motion gate must not skip it)."""
        return bool(self.active) or any(s.streak and s.last_index == self._n for s in self._tracks.values())

    def update(
        self,
        detections: Sequence[Detection],
        pts: float,
        index: int,
        wall: float,
        size: Size | None = None,
        checked: bool = True,
    ) -> tuple[list[Tracked], list[Transition]]:
        """One frame's ``detections``; ``checked`` False: they are an earlier frame's, kept because nothing moved
        (the tracks age, nothing counts)."""
        step = pts - self._last_pts if self._last_pts is not None else 0.0
        self._clock += step if 0 < step <= 5.0 else (1 / self.fps if self._last_pts is not None else 0.0)
        self._last_pts = pts
        pts = self._clock
        tracked = self.objects.update(detections, pts)
        self._n += 1
        counting: dict[str, list[Tracked]] = {}
        for rule in self.rules.values():
            for t in tracked:
                if t.track_id >= 0 and self._counts(rule, t, size, checked):
                    counting.setdefault(rule.label, []).append(t)
        transitions: list[Transition] = []
        for label, rule in self.rules.items():
            hits = counting.get(label, [])
            alarm = self.active.get(label)
            if alarm is not None:
                transitions += self._continue(alarm, hits, pts, index, wall)
            else:
                transitions += self._maybe_start(rule, hits, pts, index, wall)
        for key in [k for k, s in self._tracks.items() if self._n - s.last_index > FORGET_AFTER]:
            del self._tracks[key]
        return tracked, transitions

    def _counts(self, rule: AlarmRule, t: Tracked, size: Size | None, checked: bool = True) -> bool:
        """Whether tracked object ``t`` counts for ``rule`` in this frame (its streak and scores updated)."""
        label = t.label if rule.class_lock else t.detection.label
        if label != rule.label:
            return False
        n = self._n
        state = self._tracks.get((t.track_id, rule.label))
        if state is None:
            state = self._tracks[(t.track_id, rule.label)] = _Track(deque(maxlen=rule.needed))
            if t.first is not None and t.first.label == rule.label and rule.counts(t.first.box, t.first.score, size):
                state.scores.append(t.first.score)
                state.streak, state.last_index = 1, n - 1
        if t.detection.label != rule.label or not checked:  # another class on this track, or a kept frame: held over
            if state.last_index == n - 1:
                state.last_index = n
            return False
        stationary = bool(rule.stationary_after) and t.still_for >= rule.stationary_after
        if stationary or (rule.held and t.holder is None) or not rule.counts(t.detection.box, t.detection.score, size):
            state.streak = 0
            return False
        state.streak = state.streak + 1 if state.last_index == n - 1 else 1
        state.scores.append(t.detection.score)
        state.last_index = n
        return True

    def _maybe_start(
        self, rule: AlarmRule, hits: list[Tracked], pts: float, index: int, wall: float
    ) -> list[Transition]:
        states = {t.track_id: self._tracks[(t.track_id, rule.label)] for t in hits}
        firing = [t for t in hits if rule.fires(states[t.track_id].scores, states[t.track_id].streak)]
        if not firing:
            return []
        if pts < self._cooldown_until.get(rule.label, -math.inf):
            new = {t.track_id for t in firing} - self._held_back
            self.suppressed += bool(new)
            self._held_back |= new
            return []
        best = max(firing, key=lambda t: t.detection.score)
        alarm = Alarm(
            rule=rule,
            class_id=best.detection.class_id,
            track_id=best.track_id,
            start_index=index,
            start_wall=wall,
            top_score=best.detection.score,
            top_box=best.detection.box,
            top_index=index,
            frames=max(1, states[best.track_id].streak),
            tracks={t.track_id for t in hits},
        )
        alarm.reported_score = alarm.top_score
        self._top(alarm, best)
        self.active[rule.label] = alarm
        return [Transition("new", alarm)]

    def _continue(self, alarm: Alarm, hits: list[Tracked], pts: float, index: int, wall: float) -> list[Transition]:
        if not hits:
            alarm.missing += 1
            if alarm.missing >= alarm.rule.end_after:
                return [self._end(alarm, pts, wall)]
            return []
        alarm.missing = 0
        alarm.frames += 1
        alarm.tracks.update(t.track_id for t in hits)
        best = max(hits, key=lambda t: t.detection.score)
        if best.detection.score > alarm.top_score:
            alarm.top_score, alarm.top_box, alarm.top_index = best.detection.score, best.detection.box, index
            self._top(alarm, best)
        if alarm.top_score >= alarm.reported_score + UPDATE_STEP:
            alarm.reported_score = alarm.top_score
            return [Transition("update", alarm)]
        return []

    @staticmethod
    def _top(alarm: Alarm, best: Tracked) -> None:
        """What the alarm keeps of its top detection besides score and box: its holder and its scores' parts."""
        alarm.held_by, alarm.holder_track = best.holder_box, best.holder
        alarm.top_parts = best.detection.parts()

    def _end(self, alarm: Alarm, pts: float, wall: float) -> Transition:
        alarm.end_wall = wall
        del self.active[alarm.label]
        self._cooldown_until[alarm.label] = pts + alarm.rule.cooldown
        return Transition("end", alarm)

    def finish(self, wall: float) -> list[Transition]:
        """End every running alarm (the stream ended or is being removed)."""
        return [self._end(alarm, self._clock, wall) for alarm in list(self.active.values())]
