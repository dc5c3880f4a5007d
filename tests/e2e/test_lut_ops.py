"""Issue 21, nn.Hardswish, nn.Hardsigmoid and nn.LeakyReLU (module and F.leaky_relu) in a user's own PyTorch CNN:
each becomes a lut layer whose table is TFLite's int8 HARD_SWISH / LEAKY_RELU arithmetic for the observed input
and output quantization (the hard sigmoid's: rounded float, written to .tflite as a GATHER from the table); the
24x24 net compiles through the Python API for c-host and x86-tvm (the generic Relax route: the hand-scheduled
kernels have no lut) and benches PASS bit-exact with the numpy reference, and the compile itself checked
model.tflite bit-exact under LiteRT's reference kernels. A ReLU no layer fuses becomes a lut too."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.artifact import verify
from edgepack.ops.lut import lut_table
from edgepack.plan.plan import Plan
from tests.conformance.executors import host_has_vnni
from tests.e2e.test_user_model import net_from_source

NET_SOURCE = '''
import torch.nn.functional as F
from torch import nn


class SwishNet(nn.Module):
    """conv-BN-Hardswish, conv-BN-LeakyReLU(0.1), conv-BN-Hardswish, conv-BN-Hardsigmoid, F.leaky_relu(0.2),
    global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
                                      nn.Conv2d(8, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.1),
                                      nn.Conv2d(16, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
                                      nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.Hardsigmoid())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(F.leaky_relu(self.features(x), 0.2))
'''
RES, CLASSES = 24, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["c-host", "x86-tvm"])
def test_a_user_cnn_with_hardswish_hardsigmoid_and_leaky_relu_benches_pass_bit_exact(target, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    rng = np.random.default_rng(0)
    images = rng.random((64, 3, RES, RES), dtype=np.float32)
    out = edgepack.compile(net_from_source(NET_SOURCE, "SwishNet"), target, calibration=images[:48],
                           eval_data=(images[48:], np.arange(16) % CLASSES), output=str(tmp_path / target))
    manifest = verify(out)
    plan = Plan.load(out)
    luts = [layer for layer in plan.layers if layer.kind == "lut"]
    assert [(lut.params.function, lut.params.alpha) for lut in luts] == [
        ("hard_swish", None), ("leaky_relu", pytest.approx(0.1)), ("hard_swish", None), ("hardsigmoid", None),
        ("leaky_relu", pytest.approx(0.2))]
    assert all(lut.input_q != lut.output_q for lut in luts)  # observed apart, not shared
    assert all((lut.arrays["table"] == lut_table(lut.params, lut.input_q, lut.output_q)).all() for lut in luts)
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    if target == "x86-tvm":
        # per-layer routes: the convs hand-scheduled where the CPU has AVX512-VNNI, this op generic beside them
        assert manifest["backend_info"]["kernels"] == ("vnni" if host_has_vnni() else "generic")
        routes = {route["route"] for route in manifest["backend_info"]["layer_routes"]}
        assert routes == ({"scheduled", "generic"} if host_has_vnni() else {"generic"})
    report = edgepack.bench(out, count=3, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    exact = [c["name"] for c in report["checks"] if "bit-exact" in c["name"]]
    assert len(exact) == 2, report["checks"]


class StandaloneReLUs(nn.Module):
    """ReLU6 at the input, conv-ReLU (fused), conv-Hardswish then a ReLU no layer fuses, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.ReLU6(), nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1),
                                      nn.Hardswish(), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.slow
def test_a_relu_no_layer_fuses_becomes_a_lut_and_a_fused_one_stays_fused(tmp_path):
    """TFLite's RELU / RELU6 as separate ops: a ReLU6 at the input and a ReLU after a hard-swish are lut layers;
    the ReLU after a conv is still that conv's clamp. c-host benches PASS bit-exact."""
    torch.manual_seed(0)
    images = (np.random.default_rng(2).random((48, 3, 16, 16), dtype=np.float32) * 8 - 1).astype(np.float32)
    out = edgepack.compile(StandaloneReLUs().eval(), "c-host", calibration=images[:32],
                           eval_data=(images[32:], np.arange(16) % CLASSES), output=str(tmp_path / "c"))
    plan = Plan.load(out)
    assert [(layer.kind, layer.activation, layer.params.function if layer.kind == "lut" else None)
            for layer in plan.layers] == [("lut", "none", "relu6"), ("conv", "relu", None), ("conv", "none", None),
                                          ("lut", "none", "hard_swish"), ("lut", "none", "relu"),
                                          ("avgpool", "none", None), ("fc", "none", None)]
    assert verify(out)["tflite"]["reference_kernels"]["bit_exact"]
    report = edgepack.bench(out, count=2, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
