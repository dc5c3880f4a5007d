"""MobileNet v3 (Howard et al. 2019, arXiv 1905.02244), Table 1 (Large) and Table 2 (Small) as data.

Each bneck row is a V2 inverted residual with a chosen kernel (3 or 5), an explicit expansion width, an
optional squeeze-and-excite after the depthwise conv, and its own nonlinearity (ReLU or hard-swish). The
stem is a 3x3 stride-2 conv with hard-swish; the tail is a 1x1 conv to 6x the last block's width, global
pooling, then Linear -> hard-swish -> Dropout -> Linear classifier. Where the paper and torchvision differ,
this follows torchvision (so its published parameter counts are ours): every width, expansion and the
1280/1024 hidden layer scale with alpha and round with make_divisible(8); the squeeze width is
make_divisible(expansion / 4, 8); the last 1x1 conv of Small has no squeeze-and-excite; BatchNorm uses
eps 0.001 and momentum 0.01.
"""
from __future__ import annotations

import torch
from torch import nn

from edgepack.model.mobilenet import MobileNet
from edgepack.model.mobilenet_v2 import make_divisible
from edgepack.validate import check_alpha, check_classes, check_resolution

MAX_ALPHA = 1.0  # the paper's and torchvision's widest
STEM_CHANNELS, STEM_STRIDE = 16, 2
TAIL_EXPANSION = 6  # the last 1x1 conv: 6x the last block's output channels (960 Large, 576 Small)
DROPOUT = 0.2
BN_EPS, BN_MOMENTUM = 0.001, 0.01  # TF's BatchNorm settings, as torchvision's MobileNetV3 keeps them
RE, HS = "RE", "HS"  # the tables' NL column: ReLU or hard-swish
ACTIVATIONS = {RE: nn.ReLU, HS: nn.Hardswish}

# Table 1 (Large): kernel, expansion size, output channels, squeeze-and-excite, NL, stride.
LARGE = (
    (3, 16, 16, False, RE, 1),
    (3, 64, 24, False, RE, 2),
    (3, 72, 24, False, RE, 1),
    (5, 72, 40, True, RE, 2),
    (5, 120, 40, True, RE, 1),
    (5, 120, 40, True, RE, 1),
    (3, 240, 80, False, HS, 2),
    (3, 200, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 480, 112, True, HS, 1),
    (3, 672, 112, True, HS, 1),
    (5, 672, 160, True, HS, 2),
    (5, 960, 160, True, HS, 1),
    (5, 960, 160, True, HS, 1),
)
# Table 2 (Small), same columns.
SMALL = (
    (3, 16, 16, True, RE, 2),
    (3, 72, 24, False, RE, 2),
    (3, 88, 24, False, RE, 1),
    (5, 96, 40, True, HS, 2),
    (5, 240, 40, True, HS, 1),
    (5, 240, 40, True, HS, 1),
    (5, 120, 48, True, HS, 1),
    (5, 144, 48, True, HS, 1),
    (5, 288, 96, True, HS, 2),
    (5, 576, 96, True, HS, 1),
    (5, 576, 96, True, HS, 1),
)
HIDDEN = {"large": 1280, "small": 1024}  # the Linear between pooling and the classifier


class ConvBNActivation(nn.Sequential):
    """conv (full, depthwise or 1x1) -> BatchNorm -> the row's nonlinearity (none for a linear projection)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: str | None = None):
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        super().__init__(*layers, *([ACTIVATIONS[activation]()] if activation else []))


class SqueezeExcite(nn.Module):
    """Channel gate: global pool -> 1x1 conv down (ReLU) -> 1x1 conv up (hard-sigmoid) -> scale the input.
    Attribute names as torchvision's SqueezeExcitation, so its weights map one to one."""

    def __init__(self, channels: int):
        super().__init__()
        squeeze = make_divisible(channels // 4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class Bneck(nn.Module):
    """Expand (1x1, absent when the expansion equals the input) -> depthwise k x k -> squeeze-and-excite
    (optional) -> linear projection, plus the input when the block keeps resolution and width."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, se: bool, activation: str, stride: int):
        super().__init__()
        layers: list[nn.Module] = [] if expanded == in_ch else [ConvBNActivation(in_ch, expanded, 1, activation=activation)]
        layers.append(ConvBNActivation(expanded, expanded, kernel, stride, groups=expanded, activation=activation))
        layers += [SqueezeExcite(expanded)] if se else []
        layers.append(ConvBNActivation(expanded, out_ch, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class Head(nn.Sequential):
    """Linear -> hard-swish -> Dropout between the pooled features and the classifier (the paper's 1x1
    NBN conv on the pooled vector), initialised as MobileNet initialises its classifier."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__(nn.Linear(in_features, hidden), nn.Hardswish(), nn.Dropout(DROPOUT))
        nn.init.normal_(self[0].weight, 0, 0.01)
        nn.init.zeros_(self[0].bias)


class MobileNetV3(MobileNet):
    """MobileNet v3 of one of the tables (LARGE or SMALL) with width multiplier ``alpha`` and input ``resolution``."""

    def __init__(self, table: tuple, hidden: int, alpha: float, resolution: int, num_classes: int):
        super().__init__()
        self.alpha = check_alpha(alpha, MAX_ALPHA)
        self.resolution = check_resolution(resolution)
        self.num_classes = check_classes(num_classes)
        channels = make_divisible(STEM_CHANNELS * self.alpha)
        layers: list[nn.Module] = [ConvBNActivation(3, channels, 3, STEM_STRIDE, activation=HS)]
        for kernel, expanded, out, se, activation, stride in table:
            out = make_divisible(out * self.alpha)
            layers.append(Bneck(channels, kernel, make_divisible(expanded * self.alpha), out, se, activation, stride))
            channels = out
        layers.append(ConvBNActivation(channels, TAIL_EXPANSION * channels, 1, activation=HS))
        hidden = make_divisible(hidden * self.alpha)
        self.classify(layers, hidden)  # features, pool, flatten and the hidden -> classes classifier, initialised
        classifier = self.classifier
        del self.classifier  # registered again after the head: modules() in forward order, the classifier the last Linear
        self.head = Head(TAIL_EXPANSION * channels, hidden)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.flatten(self.pool(self.features(x)))))


class MobileNetV3Large(MobileNetV3):
    def __init__(self, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000):
        super().__init__(LARGE, HIDDEN["large"], alpha, resolution, num_classes)


class MobileNetV3Small(MobileNetV3):
    def __init__(self, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000):
        super().__init__(SMALL, HIDDEN["small"], alpha, resolution, num_classes)
