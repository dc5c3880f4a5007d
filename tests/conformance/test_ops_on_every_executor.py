"""Every op kind on every executor, bit-exact with the numpy reference (edgepack.plan.reference), on the
random plans of tests/conformance/plans.py; and every executor refuses an op kind it lacks by its name.

The ops are combined into few plans (each CASES plan holds every kind; the cases differ in pool mode,
fc rounding, pads, widths) rather than one plan per op: a TVM build costs seconds per plan whatever its
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
from tests.conformance.plans import CASES, case, plan_with_unknown_op

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
    want = reference.run(plan, x)
    got = np.asarray(run(plan, x, tmp_path)).reshape(want.shape)
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} outputs differ"


def _with_last_layers(plan, pool: str | None = None, rounding: str | None = None):
    """The plan with its global pool's mode or its fc's rounding replaced."""
    *body, pool_layer, fc = plan.layers
    pool_layer = dataclasses.replace(pool_layer, params=AvgPoolParams(pool or pool_layer.params.pool))
    fc = dataclasses.replace(fc, params=FcParams(rounding or fc.params.rounding))
    return dataclasses.replace(plan, layers=[*body, pool_layer, fc])


def test_the_plans_hold_every_op_kind_pool_mode_and_rounding_and_each_changes_the_outputs():
    """What the bit-exact test proves depends on these plans: every registered op kind, the three global
    pool modes and both fc roundings, each decisive (an executor that rounded the other way or pooled the
    raw values as the plan's average would give other outputs), and layer outputs that are neither nearly
    constant nor mostly saturated."""
    kinds, pools, roundings = set(), set(), set()
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
