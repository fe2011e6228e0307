"""``DarknetDetector``: a Darknet cfg + weights pair as a :class:`~hebbian_mirror.detection.Detector`."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..coco import COCO_CLASSES
from ..detection import Detection, DetectOptions, Detector, pick_half, resolve_device, to_detections
from ..errors import ModelFormatError
from ..runtime import tune_allocator
from .model import DarknetNet
from .preprocess import Letterbox, fit
from .weights import load_net
from .yolo import decode, select

log = logging.getLogger(__name__)


def default_class_names(cfg_path: Path, num_classes: int) -> list[str]:
    """Names from a ``.names`` file beside the cfg, else COCO's for 80 classes, else ``class0..``."""
    names_file = cfg_path.with_suffix(".names")
    if names_file.is_file():
        names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
        if len(names) == num_classes:
            return names
        log.warning("%s lists %d names but the cfg has %d classes; ignoring it", names_file, len(names), num_classes)
    if num_classes == len(COCO_CLASSES):
        return list(COCO_CLASSES)
    return [f"class{i}" for i in range(num_classes)]


class DarknetDetector(Detector):
    """Darknet YOLO (v3, v3-tiny, v4-tiny, Yolo-Fastest, ...) running in PyTorch.

    ``letterbox``: fit the image into the input keeping its aspect ratio (pjreddie's Darknet) rather
    than stretching it (AlexeyAB's default). ``None`` reads ``letter_box`` from the cfg's ``[net]``.
    """

    def __init__(
        self,
        net: DarknetNet,
        class_names: Sequence[str],
        *,
        name: str = "darknet",
        letterbox: bool | None = None,
        device: str | torch.device = "auto",
        half: bool = False,
        display_names: dict[str, str] | None = None,
    ) -> None:
        """Wrap a loaded network (it is copied and its batch norms folded; ``net`` itself is untouched)."""
        self.net = copy.deepcopy(net).fuse().eval()
        self.device = resolve_device(device)
        self.half = pick_half(half, self.device)
        # channels-last activations run faster on oneDNN (CPU) and on cuDNN's tensor cores
        self.net.to(self.device, dtype=torch.float16 if self.half else torch.float32, memory_format=torch.channels_last)
        if self.device.type == "cpu":
            tune_allocator()
        self.name = name
        self.input_size = (self.net.width, self.net.height)
        self.class_names = list(class_names)
        if len(self.class_names) != self.net.num_classes:
            raise ModelFormatError(
                f"{len(self.class_names)} class names given for a {self.net.num_classes}-class model"
            )
        self.display_names = dict(display_names or {})
        if letterbox is None:
            letterbox = bool(int(self.net.net_options.get("letter_box", "0")))
        self.letterbox = letterbox

    @classmethod
    def from_files(
        cls,
        cfg: str | Path,
        weights: str | Path,
        *,
        class_names: Sequence[str] | None = None,
        name: str | None = None,
        **kwargs,
    ) -> DarknetDetector:
        """Load a cfg + ``.weights`` pair; class names from ``class_names``, a ``.names`` file beside the cfg,
        COCO's for an 80-class model, else ``class0..``."""
        cfg, weights = Path(cfg), Path(weights)
        net = load_net(cfg, weights)
        names = list(class_names) if class_names is not None else default_class_names(cfg, net.num_classes)
        return cls(net, names, name=name or cfg.stem, **kwargs)

    def info(self) -> dict:
        return super().info() | {"family": "darknet", "letterbox": self.letterbox, "display_names": self.display_names}

    # -- the three stages --------------------------------------------------------------------

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Resize (or letterbox) each image to the input size: ``B×3×H×W`` floats in [0, 1].

        The resize is OpenCV's bilinear one, bit for bit, whatever the device."""
        net_w, net_h = self.input_size
        dtype = torch.float16 if self.half else torch.float32
        batch = torch.empty((len(images), 3, net_h, net_w), dtype=dtype, device=self.device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        fits: list[Letterbox] = []
        for i, img in enumerate(images):
            t = torch.from_numpy(img).to(self.device, non_blocking=True).permute(2, 0, 1)
            batch[i], fitted = fit(t, net_w, net_h, self.letterbox)
            fits.append(fitted)
        return batch, fits

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Network + YOLO decoding: ``B×N×(5+C)`` rows (cx, cy, w, h, objectness, class probs)."""
        raw = self.net(batch)
        return decode(raw, self.net.heads, self.net.width, self.net.height)

    @torch.inference_mode()
    def postprocess(
        self, rows: torch.Tensor, fits: Sequence[Letterbox], options: Sequence[DetectOptions]
    ) -> list[list[Detection]]:
        """Per image, with its own thresholds: confidence filter, NMS, boxes in image pixels."""
        out = []
        for r, fitted, opt in zip(rows, fits, options, strict=True):
            boxes, scores, labels = select(r, fitted, opt.conf, opt.iou, opt.max_det, opt.classes)
            out.append(to_detections(boxes, scores, labels, self.class_names))
        return out

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[list[Detection]]:
        with torch.inference_mode():
            batch, fits = self.preprocess(images)
        return self.postprocess(self.forward(batch), fits, options)
