"""Box-aware augmentation (torchvision.transforms.v2): the original weapons demo's set, plus scale jitter,
mosaic and copy-paste for YOLO models. Training only; validation images are never augmented."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import DatasetError


@dataclass
class AugmentConfig:
    """Probabilities (0 switches a transform off) and strengths."""

    hflip: float = 0.5
    vflip: float = 0.0
    rot90: float = 0.1
    color: float = 0.5  # brightness / contrast / saturation / hue jitter
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.02
    grayscale: float = 0.05
    blur: float = 0.05
    median_blur: float = 0.05
    scale_jitter: float = 0.25  # random affine scale 1 ± this, with translation
    mosaic: float = 0.5
    copy_paste: float = 0.0  # an image without any of paste_classes gets 1-2 of their labelled boxes pasted in
    paste_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.paste_classes = tuple(self.paste_classes)
        if self.copy_paste and not self.paste_classes:
            raise DatasetError("copy_paste needs paste_classes: the classes whose labelled boxes are pasted")

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(**{f.name: 0.0 for f in fields(cls) if f.name != "paste_classes"})

    @classmethod
    def from_yaml(cls, path: Path) -> AugmentConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise DatasetError(
                f"{path}: unknown augmentation keys {sorted(unknown)}; known: {[f.name for f in fields(cls)]}"
            )
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


class RandomRot90(v2.Transform):
    """Rotate by 90°, 180° or 270° (boxes follow; the canvas grows to fit)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs):
        return {"angle": random.choice((90, 180, 270)) if random.random() < self.p else 0}

    def transform(self, inpt, params):
        k = params["angle"] // 90  # counter-clockwise quarter turns, exact (no resampling, no rounding)
        if not k:
            return inpt
        if isinstance(inpt, tv_tensors.Image):
            return tv_tensors.wrap(torch.rot90(inpt, k, dims=(-2, -1)), like=inpt)
        if isinstance(inpt, tv_tensors.BoundingBoxes):  # XYXY on an H×W canvas
            h, w = inpt.canvas_size
            x1, y1, x2, y2 = inpt.unbind(-1)
            if k == 1:
                boxes, canvas = torch.stack((y1, w - x2, y2, w - x1), -1), (w, h)
            elif k == 2:
                boxes, canvas = torch.stack((w - x2, h - y2, w - x1, h - y1), -1), (h, w)
            else:
                boxes, canvas = torch.stack((h - y2, x1, h - y1, x2), -1), (w, h)
            return tv_tensors.wrap(boxes, like=inpt, canvas_size=canvas)
        return inpt


class MedianBlur(v2.Transform):
    """Median filter of a ``k×k`` window on the image (boxes unchanged)."""

    def __init__(self, kernel: int = 5) -> None:
        super().__init__()
        self.kernel = kernel

    def transform(self, inpt, params):
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        k = self.kernel
        x = inpt.float().unsqueeze(0)
        x = F.pad(x, (k // 2,) * 4, mode="reflect")
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # 1×C×H×W×k×k
        out = patches.reshape(*patches.shape[:4], -1).median(-1).values.squeeze(0)
        return tv_tensors.wrap(out.round().to(inpt.dtype), like=inpt)


def build(cfg: AugmentConfig) -> v2.Transform:
    ops: list[v2.Transform] = []
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip:
        ops.append(v2.RandomVerticalFlip(cfg.vflip))
    if cfg.rot90:
        ops.append(RandomRot90(cfg.rot90))
    if cfg.color:
        ops.append(v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], cfg.color))
    if cfg.grayscale:
        ops.append(v2.RandomGrayscale(cfg.grayscale))
    if cfg.blur:
        ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], cfg.blur))
    if cfg.median_blur:
        ops.append(v2.RandomApply([MedianBlur(5)], cfg.median_blur))
    if cfg.scale_jitter:
        ops.append(
            v2.RandomAffine(
                degrees=0, translate=(0.1, 0.1), scale=(1 - cfg.scale_jitter, 1 + cfg.scale_jitter), fill=114
            )
        )
    ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=2)]
    return v2.Compose(ops)


