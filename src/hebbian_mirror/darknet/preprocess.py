"""Fitting images into the network input: OpenCV-exact bilinear resize, plain or letterboxed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

# OpenCV's fixed-point bilinear resize of 8-bit images (INTER_RESIZE_COEF_BITS = 11).
_COEF_BITS = 11
_ONE = 1 << _COEF_BITS


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: ``net = image * scale + pad`` per axis."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int  # original image size
    height: int

    def to_image(self, boxes: torch.Tensor) -> torch.Tensor:
        """Map ``N×4`` xyxy boxes from network-input pixels to original-image pixels, clipped."""
        out = torch.empty_like(boxes)
        out[:, 0::2] = ((boxes[:, 0::2] - self.pad_x) / self.scale_x).clamp_(0, self.width)
        out[:, 1::2] = ((boxes[:, 1::2] - self.pad_y) / self.scale_y).clamp_(0, self.height)
        return out


@lru_cache(maxsize=256)
def _taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit weights of each output pixel, computed exactly as ``cv::resize``
    does (coordinates in float32, each weight rounded half-to-even on its own)."""
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    low, high = s < 0, s >= src - 1
    f[low | high] = 0.0
    s[low] = 0
    s[high] = src - 1
    c0 = np.rint((np.float32(1.0) - f) * np.float32(_ONE)).astype(np.int32)
    c1 = np.rint(f * np.float32(_ONE)).astype(np.int32)
    return s, np.minimum(s + 1, src - 1), c0, c1


def resize_bilinear_u8(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``C×H×W`` uint8 tensor, bit-exact with ``cv2.resize(..., INTER_LINEAR)``.

    Integer arithmetic only, so CPU and CUDA give the same pixels; output is uint8.
    """
    _, h, w = image.shape
    if (h, w) == (height, width):
        return image
    dev = image.device
    x0, x1, cx0, cx1 = (torch.from_numpy(v).to(dev) for v in _taps(w, width))
    y0, y1, cy0, cy1 = (torch.from_numpy(v).to(dev) for v in _taps(h, height))
    img = image.to(torch.int32)
    rows = img.index_select(2, x0).mul_(cx0)  # horizontal pass, scaled by 2^11
    rows.add_(img.index_select(2, x1).mul_(cx1))
    # vertical pass as OpenCV's SIMD VResizeLinear for 8-bit: 16-bit products' high halves, then >> 2
    top = rows.index_select(1, y0).bitwise_right_shift_(4).mul_(cy0.view(1, -1, 1)).bitwise_right_shift_(16)
    bottom = rows.index_select(1, y1).bitwise_right_shift_(4).mul_(cy1.view(1, -1, 1)).bitwise_right_shift_(16)
    return top.add_(bottom).add_(2).bitwise_right_shift_(2).clamp_(0, 255).to(torch.uint8)


def fit(image: torch.Tensor, net_w: int, net_h: int, letterbox: bool) -> tuple[torch.Tensor, Letterbox]:
    """Fit a ``3×H×W`` uint8 tensor into the network input: ``3×net_h×net_w`` floats in [0, 1], letterboxed
    (aspect kept, grey padding, as pjreddie's Darknet) or stretched (as AlexeyAB's)."""
    _, h, w = image.shape
    if letterbox:
        if net_w / w < net_h / h:
            new_w, new_h = net_w, max(1, (h * net_w) // w)
        else:
            new_w, new_h = max(1, (w * net_h) // h), net_h
        dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
    else:
        new_w, new_h, dx, dy = net_w, net_h, 0, 0
    resized = resize_bilinear_u8(image, new_h, new_w).float().div_(255.0)
    if not letterbox:
        return resized, Letterbox(new_w / w, new_h / h, 0, 0, w, h)
    out = torch.full((3, net_h, net_w), 0.5, dtype=torch.float32, device=image.device)
    out[:, dy : dy + new_h, dx : dx + new_w] = resized
    return out, Letterbox(new_w / w, new_h / h, dx, dy, w, h)
