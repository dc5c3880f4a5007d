"""Issue 21, padding layers in a user's own PyTorch CNN: nn.ZeroPad2d (unequal sides) on the input, nn.ConstantPad2d
between convs and F.pad(x, (l, r, t, b)) before a max pool become the plan's pad layers (TFLite's PAD for the zero
point, PADV2 for another constant), compile through the Python API for host (ONNX Runtime on the QDQ ONNX, where
the pad is ONNX's Pad) and c-host, and bench PASS (bit-exact with the numpy reference on c-host); the compile
itself checked model.tflite bit-exact under LiteRT's reference kernels. Reflect padding and channel padding are
refused naming the layer and the fix, before calibration (quantize.quantizer.check_graph_ops ->
layers.check_layer_geometry)."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.errors import UnsupportedModelError
from edgepack.plan.plan import Plan
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net, net_from_source

NET_SOURCE = '''
import torch.nn.functional as F
from torch import nn


class PaddedNet(nn.Module):
    """ZeroPad2d((1, 2, 0, 1)), conv 3x3/2 valid-BN-ReLU, ConstantPad2d(1, 0.5), conv 3x3-BN-ReLU,
    F.pad(x, (0, 1, 1, 0)), MaxPool2d(2), global pool, Linear."""

    def __init__(self, mode="constant", pad=(0, 1, 1, 0), features=16):
        super().__init__()
        self.mode, self.pad = mode, pad
        self.stem = nn.Sequential(nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(3, 8, 3, 2, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.body = nn.Sequential(nn.ConstantPad2d(1, 0.5), nn.Conv2d(8, 16, 3, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, 3))

    def forward(self, x):
        return self.head(F.pad(self.body(self.stem(x)), self.pad, mode=self.mode))


def reflected():
    return PaddedNet(mode="reflect")


def channel_padded():
    return PaddedNet(pad=(0, 0, 0, 0, 1, 1), features=18)
'''
RES, CLASSES = 20, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host"])
def test_a_user_cnn_with_pad_layers_compiles_and_benches_pass(target, tmp_path):
    out, manifest = compile_user_net(NET_SOURCE, "PaddedNet", target, tmp_path, RES, CLASSES)
    plan = Plan.load(out)
    pads = [layer for layer in plan.layers if layer.kind == "pad"]
    assert [p.pads for p in pads] == [(0, 1, 1, 2), (1, 1, 1, 1), (1, 0, 0, 1)]
    assert all(p.input_q == p.output_q for p in pads)
    zero_points = [p.params.value == p.output_q.zero_point for p in pads]
    assert zero_points == [True, False, True]  # ZeroPad2d and F.pad fill with 0.0, ConstantPad2d with 0.5
    assert plan.layers[0].kind == "pad" and plan.layers[0].output_shape == (3, RES + 1, RES + 3)
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    assert_bench_passes(out, target)


@pytest.mark.parametrize("name, refusal", [
    ("reflected", r"\(F.pad\): mode 'reflect', which the int8 pad does not support: use mode='constant'"),
    ("channel_padded", r"\(F.pad\): pads the channel or batch axis \(pad \[0, 0, 0, 0, 1, 1\]\), which the int8 pad "
                       r"does not support: pad height and width only"),
])
def test_a_pad_the_plan_cannot_express_is_refused_naming_it(name, refusal, tmp_path):
    images = np.random.default_rng(0).random((12, 3, RES, RES), dtype=np.float32)
    with pytest.raises(UnsupportedModelError, match=refusal):
        edgepack.compile(net_from_source(NET_SOURCE, name), "c-host", calibration=images[:8],
                         eval_data=(images[8:], np.arange(4) % CLASSES), output=str(tmp_path / "out"))
