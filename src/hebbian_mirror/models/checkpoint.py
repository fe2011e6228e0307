"""Checkpoints: a trained :class:`~hebbian_mirror.network.Network` in one self-contained file (any family),
plus, in ``last.pt``, the training state to resume from.

A record is a flat dict: ``format`` (``hebbian-mirror/<family>-v1``), the model's metadata
(:meth:`ModelMeta.to_dict`), the family's architecture (Darknet: ``cfg`` text; torchvision: ``builder``,
``num_classes``, ``label_map``), ``state_dict`` and default ``thresholds``; training adds its own keys. Every
checkpoint written since the first version loads (``tests/models/test_compat.py`` keeps one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFormatError
from ..families import family as get_family
from ..meta import DEFAULT_CONF, DEFAULT_IOU
from ..network import Network

PREFIX = "hebbian-mirror/"
VERSION = "-v1"


def to_record(network: Network) -> dict[str, Any]:
    """Everything needed to rebuild ``network``: metadata, architecture, weights (on the CPU)."""
    fam = get_family(network.family)
    if not fam.capabilities.checkpoint:
        raise ModelFormatError(f"{network.meta.name} is a {fam.name} model: it cannot be saved as a checkpoint")
    return (
        {"format": f"{PREFIX}{network.family}{VERSION}"}
        | network.meta.to_dict()
        | fam.architecture(network)
        | {
            "state_dict": {k: v.detach().cpu() for k, v in network.module.state_dict().items()},
            "thresholds": {"conf": DEFAULT_CONF, "iou": DEFAULT_IOU},
        }
    )


def from_record(record: dict[str, Any]) -> Network:
    """The network a record holds, weights loaded."""
    name = record["format"].removeprefix(PREFIX).removesuffix(VERSION)
    fam = get_family(name)
    module, arch = fam.build(record)
    try:
        module.load_state_dict(record["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelFormatError(f"checkpoint weights do not fit its architecture: {exc}") from exc
    return Network(name, module, fam.meta(record), arch)


def save(record: dict[str, Any], path: Path) -> None:
    """Write atomically, so a crash mid-save never leaves a broken checkpoint behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(record, tmp)
    tmp.replace(path)


def read(path: str | Path) -> dict[str, Any]:
    """A checkpoint's record; :class:`ModelFormatError` for anything that is not one."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFormatError(f"cannot read checkpoint {path}: {exc}") from exc
    fmt = record.get("format") if isinstance(record, dict) else None
    if not (isinstance(fmt, str) and fmt.startswith(PREFIX) and fmt.endswith(VERSION)):
        raise ModelFormatError(f"{path} is not a Hebbian Mirror checkpoint")
    return record


def load(path: str | Path) -> Network:
    return from_record(read(path))
