"""A small fake detector for tests where the model is not the point (the API, the pipeline, alarms): it runs in
microseconds, needs no weights, and answers from the image's size alone, so every answer is known in advance."""

from __future__ import annotations

import numpy as np

from hebbian_mirror.detection import Detection, Detections, DetectOptions, Detector, resolve_device
from hebbian_mirror.meta import ModelMeta

CLASSES = ("person", "knife", "dog")


class FakeDetector(Detector):
    """A person on the left half of every image (0.9), a knife in their hand (0.6) and a dog on the right (0.3),
    in that order; thresholds and class filters apply as for a real model. ``calls`` counts images seen."""

    family = "fake"

    def __init__(self, name: str = "fake") -> None:
        self.meta = ModelMeta(name, CLASSES, (64, 64), display_names={"knife": "Knife"})
        self.device = resolve_device("cpu")
        self.calls = 0

    @staticmethod
    def expected(width: int, height: int) -> list[Detection]:
        """What this detector sees in any ``width`` × ``height`` image, before thresholds."""
        w, h = float(width), float(height)
        return [
            Detection((0.05 * w, 0.1 * h, 0.45 * w, 0.95 * h), 0.9, 0, "person"),
            Detection((0.3 * w, 0.4 * h, 0.4 * w, 0.6 * h), 0.6, 1, "knife"),
            Detection((0.6 * w, 0.5 * h, 0.95 * w, 0.9 * h), 0.3, 2, "dog"),
        ]

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[Detections]:
        self.calls += len(images)
        out = []
        for image, opt in zip(images, options, strict=True):
            kept = [
                d
                for d in self.expected(image.shape[1], image.shape[0])
                if d.score >= opt.conf and (opt.classes is None or d.class_id in opt.classes)
            ]
            out.append(Detections.of(kept[: opt.max_det], CLASSES, (image.shape[1], image.shape[0])))
        return out
