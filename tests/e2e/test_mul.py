"""Issue 21, `*` in a user's own PyTorch CNN: a 24x24 net with a squeeze-and-excite block (global pool ->
1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid as the gate -> map * gate, as MobileNetV3's), a second gate of a
ReLU6 (a clamp fused into its conv) multiplied first, and an elementwise product of two maps compiles through
the Python API for host (ONNX Runtime on the QDQ ONNX), c-host and x86-tvm (the generic Relax route: the
hand-scheduled kernels have no mul) and benches PASS, bit-exact with the numpy reference where the device
computes in integers; the compile itself checked model.tflite bit-exact under LiteRT's reference kernels (MUL
broadcasting a (1, 1, 1, C) gate)."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.plan import reference
from edgepack.plan.golden import load_golden
from edgepack.plan.plan import Plan
from tests.conformance.executors import host_has_vnni
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net

NET_SOURCE = '''
import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """x * gate(x): the gate is (C, 1, 1), from a global pool through two 1x1 convs."""

    def __init__(self, channels, squeezed):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeezed, 1), nn.ReLU(),
                                  nn.Conv2d(squeezed, channels, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.gate(x)


class ExcitedNet(nn.Module):
    """conv-BN-ReLU, SE, conv-BN-ReLU6, gate first (torch.mul(gate, x)), an elementwise product, pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.se = SqueezeExcite(16, 8)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 16, 1), nn.ReLU6())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
        for m in self.modules():  # unit-variance activations, so that the products are not all ~0
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, 0.0, 1.0)

    def forward(self, x):
        x = self.se(self.stem(x))
        y = self.body(x)
        y = torch.mul(self.gate(y), y)
        return self.head(y * x)
'''
RES, CLASSES = 24, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "x86-tvm"])
def test_a_user_cnn_with_squeeze_and_excite_compiles_and_benches_pass(target, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    out, manifest = compile_user_net(NET_SOURCE, "ExcitedNet", target, tmp_path, RES, CLASSES)
    plan = Plan.load(out)
    muls = [i for i, layer in enumerate(plan.layers) if layer.kind == "mul"]
    shapes = [[plan.tensor_shape(j) for j in plan.inputs_of(i)] for i in muls]
    assert shapes == [[(16, 12, 12), (16, 1, 1)], [(16, 1, 1), (16, 12, 12)], [(16, 12, 12)] * 2], shapes
    outputs = reference.run(plan, load_golden(out, plan)[0], collect=True)[1]
    assert all(len(np.unique(outputs[i])) >= 16 for i in muls)  # the products spread over int8, none is all ~0
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    if target == "x86-tvm":
        # per-layer routes: the convs hand-scheduled where the CPU has AVX512-VNNI, this op generic beside them
        assert manifest["backend_info"]["kernels"] == ("vnni" if host_has_vnni() else "generic")
        routes = {route["route"] for route in manifest["backend_info"]["layer_routes"]}
        assert routes == ({"scheduled", "generic"} if host_has_vnni() else {"generic"})
    assert_bench_passes(out, target)
