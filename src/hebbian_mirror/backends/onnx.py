"""ONNX models exported by `hebbian-mirror export`, run by onnxruntime behind the Detector interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..darknet.model import YoloHead
from ..darknet.preprocess import fit
from ..darknet.yolo import decode, select
from ..detection import Detection, DetectOptions, Detector, resolve_device, to_detections
from ..errors import ModelFormatError


class OnnxDetector(Detector):
    def __init__(self, path: str | Path, device: str = "auto") -> None:
        import onnxruntime as ort

        path = Path(path)
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise ModelFormatError(f"cannot load ONNX model {path}: {exc}") from exc
        raw = self.session.get_modelmeta().custom_metadata_map.get("hebbian_mirror")
        if raw is None:
            raise ModelFormatError(f"{path} was not exported by `hebbian-mirror export` (no metadata)")
        meta = json.loads(raw)
        self.name = meta["name"]
        self.class_names = list(meta["class_names"])
        self.display_names = dict(meta.get("display_names") or {})
        self.input_size = tuple(meta["input_size"])
        self.letterbox = bool(meta["letterbox"])
        self.heads = [
            YoloHead(
                anchors=tuple(map(tuple, h["anchors"])),
                classes=h["classes"],
                scale_x_y=h["scale_x_y"],
                new_coords=h["new_coords"],
            )
            for h in meta["heads"]
        ]
        self.half = bool(meta.get("half"))
        self.dynamic_batch = bool(meta.get("dynamic_batch"))

    def info(self) -> dict:
        return super().info() | {"family": "onnx", "letterbox": self.letterbox, "display_names": self.display_names}

    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[list[Detection]]:
        w, h = self.input_size
        fitted = [fit(torch.from_numpy(img).permute(2, 0, 1), w, h, self.letterbox) for img in images]
        batch = torch.stack([t for t, _ in fitted]).numpy().astype(np.float16 if self.half else np.float32)
        if self.dynamic_batch:
            outputs = self.session.run(None, {"images": batch})
        else:  # exported for one image at a time
            per_image = [self.session.run(None, {"images": batch[i : i + 1]}) for i in range(len(images))]
            outputs = [np.concatenate(parts) for parts in zip(*per_image, strict=True)]
        rows = decode([torch.from_numpy(o).float() for o in outputs], self.heads, w, h)
        results = []
        for r, (_, fit_info), opt in zip(rows, fitted, options, strict=True):
            boxes, scores, labels = select(r, fit_info, opt.conf, opt.iou, opt.max_det, opt.classes)
            results.append(to_detections(boxes, scores, labels, self.class_names))
        return results
