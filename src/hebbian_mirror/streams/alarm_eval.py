"""Alarm evaluation in the style of Olmos et al. (2018): labelled clips replayed through the same source,
detector and tracker + rules as a watched stream, and per rule: appearances alarmed or missed, time to alarm
(from the object's first visible frame), alarms per appearance, and false alarms per hour of footage where
no dangerous object is visible.

A clip set is a folder with ``clips.json``: ``{"fps": F, "clips": [{"file", "label", "visible": [[first, last],
...]}]}`` (frame numbers, inclusive); ``hebbian-mirror data alarm-clips`` makes one from real images.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..detection import Detections, DetectOptions
from ..errors import ClipSetError
from .alarms import AlarmTracker
from .motion import MotionDetector, MotionGate
from .rules import AlarmRule
from .sources import SourceEnded, open_source


@dataclass
class Checked:
    """One frame of a clip as the model saw it."""

    index: int
    pts: float
    detections: Detections
    size: tuple[int, int]  # width, height
    moving: bool  # whether the motion detector saw motion in it


@dataclass
class Clip:
    path: Path
    label: str | None
    visible: list[tuple[int, int]]
    fps: float
    kind: str = ""  # what the clip shows (shop clips: weapon, lookalike, rack)


@dataclass
class RuleScore:
    """One rule's results over a clip set."""

    appearances: int = 0
    alarmed: int = 0
    alarms: int = 0
    false_alarms: int = 0
    negative_seconds: float = 0.0
    delays: list[float] = field(default_factory=list)  # seconds from first visible frame to the alarm
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # clip kind → [false alarms, negative seconds]
    frames: int = 0
    checked: int = 0  # frames the model's detections were new in (all, without a motion gate)

    def summary(self) -> dict[str, Any]:
        delays = sorted(self.delays)
        p95 = delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))] if delays else None
        hours = self.negative_seconds / 3600
        return {
            "appearances": self.appearances,
            "alarmed": self.alarmed,
            "missed": self.appearances - self.alarmed,
            "recall": self.alarmed / self.appearances if self.appearances else None,
            "alarms_per_appearance": (self.alarms - self.false_alarms) / self.alarmed if self.alarmed else None,
            "time_to_alarm_median_s": statistics.median(delays) if delays else None,
            "time_to_alarm_p95_s": p95,
            "false_alarms": self.false_alarms,
            "negative_minutes": self.negative_seconds / 60,
            "false_alarms_per_hour": self.false_alarms / hours if hours else None,
            "frames_checked": self.checked / self.frames if self.frames else None,
            "false_alarms_per_hour_by_kind": {
                kind: {"false_alarms": int(fa), "minutes": sec / 60, "per_hour": fa / sec * 3600 if sec else None}
                for kind, (fa, sec) in sorted(self.by_kind.items())
            },
        }


def load_clipset(folder: Path) -> list[Clip]:
    index = Path(folder) / "clips.json"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        fps = float(data["fps"])
        clips = [
            Clip(
                Path(folder) / c["file"],
                c.get("label"),
                [(int(a), int(b)) for a, b in c.get("visible", [])],
                float(c.get("fps", fps)),
                str(c.get("kind") or ""),
            )
            for c in data["clips"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClipSetError(f"{index}: not a clip set index ({exc})") from exc
    if missing := [str(c.path) for c in clips if not c.path.is_file()]:
        raise ClipSetError(f"clip(s) listed in {index} not found: {', '.join(missing)}")
    return clips


async def detect_clip(
    clip: Clip, detect: Callable[[Any, DetectOptions], Awaitable[Detections]], options: DetectOptions
) -> list[Checked]:
    """Every frame of the clip through the detector (and the motion detector)."""
    source = open_source(str(clip.path), name=clip.path.stem)
    source.start()
    motion = MotionDetector()
    out = []
    try:
        while True:
            try:
                frame = await source.next(timeout=5.0)
            except SourceEnded:
                break
            if frame is not None:
                size = (frame.image.shape[1], frame.image.shape[0])
                found = await detect(frame.image, options)
                out.append(Checked(frame.index, frame.pts, found, size, bool(motion(frame.image))))
    finally:
        source.stop()
    return out


def score_rules(
    clip: Clip, frames: Sequence[Checked], rules: list[AlarmRule], score: RuleScore, gate: MotionGate | None = None
) -> None:
    """Replay one clip's detections through a fresh tracker and ``rules``; add the results to ``score``. With a
    motion ``gate``, a frame it does not let through keeps the last checked frame's detections, as the watcher
    does."""
    tracker = AlarmTracker(rules, fps=clip.fps)
    starts = []
    last = None
    for f in frames:
        due = gate is None or last is None or gate.due(f.moving, f.pts, tracker.busy)
        if due:
            last = f.detections
            score.checked += 1
        score.frames += 1
        _, transitions = tracker.update(last, f.pts, f.index, f.pts, f.size, checked=due)
        starts += [t.alarm.start_index for t in transitions if t.kind == "new"]
    grace = max(r.end_after for r in rules)  # an alarm may still start just after the object left the view
    hit = [False] * len(clip.visible)
    kind = score.by_kind.setdefault(clip.kind or ("weapon" if clip.visible else "harmless"), [0, 0.0])
    for start in starts:
        score.alarms += 1
        inside = [i for i, (a, b) in enumerate(clip.visible) if a <= start <= b + grace]
        if not inside:
            score.false_alarms += 1
            kind[0] += 1
        elif not hit[inside[0]]:
            hit[inside[0]] = True
            score.delays.append((start - clip.visible[inside[0]][0]) / clip.fps)
    score.appearances += len(clip.visible)
    score.alarmed += sum(hit)
    visible_frames = sum(b - a + 1 for a, b in clip.visible)
    score.negative_seconds += max(0, len(frames) - visible_frames) / clip.fps
    kind[1] += max(0, len(frames) - visible_frames) / clip.fps


async def evaluate_alarms(
    folder: Path,
    detect: Callable[[Any, DetectOptions], Awaitable[Detections]],
    variants: dict[str, list[AlarmRule]],
    progress: Callable[[str], None] | None = None,
    concurrency: int = 4,
    motion_refresh: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Each variant's summary over the clip set. Every clip is detected once (``concurrency`` clips at a time,
    so their frames share batches) and replayed per variant; with ``motion_refresh`` (seconds) each variant is
    also replayed behind a :class:`~.motion.MotionGate` ("NAME, motion-gated")."""
    clips = load_clipset(folder)
    conf = min(AlarmTracker(rules).detect_conf for rules in variants.values())
    runs = [(name, rules, None) for name, rules in variants.items()]
    if motion_refresh is not None:
        runs += [(f"{name}, motion-gated", rules, motion_refresh) for name, rules in variants.items()]
    scores = {name: RuleScore() for name, _, _ in runs}
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(clip: Clip) -> list[Checked]:
        nonlocal done
        async with gate:
            frames = await detect_clip(clip, detect, DetectOptions(conf=conf))
        done += 1
        if progress is not None:
            progress(f"clip {done}/{len(clips)} {clip.path.name}: {len(frames)} frames")
        return frames

    for clip, frames in zip(clips, await asyncio.gather(*(one(c) for c in clips)), strict=True):
        for name, rules, refresh in runs:
            score_rules(clip, frames, rules, scores[name], None if refresh is None else MotionGate(refresh))
    return {name: s.summary() for name, s in scores.items()}
