"""MobileNet v1 (Howard et al. 2017, arXiv 1704.04861), Table 1 as data.

The body is a table of (depthwise stride, pointwise output channels) rows; every conv is
followed by BatchNorm and ReLU, down-sampling is by stride only, the classifier is global
average pooling then a fully connected layer with no nonlinearity.
"""
from __future__ import annotations

import torch
from torch import nn

from edgepack.validate import check_alpha, check_classes, check_resolution  # noqa: F401 (re-exported)

# Table 1: first layer is a full 3x3 conv, stride 2, 32 filters.
STEM_CHANNELS = 32
STEM_STRIDE = 2
# Then 13 depthwise separable blocks: (depthwise stride, pointwise output channels).
BODY = (
    (1, 64),
    (2, 128), (1, 128),
    (2, 256), (1, 256),
    (2, 512), (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),
)
MIN_CHANNELS = 8  # TF-slim's min_depth


def scaled_channels(channels: int, alpha: float) -> int:
    """Width multiplier as the reference (TF-slim) implementation rounds it: truncate, floor 8."""
    return max(int(channels * alpha), MIN_CHANNELS)


class ConvBNReLU(nn.Sequential):
    """conv (full or depthwise) -> BatchNorm -> ReLU, the unit every MobileNet layer is made of."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=False),
        )


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (one filter per input channel) then pointwise 1x1 that mixes channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__(
            ConvBNReLU(in_ch, in_ch, 3, stride, groups=in_ch),
            ConvBNReLU(in_ch, out_ch, 1, 1),
        )


class MobileNet(nn.Module):
    """What every MobileNet shares: a feature stack, global average pooling, a linear classifier, and the
    reference implementations' initialisation."""

    def classify(self, layers: list[nn.Module], channels: int) -> None:
        """Install ``layers`` as the features and a ``channels`` -> classes head, then initialise everything."""
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, 3, self.resolution, self.resolution)


class MobileNetV1(MobileNet):
    """MobileNet v1 with width multiplier ``alpha`` and input ``resolution`` (rho = resolution/224)."""

    def __init__(self, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000):
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.resolution = check_resolution(resolution)
        self.num_classes = check_classes(num_classes)
        channels = scaled_channels(STEM_CHANNELS, self.alpha)
        layers: list[nn.Module] = [ConvBNReLU(3, channels, 3, STEM_STRIDE)]
        for stride, out in BODY:
            out = scaled_channels(out, self.alpha)
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.classify(layers, channels)
