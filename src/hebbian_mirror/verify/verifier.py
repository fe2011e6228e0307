"""The verifier: a second look at a detector's candidates of the dangerous classes.

Each candidate box of a verified class (scored high enough that the verifier could lift it to the caller's
threshold, and at least ``low``; the ``max_candidates`` best per image) is cropped with
context around it (a square ``1 + 2 × margin`` times its longer side, so shapes are not distorted), resized to
``size``² and classified by a small network into background or one of the verified classes. The served score is a
logistic combination of the detector's score and the verifier's probability for the candidate's class, learned on
validation candidates (:func:`hebbian_mirror.verify.combination.fit`); both scores stay with the detection.
From the outside a verified model is one :class:`~hebbian_mirror.detection.Detector`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torchvision.ops import roi_align

from ..classes import canonical_name
from ..detection import Detections, DetectOptions, Detector
from ..errors import ModelFormatError
from ..meta import DEFAULT_MAX_DET
from .net import EfficientNetLite0

BACKGROUND = "background"
EPS = 1e-4
NEUTRAL = (0.0, 0.5, 0.5)  # the combination before it is fitted: the mean of the two logits


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def square_regions(boxes: np.ndarray, margin: float) -> np.ndarray:
    """``N×4`` boxes → the ``N×4`` squares around their centres, ``1 + 2 × margin`` times their longer side."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).clip(min=1.0)[:, None] * (0.5 + margin)
    return np.concatenate([centre - half, centre + half], axis=1)


