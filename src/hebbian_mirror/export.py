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
from .detection import Detector
from .errors import ModelFormatError
from .families import family
from .models.registry import registry
from .onnx.detector import METADATA_KEY

UNSUPPORTED = "ONNX export supports Darknet models only (zoo Darknet models and trained Darknet checkpoints)"
for _noisy in ("onnx_ir", "onnxscript"):  # one INFO line per folded constant otherwise
    logging.getLogger(_noisy).setLevel(logging.WARNING)


def check_exportable(source: str) -> None:
    """Refuse a zoo model of another family before anything is loaded or downloaded."""
    spec = registry().get(source)
    if spec is not None and not family(spec.family).capabilities.export:
        raise ModelFormatError(f"{UNSUPPORTED}: {source} is a {spec.family} model (predict and serve run it as it is)")


def export_onnx(detector: Detector, out: Path, dynamic_batch: bool = True, half: bool = False) -> Path:
    """Write ``detector`` as one self-contained ONNX file ``out`` (weights inside, no ``.data`` file beside it).
    ``half``: float16 weights and input (for CUDA runtimes)."""
    import onnx

    if not family(detector.family).capabilities.export or not isinstance(detector, DarknetDetector) or not detector.net:
        raise ModelFormatError(f"{UNSUPPORTED}: {detector.name} is a {detector.family} model")
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
        external_data=False,  # torch's default writes the weights to OUT.data as well
        verbose=False,
    )
    model = onnx.load(str(out))
    meta = detector.meta.to_dict() | {
        "heads": [asdict(head) for head in net.heads],
        "half": half,
        "dynamic_batch": dynamic_batch,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(out))
    return out


def verify_onnx(detector: Detector, onnx_path: Path, images: list[Path]) -> float:
    """Run ``detector`` and the exported file on ``images``; returns the largest box difference in pixels.
    Raises :class:`ModelFormatError` where the two disagree on the labels."""
    from .image_batches import decoded_batches
    from .onnx.detector import load_onnx

    exported = load_onnx(onnx_path, device="cpu")
    worst = 0.0
    for batch in decoded_batches(images, batch_size=1):
        for path, error in batch.failed:
            raise ModelFormatError(f"cannot verify on {path}: {error}")
        image = batch.images[0]
        a, b = detector.detect([image])[0], exported.detect([image])[0]
        if [d.label for d in a] != [d.label for d in b]:
            raise ModelFormatError(f"{batch.items[0]}: PyTorch and onnxruntime disagree on the labels")
        for da, db in zip(a, b, strict=True):
            worst = max(worst, *(abs(x - y) for x, y in zip(da.box, db.box, strict=True)))
    return worst
