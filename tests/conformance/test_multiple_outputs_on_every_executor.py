"""Plans with several outputs (a detector's map head, an autoencoder's code read on by the next layer, the logits;
listed out of layer order) on every executor: each hands over every output flattened in the plan's (C, H, W)
order and concatenated in plan order (Plan.output_row_shape), bit-exact with the numpy reference, which is
itself bit-exact with the exported .tflite under LiteRT's reference kernels (BUILTIN_REF), every output compared.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.backends.c.memplan import plan_memory
from edgepack.plan import reference
from tests.conformance import executors
from tests.conformance.plans import MULTI_OUTPUT_CASES, multi_output_case

VNNI = pytest.mark.skipif(not executors.host_has_vnni(), reason="this CPU has no avx512_vnni")

EXECUTORS = [
    pytest.param(lambda plan, x, tmp: executors.run_tflite(plan, x), id="TFLite export under LiteRT BUILTIN_REF"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "fast", tmp), id="C fast"),
    pytest.param(lambda plan, x, tmp: executors.run_tvm_generic(plan, x), id="TVM generic", marks=pytest.mark.slow),
    pytest.param(lambda plan, x, tmp: executors.run_vnni(plan, x), id="TVM x86 VNNI", marks=[pytest.mark.slow, VNNI]),
    pytest.param(lambda plan, x, tmp: executors.run_neon(plan, x[:32], tmp), id="TVM AArch64 NEON under qemu",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", MULTI_OUTPUT_CASES)
@pytest.mark.parametrize("run", EXECUTORS)
def test_every_output_of_a_multi_output_plan_equals_the_reference_bit_for_bit(run, name, tmp_path):
    plan, x = multi_output_case(name)
    x = x[:32]
    want = executors.assert_bit_exact(run, plan, x, tmp_path)
    assert want.shape == (32, *plan.output_row_shape)


@pytest.mark.parametrize("name", MULTI_OUTPUT_CASES)
def test_the_multi_output_plans_decide_something_in_every_output(name):
    """Each output segment spreads over int8 (an executor that dropped, swapped or overwrote one would differ), and
    the concatenation is the outputs' own tensors in plan order, a map in (C, H, W) order."""
    plan, x = multi_output_case(name)
    joined, outputs = reference.run(plan, x, collect=True)
    for i, (a, b) in zip(plan.output_layers, plan.output_segments()):
        part = joined[:, a:b]
        assert np.array_equal(part, outputs[i].reshape(len(x), -1))
        assert len(np.unique(part)) >= 8 and np.isin(part, (-128, 127)).mean() < 0.5, f"{name}: output {i} is degenerate"


@pytest.mark.parametrize("kernels", ["portable", "fast"])
def test_the_c_memory_plan_keeps_no_output_in_the_arena(kernels):
    """Outputs live in the caller's output buffer (read there by later layers), so no arena tensor can overwrite one
    before the invoke returns; every other layer's tensor is in the arena."""
    plan, _ = multi_output_case(next(iter(MULTI_OUTPUT_CASES)))
    names = {b.name for b in plan_memory(plan, kernels).buffers if b.name.startswith("t")}
    assert names == {f"t{i}" for i in range(len(plan.layers)) if i not in plan.output_layers}