def mosaic(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], out_w: int, out_h: int):
    """Four (image C×H×W uint8, boxes N×4 xyxy, labels N) → one image of ``out_w×out_h`` made of the four,
    each stretched into a quadrant around a random centre; boxes cut at the quadrant edges, slivers dropped."""
    cx = int(random.uniform(0.3, 0.7) * out_w)
    cy = int(random.uniform(0.3, 0.7) * out_h)
    canvas = torch.full((3, out_h, out_w), 114, dtype=torch.uint8)
    regions = [(0, 0, cx, cy), (cx, 0, out_w, cy), (0, cy, cx, out_h), (cx, cy, out_w, out_h)]
    all_boxes, all_labels = [], []
    for (img, boxes, labels), (x1, y1, x2, y2) in zip(parts, regions, strict=True):
        w, h = x2 - x1, y2 - y1
        if w < 2 or h < 2:
            continue
        _, ih, iw = img.shape
        canvas[:, y1:y2, x1:x2] = (
            F.interpolate(img[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
            .round()
            .clamp(0, 255)
            .byte()
        )
        if len(boxes):
            b = boxes.clone().float()
            b[:, 0::2] = b[:, 0::2] * (w / iw) + x1
            b[:, 1::2] = b[:, 1::2] * (h / ih) + y1
            all_boxes.append(b)
            all_labels.append(labels)
    boxes = torch.cat(all_boxes) if all_boxes else torch.zeros((0, 4))
    labels = torch.cat(all_labels) if all_labels else torch.zeros((0,), dtype=torch.long)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 2) & ((boxes[:, 3] - boxes[:, 1]) > 2)
    return canvas, boxes[keep], labels[keep]


def paste(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    crops: list[tuple[torch.Tensor, int, float]],
    max_cover: float = 0.3,
    tries: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy-paste: each of ``crops`` (a labelled box cut from another image: ``C×h×w`` uint8, its class, its width
    as a share of that image's) pasted onto ``image`` (``C×H×W`` uint8) at the same share of its width, ×0.7-1.4,
    somewhere it covers at most ``max_cover`` of any box already there, its edges feathered into the scene;
    its box and class added. A crop with no such place is left out."""
    image = image.clone()
    _, height, width = image.shape
    boxes, labels = boxes.clone().float().reshape(-1, 4), labels.clone()
    for crop, label, share in crops:
        _, ch, cw = crop.shape
        w = min(max(8, round(share * width * random.uniform(0.7, 1.4))), int(width * 0.6))
        h = min(max(8, round(w * ch / cw)), int(height * 0.6))
        if w < 8 or h < 8:
            continue
        for _ in range(tries):
            x, y = random.randint(0, width - w), random.randint(0, height - h)
            new = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
            if not len(boxes) or (_covered(boxes, new) <= max_cover).all():
                break
        else:
            continue
        part = F.interpolate(crop[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        alpha = _feather(h, w)
        region = image[:, y : y + h, x : x + w].float()
        image[:, y : y + h, x : x + w] = (alpha * part + (1 - alpha) * region).round().clamp(0, 255).byte()
        boxes = torch.cat((boxes, new))
        labels = torch.cat((labels, torch.tensor([label], dtype=labels.dtype)))
    return image, boxes, labels


def _covered(boxes: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """The share of each of ``boxes`` that ``new`` (``1×4``) covers."""
    lt, rb = torch.max(boxes[:, :2], new[:, :2]), torch.min(boxes[:, 2:], new[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    return inter / ((boxes[:, 2:] - boxes[:, :2]).prod(1)).clamp(min=1e-6)


def _feather(h: int, w: int, share: float = 0.08) -> torch.Tensor:
    """``1×h×w`` opacity rising linearly over the outer ``share`` of each side: no hard seam."""

    def ramp(n: int) -> torch.Tensor:
        edge = max(1.0, n * share)
        i = torch.arange(n, dtype=torch.float32)
        return torch.minimum((i + 0.5) / edge, (n - i - 0.5) / edge).clamp(max=1.0)

    return (ramp(h)[:, None] * ramp(w)[None])[None]


def rescale(
    images: torch.Tensor, targets: list[torch.Tensor], spread: float, step: int = 32
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Multi-scale training: a batch ``B×3×H×W`` resized (bilinear) to a random width in (1 ± ``spread``) × ``W``, a
    multiple of ``step`` (the height in proportion), and its targets (``N×5``: class, x1, y1, x2, y2 in pixels) to
    match."""
    h, w = images.shape[2:]
    side = random.randint(max(1, round(w * (1 - spread) / step)), max(1, round(w * (1 + spread) / step))) * step
    new_w, new_h = side, max(step, round(h * side / w / step) * step)
    if (new_h, new_w) == (h, w):
        return images, targets
    resized = F.interpolate(images.float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
    scale = torch.tensor([1.0, new_w / w, new_h / h, new_w / w, new_h / h])
    return resized.to(images.dtype), [t * scale.to(t.device, t.dtype) for t in targets]
