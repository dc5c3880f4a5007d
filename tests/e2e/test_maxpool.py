"""Issue 21, nn.MaxPool2d in a user's own PyTorch CNN: a 24x24 net with a ResNet-style MaxPool2d(3, 2, 1) after
its stem (PyTorch's pads on an even map: the .tflite writes them as a PADV2 of -128) and a MaxPool2d(2) then a
ReLU later (fused as the max pool's clamp) compiles through the Python API for host (ONNX Runtime on the QDQ
ONNX), c-host and x86-tvm (the generic Relax route: the hand-scheduled kernels have no max pool) and benches
PASS, bit-exact with the numpy reference where the device computes in integers; the compile itself checked
model.tflite bit-exact under LiteRT's reference kernels."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.plan.plan import Plan
from tests.conformance.executors import host_has_vnni
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net, net_from_source

NET_SOURCE = '''
from torch import nn


class PooledNet(nn.Module):
    """conv-BN-ReLU, MaxPool2d(3, 2, 1), conv-BN, MaxPool2d(2), ReLU, conv-BN-ReLU, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.MaxPool2d(2), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))
'''
RES, CLASSES = 24, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "x86-tvm"])
def test_a_user_cnn_with_max_pools_compiles_and_benches_pass(target, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    out, manifest = compile_user_net(NET_SOURCE, "PooledNet", target, tmp_path, RES, CLASSES)
    plan = Plan.load(out)
    pools = [layer for layer in plan.layers if layer.kind == "maxpool"]
    assert [(p.params.window, p.stride, p.pads, p.activation) for p in pools] == [(3, 2, (1,) * 4, "none"),
                                                                              (2, 2, (0,) * 4, "relu")]
    assert all(p.input_q == p.output_q for p in pools)
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    if target == "x86-tvm":
        # per-layer routes: the convs hand-scheduled where the CPU has AVX512-VNNI, this op generic beside them
        assert manifest["backend_info"]["kernels"] == ("vnni" if host_has_vnni() else "generic")
        routes = {route["route"] for route in manifest["backend_info"]["layer_routes"]}
        assert routes == ({"scheduled", "generic"} if host_has_vnni() else {"generic"})
    assert_bench_passes(out, target)


@pytest.mark.slow
def test_debug_pairs_each_max_pool_with_its_module(tmp_path):
    """`edgepack debug` matches plan layers to the model's module calls by kind: a max pool has its MaxPool2d
    (it said "does not match the artifact" before the table knew the kind)."""
    rng = np.random.default_rng(1)
    images = rng.random((40, 3, RES, RES), dtype=np.float32)
    net = net_from_source(NET_SOURCE, "PooledNet")
    out = edgepack.compile(net, "c-host", calibration=images[:32], eval_data=(images[32:], np.arange(8) % CLASSES),
                           output=str(tmp_path / "c"))
    d = edgepack.debug(out, model=net, calibration=images[:32], images=8)
    rows = [row for row in d["layers"] if row["kind"] == "maxpool"]
    assert len(rows) == 2 and all(row["isolated_sqnr_db"] > 20 for row in rows), rows
