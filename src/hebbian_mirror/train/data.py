"""Training data: a DetectionDataset as torch tensors at the network's input size."""

from __future__ import annotations

import math
import os
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors
from tqdm import tqdm

from ..darknet.preprocess import fit
from ..datasets import DetectionDataset, Sample, decode_as_annotated
from ..errors import DatasetError, InvalidImageError
from .augment import AugmentConfig, build, mosaic


class YoloTrainSet(Dataset):
    """Items: ``(3×H×W float image in [0, 1], N×5 target: class, x1, y1, x2, y2 in input pixels)``."""

    def __init__(
        self,
        ds: DetectionDataset,
        size: tuple[int, int],
        letterbox: bool,
        augment: AugmentConfig | None = None,
        cache: bool = False,
    ) -> None:
        if not ds.samples:
            raise DatasetError(f"{ds.source} has no images to train on")
        self.ds, self.size, self.letterbox = ds, size, letterbox
        self.augment = augment
        self.transform = build(augment) if augment else None
        self.cached = cache_samples(ds) if cache else None

    def __len__(self) -> int:
        return len(self.ds.samples)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.cached[index] if self.cached is not None else load_sample(self.ds.samples[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, boxes, labels = self._load(index)
        if self.augment and self.augment.mosaic and random.random() < self.augment.mosaic:
            others = [self._load(random.randrange(len(self))) for _ in range(3)]
            image, boxes, labels = mosaic([(image, boxes, labels), *others], *self.size)
        if self.transform is not None:
            image, boxes, labels = apply(self.transform, image, boxes, labels)
        tensor, fitted = fit(image, *self.size, self.letterbox)
        target = torch.zeros((len(boxes), 5))
        if len(boxes):
            target[:, 0] = labels.float()
            target[:, 1::2] = boxes[:, 0::2] * fitted.scale_x + fitted.pad_x
            target[:, 2::2] = boxes[:, 1::2] * fitted.scale_y + fitted.pad_y
        return tensor, target


def load_sample(sample: Sample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sample's image (3×H×W uint8), boxes (N×4 xyxy) and class ids."""
    try:
        image = torch.from_numpy(decode_as_annotated(sample)).permute(2, 0, 1).contiguous()
    except InvalidImageError as exc:
        raise DatasetError(f"cannot train on {sample.image}: {exc}") from exc
    boxes = torch.tensor([b.xyxy for b in sample.boxes], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([b.class_id for b in sample.boxes], dtype=torch.long)
    return image, boxes, labels


def cache_samples(ds: DetectionDataset) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Every sample decoded once, in parallel threads, with a progress bar (3 bytes of RAM a pixel). DataLoader
    worker processes share the list (they are forked), so no epoch decodes a JPEG again."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        loaded = pool.map(load_sample, ds.samples)
        return list(tqdm(loaded, total=len(ds.samples), desc="decoding training images into RAM", unit="img"))


def apply(transform, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor):
    """Run a box-aware v2 transform on plain tensors."""
    h, w = image.shape[1:]
    img, target = transform(
        tv_tensors.Image(image),
        {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)), "labels": labels},
    )
    return img.as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor), target["labels"]


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


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
