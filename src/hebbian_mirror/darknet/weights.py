"""Loader for Darknet ``.weights`` files (header + float32 parameters in layer order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelFormatError
from .cfg import read_cfg
from .model import ConvBlock, DarknetNet


def load_darknet_weights(net: DarknetNet, path: str | Path) -> dict[str, int]:
    """Copy the parameters in ``path`` into ``net``; returns the header (major, minor, revision, seen).

    The file must hold exactly the parameters the cfg describes: a cfg/weights mismatch is a
    :class:`ModelFormatError` naming both counts, never a silently half-loaded network.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read weights file {path}: {exc}") from exc
    if len(raw) < 16:
        raise ModelFormatError(f"{path} is too short to be a Darknet weights file ({len(raw)} bytes)")
    major, minor, revision = np.frombuffer(raw, dtype="<i4", count=3)
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        seen, offset = int(np.frombuffer(raw, dtype="<i8", count=1, offset=12)[0]), 20
    else:
        seen, offset = int(np.frombuffer(raw, dtype="<i4", count=1, offset=12)[0]), 16
    if (len(raw) - offset) % 4:
        raise ModelFormatError(f"{path}: size {len(raw)} is not a whole number of float32 values")
    data = np.frombuffer(raw, dtype="<f4", offset=offset)

    blocks = [m for m in net.layers if isinstance(m, ConvBlock)]
    needed = sum(m.conv.weight.numel() + m.conv.out_channels * (4 if m.bn is not None else 1) for m in blocks)
    if needed != data.size:
        raise ModelFormatError(
            f"{path.name} does not fit this cfg: the cfg needs {needed:,} parameters, the file holds {data.size:,}"
        )
    pos = 0

    def take(tensor: torch.Tensor) -> None:
        nonlocal pos
        n = tensor.numel()
        values = torch.from_numpy(data[pos : pos + n].copy()).view_as(tensor)
        with torch.no_grad():
            tensor.copy_(values)
        pos += n

    for block in blocks:
        if block.bn is not None:
            # Darknet order: biases (beta), scales (gamma), rolling mean, rolling variance.
            take(block.bn.bias)
            take(block.bn.weight)
            take(block.bn.running_mean)
            take(block.bn.running_var)
        else:
            take(block.conv.bias)
        take(block.conv.weight)
    return {"major": int(major), "minor": int(minor), "revision": int(revision), "seen": seen}


def load_net(cfg: str | Path, weights: str | Path) -> DarknetNet:
    """A network built from ``cfg`` with the parameters of ``weights`` (batch norms not folded: trainable)."""
    net = DarknetNet(read_cfg(cfg))
    load_darknet_weights(net, weights)
    return net
