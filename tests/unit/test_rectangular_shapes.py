"""Rectangular kernels, unequal strides and non-square maps (a keyword-spotting 49x10 spectrogram with a 10x4
first conv, a 1-D signal's 1x3 convs at strides (1, 2)) and depth multipliers: the numpy reference against
torch's conv2d and a loop-for-loop max pool, the plan format's [sh, sw] / [kh, kw] (square layers keep one int, so earlier plans
stay byte-identical), the refusals, and which C kernel set runs such a layer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgepack.backends.c.codegen import generate, layer_kernel
from edgepack.backends.c.memplan import plan_memory
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from tests.conformance.plans import SHAPE_CASES, conv_layer, shapes_case

Q = QParams(0.03, -7)


@pytest.mark.parametrize("kind,k,stride,pads", [("conv", (10, 4), (2, 2), (4, 1, 5, 1)), ("conv", (1, 3), (1, 2), (0, 0, 0, 1)),
                                                ("depthwise", (3, 1), (1, 2), (1, 0, 1, 0)), ("depthwise", (2, 5), (3, 1), (0, 2, 1, 2))])
def test_rectangular_conv_reference_equals_torch_on_integers(kind, k, stride, pads):
    rng = np.random.default_rng(sum(k) + sum(stride))
    layer = conv_layer(rng, "l", kind, Q, (4, 13, 10), 6, k, stride, pads)
    x = rng.integers(-128, 128, (3, 4, 13, 10)).astype(np.int8)
    top, left, bottom, right = pads
    centred = F.pad(torch.from_numpy(x.astype(np.float64) - Q.zero_point), (left, right, top, bottom))
    acc = F.conv2d(centred, torch.from_numpy(layer.weight.astype(np.float64)), stride=stride,
                   groups=4 if kind == "depthwise" else 1)
    acc = acc.numpy().round().astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1)
    assert acc.shape[1:] == layer.output_shape
    np.testing.assert_array_equal(reference.kernel(layer, x), reference.requantize(acc, layer))


def test_depthwise_with_a_depth_multiplier_equals_torch_grouped_conv():
    """TFLite's DEPTHWISE_CONV_2D with depth multiplier m: output o reads input o // m, as torch's groups=C."""
    rng = np.random.default_rng(8)
    layer = conv_layer(rng, "l", "depthwise", Q, (3, 9, 8), 0, 3, 2, (0, 0, 1, 1), multiplier=4)
    assert layer.output_shape == (12, 4, 4) and Plan(Q, (3, 9, 8), [layer]).problems() == []
    x = rng.integers(-128, 128, (2, 3, 9, 8)).astype(np.int8)
    centred = F.pad(torch.from_numpy(x.astype(np.float64) - Q.zero_point), (0, 1, 0, 1))
    acc = F.conv2d(centred, torch.from_numpy(layer.weight.astype(np.float64)), stride=2, groups=3)
    acc = acc.numpy().round().astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(reference.kernel(layer, x), reference.requantize(acc, layer))


def test_rectangular_max_pool_reference_is_the_max_of_each_clipped_window():
    rng = np.random.default_rng(5)
    (kh, kw), (sh, sw), (top, left, bottom, right) = (3, 2), (2, 1), (1, 0, 1, 1)
    c, h, w = 3, 9, 5
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    layer = Layer("p", "maxpool", (c, h, w), (c, oh, ow), Q, Q, stride=(sh, sw), pads=(top, left, bottom, right),
                  params=MaxPoolParams((kh, kw)))
    assert Plan(Q, (c, h, w), [layer]).problems() == []
    x = rng.integers(-128, 128, (2, c, h, w)).astype(np.int8)
    want = np.empty((2, c, oh, ow), np.int8)
    for y in range(oh):
        for xx in range(ow):
            rows = slice(max(0, y * sh - top), min(h, y * sh - top + kh))
            cols = slice(max(0, xx * sw - left), min(w, xx * sw - left + kw))
            want[:, :, y, xx] = x[:, :, rows, cols].max(axis=(2, 3))
    np.testing.assert_array_equal(reference.kernel(layer, x), want)


def test_plan_keeps_equal_strides_as_one_int_and_unequal_ones_as_pairs(tmp_path):
    plan, x = shapes_case(list(SHAPE_CASES)[0])
    plan.save(tmp_path)
    stored = {layer["name"]: layer for layer in json.loads((tmp_path / "plan.json").read_text())["layers"]}
    assert stored["conv0"]["stride"] == [2, 1] and stored["depthwise1"]["stride"] == [1, 2]
    assert stored["pointwise2"]["stride"] == 1 and stored["maxpool3"]["params"]["window"] == [3, 2]
    loaded = Plan.load(tmp_path)
    assert [(a.stride, a.params) for a in loaded.layers] == [(b.stride, b.params) for b in plan.layers]
    assert loaded.layers[0].strides == (2, 1) and loaded.layers[2].strides == (1, 1)
    np.testing.assert_array_equal(reference.run(loaded, x), reference.run(plan, x))


@pytest.mark.parametrize("stride,words", [
    ((0, 1), "stride (0, 1) is not a positive integer or two of them (H, W)"),
    ((1, 2, 3), "stride (1, 2, 3) is not a positive integer or two of them (H, W)"),
    ((1, 2), "output [7, 7] does not follow from input [13, 7], pads [2, 1, 2, 1], kernel 5x3 and stride (1, 2) "
             "(expected [13, 4])")])
def test_a_bad_stride_is_refused_naming_the_layer(stride, words):
    plan, _ = shapes_case(list(SHAPE_CASES)[0])  # its conv0 is 5x3 at (2, 1) on 13x7
    plan.layers[0].stride = stride
    assert f"conv0: {words}" in plan.problems()


def test_c_fast_set_runs_rectangular_convs_and_strided_pointwise_as_its_im2col_gemm():
    plan, _ = shapes_case(list(SHAPE_CASES)[1])  # conv 5x3/(2,1), depthwise 3x3/1 (a small plane), pointwise /(1,2)
    assert [layer_kernel(layer, "fast")[0] for layer in plan.layers[:3]] == [
        "ep_conv_gemm_fast", "ep_depthwise_small_fast", "ep_conv_gemm_fast"]
    source = generate(plan, "fast", plan_memory(plan, "fast"))["model.c"]
    assert ".kh = 5, .kw = 3, .sh = 2, .sw = 1," in source and ".kh = 1, .kw = 1, .sh = 1, .sw = 2," in source


def test_api_inputs_other_than_square_rgb_keep_their_own_shape():
    from edgepack.errors import DataError
    from edgepack.inputs import check_shape

    assert check_shape(np.zeros((4, 3, 32, 32), np.float32), "calibration", None) == 32
    assert check_shape(np.zeros((4, 1, 49, 10), np.float32), "calibration", None) == (1, 49, 10)
    assert check_shape(np.zeros((4, 3, 48, 32), np.float32), "eval_data", (3, 48, 32)) == (3, 48, 32)
    with pytest.raises(DataError, match=r"eval_data has 1x10x49 inputs but calibration has 1x49x10 inputs"):
        check_shape(np.zeros((4, 1, 10, 49), np.float32), "eval_data", (1, 49, 10), "calibration has 1x49x10 inputs")


def test_npz_of_a_non_square_model_is_taken_as_its_float_inputs(tmp_path):
    from edgepack.data import load_dataset
    from edgepack.errors import DataError

    rng = np.random.default_rng(0)
    images = rng.uniform(-3, 3, (5, 1, 49, 10)).astype(np.float32)
    np.savez(tmp_path / "kws.npz", images=images, labels=np.arange(5))
    data = load_dataset(tmp_path / "kws.npz", "eval", (1, 49, 10), classes=12)
    np.testing.assert_array_equal(data.images, images)  # no resize, no pixel mapping, one channel
    assert list(data.labels) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match=r"images have shape \(5, 1, 49, 10\), the model takes \(1, 10, 49\) inputs"):
        load_dataset(tmp_path / "kws.npz", "eval", (1, 10, 49), classes=12)


def test_the_cli_reads_a_non_square_models_input_shape_from_its_calibration_npz(tmp_path):
    from edgepack.data import npz_map_shape

    for name, shape, want in (("kws", (4, 1, 49, 10), (1, 49, 10)), ("rgb", (4, 3, 32, 32), None),
                              ("nhwc", (4, 32, 32, 3), None), ("wide", (4, 3, 24, 32), (3, 24, 32)), ("vectors", (4, 640), None)):
        np.savez(tmp_path / f"{name}.npz", images=np.zeros(shape, np.float32))
        assert npz_map_shape(tmp_path / f"{name}.npz") == want, name
