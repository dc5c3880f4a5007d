"""Issue 21, torch.cat in a user's own PyTorch CNN: a 24x24 net with an Inception-style block (a 1x1 branch and a
3x3 branch of one map, joined by torch.cat on the channels with that map itself) compiles through the Python API
for host (ONNX Runtime on the QDQ ONNX), c-host and x86-tvm (the generic Relax route: the hand-scheduled kernels
have no concat) and benches PASS, bit-exact with the numpy reference where the device computes in integers. The
plan's concat reads three tensors that share its quantization (the quantizer shares one observer among a cat's
inputs and output, as XNNPACKQuantizer does), so it is a copy, and the compile checked model.tflite
(CONCATENATION) bit-exact under LiteRT's reference kernels."""
from __future__ import annotations

import pytest

from edgepack.plan.plan import Plan
from tests.conformance.executors import host_has_vnni
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net

NET_SOURCE = '''
import torch
from torch import nn


class InceptionNet(nn.Module):
    """conv-BN-ReLU stem, then cat([1x1 conv-ReLU, 3x3 conv-ReLU, the stem's map], dim=1), MaxPool2d(2),
    conv-BN-ReLU, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.branch1 = nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(8, 10, 3, 1, 1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(24, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.branch1(x), self.branch3(x), x], dim=1))
'''
RES, CLASSES = 24, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "x86-tvm"])
def test_a_user_cnn_with_an_inception_block_joined_by_torch_cat_compiles_and_benches_pass(target, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    out, manifest = compile_user_net(NET_SOURCE, "InceptionNet", target, tmp_path, RES, CLASSES)
    plan = Plan.load(out)
    (cat,) = [layer for layer in plan.layers if layer.kind == "concat"]
    assert len(cat.inputs) == 3 and cat.output_shape == (24, 12, 12)
    assert all(q == cat.output_q for q in cat.inputs_q())
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    if target == "x86-tvm":
        # per-layer routes: the convs hand-scheduled where the CPU has AVX512-VNNI, this op generic beside them
        assert manifest["backend_info"]["kernels"] == ("vnni" if host_has_vnni() else "generic")
        routes = {route["route"] for route in manifest["backend_info"]["layer_routes"]}
        assert routes == ({"scheduled", "generic"} if host_has_vnni() else {"generic"})
    assert_bench_passes(out, target)
