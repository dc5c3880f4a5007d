"""The int8 nearest-neighbour resize (edgepack.ops.resize, TFLite's RESIZE_NEAREST_NEIGHBOR): the index maps against
TFLite's GetNearestNeighbor written out loop for loop in float32, the reference against a brute-force copy, x2 as
PyTorch's nn.Upsample(scale_factor=2, mode="nearest"), the problems a plan with one is refused for, and its typed
flags through plan.json / plan.npz (plan format v4 "params")."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.ops.resize import ResizeParams, integer_scale, source_indices
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams

Q = QParams(0.05, -7)


def get_nearest_neighbor(y: int, in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> int:
    """reference_ops::GetNearestNeighbor, statement for statement, each float operation rounded to float32."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(f32(in_size - 1) / f32(out_size - 1))
    else:
        scale = f32(f32(in_size) / f32(out_size))
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    v = f32(f32(f32(y) + offset) * scale)
    value = int(np.floor(float(v) + 0.5)) if align_corners else int(np.floor(v))  # TfLiteRound of v >= 0
    value = min(value, in_size - 1)
    return max(0, value) if half_pixel_centers else value


def resize(in_shape, out_hw, align=False, half=False, q=Q, out_q=None, act=(-128, 127)) -> Layer:
    return Layer("resize", "resize_nearest", in_shape, (in_shape[0], *out_hw), q, out_q or q, act[0], act[1],
                 params=ResizeParams(align, half))


FLAGS = [(False, False), (True, False), (False, True)]
SIZES = [(1, 1), (1, 5), (3, 6), (4, 7), (5, 9), (6, 4), (7, 3), (13, 40), (40, 13), (10, 30), (3, 1)]


@pytest.mark.parametrize("align,half", FLAGS)
def test_the_index_maps_are_tflite_get_nearest_neighbor_in_float32(align, half):
    for in_size, out_size in SIZES:
        want = [get_nearest_neighbor(y, in_size, out_size, align, half) for y in range(out_size)]
        assert source_indices(in_size, out_size, align, half).tolist() == want, (in_size, out_size)


def test_each_flag_changes_the_index_maps_on_a_non_integer_scale():
    plain = source_indices(5, 9, False, False).tolist()
    assert source_indices(5, 9, False, True).tolist() != plain
    assert source_indices(5, 9, True, False).tolist() != plain


@pytest.mark.parametrize("align,half", FLAGS)
def test_the_reference_is_a_copy_of_each_output_positions_nearest_input(align, half):
    rng = np.random.default_rng(3)
    layer = resize((3, 4, 5), (9, 7), align, half)
    x = rng.integers(-128, 128, (2, 3, 4, 5)).astype(np.int8)
    got = reference.kernel(layer, x)
    want = np.zeros((2, 3, 9, 7), np.int8)
    for y in range(9):
        for xx in range(7):
            want[:, :, y, xx] = x[:, :, get_nearest_neighbor(y, 4, 9, align, half), get_nearest_neighbor(xx, 5, 7, align, half)]
    assert got.dtype == np.int8 and np.array_equal(got, want)


@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_an_integer_scale_is_pytorch_upsample_nearest(scale):
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    x = np.random.default_rng(5).integers(-128, 128, (2, 3, 5, 4)).astype(np.int8)
    layer = resize((3, 5, 4), (5 * sh, 4 * sw))
    torch_out = nn.Upsample(scale_factor=(float(sh), float(sw)), mode="nearest")(torch.from_numpy(x).float())
    assert integer_scale(layer) == (sh, sw)
    assert np.array_equal(reference.kernel(layer, x), torch_out.numpy().astype(np.int8))


def _plan(layer: Layer) -> Plan:
    return Plan(layer.input_q, tuple(layer.input_shape), [layer])


REFUSALS = [
    (resize((3, 4, 4), (8, 8), out_q=QParams(0.1, -7)), "must keep its input's scale and zero point"),
    (resize((3, 4, 4), (8, 8), act=(0, 127)), "with no clamp"),
    (resize((3, 4, 4), (8, 8), True, True), "both set"),
    (Layer("resize", "resize_nearest", (3, 4, 4), (4, 8, 8), Q, Q, params=ResizeParams()), "must keep the 3 channels"),
    (Layer("resize", "resize_nearest", (3, 4, 4), (3, 0, 8), Q, Q, params=ResizeParams()), "positive"),
    (Layer("resize", "resize_nearest", (48,), (3, 8, 8), Q, Q, params=ResizeParams()), "reads a (C, H, W) map"),
    (Layer("resize", "resize_nearest", (3, 4, 4), (3, 8, 8), Q, Q, params=ResizeParams(1, 0)), "as true/false"),
    (Layer("resize", "resize_nearest", (3, 4, 4), (3, 8, 8), Q, Q, params=ResizeParams(),
           arrays={"rows": np.zeros(8, np.int32)}), "has no arrays"),
]


