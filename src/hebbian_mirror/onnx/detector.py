"""ONNX models exported by `hebbian-mirror export`: Darknet's own stages around an onnxruntime forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..darknet.detector import DarknetDetector
from ..darknet.model import YoloHead
from ..detection import resolve_device
from ..errors import ModelFormatError
from ..meta import ModelMeta

METADATA_KEY = "hebbian_mirror"


class OnnxForward:
    """The forward stage: ``B×3×H×W`` tensor in, the raw ``[yolo]`` outputs out, run by onnxruntime."""

    def __init__(self, session, half: bool, dynamic_batch: bool) -> None:
        self.session, self.half, self.dynamic_batch = session, half, dynamic_batch

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        x = batch.float().contiguous().cpu().numpy().astype(np.float16 if self.half else np.float32, copy=False)
        if self.dynamic_batch:
            outputs = self.session.run(None, {"images": x})
        else:  # exported for one image at a time
            per_image = [self.session.run(None, {"images": x[i : i + 1]}) for i in range(len(x))]
            outputs = [np.concatenate(parts) for parts in zip(*per_image, strict=True)]
        return [torch.from_numpy(o).float() for o in outputs]


def load_onnx(path: str | Path, device: str | torch.device = "auto") -> DarknetDetector:
    """A detector for an ONNX file written by :func:`hebbian_mirror.export.export_onnx`."""
    import onnxruntime as ort

    path = Path(path)
    dev = resolve_device(device)
    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:
        raise ModelFormatError(f"cannot load ONNX model {path}: {exc}") from exc
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ModelFormatError(f"{path} was not exported by `hebbian-mirror export` (no metadata)")
    meta = json.loads(raw)
    heads = [
        YoloHead(
            anchors=tuple(map(tuple, h["anchors"])),
            classes=h["classes"],
            scale_x_y=h["scale_x_y"],
            new_coords=h["new_coords"],
        )
        for h in meta["heads"]
    ]
    forward = OnnxForward(session, bool(meta.get("half")), bool(meta.get("dynamic_batch")))
    detector = DarknetDetector(ModelMeta.from_dict(meta), heads, forward, device=dev, family="onnx")
    detector.half = forward.half  # the model's own precision (its input is cast to it in the forward stage)
    return detector
