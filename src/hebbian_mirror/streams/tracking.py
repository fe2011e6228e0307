"""Objects followed across a stream's frames: ByteTrack (Roboflow's ``trackers``) over every class, people apart
from things (a pistol's box is never matched to the person holding it). What a track knows besides its id:

- its **class**, decided by a vote of its last :data:`CLASS_VOTES` frames, each frame's label weighted by its
  score (Roboflow Inference's ``track_class_lock`` has the same aim): a pistol called "cell phone" for one frame is
  still a pistol, a phone called "pistol" for one frame is still a phone;
- how long it has **stood still**: its box is compared with the box it had when it last moved (IoU below
  :data:`STILL_IOU` is a move);
- who **holds** it: the tracked person whose box holds most of it (:func:`~hebbian_mirror.boxes.held_by`).

Pure logic, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..boxes import PERSON, held_by, iou
from ..classes import canonical_name
from ..detection import Detection

CLASS_VOTES = 10  # frames of a track's class vote (a second at 10 fps)
STILL_IOU = 0.5  # a box that keeps this IoU with where it settled has not moved (detector jitter stays above)
FORGET_AFTER = 100  # processed frames after which an unseen track is forgotten
FIRST_IOU = 0.3  # an untracked detection is the first frame of the track that starts where it was

Box = tuple[float, float, float, float]


@dataclass
class Tracked:
    """A detection with what its track knows (``track_id`` -1: not (yet) tracked; the rest is then this frame's)."""

    detection: Detection
    track_id: int
    label: str = ""  # the track's class by its recent frames
    still_for: float = 0.0  # seconds since the box last moved
    holder: int | None = None  # the track id of the person holding it (-1: a person not yet tracked)
    holder_box: Box | None = None
    first: Detection | None = None  # a new track's first frame, seen the frame before it was confirmed

    def __post_init__(self) -> None:
        self.label = self.label or self.detection.label


@dataclass
class _Track:
    id: int  # unique in the stream (people's and things' ByteTrack ids both count from 0)
    votes: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=CLASS_VOTES))
    settled: Box = (0.0, 0.0, 0.0, 0.0)
    settled_at: float = 0.0
    seen: int = 0

    def label(self) -> str:
        """The class with the largest sum of scores over the vote (a tie: the one seen last)."""
        totals: dict[str, float] = {}
        for label, score in self.votes:
            totals[label] = totals.pop(label, 0.0) + score  # re-inserted: the latest is last on a tie
        return max(reversed(totals.items()), key=lambda kv: kv[1])[0]


class ObjectTracker:
    """One stream's objects and people, frame by frame (``update``)."""

    def __init__(self, fps: float = 10.0, min_score: float = 0.5) -> None:
        self.fps = fps
        self.min_score = min_score
        self._bytetrack = {kind: self._new_bytetrack() for kind in ("people", "things")}
        self._tracks: dict[tuple[str, int], _Track] = {}
        self._unconfirmed: list[Detection] = []
        self._n = 0
        self._next_id = 1

    def _new_bytetrack(self):  # a trackers.ByteTrackTracker (imported when first needed)
        from trackers import ByteTrackTracker

        return ByteTrackTracker(
            lost_track_buffer=max(1, round(2 * self.fps)),  # keep a lost object's id for about 2 s
            frame_rate=self.fps,
            track_activation_threshold=self.min_score,
            minimum_consecutive_frames=1,
            high_conf_det_threshold=self.min_score,
            minimum_iou_threshold=0.1,
        )

    def _ids(self, kind: str, detections: Sequence[Detection], pts: float) -> list[int]:
        import supervision as sv

        if detections:
            boxes = np.array([d.box for d in detections], np.float32)
            scores = np.array([d.score for d in detections], np.float32)
        else:
            boxes, scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        index = np.arange(len(detections))
        result = self._bytetrack[kind].update(
            sv.Detections(xyxy=boxes, confidence=scores, class_id=index), timestamp=pts
        )
        found = {int(i): int(t) for i, t in zip(result.class_id, result.tracker_id, strict=True)}
        return [found.get(i, -1) for i in range(len(detections))]

    def update(self, detections: Sequence[Detection], pts: float) -> list[Tracked]:
        """Every detection of this frame with its track (``pts``: stream seconds, always increasing)."""
        self._n += 1
        people = [d for d in detections if canonical_name(d.label) == PERSON]
        things = [d for d in detections if canonical_name(d.label) != PERSON]
        out: list[Tracked] = []
        unconfirmed = []
        for kind, group in (("people", people), ("things", things)):
            for d, tid in zip(group, self._ids(kind, group, pts), strict=True):
                if tid < 0:
                    unconfirmed.append(d)
                    out.append(Tracked(d, -1))
                    continue
                out.append(self._follow(kind, tid, d, pts))
        self._unconfirmed = unconfirmed
        self._holders(out[: len(people)], out[len(people) :])  # people first, then things, as made above
        for key in [k for k, t in self._tracks.items() if self._n - t.seen > FORGET_AFTER]:
            del self._tracks[key]
        return out

    def _follow(self, kind: str, tid: int, d: Detection, pts: float) -> Tracked:
        track = self._tracks.get((kind, tid))
        first = None
        if track is None:  # ByteTrack confirms a new object on its second frame: the first one votes too
            track = self._tracks[(kind, tid)] = _Track(self._next_id, settled=d.box, settled_at=pts)
            self._next_id += 1
            first = max(self._unconfirmed, key=lambda u: iou(u.box, d.box), default=None)
            if first is not None and iou(first.box, d.box) >= FIRST_IOU:
                track.votes.append((first.label, first.score))
                track.settled, track.settled_at = first.box, pts - 1 / self.fps
            else:
                first = None
            self._resume(kind, track, d)
        track.votes.append((d.label, d.score))
        track.seen = self._n
        if iou(track.settled, d.box) < STILL_IOU:
            track.settled, track.settled_at = d.box, pts
        return Tracked(d, track.id, track.label(), pts - track.settled_at, first=first)

    def _resume(self, kind: str, track: _Track, d: Detection) -> None:
        """A new track where a lost one had settled (a still object the detector missed for a few frames, so
        ByteTrack gave it a new id) goes on from it: still since then, with its class votes."""
        lost = {k: t for k, t in self._tracks.items() if k[0] == kind and t is not track and t.seen < self._n - 1}
        key = max(lost, key=lambda k: iou(lost[k].settled, d.box), default=None)
        if key is None or iou(lost[key].settled, d.box) < STILL_IOU or lost[key].label() != d.label:
            return  # nothing settled there, or something else (a pistol laid where a phone lay is new)
        old = self._tracks.pop(key)  # taken over: not resumed twice
        track.settled, track.settled_at = old.settled, min(old.settled_at, track.settled_at)
        if room := CLASS_VOTES - len(track.votes):
            track.votes.extendleft(reversed(list(old.votes)[-room:]))

    @staticmethod
    def _holders(people: list[Tracked], things: list[Tracked]) -> None:
        if not people or not things:
            return
        found = held_by([*(t.detection for t in things), *(p.detection for p in people)],
                        dangerous=[t.detection.label for t in things])  # fmt: skip
        for i, t in enumerate(things):
            if (j := found.get(i)) is not None:
                person = people[j - len(things)]
                t.holder, t.holder_box = person.track_id, tuple(person.detection.box)
