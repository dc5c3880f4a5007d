"""The int8 product (edgepack.ops.mul, TFLite's MUL): the reference against TFLite's reference_integer_ops::Mul /
BroadcastMul4DSlow written out value by value in Python integers, the multiplier prepared in float32 as
kernels/mul.cc does, the problems a plan with one is refused for, its typed params through plan.json, the
.tflite round trip (export MUL, import it back as the same layer) and the PyTorch table entry."""
from __future__ import annotations

import json
import operator

import numpy as np
import pytest
import torch

from edgepack.backends.c import codegen
from edgepack.errors import UnsupportedModelError
from edgepack.ops.add import AddParams
from edgepack.ops.arith import quantize_multiplier
from edgepack.ops.mul import MulParams, mul_requantization
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from edgepack.quantize.layers import SUPPORTED_LAYERS
from edgepack.quantize.ptq import export
from edgepack.quantize.quantizer import check_graph_ops
from tests.conformance.plans import MUL_CASES, mul_case

QA, QB, QO = QParams(0.05, -3), QParams(0.02, 10), QParams(0.03, 5)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def multiply_by_quantized_multiplier(x: int, m: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (gemmlowp's two roundings) on Python integers."""
    a, left, right = x * (1 << max(shift, 0)), max(shift, 0), max(-shift, 0)
    assert INT32_MIN <= a <= INT32_MAX and left <= 15
    ab = a * m
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    high = v // 2**31 if v >= 0 else -((-v) // 2**31)  # C division truncates toward zero
    mask = (1 << right) - 1
    return (high >> right) + ((high & mask) > (mask >> 1) + (high < 0))


def tflite_mul(a: np.ndarray, b: np.ndarray, qa: QParams, qb: QParams, qo: QParams, act: tuple[int, int]) -> np.ndarray:
    """BroadcastMul4DSlow value by value: each output index reads each operand at that index, a size-1 axis at 0."""
    (m,), (shift,) = mul_requantization(qa, qb, qo)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = np.zeros(shape, np.int8)
    for index in np.ndindex(*shape):
        ia = tuple(i if d > 1 else 0 for i, d in zip(index, a.shape))
        ib = tuple(i if d > 1 else 0 for i, d in zip(index, b.shape))
        product = (int(a[ia]) - qa.zero_point) * (int(b[ib]) - qb.zero_point)
        v = qo.zero_point + multiply_by_quantized_multiplier(product, int(m), int(shift))
        out[index] = min(act[1], max(act[0], v))
    return out


def mul(shape_a, shape_b, qa=QA, qb=QB, qo=QO, act=(-128, 127), out_shape=None, arrays=None, **kw) -> Layer:
    multiplier, shift = mul_requantization(qa, qb, qo)
    out_shape = out_shape or tuple(np.broadcast_shapes(shape_a, shape_b))
    return Layer("mul", "mul", shape_a, out_shape, qa, qo, act[0], act[1], inputs=(0, 1),
                 params=MulParams(qb, shape_b), arrays=arrays if arrays is not None else {"multiplier": multiplier,
                                                                                         "shift": shift}, **kw)


def _producers(shape_a, shape_b) -> list[Layer]:
    """Two layers that output ``shape_a`` and ``shape_b`` from a (C, H, W) plan input: global pools for a
    (C, 1, 1), a max pool of window 1 (a copy) otherwise."""
    from edgepack.ops.maxpool import MaxPoolParams

    def make(name, shape):
        if shape[1:] == (1, 1):
            return Layer(name, "avgpool", FULL, shape, QA if name == "a" else QB, QA if name == "a" else QB, inputs=(-1,))
        return Layer(name, "maxpool", FULL, shape, QA if name == "a" else QB, QA if name == "a" else QB, inputs=(-1,),
                     params=MaxPoolParams(1))
    return [make("a", shape_a), make("b", shape_b)]


FULL, GATE = (4, 3, 5), (4, 1, 1)


def plan_of(layer: Layer, qin: QParams = QA) -> Plan:
    return Plan(qin, FULL, _producers(tuple(layer.input_shape), tuple(layer.params.input2_shape)) + [layer])


@pytest.mark.parametrize("shape_a, shape_b", [(FULL, FULL), (FULL, GATE), (GATE, FULL), (GATE, GATE)])
@pytest.mark.parametrize("scales", [(QA, QB, QO), (QParams(0.5, 0), QParams(0.25, -128), QParams(0.01, -20))])
def test_reference_is_tflites_int8_mul_value_by_value(shape_a, shape_b, scales):
    """Equal shapes and a gate broadcast either way; a multiplier below 1 and one above (left shift 4)."""
    rng = np.random.default_rng(len(shape_a) + shape_b[1])
    a = rng.integers(-128, 128, (3, *shape_a)).astype(np.int8)
    b = rng.integers(-128, 128, (3, *shape_b)).astype(np.int8)
    for act in ((-128, 127), (5, 127), (5, 60)):  # none, a ReLU from the zero point, a ReLU6-like clamp
        layer = mul(shape_a, shape_b, *scales, act=act)
        assert plan_of(layer).problems() == []
        got = reference.kernel(layer, a, b)
        assert got.dtype == np.int8 and np.array_equal(got, tflite_mul(a, b, *scales, act))


def test_the_multiplier_is_prepared_from_float32_arithmetic_as_tflites_mul_prepare():
    """s_a * s_b / s_out is float arithmetic in kernels/mul.cc (the scales are float): in double it gives another
    multiplier for these scales (45 units of 2^-31 apart: an output differs only on a near-tie, so this pins the
    preparation rather than waiting for the conformance images to hit one)."""
    qa, qb, qo = QParams(0.06405920535326004, 0), QParams(0.027708884328603745, 0), QParams(0.005056378897279501, 0)
    multiplier, shift = mul_requantization(qa, qb, qo)
    assert (int(multiplier[0]), int(shift[0])) == (1507720448, -1)
    assert quantize_multiplier(qa.scale * qb.scale / qo.scale) == (1507720493, -1)


@pytest.mark.parametrize("layer, problem", [
    (mul(FULL, FULL, out_shape=(4, 3, 4)), "a mul of [[4, 3, 5], [4, 3, 5]] outputs [4, 3, 4]"),
    (mul(FULL, GATE, out_shape=GATE), "a mul of [[4, 3, 5], [4, 1, 1]] outputs [4, 1, 1]"),
    (mul(FULL, (1, 3, 5), out_shape=FULL), "it takes one shape, or a (C, 1, 1) gate and a (C, H, W) map"),
    (mul(FULL, FULL, arrays={}), "a mul needs int32 multiplier and shift arrays of 1"),
    (mul(FULL, FULL, arrays={"multiplier": np.array([1 << 30], np.int32), "shift": np.array([16], np.int32)}),
     "a mul's multiplier must be Q31 in [2^30, 2^31) with a shift in [-31, 15]"),
    (mul(FULL, FULL, arrays={"multiplier": np.array([5], np.int32), "shift": np.array([0], np.int32)}),
     "must be Q31 in [2^30, 2^31)"),
    (mul(FULL, FULL, arrays={"multiplier": np.array([1 << 30, 1 << 30], np.int32), "shift": np.zeros(2, np.int32)}),
     "arrays of 1"),
])
def test_a_plan_with_a_broken_mul_is_refused_naming_the_problem(layer, problem):
    found = [p for p in plan_of(layer).problems() if not p.startswith("b: ")]  # (1, 3, 5) is no max pool's output
    assert len(found) == 1 and found[0].startswith("mul: ") and problem in found[0], found


def test_a_mul_reading_what_its_params_do_not_declare_is_refused():
    layer = mul(FULL, GATE)
    plan = Plan(QA, FULL, _producers(FULL, FULL) + [layer])  # its second producer outputs the map, not a gate
    assert plan.problems() == ["mul: a mul declares inputs [[4, 3, 5], [4, 1, 1]] but reads [[4, 3, 5], [4, 3, 5]]"]


@pytest.mark.parametrize("inputs, problem", [((0,), "mul: a mul layer reads 2 input(s), not 1"),
                                             ((0, 1, 1), "mul: a mul layer reads 2 input(s), not 3")])
def test_a_mul_reads_exactly_two_tensors(inputs, problem):
    layer = mul(FULL, FULL)
    layer.inputs = inputs
    assert problem in plan_of(layer).problems()[0]


def test_a_mul_without_its_params_or_with_an_adds_is_refused():
    layer = mul(FULL, FULL)
    plan = plan_of(layer)
    layer.params = None
    assert plan.problems() == ["mul: a mul needs input2_q and input2_shape (its second input's quantization and shape)"]
    layer.params = AddParams(QB)
    assert plan.problems() == ["mul: params AddParams are not the mul op's (it takes MulParams)"]


def test_the_second_inputs_quantization_and_shape_are_saved_as_params_and_loaded_typed(tmp_path):
    plan = plan_of(mul(GATE, FULL, act=(5, 127)))
    plan.save(tmp_path)
    saved = json.loads((tmp_path / "plan.json").read_text())["layers"][2]
    assert saved["params"] == {"input2_q": {"scale": QB.scale, "zero_point": QB.zero_point}, "input2_shape": [4, 3, 5]}
    loaded = Plan.load(tmp_path)
    assert loaded.layers[2].params == MulParams(QB, FULL) and loaded.layers[2].meta() == plan.layers[2].meta()
    x = np.random.default_rng(5).integers(-128, 128, (4, *FULL)).astype(np.int8)
    assert np.array_equal(reference.run(loaded, x), reference.run(plan, x))


def test_the_c_generator_refuses_a_shift_the_kernel_cannot_take_exactly():
    layer = mul(FULL, FULL, arrays={"multiplier": np.array([1 << 30], np.int32), "shift": np.array([16], np.int32)})
    with pytest.raises(UnsupportedModelError, match=r"layer 2 'mul' \(mul\) cannot be lowered to C: a mul's shift is "
                                                    r"above 15"):
        codegen.check_supported(plan_of(layer))


@pytest.mark.parametrize("name", MUL_CASES)
def test_a_mul_exported_to_tflite_is_imported_back_as_the_same_layer(name, tmp_path):
    """MUL (with its fused ReLU and a broadcast gate either way) round-trips: the imported layer reads the same
    tensors with the same quantization, shapes, clamp and multiplier."""
    from edgepack.interop.tflite_export import write_tflite
    from edgepack.interop.tflite_import import read_tflite

    plan, _ = mul_case(name)
    imported = read_tflite(write_tflite(plan, tmp_path / "m.tflite")).plan
    pairs = [(a, b) for a, b in zip(plan.layers, imported.layers) if a.kind == "mul"]
    assert len(pairs) == 2 and [b.kind for b in imported.layers].count("mul") == 2
    for a, b in pairs:
        assert (b.input_shape, b.output_shape, b.params, b.input_q, b.output_q, b.act_min, b.act_max) == \
               (a.input_shape, a.output_shape, a.params, a.input_q, a.output_q, a.act_min, a.act_max)
        assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in ("multiplier", "shift"))


# ---- the PyTorch front end: `*`, torch.mul and operator.mul of two tensors are in the one table ----

class _Gated(torch.nn.Module):
    PRODUCTS = {"*": lambda x, gate: x * gate, "torch.mul": lambda x, gate: torch.mul(gate, x),
                "operator.mul": operator.mul}

    def __init__(self, how: str):
        super().__init__()
        self.conv, self.squeeze, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1), torch.nn.Linear(4, 2)
        self.how = how

    def forward(self, x):
        x = self.conv(x)
        x = self.PRODUCTS[self.how](x, self.squeeze(x.mean((2, 3), keepdim=True)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("how", ["*", "torch.mul", "operator.mul"])
def test_a_product_of_two_tensors_passes_the_graph_check(how):
    assert "* (multiply)" in SUPPORTED_LAYERS
    check_graph_ops(export(_Gated(how).eval(), torch.zeros(2, 3, 16, 16)).module())