def crops(image: np.ndarray, regions: np.ndarray, size: int) -> torch.Tensor:
    """``K×3×size×size`` float crops in ``[0, 1]`` of an ``H×W×3`` uint8 image's ``regions`` (pixels; what lies
    outside the image is black). Only the pixels the regions cover are converted."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    if not len(regions):
        return torch.zeros(0, 3, size, size)
    h, w = image.shape[:2]
    x0, y0 = np.floor(regions[:, :2].min(0).clip(0)).astype(int)
    x1, y1 = np.ceil(regions[:, 2:].max(0).clip(max=(w, h))).astype(int)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    part = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1)[None].float().div_(255)
    rois = torch.from_numpy(regions - [x0, y0, x0, y0]).float()
    rois = torch.cat([torch.zeros(len(rois), 1), rois], dim=1)
    return roi_align(part, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


@dataclass
class Verifier:
    """The network and how it is used. ``labels[0]`` is background; the rest are the verified classes (canonical
    names). ``weights[label]`` is ``(bias, detector, verifier)``: the combination's coefficients on the logits."""

    net: EfficientNetLite0
    labels: tuple[str, ...]
    size: int = 96
    margin: float = 0.25
    low: float = 0.05
    max_candidates: int = 8
    weights: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(canonical_name(c) for c in self.labels)
        if len(self.labels) < 2 or self.labels[0] != BACKGROUND:
            raise ModelFormatError(f"a verifier's labels are background and its classes, got {list(self.labels)}")
        self.net.eval()

    @property
    def classes(self) -> tuple[str, ...]:
        return self.labels[1:]

    def to(self, device: torch.device | str) -> Verifier:
        self.net.to(device)
        return self

    def crops_of(self, image: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """The verifier's view of ``boxes`` (``N×4``) on ``image``: context crops at its input size."""
        return crops(image, square_regions(boxes, self.margin), self.size)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """``K×3×S×S`` crops → ``K×labels`` probabilities."""
        if not len(batch):
            return np.zeros((0, len(self.labels)))
        device = next(self.net.parameters()).device
        return self.net(batch.to(device)).softmax(1).float().cpu().numpy()

    def combine(self, label: str, detector: np.ndarray, verifier: np.ndarray) -> np.ndarray:
        bias, a, b = self.weights.get(label, NEUTRAL)
        return 1 / (1 + np.exp(-(bias + a * logit(detector) + b * logit(verifier))))

    def floor(self, conf: float) -> float:
        """The lowest detector score worth a look for a caller's threshold ``conf``: below it no verifier
        probability could lift the combined score to ``conf`` (never below ``low``, which bounds the cost)."""
        reach = float(logit(1 - EPS))
        lowest = 1.0
        for label in self.classes:
            bias, a, b = self.weights.get(label, NEUTRAL)
            need = float(logit(conf)) - bias - abs(b) * reach  # the most any verifier probability can add
            lowest = min(lowest, 1 / (1 + np.exp(-need / a)) if a > 0 else 0.0)
        return max(self.low, lowest)

    def label_indices(self, found: Detections) -> np.ndarray:
        """Each detection's verifier label index (0: a class it does not verify)."""
        index = {c: i for i, c in enumerate(self.labels) if i}
        label_of = np.array([index.get(canonical_name(c), 0) for c in found.class_names] or [0])
        return label_of[found.class_ids] if len(found) else np.zeros(0, dtype=int)

    def candidates(self, found: Detections, conf: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the detections to look at for a caller's threshold ``conf`` (at least :meth:`floor`, the
        ``max_candidates`` best) and each one's verifier label index."""
        labels = self.label_indices(found)
        pick = np.flatnonzero((labels > 0) & (found.scores >= self.floor(conf)))
        pick = pick[np.argsort(-found.scores[pick], kind="stable")][: self.max_candidates]
        return pick, labels[pick]

    def rescore(
        self, images: Sequence[np.ndarray], found: Sequence[Detections], options: Sequence[DetectOptions]
    ) -> list[Detections]:
        """Each image's detections with its candidates' scores combined, then ``conf`` and ``max_det`` applied. A
        detection of a verified class the verifier did not look at (too weak to reach ``conf``, or past
        ``max_candidates``) is scored by the combination with no evidence from the verifier (its logit 0), so every
        verified class's scores are on one scale."""
        picks = [self.candidates(f, opt.conf) for f, opt in zip(found, options, strict=True)]
        batch = [self.crops_of(img, f.boxes[p]) for img, f, (p, _) in zip(images, found, picks, strict=True)]
        probs = self.probabilities(torch.cat(batch)) if batch else np.zeros((0, len(self.labels)))
        out, start = [], 0
        for f, (pick, labels), opt in zip(found, picks, options, strict=True):
            p = probs[start : start + len(pick)]
            start += len(pick)
            data = f.data.copy()
            verified = np.full((len(f), 2), np.nan)
            verified[:, 0] = f.scores
            ver = p[np.arange(len(pick)), labels]
            verified[pick, 1] = ver
            for label in set(labels.tolist()):
                rows = labels == label
                data[pick[rows], 4] = self.combine(self.labels[label], f.scores[pick[rows]], ver[rows])
            unseen = self.label_indices(f)
            unseen[pick] = 0
            for label in set(unseen.tolist()) - {0}:
                rows = unseen == label
                data[rows, 4] = self.combine(self.labels[label], f.scores[rows], np.full(rows.sum(), 0.5))
            order = np.argsort(-data[:, 4], kind="stable")
            order = order[data[order, 4] >= opt.conf][: opt.max_det]
            out.append(Detections(data[order], f.class_names, f.image_size, verified[order]))
        return out

    def to_record(self) -> dict[str, Any]:
        """The verifier as plain data (weights in float16: half the size, scores unchanged to 3 decimals)."""
        return {
            "arch": "efficientnet-lite0",
            "labels": list(self.labels),
            "size": self.size,
            "margin": self.margin,
            "low": self.low,
            "max_candidates": self.max_candidates,
            "weights": {k: list(v) for k, v in self.weights.items()},
            "state_dict": {
                k: v.detach().cpu().half() if v.is_floating_point() else v.cpu()
                for k, v in self.net.state_dict().items()
            },
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Verifier:
        if not isinstance(record, Mapping) or record.get("arch") != "efficientnet-lite0":
            raise ModelFormatError("the checkpoint's verifier is not an efficientnet-lite0 verifier record")
        try:
            net = EfficientNetLite0(classes=len(record["labels"]))
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in record["state_dict"].items()})
            weights = {k: tuple(float(x) for x in v) for k, v in record.get("weights", {}).items()}
            keys = ("size", "margin", "low", "max_candidates")
            return cls(net, tuple(record["labels"]), weights=weights, **{k: record[k] for k in keys if k in record})
        except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"the checkpoint's verifier does not load: {exc}") from exc


class VerifiedDetector(Detector):
    """A detector and its verifier as one detector: the detector runs low enough for every candidate that could
    reach the caller's ``conf`` (:meth:`Verifier.floor`), the verifier rescores them, and the caller's thresholds
    apply to the combined scores."""

    def __init__(self, detector: Detector, verifier: Verifier) -> None:
        self.inner, self.verifier = detector, verifier.to(detector.device)
        self.family, self.meta, self.device, self.half = detector.family, detector.meta, detector.device, detector.half
        self.refines, self.augments = detector.refines, detector.augments

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[Detections]:
        # low enough for every candidate, and as many boxes as the model gives: max_det applies after rescoring
        wider = [
            replace(o, conf=min(o.conf, self.verifier.floor(o.conf)), max_det=max(o.max_det, DEFAULT_MAX_DET))
            for o in options
        ]
        return self.verifier.rescore(images, self.inner._detect_batch(images, wider), options)

    def info(self) -> dict:
        v = self.verifier
        return super().info() | {
            "verifier": {
                "classes": list(v.classes),
                "input_size": v.size,
                "low": v.low,
                "max_candidates": v.max_candidates,
            }
        }
