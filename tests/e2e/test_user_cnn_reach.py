"""Issue 21's user CNN, every layer it names in one model: 48x48 inputs, Dropout, MaxPool2d, Hardswish, a
squeeze-and-excite block (global pool, 1x1 convs, Hardsigmoid gate, x * gate), torch.cat of two branches, a
residual add and 3 classes. Through the Python API it compiles for host, c-host, rpi4 (qemu-aarch64),
cortex-m4 (qemu-system-arm) and intel-cpu (OpenVINO) and benches PASS; the integer executors are bit-exact with
the numpy reference."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.plan.plan import Plan
from tests.e2e.test_user_model import net_from_source

NET_SOURCE = '''
import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class ReachNet(nn.Module):
    """stem conv, MaxPool, two branches joined by torch.cat, Hardswish, squeeze-and-excite, a residual add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.left = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(16, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.se = SqueezeExcite(16, 8)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.left(x), self.right(x)], 1)
        return self.head(x + self.se(self.mix(y)))
'''
RES, CLASSES = 48, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((64, 3, RES, RES), dtype=np.float32), np.arange(16) % CLASSES


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "rpi4", "cortex-m4", "intel-cpu"])
def test_the_issue_21_user_cnn_compiles_and_benches_pass(target, data, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    images, labels = data
    net = net_from_source(NET_SOURCE, "ReachNet")
    out = edgepack.compile(net, target, calibration=images[:48], eval_data=(images[48:], labels),
                           output=str(tmp_path / target))
    kinds = {layer.kind for layer in Plan.load(out).layers}
    assert {"maxpool", "concat", "lut", "mul", "add"} <= kinds, kinds
    report = edgepack.bench(out, count=2, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    exact = [c["name"] for c in report["checks"] if "bit-exact" in c["name"]]
    assert bool(exact) == (target in ("c-host", "rpi4", "cortex-m4")), report["checks"]