@pytest.mark.parametrize("layer,why", REFUSALS, ids=[why for _, why in REFUSALS])
def test_a_resize_outside_tflites_int8_op_is_refused(layer, why):
    problems = [p for p in _plan(layer).problems() if "resize" in p]
    assert problems and why in problems[0], problems


def test_the_flags_survive_plan_json_and_npz(tmp_path):
    from edgepack.ops.fc import FcParams

    layers = [resize((3, 4, 4), (9, 9), False, True),
              Layer("pool", "avgpool", (3, 9, 9), (3, 1, 1), Q, Q),
              Layer("fc", "fc", (3, 1, 1), (2,), Q, QParams(0.1, 0), params=FcParams("single"),
                    arrays={"weight": np.ones((2, 3), np.int8), "bias": np.zeros(2, np.int32),
                            "multiplier": np.full(2, 1 << 30, np.int32), "shift": np.zeros(2, np.int32),
                            "weight_scale": np.full(2, 0.01, np.float32)})]
    layers[1].inputs = ()
    plan = Plan(Q, (3, 4, 4), layers)
    assert plan.problems() == []
    plan.save(tmp_path)
    loaded = Plan.load(tmp_path)
    assert loaded.layers[0].params == ResizeParams(False, True)
    x = np.random.default_rng(0).integers(-128, 128, (4, 3, 4, 4)).astype(np.int8)
    assert np.array_equal(reference.run(loaded, x), reference.run(plan, x))


class _Up(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.conv, self.up = nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2, mode=mode)

    def forward(self, x):
        return self.up(self.conv(x))


def test_the_pytorch_graph_check_takes_a_nearest_upsample_and_refuses_bilinear_naming_the_supported_layers():
    from edgepack.quantize.layers import SUPPORTED_LAYERS
    from edgepack.quantize.ptq import export
    from edgepack.quantize.quantizer import check_graph_ops
    from edgepack.errors import UnsupportedModelError

    example = torch.zeros(1, 3, 8, 8)
    check_graph_ops(export(_Up("nearest").eval(), example).module())
    assert "Upsample (nearest, integer scale)" in SUPPORTED_LAYERS and "+ (residual add)" in SUPPORTED_LAYERS
    with pytest.raises(UnsupportedModelError, match=r"upsample_bilinear2d.*Upsample \(nearest, integer scale\)"):
        check_graph_ops(export(_Up("bilinear").eval(), example).module())


def test_the_tflite_export_reads_back_as_the_same_resizes_and_another_output_quantization_is_refused(tmp_path):
    import dataclasses

    from edgepack.errors import ConfigError
    from edgepack.interop.tflite_export import plan_to_tflite
    from edgepack.interop.tflite_import import read_tflite
    from tests.conformance.plans import RESIZE_CASES, resize_case

    plan, _ = resize_case(next(iter(RESIZE_CASES)))
    path = tmp_path / "resize.tflite"
    path.write_bytes(plan_to_tflite(plan))
    imported = read_tflite(path).plan
    assert [(l.kind, l.input_shape, l.output_shape, l.params) for l in imported.layers if l.kind == "resize_nearest"] \
        == [(l.kind, l.input_shape, l.output_shape, l.params) for l in plan.layers if l.kind == "resize_nearest"]
    resize = plan.layers[1]
    other = QParams(resize.output_q.scale * 2, resize.output_q.zero_point)
    layers = [plan.layers[0], dataclasses.replace(resize, output_q=other),
              dataclasses.replace(plan.layers[2], input_q=other), *plan.layers[3:]]
    path.write_bytes(plan_to_tflite(dataclasses.replace(plan, layers=layers)))
    with pytest.raises(ConfigError, match=r"op 1 \(RESIZE_NEAREST_NEIGHBOR\) changes the quantization: .*copies values"):
        read_tflite(path)
