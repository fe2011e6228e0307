"""Darknet networks as PyTorch modules, built from parsed cfg sections."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError
from .cfg import Section

# Darknet's batch-norm epsilon (normalize_cpu: sqrt(variance + .000001f)).
BN_EPS = 1e-6


def make_activation(name: str, where: str) -> nn.Module:
    name = name.strip().lower()
    if name == "leaky":
        return nn.LeakyReLU(0.1, inplace=True)
    if name == "linear":
        return nn.Identity()
    if name == "mish":
        return nn.Mish(inplace=True)
    if name == "logistic":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "hardswish" or name == "hard_swish":
        return nn.Hardswish(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    raise ModelFormatError(f"{where}: unsupported activation {name!r}")


class ConvBlock(nn.Module):
    """``[convolutional]``: conv (grouped/depthwise allowed) + optional batch norm + activation."""

    def __init__(self, in_ch: int, sec: Section, where: str) -> None:
        super().__init__()
        filters = sec.get_int("filters", 1)
        size = sec.get_int("size", 1)
        stride = sec.get_int("stride", 1)
        groups = sec.get_int("groups", 1)
        padding = size // 2 if sec.get_int("pad", 0) else sec.get_int("padding", 0)
        if in_ch % groups or filters % groups:
            raise ModelFormatError(f"{where}: groups={groups} does not divide {in_ch} inputs / {filters} filters")
        self.batch_normalize = bool(sec.get_int("batch_normalize", 0))
        self.conv = nn.Conv2d(in_ch, filters, size, stride, padding, groups=groups, bias=not self.batch_normalize)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=0.01) if self.batch_normalize else None
        self.act = make_activation(sec.get_str("activation", "logistic"), where)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold batch norm into the convolution (inference only)."""
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
        ).to(conv.weight.device, conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, None


class MaxPool(nn.Module):
    """``[maxpool]`` with Darknet's padding (``size-1`` by default; out-of-image cells never win)."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        self.pad = (padding // 2, padding - padding // 2, padding // 2, padding - padding // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Upsample(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


@dataclass(frozen=True)
class YoloHead:
    """Decoding parameters of one ``[yolo]`` layer."""

    anchors: tuple[tuple[float, float], ...]  # (w, h) in network-input pixels, masked
    classes: int
    scale_x_y: float = 1.0
    new_coords: bool = False


class Route(nn.Module):
    """``[route]``: concatenate earlier outputs, optionally one channel group of each (``groups``)."""

    def __init__(self, sources: list[int], groups: int, group_id: int) -> None:
        super().__init__()
        self.sources, self.groups, self.group_id = sources, groups, group_id

    def forward(self, outputs: list[torch.Tensor | None]) -> torch.Tensor:
        parts = []
        for i in self.sources:
            t = outputs[i]
            if self.groups > 1:
                t = t.chunk(self.groups, dim=1)[self.group_id]
            parts.append(t)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Shortcut(nn.Module):
    """``[shortcut]``: add an earlier output to the previous one, then an activation."""

    def __init__(self, source: int, act: nn.Module) -> None:
        super().__init__()
        self.source, self.act = source, act

    def forward(self, x: torch.Tensor, outputs: list[torch.Tensor | None]) -> torch.Tensor:
        return self.act(x + outputs[self.source])


class DarknetNet(nn.Module):
    """A Darknet network. ``forward`` returns the raw output of each ``[yolo]`` layer, in cfg order."""

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = copy.deepcopy(sections)
        net = sections[0]
        self.width = net.get_int("width", 416)
        self.height = net.get_int("height", 416)
        self.channels = net.get_int("channels", 3)
        self.net_options = dict(net.options)
        self.layers = nn.ModuleList()
        self.heads: list[YoloHead] = []
        self.head_layers: list[int] = []
        channels: list[int] = []
        in_ch = self.channels
        for idx, sec in enumerate(sections[1:]):
            where = f"layer {idx} [{sec.type}] (cfg line {sec.line})"
            layer, out_ch = self._build(idx, sec, in_ch, channels, where)
            self.layers.append(layer)
            channels.append(out_ch)
            in_ch = out_ch
        if not self.heads:
            raise ModelFormatError("cfg has no [yolo] layer: only YOLO detectors are supported")
        needed: set[int] = set(self.head_layers)
        for layer in self.layers:
            if isinstance(layer, Route):
                needed.update(layer.sources)
            elif isinstance(layer, Shortcut):
                needed.add(layer.source)
        self._keep = [i in needed for i in range(len(self.layers))]

    def _build(self, idx: int, sec: Section, in_ch: int, channels: list[int], where: str) -> tuple[nn.Module, int]:
        def absolute(rel: int) -> int:
            j = rel if rel >= 0 else idx + rel
            if not 0 <= j < idx:
                raise ModelFormatError(f"{where}: refers to layer {rel}, which does not exist before it")
            return j

        kind = sec.type
        if kind in ("convolutional", "conv"):
            block = ConvBlock(in_ch, sec, where)
            return block, block.conv.out_channels
        if kind == "maxpool":
            size = sec.get_int("size", sec.get_int("stride", 1))
            stride = sec.get_int("stride", 1)
            return MaxPool(size, stride, sec.get_int("padding", size - 1)), in_ch
        if kind == "route":
            sources = [absolute(r) for r in sec.get_ints("layers")]
            groups = sec.get_int("groups", 1)
            group_id = sec.get_int("group_id", 0)
            if not 0 <= group_id < groups:
                raise ModelFormatError(f"{where}: group_id={group_id} with groups={groups}")
            return Route(sources, groups, group_id), sum(channels[s] // groups for s in sources)
        if kind == "shortcut":
            source = absolute(int(sec.get_str("from").split(",")[0]))
            if channels[source] != in_ch:
                raise ModelFormatError(f"{where}: adds {channels[source]} channels to {in_ch}")
            return Shortcut(source, make_activation(sec.get_str("activation", "linear"), where)), in_ch
        if kind == "upsample":
            return Upsample(sec.get_int("stride", 2)), in_ch
        if kind == "dropout":
            return nn.Dropout(sec.get_float("probability", 0.5)), in_ch
        if kind == "avgpool":
            return GlobalAvgPool(), in_ch
        if kind == "yolo":
            anchors_flat = sec.get_floats("anchors")
            pairs = list(zip(anchors_flat[0::2], anchors_flat[1::2], strict=False))
            mask = sec.get_ints("mask", list(range(len(pairs))))
            classes = sec.get_int("classes", 80)
            if any(not 0 <= m < len(pairs) for m in mask):
                raise ModelFormatError(f"{where}: mask {mask} refers to missing anchors")
            expected = len(mask) * (classes + 5)
            if in_ch != expected:
                raise ModelFormatError(
                    f"{where}: input has {in_ch} channels but {len(mask)} anchors × ({classes} classes + 5) "
                    f"= {expected}"
                )
            self.heads.append(
                YoloHead(
                    anchors=tuple(pairs[m] for m in mask),
                    classes=classes,
                    scale_x_y=sec.get_float("scale_x_y", 1.0),
                    new_coords=bool(sec.get_int("new_coords", 0)),
                )
            )
            self.head_layers.append(idx)
            return nn.Identity(), in_ch
        raise ModelFormatError(f"{where}: unsupported layer type [{kind}]")

    @property
    def num_classes(self) -> int:
        return self.heads[0].classes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.run(x, [], 0, len(self.layers))
        return [outputs[i] for i in self.head_layers]

    def run(
        self, x: torch.Tensor, outputs: list[torch.Tensor | None], start: int, end: int, keep_all: bool = False
    ) -> list[torch.Tensor | None]:
        """Layers ``start`` to ``end`` (exclusive) on ``x``, the output of layer ``start - 1`` (or the input),
        ``outputs`` holding the earlier layers' (appended to). Only the outputs a later layer reads are kept,
        unless ``keep_all`` (a prefix that another network's tail continues from)."""
        for i in range(start, end):
            layer = self.layers[i]
            if isinstance(layer, Route):
                x = layer(outputs)
            elif isinstance(layer, Shortcut):
                x = layer(x, outputs)
            else:
                x = layer(x)
            outputs.append(x if keep_all or self._keep[i] else None)
        return outputs

    def with_input_size(self, width: int, height: int) -> DarknetNet:
        """This network (fully convolutional) for another input size: a new module, the same weights."""
        sections = copy.deepcopy(self.sections)
        sections[0].options["width"], sections[0].options["height"] = str(width), str(height)
        out = DarknetNet(sections)
        out.load_state_dict(self.state_dict())
        return out.train(self.training)

    def fuse(self) -> DarknetNet:
        """Fold every batch norm into its convolution, for inference."""
        for layer in self.layers:
            if isinstance(layer, ConvBlock):
                layer.fuse()
        return self
