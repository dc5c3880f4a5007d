"""Every op kind on every executor, bit-exact with the numpy reference (edgepack.plan.reference), on the
random plans of tests/conformance/plans.py; and every executor refuses an op kind it lacks by its name.

The ops are combined into few plans (each CASES plan holds every kind but the max pool, which MAXPOOL_CASES
hold with convs, a global pool and an fc; the cases differ in pool mode, fc rounding, pads, widths) rather
than one plan per op: a TVM build costs seconds per plan whatever its
size, so one plan per op and executor would multiply this tier's time by six for no more coverage (the
ops still meet each other's zero points, layouts and padded lanes, which single-op plans would not).
TVM builds are marked slow; the C builds (one gcc run each) and LiteRT run in the fast tier.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepack import ops
from edgepack.errors import UnsupportedModelError
from edgepack.plan import reference
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.ops.fc import FcParams
from tests.conformance import executors
from tests.conformance.plans import CASES, MAXPOOL_CASES, case, maxpool_case, plan_with_unknown_op
from tests.conformance.plans import LUT_CASES, lut_case
from tests.conformance.plans import CONCAT_CASES, concat_case
from tests.conformance.plans import MUL_CASES, mul_case
from tests.conformance.plans import SHAPE_CASES, shapes_case
from tests.conformance.plans import PAD_CASES, pad_case
from tests.conformance.test_softmax_on_every_executor import CASES as SOFTMAX_CASES
from tests.conformance.test_softmax_on_every_executor import case as softmax_case
from edgepack.ops.pad import PadParams
from tests.conformance.plans import RESIZE_CASES, resize_case

VNNI = pytest.mark.skipif(not executors.host_has_vnni(), reason="this CPU has no avx512_vnni")

EXECUTORS = [
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "fast", tmp), id="C fast"),
    pytest.param(lambda plan, x, tmp: executors.run_tflite(plan, x), id="TFLite export under LiteRT"),
    pytest.param(lambda plan, x, tmp: executors.run_tvm_generic(plan, x), id="TVM generic", marks=pytest.mark.slow),
    pytest.param(lambda plan, x, tmp: executors.run_vnni(plan, x), id="TVM x86 VNNI", marks=[pytest.mark.slow, VNNI]),
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("run", EXECUTORS)
def test_executor_output_equals_the_reference_bit_for_bit(run, name, tmp_path):
    plan, x = case(name)
    executors.assert_bit_exact(run, plan, x, tmp_path)


MAXPOOL_EXECUTORS = [p for p in EXECUTORS if p.id != "TVM x86 VNNI"]  # the hand-scheduled sets have no max pool


# The newer ops' plans (one table each); the hand-scheduled sets have none of these ops
NEW_OP_CASES = [(make, name) for make, table in ((maxpool_case, MAXPOOL_CASES), (concat_case, CONCAT_CASES),
                                                  (lut_case, LUT_CASES), (mul_case, MUL_CASES), (shapes_case, SHAPE_CASES),
                                                  (pad_case, PAD_CASES))
                for name in table]
NEW_OP_CASES += [(resize_case, name) for name in RESIZE_CASES]  # nearest-neighbour resizes


@pytest.mark.parametrize("make,name", NEW_OP_CASES, ids=[name for _, name in NEW_OP_CASES])
@pytest.mark.parametrize("run", MAXPOOL_EXECUTORS)
def test_executor_output_of_the_newer_ops_equals_the_reference_bit_for_bit(run, make, name, tmp_path):
    plan, x = make(name)
    executors.assert_bit_exact(run, plan, x, tmp_path)


@pytest.mark.slow
@VNNI
def test_the_vnni_kernels_run_rectangular_convs_and_unequal_strides_bit_for_bit():
    """The second SHAPE_CASES plan (conv 5x3 at (2, 1), a pointwise at (1, 2)) on the hand-scheduled x86 set."""
    plan, x = shapes_case(list(SHAPE_CASES)[1])
    want = reference.run(plan, x)
    assert np.array_equal(np.asarray(executors.run_vnni(plan, x)).reshape(want.shape), want)


# Plans mixing layers the hand-scheduled sets take (convs, pointwise, square depthwise, global pool, fc) with
# layers they run through their generic lowering in the same module (max pool, concat, lut, mul, rectangular
# or depth-multiplied depthwise)
MIXED_CASES = [(make, name) for make, table in ((maxpool_case, MAXPOOL_CASES), (concat_case, CONCAT_CASES),
                                                (lut_case, LUT_CASES), (mul_case, MUL_CASES), (shapes_case, SHAPE_CASES),
                                                (pad_case, PAD_CASES))
               for name in table]
MIXED_CASES += [(resize_case, name) for name in RESIZE_CASES]  # nearest-neighbour resizes
HAND_SCHEDULED = [
    pytest.param(lambda plan, x, tmp: executors.run_vnni(plan, x), id="TVM x86 VNNI", marks=VNNI),
    pytest.param(lambda plan, x, tmp: executors.run_neon(plan, x, tmp), id="TVM AArch64 NEON under qemu"),
]


@pytest.mark.slow
@pytest.mark.parametrize("make,name", MIXED_CASES, ids=[name for _, name in MIXED_CASES])
@pytest.mark.parametrize("run", HAND_SCHEDULED)
def test_hand_scheduled_sets_run_the_layers_they_lack_generic_in_one_module_bit_for_bit(run, make, name, tmp_path):
    """Per layer, not per plan: every conv and pointwise stays hand-scheduled next to the generic layers,
    and the outputs (through the layout conversions where the routes meet) equal the reference."""
    from edgepack.backends.tvm.scheduled import SCHEDULED, layer_routes

    plan, x = make(name)
    routes = layer_routes(plan)
    assert all(route == SCHEDULED for layer, route in zip(plan.layers, routes) if layer.kind in ("conv", "pointwise"))
    executors.assert_bit_exact(run, plan, x, tmp_path)


def test_the_hand_scheduled_tvm_sets_take_rectangular_convs_and_leave_a_rectangular_depthwise_to_generic(monkeypatch):
    """Their im2col convs take any kernel and strides; their depthwise kernels index one k x k window at one
    stride, so a 3x1 or depth-multiplied depthwise runs its generic lowering, the convs stay hand-scheduled."""
    from edgepack.backends.tvm.lower import int8_kernels
    from edgepack.backends.tvm.scheduled import chain_shaped, layer_routes
    from edgepack.targets import get_target

    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    rectangular_depthwise, rectangular_conv = (shapes_case(name)[0] for name in SHAPE_CASES)
    assert chain_shaped(rectangular_conv) and not chain_shaped(rectangular_depthwise)
    assert [(layer.kind, route) for layer, route in zip(rectangular_depthwise.layers, layer_routes(rectangular_depthwise))
            if layer.kind in ("conv", "depthwise")] == [("conv", "scheduled"), ("depthwise", "generic")]
    kernels = int8_kernels(get_target("x86-tvm"), rectangular_depthwise, executors._host_tvm_target())
    assert kernels == ("vnni" if executors.host_has_vnni() else "generic")
    executors.check_vnni(rectangular_depthwise)


def test_the_hand_scheduled_tvm_sets_run_a_concat_plan_with_its_concat_generic(monkeypatch):
    from edgepack.backends.tvm.lower import int8_kernels
    from edgepack.backends.tvm.scheduled import layer_routes
    from edgepack.targets import get_target

    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    plan, _ = concat_case(next(iter(CONCAT_CASES)))
    assert [route for layer, route in zip(plan.layers, layer_routes(plan)) if layer.kind == "concat"] == ["generic"]
    kernels = int8_kernels(get_target("x86-tvm"), plan, executors._host_tvm_target())
    assert kernels == ("vnni" if executors.host_has_vnni() else "generic")
    executors.check_vnni(plan)


def _concat_kinds() -> set[str]:
    """The kinds of the CONCAT_CASES plans, whose every layer output spreads over int8 too."""
    kinds = set()
    for name in CONCAT_CASES:
        plan, x = concat_case(name)
        for layer, out in zip(plan.layers, reference.run(plan, x, collect=True)[1]):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
        kinds |= {layer.kind for layer in plan.layers}
    return kinds


def _lut_kinds() -> set[str]:
    """The kinds of the LUT_CASES plans, whose every layer output spreads over int8 too, and which hold every
    function TFLite computes elementwise."""
    kinds, functions = set(), set()
    for name in LUT_CASES:
        plan, x = lut_case(name)
        for layer, out in zip(plan.layers, reference.run(plan, x, collect=True)[1]):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
            functions |= {layer.params.function} if layer.kind == "lut" else set()
        kinds |= {layer.kind for layer in plan.layers}
    assert functions == {"hard_swish", "logistic", "leaky_relu", "relu", "relu6", "relu_n1_to_1"}
    return kinds


def _mul_kinds() -> set[str]:
    """The kinds of the MUL_CASES plans, whose every layer output spreads over int8 too; between them a gate
    broadcast as the first and as the second operand, an elementwise product, and gates that differ per
    channel (a kernel broadcasting one channel's gate everywhere would give other outputs)."""
    kinds, forms = set(), set()
    for name in MUL_CASES:
        plan, x = mul_case(name)
        outputs = reference.run(plan, x, collect=True)[1]
        for i, (layer, out) in enumerate(zip(plan.layers, outputs)):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
            if layer.kind == "mul":
                shapes = [plan.tensor_shape(j) for j in plan.inputs_of(i)]
                forms.add("same" if shapes[0] == shapes[1] else "gate first" if shapes[0][1:] == (1, 1) else "gate second")
                gates = [outputs[j] for j, s in zip(plan.inputs_of(i), shapes) if s != layer.output_shape]
                assert all((g != g[:, :1]).any() for g in gates), f"{name}: {layer.name}'s gate is one value"
        kinds |= {layer.kind for layer in plan.layers}
    assert forms == {"same", "gate first", "gate second"}
    return kinds


def _resize_kinds() -> set[str]:
    """The kinds of the RESIZE_CASES plans, whose every layer output spreads over int8 too, and whose resizes'
    index formula decides something: each flag (half_pixel_centers, align_corners) set changes some output
    against TFLite's plain formula."""
    kinds, flags_decide = set(), []
    for name in RESIZE_CASES:
        plan, x = resize_case(name)
        _, outputs = reference.run(plan, x, collect=True)
        for i, (layer, out) in enumerate(zip(plan.layers, outputs)):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
            if layer.kind == "resize_nearest" and (layer.params.align_corners or layer.params.half_pixel_centers):
                plain = dataclasses.replace(layer, params=type(layer.params)())
                flags_decide.append(bool((reference.kernel(plain, outputs[i - 1]) != out).any()))
        kinds |= {layer.kind for layer in plan.layers}
    assert len(flags_decide) == 2 and all(flags_decide)
    return kinds


def _pad_kinds() -> set[str]:
    """The kinds of the PAD_CASES plans, whose every layer output spreads over int8 too, and whose pads each
    decide something: a PADV2 constant written as the zero point (PAD's) changes some logit."""
    kinds, constant_decides = set(), False
    for name in PAD_CASES:
        plan, x = pad_case(name)
        want, outputs = reference.run(plan, x, collect=True)
        for layer, out in zip(plan.layers, outputs):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
            if layer.kind == "pad" and layer.params.value != layer.output_q.zero_point:
                zero = dataclasses.replace(layer, params=PadParams(layer.output_q.zero_point))
                other = dataclasses.replace(plan, layers=[zero if each is layer else each for each in plan.layers])
                constant_decides |= bool((reference.run(other, x) != want).any())
        kinds |= {layer.kind for layer in plan.layers}
    assert constant_decides
    return kinds

def test_the_hand_scheduled_tvm_sets_run_a_max_pool_plan_with_its_max_pools_generic(monkeypatch):
    """No hand-scheduled max pool: the kernel sets run it through its generic lowering in their module, so
    "auto" int8 kernels still pick the set where the CPU has it (the manifest's "kernels" says which, and its
    "layer_routes" which layers ran generic)."""
    from edgepack.backends.tvm.lower import int8_kernels
    from edgepack.backends.tvm.scheduled import layer_routes, routes_summary
    from edgepack.targets import get_target

    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    plan, _ = maxpool_case(next(iter(MAXPOOL_CASES)))
    routes = layer_routes(plan)
    assert [route for layer, route in zip(plan.layers, routes) if layer.kind == "maxpool"] == ["generic", "generic"]
    assert routes_summary(routes) == "4 of 6 layers hand-scheduled"
    kernels = int8_kernels(get_target("x86-tvm"), plan, executors._host_tvm_target())
    assert kernels == ("vnni" if executors.host_has_vnni() else "generic")
    executors.check_vnni(plan)


def _with_last_layers(plan, pool: str | None = None, rounding: str | None = None):
    """The plan with its global pool's mode or its fc's rounding replaced."""
    *body, pool_layer, fc = plan.layers
    pool_layer = dataclasses.replace(pool_layer, params=AvgPoolParams(pool or pool_layer.params.pool))
    fc = dataclasses.replace(fc, params=FcParams(rounding or fc.params.rounding))
    return dataclasses.replace(plan, layers=[*body, pool_layer, fc])


def _softmax_kinds() -> set[str]:
    """The kinds of the softmax plans (run on every executor by test_softmax_on_every_executor.py); two are
    coarse on purpose (3 logits of scale 2 saturate; 1000 classes leave most probabilities at -128), the
    others spread over int8."""
    kinds, spreads = set(), []
    for name in SOFTMAX_CASES:
        plan, x = softmax_case(name)
        spreads.append(len(np.unique(reference.run(plan, x))))
        kinds |= {layer.kind for layer in plan.layers}
    assert sorted(spreads)[-2] >= 16, f"softmax outputs are degenerate: {spreads} distinct values"
    return kinds


def test_the_plans_hold_every_op_kind_pool_mode_and_rounding_and_each_changes_the_outputs():
    """What the bit-exact test proves depends on these plans: every registered op kind, the three global
    pool modes and both fc roundings, each decisive (an executor that rounded the other way or pooled the
    raw values as the plan's average would give other outputs), and layer outputs that are neither nearly
    constant nor mostly saturated."""
    kinds = (_max_pool_kinds() | _concat_kinds() | _lut_kinds() | _mul_kinds() | _resize_kinds() | _pad_kinds()
             | _softmax_kinds())
    pools, roundings = set(), set()
    for name in CASES:
        plan, x = case(name)
        want, outputs = reference.run(plan, x, collect=True)
        for layer, out in zip(plan.layers, outputs):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
        kinds |= {layer.kind for layer in plan.layers}
        pool, fc = plan.layers[-2], plan.layers[-1]
        pools.add(pool.params.pool)
        roundings.add(fc.params.rounding)
        other_rounding = reference.run(_with_last_layers(plan, rounding={"single": "double"}.get(fc.params.rounding, "single")), x)
        assert (other_rounding != want).any(), f"{name}: the fc's rounding decides no logit"
        if pool.params.pool == "raw_average":
            assert (reference.run(_with_last_layers(plan, pool="average"), x) != want).any(), f"{name}: raw = average"
    assert ops.kinds() and set(ops.kinds()) <= kinds
    assert pools == {"average", "mean", "raw_average"} and roundings == {"double", "single"}


def _max_pool_kinds() -> set[str]:
    """The kinds of the MAXPOOL_CASES plans, whose every layer output spreads over int8 too, and whose max
    pools each decide something: padding with the zero point (a conv's padding) or dropping the fused clamp
    changes some output of at least one plan."""
    kinds, pad_decides, clamp_decides = set(), False, False
    for name in MAXPOOL_CASES:
        plan, x = maxpool_case(name)
        want, outputs = reference.run(plan, x, collect=True)
        for i, (layer, out) in enumerate(zip(plan.layers, outputs)):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name} is degenerate"
            if layer.kind == "maxpool":
                before = outputs[i - 1] if i else x
                pad_decides |= bool((_zero_point_padded_max(layer, before) != out).any())
                unclamped = dataclasses.replace(layer, act_min=-128, act_max=127)
                clamp_decides |= bool((reference.kernel(unclamped, before) != out).any())
        kinds |= {layer.kind for layer in plan.layers}
    assert pad_decides and clamp_decides
    return kinds


