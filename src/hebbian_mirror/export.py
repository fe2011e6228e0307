"""Exporting Darknet detectors to ONNX (raw YOLO heads; decoding and NMS stay ours), with the metadata
the ONNX backend needs to be a complete detector: classes, display names, input size, resize, heads."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from .darknet.detector import DarknetDetector
from .errors import ModelFormatError

METADATA_KEY = "hebbian_mirror"
for _noisy in ("onnx_ir", "onnxscript"):  # one INFO line per folded constant otherwise
    logging.getLogger(_noisy).setLevel(logging.WARNING)


def export_onnx(detector: DarknetDetector, out: Path, dynamic_batch: bool = True, half: bool = False) -> Path:
    """Write ``detector`` as ONNX to ``out``. ``half``: float16 weights and input (for CUDA runtimes)."""
    import onnx

    if not isinstance(detector, DarknetDetector):
        raise ModelFormatError("ONNX export supports Darknet models (zoo Darknet models and trained checkpoints)")
    net = copy.deepcopy(detector.net).to("cpu", dtype=torch.float16 if half else torch.float32)
    net = net.to(memory_format=torch.contiguous_format).eval()
    w, h = detector.input_size
    example = torch.rand(2 if dynamic_batch else 1, 3, h, w, dtype=torch.float16 if half else torch.float32)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=256)},) if dynamic_batch else None
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [f"head{i}" for i in range(len(net.heads))]
    torch.onnx.export(
        net,
        (example,),
        str(out),
        input_names=["images"],
        output_names=names,
        dynamic_shapes=dynamic,
        dynamo=True,
        verbose=False,
    )
    model = onnx.load(str(out))
    meta = {
        "name": detector.name,
        "class_names": detector.class_names,
        "display_names": detector.display_names,
        "input_size": [w, h],
        "letterbox": detector.letterbox,
        "heads": [asdict(head) for head in net.heads],
        "half": half,
        "dynamic_batch": dynamic_batch,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(out))
    return out
