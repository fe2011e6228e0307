"""A cheap motion detector per camera, to decide which frames go to the model (Frigate's shape, our code).

Each frame is made grey and small (:data:`HEIGHT` pixels high), its contrast stretched (so a light slowly
dimming or brightening is no motion), blurred (sensor noise is no motion), and compared with a running average of
the recent frames; pixels that differ by more than ``threshold`` grey levels, dilated into blobs, are motion when a
blob holds at least ``min_area`` changed pixels of the small picture. A sudden change of most of the picture (a
light switched, the exposure jumping, something right in front of the lens) is one frame of motion, and the
background starts again from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEIGHT = 100  # pixels high the picture is compared at
ALPHA = 0.05  # how fast the background follows the picture (per frame)
THRESHOLD = 25  # grey levels of difference that count as a change
MIN_AREA = 8  # changed pixels of the small picture a blob needs to be motion (about 20 x 20 pixels of a 720p frame)
SUDDEN = 0.6  # share of the picture changing at once that is a light switched, not motion


@dataclass
class Motion:
    """What one frame showed: the moving areas in the frame's pixels, and the share of the picture that moved."""

    boxes: list[tuple[float, float, float, float]]
    share: float

    def __bool__(self) -> bool:
        return bool(self.boxes)

    @classmethod
    def everywhere(cls, image: np.ndarray, share: float) -> Motion:
        """The whole frame moved (a first look, or the picture changed at once)."""
        return cls([(0.0, 0.0, float(image.shape[1]), float(image.shape[0]))], share)


class MotionDetector:
    """``detector(image)`` → :class:`Motion` for each frame of one camera, in order (RGB ``H×W×3`` uint8)."""

    def __init__(self, threshold: int = THRESHOLD, min_area: int = MIN_AREA, alpha: float = ALPHA) -> None:
        self.threshold, self.min_area, self.alpha = threshold, min_area, alpha
        self._background: np.ndarray | None = None

    def _small(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        width = max(1, round(w * HEIGHT / h))
        grey = cv2.cvtColor(cv2.resize(image, (width, HEIGHT), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        low, high = np.percentile(grey, (4, 96))
        stretched = (grey.astype(np.float32) - low) * (255.0 / max(8.0, high - low))
        return cv2.GaussianBlur(np.clip(stretched, 0, 255), (5, 5), 0)

    def __call__(self, image: np.ndarray) -> Motion:
        import cv2

        small = self._small(image)
        if self._background is None or self._background.shape != small.shape:
            self._background = small.copy()
            return Motion.everywhere(image, 1.0)  # the first look
        changed = cv2.absdiff(small, self._background) > self.threshold
        share = float(changed.mean())
        if share >= SUDDEN:  # the whole picture changed: looked at once, then compared with the new one
            self._background = small.copy()
            return Motion.everywhere(image, share)
        cv2.accumulateWeighted(small, self._background, self.alpha)
        mask = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        sizes = np.bincount(labels[changed], minlength=count)  # changed pixels (not dilated) in each blob
        scale = image.shape[0] / HEIGHT
        boxes = [
            (x * scale, y * scale, (x + w) * scale, (y + h) * scale)
            for (x, y, w, h, _), size in zip(stats[1:count], sizes[1:count], strict=True)
            if size >= self.min_area
        ]
        return Motion(boxes, share)


class MotionGate:
    """Which frames the model checks: those with motion, every frame while an alarm runs, and at least one every
    ``refresh`` seconds (a still scene is looked at again now and then). A frame not checked keeps the last
    checked frame's detections: nothing moved, so the model would see what it saw (tracks go on ageing)."""

    def __init__(self, refresh: float = 2.0) -> None:
        self.refresh = refresh
        self._last: float | None = None

    def due(self, moving: bool, pts: float, alarm_running: bool = False) -> bool:
        """Whether the frame at ``pts`` (stream seconds) goes to the model; if so, remembered as checked."""
        if moving or alarm_running or self._last is None or not 0 <= pts - self._last < self.refresh:
            self._last = pts
            return True
        return False


class StillFrames:
    """A camera's motion detector and gate together: ``due(image, pts, alarm_running)`` for each frame in order."""

    def __init__(self, refresh: float = 2.0) -> None:
        self.detector, self.gate = MotionDetector(), MotionGate(refresh)

    def due(self, image: np.ndarray, pts: float, alarm_running: bool = False) -> bool:
        return self.gate.due(bool(self.detector(image)), pts, alarm_running)