def _zero_point_padded_max(layer, x: np.ndarray) -> np.ndarray:
    """The max pool as a conv pads (its zero point taking part in every border window): what it must not be."""
    top, left, bottom, right = layer.pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=layer.input_q.zero_point)
    c, h, w = padded.shape[1:]
    unpadded = dataclasses.replace(layer, input_shape=(c, h, w), pads=(0, 0, 0, 0))
    return reference.kernel(unpadded, padded)


CHECKS = [
    pytest.param(executors.check_c, "C", id="C code generation"),
    pytest.param(lambda plan: executors.plan_memory(plan, "fast"), "C", id="C memory plan"),
    pytest.param(executors.check_tflite, "TFLite export", id="TFLite export"),
    pytest.param(executors.check_tvm_generic, "TVM generic", id="TVM generic"),
    pytest.param(executors.check_vnni, "TVM hand-scheduled", id="TVM x86 VNNI"),
]


@pytest.mark.parametrize("check,executor", CHECKS)
def test_an_op_kind_an_executor_lacks_is_refused_by_name_before_any_work(check, executor):
    """A layer of kind "neg" (registered nowhere, built directly: no plan validation involved) is refused in
    one line naming the layer, the kind and the executor, before any code, memory plan or module is made."""
    plan = plan_with_unknown_op("neg")
    with pytest.raises(UnsupportedModelError) as refused:
        check(plan)
    message = str(refused.value)
    assert "layer 1 'neg1' is a 'neg' op" in message and executor in message and "\n" not in message
