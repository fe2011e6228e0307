"""The epoch's order of training images (shared out among processes, repeat factors) and DataLoader seeding."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import Sampler


def repeat_factors(classes_per_image: list[set[int]], threshold: float) -> list[float]:
    """LVIS's repeat factors: class c in a share f(c) of the images gets max(1, sqrt(threshold / f(c))); an
    image, its classes' largest (1 for an image with no box)."""
    n = max(len(classes_per_image), 1)
    images_with: dict[int, int] = {}
    for found in classes_per_image:
        for c in found:
            images_with[c] = images_with.get(c, 0) + 1
    per_class = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in images_with.items()}
    return [max((per_class[c] for c in found), default=1.0) for found in classes_per_image]


class EpochSampler(Sampler[int]):
    """The epoch's order of images, shared out among ``size`` processes: each takes every ``size``-th image of
    one permutation, so together they see what one process would, batch by batch. The permutation is the one
    a one-process run always drew (a ``DataLoader`` with ``shuffle`` and a generator seeded ``seed + epoch``
    takes its worker seed from the generator first, then the permutation), so runs resume across versions.

    With ``weights`` (repeat factors) each image appears about ``n * w / sum(w)`` times an epoch (stochastic
    rounding, drawn anew each epoch), so an epoch still has ``n`` images."""

    def __init__(
        self,
        n: int,
        seed: int,
        rank: int = 0,
        size: int = 1,
        drop_last: bool = True,
        weights: list[float] | None = None,
    ) -> None:
        self.n, self.seed, self.rank, self.size, self.drop_last = n, seed, rank, size, drop_last
        self.weights = torch.tensor(weights, dtype=torch.float64) if weights is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _usable(self) -> int:
        return (self.n // self.size) * self.size if self.drop_last else -(-self.n // self.size) * self.size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        torch.empty((), dtype=torch.int64).random_(generator=g)  # the worker seed a DataLoader draws first
        if self.weights is None:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            expected = self.weights * (self.n / self.weights.sum())
            times = (expected.floor() + (torch.rand(self.n, generator=g, dtype=torch.float64) < expected.frac())).long()
            drawn = torch.repeat_interleave(torch.arange(self.n), times)
            drawn = drawn[torch.randperm(len(drawn), generator=g)]
            order = drawn.repeat(-(-self.n // max(len(drawn), 1)))[: self.n].tolist()  # exactly n, as without
        order += order[: self._usable() - self.n]  # without drop_last, some images twice so all get a share
        return iter(order[self.rank : self._usable() : self.size])

    def __len__(self) -> int:
        return self._usable() // self.size


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: Python and NumPy RNGs from torch's per-worker seed (reproducible augmentation)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
