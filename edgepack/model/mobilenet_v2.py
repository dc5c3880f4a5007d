"""MobileNet v2 (Sandler et al. 2018, arXiv 1801.04381), Table 2 as data.

The body is a table of inverted residual bottlenecks (t, c, n, s): a 1x1 expansion by t (absent when
t = 1), a depthwise 3x3 with stride s on the first of the n repeats, then a linear 1x1 projection to c
channels; ReLU6 after the expansion and the depthwise conv, none after the projection. A block with
stride 1 and as many output as input channels adds its input back. Widths are rounded to a multiple
of 8 as the reference implementations (TF-slim, torchvision) do, and the last 1x1 conv keeps 1280
channels when alpha < 1.
"""
from __future__ import annotations

import torch
from torch import nn

from edgepack.model.mobilenet import MobileNet
from edgepack.validate import check_alpha, check_classes, check_resolution

MAX_ALPHA = 1.4  # the widest the paper lists
STEM_CHANNELS, STEM_STRIDE = 32, 2
# Table 2: expansion factor t, output channels c, repeats n, stride s of the first repeat.
BOTTLENECKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAST_CHANNELS = 1280
DIVISOR = 8


def make_divisible(value: float, divisor: int = DIVISOR) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% down:
    the reference implementations' rounding of scaled widths."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """conv (full, depthwise or 1x1) -> BatchNorm -> ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6) -> depthwise 3x3 (ReLU6) -> linear projection (1x1, no activation), plus the input
    when the block keeps resolution and width."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [ConvBNReLU6(in_ch, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(MobileNet):
    """MobileNet v2 with width multiplier ``alpha`` and input ``resolution``."""

    def __init__(self, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000):
        super().__init__()
        self.alpha = check_alpha(alpha, MAX_ALPHA)
        self.resolution = check_resolution(resolution)
        self.num_classes = check_classes(num_classes)
        channels = make_divisible(STEM_CHANNELS * self.alpha)
        layers: list[nn.Module] = [ConvBNReLU6(3, channels, 3, STEM_STRIDE)]
        for t, c, n, s in BOTTLENECKS:
            out = make_divisible(c * self.alpha)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        last = make_divisible(LAST_CHANNELS * max(1.0, self.alpha))
        layers.append(ConvBNReLU6(channels, last, 1))
        self.classify(layers, last)
