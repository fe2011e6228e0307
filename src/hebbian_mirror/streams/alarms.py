"""From detections per frame to alarms: objects tracked across frames (ByteTrack, from Roboflow's ``trackers``),
each class's :class:`~.rules.AlarmRule` applied to every tracked object, and an alarm's life as transitions
(``new`` → ``update`` … → ``end``). Pure logic, no I/O: the watcher, the alarm evaluation and the tests share it.

One alarm per class per stream at a time: a second pistol while the first is still in view joins the running
alarm (its track id is recorded) rather than raising another.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..boxes import PERSON, held_by, iou
from ..classes import canonical_name
from ..detection import Detection
from .rules import AlarmRule

UPDATE_STEP = 0.05  # a running alarm reports again when its top score rises by this much
FORGET_AFTER = 100  # processed frames after which an unseen track's history is dropped


@dataclass
class Tracked:
    """A detection with its track id (``-1``: not (yet) tracked)."""

    detection: Detection
    track_id: int


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

    ``update(detections, pts, index, wall)`` returns the tracked detections of the alarm classes (for drawing)
    and the alarm transitions this frame caused. ``finish()`` ends every running alarm (the stream ended).
    """

    def __init__(self, rules: Sequence[AlarmRule], fps: float = 10.0) -> None:
        from trackers import ByteTrackTracker

        self.rules = {r.label: r for r in rules}
        self.min_score = min(r.min_score for r in rules)
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(2 * fps)),  # keep a lost object's id for about 2 s
            frame_rate=fps,
            track_activation_threshold=self.min_score,
            minimum_consecutive_frames=1,
            high_conf_det_threshold=self.min_score,
            minimum_iou_threshold=0.1,
        )
        self._tracks: dict[int, _Track] = {}
        self.active: dict[str, Alarm] = {}
        self._cooldown_until: dict[str, float] = {}
        self.suppressed = 0  # alarms held back by a cooldown
        self._held_back: set[int] = set()  # tracks whose alarm a cooldown held back (counted once)
        self._unconfirmed: list[Detection] = []  # last frame's counting detections not yet given a track id
        self._people: list[Detection] = []  # this frame's person boxes (who holds what)
        self.fps = fps
        self._clock = 0.0  # seconds of stream time, always increasing (a looped file or a reconnect restarts pts)
        self._last_pts: float | None = None
        self._n = 0  # processed frames so far (a source's own frame index skips the frames not processed)

    @property
    def detect_conf(self) -> float:
        """The detector threshold to watch with: below the rules' ``min_score``, so the tracker also sees the
        weaker detections of objects it already follows (ByteTrack's second association)."""
        return max(0.05, self.min_score / 2)

    def _track(self, detections: Sequence[Detection], pts: float) -> list[Tracked]:
        import supervision as sv

        wanted = [d for d in detections if d.label in self.rules]
        if not wanted:
            boxes, scores, ids = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
        else:
            boxes = np.array([d.box for d in wanted], np.float32)
            scores = np.array([d.score for d in wanted], np.float32)
            ids = np.arange(len(wanted))
        result = self._tracker.update(sv.Detections(xyxy=boxes, confidence=scores, class_id=ids), timestamp=pts)
        tracked = {int(i): int(t) for i, t in zip(result.class_id, result.tracker_id, strict=True)}
        return [Tracked(d, tracked.get(i, -1)) for i, d in enumerate(wanted)]

    def update(
        self, detections: Sequence[Detection], pts: float, index: int, wall: float
    ) -> tuple[list[Tracked], list[Transition]]:
        step = pts - self._last_pts if self._last_pts is not None else 0.0
        self._clock += step if 0 < step <= 5.0 else (1 / self.fps if self._last_pts is not None else 0.0)
        self._last_pts = pts
        pts = self._clock
        tracked = self._track(detections, pts)
        self._people = [d for d in detections if canonical_name(d.label) == PERSON]
        self._n += 1
        n = self._n
        transitions: list[Transition] = []
        counting: dict[str, list[Tracked]] = {}
        unconfirmed = []
        for t in tracked:
            rule = self.rules[t.detection.label]
            if t.track_id < 0:
                if rule.counts(t.detection.box, t.detection.score):
                    unconfirmed.append(t.detection)
                continue
            state = self._tracks.get(t.track_id)
            if state is None:  # ByteTrack confirms a new object on its second frame: count the first one too
                state = self._tracks[t.track_id] = _Track(deque(maxlen=rule.needed))
                first = max(self._unconfirmed, key=lambda d: iou(d.box, t.detection.box), default=None)
                if first is not None and iou(first.box, t.detection.box) >= 0.3:
                    state.scores.append(first.score)
                    state.streak, state.last_index = 1, n - 1
            if rule.counts(t.detection.box, t.detection.score):
                state.streak = state.streak + 1 if state.last_index == n - 1 else 1
                state.scores.append(t.detection.score)
                state.last_index = n
                counting.setdefault(rule.label, []).append(t)
            else:
                state.streak = 0
        self._unconfirmed = unconfirmed
        for label, rule in self.rules.items():
            hits = counting.get(label, [])
            alarm = self.active.get(label)
            if alarm is not None:
                transitions += self._continue(alarm, hits, pts, index, wall)
            else:
                transitions += self._maybe_start(rule, hits, pts, index, wall)
        for tid in [tid for tid, s in self._tracks.items() if n - s.last_index > FORGET_AFTER]:
            del self._tracks[tid]
        return tracked, transitions

    def _maybe_start(
        self, rule: AlarmRule, hits: list[Tracked], pts: float, index: int, wall: float
    ) -> list[Transition]:
        firing = [t for t in hits if rule.fires(self._tracks[t.track_id].scores, self._tracks[t.track_id].streak)]
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
            frames=max(1, self._tracks[best.track_id].streak),
            tracks={t.track_id for t in hits},
        )
        alarm.reported_score = alarm.top_score
        alarm.held_by, alarm.top_parts = self._holder(best.detection), best.detection.parts()
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
            alarm.held_by, alarm.top_parts = self._holder(best.detection), best.detection.parts()
        if alarm.top_score >= alarm.reported_score + UPDATE_STEP:
            alarm.reported_score = alarm.top_score
            return [Transition("update", alarm)]
        return []

    def _holder(self, obj: Detection) -> tuple[float, float, float, float] | None:
        """The box of the person in this frame who holds ``obj``, if any."""
        found = held_by([obj, *self._people], dangerous=[obj.label]).get(0)
        return tuple(self._people[found - 1].box) if found else None

    def _end(self, alarm: Alarm, pts: float, wall: float) -> Transition:
        alarm.end_wall = wall
        del self.active[alarm.label]
        self._cooldown_until[alarm.label] = pts + alarm.rule.cooldown
        return Transition("end", alarm)

    def finish(self, wall: float) -> list[Transition]:
        """End every running alarm (the stream ended or is being removed)."""
        return [self._end(alarm, self._clock, wall) for alarm in list(self.active.values())]
