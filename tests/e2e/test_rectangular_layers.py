"""A user's PyTorch CNN with rectangular kernels and unequal strides (nn.Conv2d(kernel_size=(3, 1),
stride=(2, 1)), a (1, 5) depthwise at stride (1, 2)) through the Python API: the PT2E front end keeps each
conv's (KH, KW) and (SH, SW) in the plan, and every integer executor runs it bit-exact with the reference."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_user_model import assert_bench_passes, compile_user_net

pytestmark = pytest.mark.slow

NET_SOURCE = '''
from torch import nn


class StripNet(nn.Module):
    """conv 3x1 at (2, 1), depthwise 1x5 at (1, 2), pointwise, global pool, Linear: strided along one axis."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, (3, 1), stride=(2, 1), padding=(1, 0), bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, (1, 5), stride=(1, 2), padding=(0, 2), groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.body(x))
'''
RES, CLASSES = 32, 3


@pytest.mark.parametrize("target", ["c-host", "cortex-m4", "rpi4", "x86-tvm"])
def test_rectangular_kernels_and_unequal_strides_compile_and_bench_bit_exact(target, tmp_path):
    out, _ = compile_user_net(NET_SOURCE, "StripNet", target, tmp_path, RES, CLASSES)
    layers = json.loads((Path(out) / "plan.json").read_text())["layers"]
    assert [(layer["kind"], layer["stride"], layer["pads"]) for layer in layers[:3]] == [
        ("conv", [2, 1], [1, 0, 1, 0]), ("depthwise", [1, 2], [0, 2, 0, 2]), ("pointwise", 1, [0, 0, 0, 0])]
    assert_bench_passes(out, target)
