"""torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD) behind our Detector interface."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.models.detection as tvd

from ..classes import canonical_name, class_index
from ..detection import Detections, DetectOptions, Detector, pick_half, resolve_device, to_detections
from ..errors import ModelFormatError
from ..meta import ModelMeta


def build(builder: str, num_classes: int) -> torch.nn.Module:
    """An untrained torchvision detector with ``num_classes`` outputs (background included)."""
    try:
        return getattr(tvd, builder)(weights=None, weights_backbone=None, num_classes=num_classes)
    except AttributeError:
        raise ModelFormatError(f"torchvision has no detection model {builder!r}") from None


def load_official(builder: str, num_classes: int, weights: str | Path) -> torch.nn.Module:
    """A torchvision detector with its official COCO state dict."""
    model = build(builder, num_classes)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFormatError(f"cannot read torchvision weights {weights}: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    # Official checkpoints come from models with frozen batch norm, which has no counter buffer.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ModelFormatError(
            f"{weights} does not fit {builder}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model


def label_map(categories: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Our class id for each of the model's labels (-1: not one of ``classes``, e.g. background or the
    unused slots of torchvision's 91 COCO categories)."""
    index = class_index(classes)
    return [index.get(canonical_name(c), -1) for c in categories]


def fine_tuned_label_map(num_classes: int) -> list[int]:
    """Label 0 is background, labels 1..C are classes 0..C-1."""
    return [-1, *range(num_classes)]


class TorchvisionDetector(Detector):
    """A torchvision detection model behind our interface; ``label_map[i]`` is our class id for the model's
    label ``i`` (see :func:`label_map`)."""

    family = "torchvision"

    def __init__(
        self,
        model: torch.nn.Module,
        meta: ModelMeta,
        label_map: Sequence[int],
        *,
        device: str | torch.device = "auto",
        half: bool = False,
    ) -> None:
        self.meta = meta
        self.device = resolve_device(device)
        self.half = pick_half(half, self.device)
        self.model = model.eval().to(self.device, dtype=torch.float16 if self.half else torch.float32)
        self._label_map = torch.tensor(list(label_map), dtype=torch.long, device=self.device)
        self._lock = threading.Lock()  # thresholds are module attributes, set per call

    def _set_thresholds(self, options: DetectOptions) -> None:
        target = self.model.roi_heads if hasattr(self.model, "roi_heads") else self.model
        target.score_thresh = options.conf
        target.nms_thresh = options.iou
        target.detections_per_img = options.max_det

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[Detections]:
        # thresholds live on the model, so images run in groups that share their options
        groups: dict[DetectOptions, list[int]] = {}
        for i, opt in enumerate(options):
            groups.setdefault(opt, []).append(i)
        results: list[Detections] = [Detections([], self.meta.classes, (im.shape[1], im.shape[0])) for im in images]
        for opt, indices in groups.items():
            for i, dets in zip(indices, self._run([images[i] for i in indices], opt), strict=True):
                results[i] = dets
        return results

    @torch.inference_mode()
    def _run(self, images: list[np.ndarray], options: DetectOptions) -> list[Detections]:
        dtype = torch.float16 if self.half else torch.float32
        tensors = [torch.from_numpy(img).to(self.device).permute(2, 0, 1).to(dtype).div_(255.0) for img in images]
        with self._lock:
            self._set_thresholds(options)
            outputs = self.model(tensors)
        results = []
        for out, image in zip(outputs, images, strict=True):
            labels = self._label_map[out["labels"]]
            keep = (labels >= 0) & (out["scores"] >= options.conf)
            if options.classes is not None:
                allowed = torch.tensor(sorted(options.classes), device=labels.device)
                keep &= torch.isin(labels, allowed)
            size = (image.shape[1], image.shape[0])
            kept = (out["boxes"][keep], out["scores"][keep], labels[keep])
            results.append(to_detections(*kept, self.meta.classes, size))
        return results
