"""Issue 21, nn.Upsample(scale_factor=2, mode="nearest") and F.interpolate(..., scale_factor=2, mode="nearest") in a
user's own PyTorch CNN (a small encoder-decoder: downsample by a stride-2 conv, upsample x2, add the skip): it
compiles through the Python API for c-host (the int8 plan's resize_nearest, bit-exact with the numpy reference)
and host (ONNX Runtime on the QDQ ONNX, where the upsample is an ONNX Resize between DequantizeLinear and
QuantizeLinear) and benches PASS. The quantizer shares each upsample's input quantization with its output (TFLite's
int8 RESIZE_NEAREST_NEIGHBOR is a copy), and compile checked model.tflite bit-exact under LiteRT's reference
kernels. A fractional scale factor is refused by layer name before
calibration (quantize.quantizer.check_graph_ops -> layers.check_layer_geometry)."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.errors import UnsupportedModelError
from edgepack.plan.plan import Plan
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net, net_from_source

NET_SOURCE = '''
import torch
import torch.nn.functional as F
from torch import nn


class UpsampleNet(nn.Module):
    """conv-BN-ReLU 16x16, conv/2-BN-ReLU 8x8, Upsample x2 + the skip, conv-ReLU, F.interpolate x2 of a stride-2
    conv's map, global pool, Linear."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.mix = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU())
        self.factor = factor
        self.head = nn.Sequential(nn.Conv2d(12, 16, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(16, 3))

    def forward(self, x):
        x = self.stem(x)
        x = self.up(self.down(x)) + x
        x = F.interpolate(self.mix(x), scale_factor=self.factor, mode="nearest")
        return self.head(x)


def fractional():
    return UpsampleNet(factor=1.5)
'''
RES, CLASSES = 16, 3


@pytest.mark.slow
@pytest.mark.parametrize("target", ["c-host", "host"])
def test_a_user_cnn_with_upsample_x2_compiles_and_benches_pass(target, tmp_path):
    out, manifest = compile_user_net(NET_SOURCE, "UpsampleNet", target, tmp_path, RES, CLASSES)
    plan = Plan.load(out)
    resizes = [layer for layer in plan.layers if layer.kind == "resize_nearest"]
    assert [(r.input_shape, r.output_shape) for r in resizes] == [((8, 8, 8), (8, 16, 16)), ((12, 8, 8), (12, 16, 16))]
    assert all(r.input_q == r.output_q for r in resizes)
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    assert_bench_passes(out, target)


def test_a_fractional_upsample_scale_is_refused_by_layer_name(tmp_path):
    images = np.random.default_rng(0).random((8, 3, RES, RES), dtype=np.float32)
    with pytest.raises(UnsupportedModelError, match=r"scale_factor \(1\.5, 1\.5\) is not an integer.*scale_factor=2"):
        edgepack.compile(net_from_source(NET_SOURCE, "fractional"), "c-host", calibration=images,
                         output=str(tmp_path / "out"))


@pytest.mark.slow
def test_keras3_upsampling2d_imports_as_the_resize_its_reshape_tile_chain_is(tmp_path):
    """Keras 3's UpSampling2D((2, 3)) is RESHAPE, TILE, RESHAPE, TILE, RESHAPE in the converter's file: the import
    reads the chain as a resize_nearest by (2, 3) whose output equals the chain's under LiteRT on 32 random inputs
    (its BUILTIN kernels, which register TILE v3: LiteRT 2.3's reference kernels, which compile checks whole models
    against, register the same TILE kernel up to v2 only and are given the file with that version lowered,
    edgepack.interop.litert; the optimized conv kernels round apart from the reference, so the chain is compared
    on the tensor LiteRT fed it)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgepack.interop.tflite_import import _Graph
    from edgepack.plan import reference
    from tests import converter_models

    path = converter_models.build(tmp_path, ["upsampling2d"])["upsampling2d"]
    graph = _Graph(path, path.read_bytes())
    plan = graph.to_plan()[0]
    assert plan.problems() == []
    (resize,) = [layer for layer in plan.layers if layer.kind == "resize_nearest"]
    assert (resize.input_shape, resize.output_shape) == ((8, 6, 6), (8, 12, 18)) and resize.input_q == resize.output_q
    first = int(resize.name.removeprefix("layer").split("_")[0])
    assert graph.op_names[first:first + 5] == ["RESHAPE", "TILE", "RESHAPE", "TILE", "RESHAPE"]
    chain_in, chain_out = graph.io(first)[0][0], graph.io(first + 4)[1][0]
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN, num_threads=1,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    x = np.random.default_rng(21).integers(-128, 128, (32, 1, 12, 12, 3), dtype=np.int8)
    for image in x:
        it.set_tensor(it.get_input_details()[0]["index"], image)
        it.invoke()
        fed, tiled = it.get_tensor(chain_in), it.get_tensor(chain_out)
        assert np.array_equal(reference.kernel(resize, fed.transpose(0, 3, 1, 2)), tiled.transpose(0, 3, 1, 2))
