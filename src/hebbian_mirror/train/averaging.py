"""Checkpoint averaging (a uniform average of a run's last epochs' weights, as in stochastic weight averaging)
with batch-norm recalibration: the averaged weights' own batch statistics, measured on training images
(``torch.optim.swa_utils.update_bn``), since an average of the epochs' running statistics does not fit them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ..datasets import DetectionDataset
from ..datasets.augment import AugmentConfig
from ..errors import ModelFormatError
from ..families import family
from ..models import checkpoint
from ..network import Network


def average(paths: Sequence[Path]) -> Network:
    """The uniform average of the checkpoints' floating-point weights (the first one's network, architecture and
    metadata); they must be the same model (the same classes, the same weights' shapes)."""
    if len(paths) < 2:
        raise ModelFormatError("averaging needs at least two checkpoints")
    network = checkpoint.load(paths[0])
    if not family(network.family).capabilities.average:
        raise ModelFormatError(f"averaging is for Darknet models; {paths[0]} is a {network.family} model")
    states = [network.module.state_dict()]
    for path in paths[1:]:
        other = checkpoint.load(path)
        state = other.module.state_dict()
        if other.meta.classes != network.meta.classes or {k: v.shape for k, v in state.items()} != {
            k: v.shape for k, v in states[0].items()
        }:
            raise ModelFormatError(f"{path} is not the same model as {paths[0]}: only one run's epochs average")
        states.append(state)
    mean = {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    network.module.load_state_dict(mean)
    return network


def recalibrate(network: Network, ds: DetectionDataset, images: int = 512, batch: int = 16) -> int:
    """Measure every batch-norm layer's statistics anew on up to ``images`` training images (no augmentation);
    returns how many were used."""
    fam = family(network.family).training()
    items = fam.train_set(network, ds, AugmentConfig.off())
    count = min(images, len(items))
    step = max(1, len(items) // count)
    subset = Subset(items, list(range(0, step * count, step))[:count])
    loader = DataLoader(subset, batch_size=batch, collate_fn=fam.collate)
    module = network.module
    with torch.no_grad():
        torch.optim.swa_utils.update_bn((images for images, _ in loader), module)
    module.eval()
    return count
