"""torchvision's COCO detectors (Faster R-CNN, RetinaNet, FCOS, SSD) behind our Detector interface."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torchvision.models.detection as tvd

from ..coco import canonical_name
from ..detection import Detection, DetectOptions, Detector, pick_half, resolve_device, to_detections
from ..errors import ModelFormatError

if TYPE_CHECKING:
    from ..zoo import ModelSpec


def load_official(builder: str, num_classes: int, weights: str | Path) -> torch.nn.Module:
    """A torchvision detector with its official COCO state dict."""
    model = getattr(tvd, builder)(weights=None, weights_backbone=None, num_classes=num_classes)
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


class TorchvisionDetector(Detector):
    """A torchvision detection model behind our interface.

    ``label_map[i]`` is our class id for the model's label ``i`` (-1: not a class, e.g. background). For the
    official COCO models, torchvision's 91 category slots map onto the zoo's 80 contiguous class ids, so every
    COCO model in the product shares one class list; a fine-tuned model's labels are 1..C.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: list[str],
        label_map: list[int],
        *,
        name: str,
        input_size: tuple[int, int],
        device: str | torch.device = "auto",
        half: bool = False,
        display_names: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.class_names = list(class_names)
        self.display_names = dict(display_names or {})
        self.input_size = input_size
        self.device = resolve_device(device)
        self.half = pick_half(half, self.device)
        self.model = model.eval().to(self.device, dtype=torch.float16 if self.half else torch.float32)
        self._label_map = torch.tensor(label_map, dtype=torch.long, device=self.device)
        self._lock = threading.Lock()  # thresholds are module attributes, set per call

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, weights: str | Path, device: str | torch.device = "auto", half: bool = False
    ) -> TorchvisionDetector:
        categories: tuple[str, ...] = spec.extra["categories"]
        model = load_official(spec.builder, len(categories), weights)
        index = {canonical_name(n): i for i, n in enumerate(spec.classes)}
        lut = [index.get(canonical_name(c), -1) for c in categories]
        return cls(model, list(spec.classes), lut, name=spec.name, input_size=spec.input_size, device=device, half=half)

    def info(self) -> dict:
        return super().info() | {"family": "torchvision", "display_names": self.display_names}

    def _set_thresholds(self, options: DetectOptions) -> None:
        target = self.model.roi_heads if hasattr(self.model, "roi_heads") else self.model
        target.score_thresh = options.conf
        target.nms_thresh = options.iou
        target.detections_per_img = options.max_det

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[list[Detection]]:
        # thresholds live on the model, so images run in groups that share their options
        groups: dict[DetectOptions, list[int]] = {}
        for i, opt in enumerate(options):
            groups.setdefault(opt, []).append(i)
        results: list[list[Detection]] = [[] for _ in images]
        for opt, indices in groups.items():
            for i, dets in zip(indices, self._run([images[i] for i in indices], opt), strict=True):
                results[i] = dets
        return results

    @torch.inference_mode()
    def _run(self, images: list[np.ndarray], options: DetectOptions) -> list[list[Detection]]:
        dtype = torch.float16 if self.half else torch.float32
        tensors = [torch.from_numpy(img).to(self.device).permute(2, 0, 1).to(dtype).div_(255.0) for img in images]
        with self._lock:
            self._set_thresholds(options)
            outputs = self.model(tensors)
        results = []
        for out in outputs:
            labels = self._label_map[out["labels"]]
            keep = (labels >= 0) & (out["scores"] >= options.conf)
            if options.classes is not None:
                allowed = torch.tensor(sorted(options.classes), device=labels.device)
                keep &= torch.isin(labels, allowed)
            results.append(to_detections(out["boxes"][keep], out["scores"][keep], labels[keep], self.class_names))
        return results
