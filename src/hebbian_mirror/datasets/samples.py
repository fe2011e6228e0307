"""A sample as training reads it: its image, boxes and class ids as tensors, decoded in the boxes' pixels, and
box-aware transforms run on them."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torchvision import tv_tensors
from tqdm import tqdm

from ..errors import DatasetError, InvalidImageError
from .io import decode_as_annotated
from .records import DetectionDataset, Sample


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
