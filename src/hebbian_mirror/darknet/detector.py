"""``DarknetDetector``: Darknet YOLO's three stages (fit, forward, decode + selection) as a
:class:`~hebbian_mirror.detection.Detector`. The forward stage is injected: the PyTorch network here, an
onnxruntime session in :mod:`hebbian_mirror.onnx.detector`."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..classes import COCO_CLASSES
from ..detection import Detections, DetectOptions, Detector, pick_half, resolve_device, to_detections
from ..errors import ModelFormatError
from ..meta import ModelMeta, Resize
from ..runtime import tune_allocator
from .model import DarknetNet, YoloHead
from .preprocess import Letterbox, fit
from .yolo import candidates, decode, suppress

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], Sequence[torch.Tensor]]  # B×3×H×W input → the raw [yolo] outputs
View = tuple[torch.Tensor, Letterbox]  # one view of an image: its decoded rows (unflipped) and how it was fitted
AUGMENT_SCALE = 0.8  # test-time augmentation's second input size, rounded to a multiple of 32: 320² for 416²


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


def darknet_meta(net: DarknetNet, name: str, classes: Sequence[str], letterbox: bool | None = None) -> ModelMeta:
    """Metadata of a network; ``letterbox=None`` reads ``letter_box`` from the cfg's ``[net]``."""
    if letterbox is None:
        letterbox = bool(int(net.net_options.get("letter_box", "0")))
    return ModelMeta(
        name=name,
        classes=tuple(classes),
        input_size=(net.width, net.height),
        resize=Resize.LETTERBOX if letterbox else Resize.STRETCH,
    )


class DarknetDetector(Detector):
    """Darknet YOLO (v3, v3-tiny, v4-tiny, Yolo-Fastest, ...): letterbox or stretch (``meta.resize``), the
    forward stage, then YOLO decoding and Darknet-style selection with class-aware NMS."""

    refines = True

    @property
    def augments(self) -> bool:
        """Test-time augmentation runs the network at a second size: a PyTorch network can, an ONNX file cannot."""
        return self.net is not None

    def __init__(
        self,
        meta: ModelMeta,
        heads: Sequence[YoloHead],
        forward: Forward,
        *,
        device: str | torch.device = "auto",
        half: bool = False,
        family: str = "darknet",
        net: DarknetNet | None = None,
    ) -> None:
        self.meta, self.heads, self._forward, self.family, self.net = meta, list(heads), forward, family, net
        self.device = resolve_device(device)
        self.half = pick_half(half, self.device)
        if len(meta.classes) != heads[0].classes:
            raise ModelFormatError(f"{len(meta.classes)} class names given for a {heads[0].classes}-class model")

    @classmethod
    def from_net(
        cls, net: DarknetNet, meta: ModelMeta, device: str | torch.device = "auto", half: bool = False
    ) -> DarknetDetector:
        """Run a PyTorch network (copied, batch norms folded; ``net`` itself is untouched)."""
        fused = copy.deepcopy(net).fuse().eval()
        detector = cls(meta, fused.heads, fused, device=device, half=half, net=fused)
        # channels-last activations run faster on oneDNN (CPU) and on cuDNN's tensor cores
        dtype = torch.float16 if detector.half else torch.float32
        fused.to(detector.device, dtype=dtype, memory_format=torch.channels_last)
        if detector.device.type == "cpu":
            tune_allocator()
        return detector

    # -- the three stages --------------------------------------------------------------------

    def preprocess(
        self, images: Sequence[np.ndarray], size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, list[Letterbox]]:
        """Resize (or letterbox) each image to the input size (or ``size``, width × height): ``B×3×H×W``
        floats in [0, 1].

        The resize is OpenCV's bilinear one, bit for bit, whatever the device."""
        net_w, net_h = size or self.input_size
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
        return decode(self._forward(batch), self.heads, batch.shape[3], batch.shape[2])

    @torch.inference_mode()
    def augmented(
        self, images: Sequence[np.ndarray], batch: torch.Tensor, fits: Sequence[Letterbox]
    ) -> list[list[View]]:
        """Test-time augmentation's other views of each image (``batch``, ``fits``: its preprocessed input):
        flipped left-right, at :data:`AUGMENT_SCALE` × the input size, and both; flipped rows are flipped back
        (:meth:`detect` has refused it for a model that cannot)."""
        w, h = self.input_size
        small = tuple(max(32, round(v * AUGMENT_SCALE / 32) * 32) for v in (w, h))
        small_batch, small_fits = self.preprocess(images, small)
        views: list[list[View]] = [[] for _ in images]
        for x, fitted, flip in ((batch, fits, True), (small_batch, small_fits, False), (small_batch, small_fits, True)):
            rows = self.forward(x.flip(3) if flip else x)
            if flip:  # back to the unflipped input's coordinates
                rows[..., 0] = x.shape[3] - rows[..., 0]
            for i, r in enumerate(rows):
                views[i].append((r, fitted[i]))
        return views

    @torch.inference_mode()
    def postprocess(self, views: Sequence[Sequence[View]], options: Sequence[DetectOptions]) -> list[Detections]:
        """Per image, with its own thresholds: every view's candidates, NMS (``merge``: box voting), boxes in
        image pixels."""
        out = []
        for image_views, opt in zip(views, options, strict=True):
            parts = [candidates(rows, fitted, opt.conf, opt.classes) for rows, fitted in image_views]
            boxes, scores, labels = (torch.cat(t) for t in zip(*parts, strict=True))
            kept = suppress(boxes, scores, labels, opt.iou, opt.max_det, opt.merge)
            size = (image_views[0][1].width, image_views[0][1].height)
            out.append(to_detections(*kept, self.meta.classes, size))
        return out

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[Detections]:
        with torch.inference_mode():
            batch, fits = self.preprocess(images)
            views: list[list[View]] = [[(rows, fitted)] for rows, fitted in zip(self.forward(batch), fits, strict=True)]
            if wanted := [i for i, o in enumerate(options) if o.augment]:
                more = self.augmented([images[i] for i in wanted], batch[wanted], [fits[i] for i in wanted])
                for i, extra in zip(wanted, more, strict=True):
                    views[i] += extra
        return self.postprocess(views, options)
