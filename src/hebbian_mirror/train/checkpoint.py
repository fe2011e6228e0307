"""Checkpoints: self-contained trained models the rest of the product loads by path, plus training state."""

from __future__ import annotations

from pathlib import Path

import torch

from ..darknet.cfg import parse_cfg, to_text
from ..darknet.model import DarknetNet
from ..errors import ModelFormatError

FORMAT = "hebbian-mirror/darknet-v1"


def model_record(
    net: DarknetNet,
    class_names: list[str],
    display_names: dict[str, str],
    letterbox: bool,
    name: str,
    thresholds: dict | None = None,
) -> dict:
    """Everything needed to rebuild the detector: architecture (cfg text), weights, classes, input handling."""
    return {
        "format": FORMAT,
        "name": name,
        "cfg": to_text(net.sections),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "class_names": list(class_names),
        "display_names": dict(display_names),
        "input_size": [net.width, net.height],
        "letterbox": letterbox,
        "thresholds": thresholds or {"conf": 0.25, "iou": 0.45},
    }


def save(record: dict, path: Path) -> None:
    """Write atomically, so a crash mid-save never leaves a broken checkpoint behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(record, tmp)
    tmp.replace(path)


def read(path: str | Path) -> dict:
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFormatError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") not in (FORMAT, "hebbian-mirror/torchvision-v1"):
        raise ModelFormatError(f"{path} is not a Hebbian Mirror checkpoint")
    return record


def build_net(record: dict) -> DarknetNet:
    net = DarknetNet(parse_cfg(record["cfg"], source="checkpoint cfg"))
    net.load_state_dict(record["state_dict"])
    return net


def load_detector(path: str | Path, device: str = "auto", half: bool = False):
    """A trained checkpoint (``best.pt`` / ``last.pt``, Darknet or torchvision) as a detector."""
    from .families import from_record

    return from_record(read(path)).detector(device, half)
