"""The one batched image iterator: items (paths, dataset samples) → batches of decoded images, the ones
that cannot be decoded set aside with their error. Used by predict, evaluate, export's check, dataset
previews and training's prediction drawings."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from tqdm import tqdm

from .errors import InvalidImageError
from .images import decode_image

T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    """Up to ``batch_size`` items: those that decoded with their images, and those that failed."""

    items: list[T] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    failed: list[tuple[T, InvalidImageError]] = field(default_factory=list)


def decoded_batches(
    items: Sequence[T],
    batch_size: int = 8,
    *,
    decode: Callable[[T], np.ndarray] | None = None,
    max_pixels: int | None = None,
    progress: str | None = None,
) -> Iterator[Batch[T]]:
    """Decode ``items`` ``batch_size`` at a time (``decode``, default :func:`decode_image` of the item, which
    must then be a path or bytes). ``progress``: a tqdm bar with that description."""
    decode = decode or (lambda item: decode_image(item, max_pixels))  # type: ignore[arg-type]
    with tqdm(total=len(items), desc=progress, unit="img", disable=progress is None) as bar:
        for start in range(0, len(items), batch_size):
            batch: Batch[T] = Batch()
            for item in items[start : start + batch_size]:
                try:
                    image = decode(item)
                except InvalidImageError as exc:
                    batch.failed.append((item, exc))
                    continue
                batch.items.append(item)
                batch.images.append(image)
            yield batch
            bar.update(len(batch.items) + len(batch.failed))
