"""ONNX files written by `hebbian-mirror export` as a model family: run as they are (one fixed input size, so
box voting but no test-time augmentation), never trained or saved as checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from ..detection import Detector
from ..families.base import Capabilities, Family
from .detector import load_onnx


class OnnxFamily(Family):
    name = "onnx"
    capabilities = Capabilities(merge=True)
    suffixes = (".onnx",)

    def open(self, path: Path, device: str | torch.device = "auto") -> Detector:
        return load_onnx(path, device=device)
