"""Camera health: a live camera that stops sending frames (offline), sends the same picture over and over
(frozen), or a black or featureless one (covered: a hand, tape, a cloth, a camera turned to the wall) raises an
event of its own kind, and a ``camera.ok`` when the problem is over.

Each frame is looked at on a small grey copy (about 64 pixels wide, a few microseconds): its mean and spread say
black or featureless, its change from the previous one says frozen (a real camera's sensor noise keeps changing
even a still scene). Each problem must last its rule's seconds before it is raised (0 switches the check off).
Files and image folders are not cameras: only live sources are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROBLEMS = ("offline", "frozen", "covered")


@dataclass(frozen=True)
class HealthRules:
    """When a camera has a problem: seconds it must last (0: never checked), and the picture's thresholds."""

    offline_after: float = 10.0  # seconds without a frame
    frozen_after: float = 30.0  # seconds of the same picture
    covered_after: float = 10.0  # seconds of a black or featureless picture
    dark_level: float = 12.0  # mean grey level (0-255) at or below: black
    flat_level: float = 4.0  # grey levels' standard deviation at or below: featureless
    still_level: float = 0.05  # mean change of the small grey picture at or below: the same picture


def small_grey(image: np.ndarray, width: int = 64) -> np.ndarray:
    """An ``H×W×3`` uint8 picture as a small grey float32 array (every k-th pixel, channels averaged)."""
    step = max(1, image.shape[1] // width)
    return image[::step, ::step].mean(axis=2, dtype=np.float32)


@dataclass
class CameraHealth:
    """The problems of one camera, from its frames and the time between them; :meth:`frame` and :meth:`tick`
    return the changes: ``(problem, present)``."""

    rules: HealthRules
    live: bool
    last_frame: float  # wall time of the last frame (at start: when watching began)
    active: dict[str, float] = field(default_factory=dict)  # problem → since
    details: dict[str, str] = field(default_factory=dict)
    _previous: np.ndarray | None = None
    _same_since: float | None = None
    _covered_since: float | None = None

    def frame(self, image: np.ndarray, now: float) -> list[tuple[str, bool]]:
        if not self.live:
            return []
        changes = self._set("offline", False, now)
        self.last_frame = now
        small = small_grey(image)
        r = self.rules
        same = self._previous is not None and float(np.abs(small - self._previous).mean()) <= r.still_level
        self._same_since = (self._same_since or now) if same else None
        self._previous = small
        frozen = bool(r.frozen_after) and same and now - self._same_since >= r.frozen_after
        changes += self._set("frozen", frozen, now, f"the same picture for {r.frozen_after:g} s")
        mean, spread = float(small.mean()), float(small.std())
        covered_now = mean <= r.dark_level or spread <= r.flat_level
        self._covered_since = (self._covered_since or now) if covered_now else None
        covered = bool(r.covered_after) and covered_now and now - self._covered_since >= r.covered_after
        why = "black" if mean <= r.dark_level else "featureless"
        changes += self._set("covered", covered, now, f"a {why} picture for {r.covered_after:g} s")
        return changes

    def tick(self, now: float) -> list[tuple[str, bool]]:
        """Between frames: a live camera silent for ``offline_after`` seconds is offline."""
        if not self.live or not self.rules.offline_after:
            return []
        silent = now - self.last_frame >= self.rules.offline_after
        return self._set("offline", silent, now, f"no frame for {self.rules.offline_after:g} s")

    def _set(self, problem: str, present: bool, now: float, detail: str = "") -> list[tuple[str, bool]]:
        if present == (problem in self.active):
            return []
        if present:
            self.active[problem], self.details[problem] = now, detail
        else:
            del self.active[problem]
        return [(problem, present)]
