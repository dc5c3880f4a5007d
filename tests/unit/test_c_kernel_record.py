"""The C backend's record of which kernel runs each layer (backend_info kernel_choices / fast_layers, bench's device
line) and the RAM safety of the fast kernels' scratch: scratch buffers are arena buffers the budget check counts,
and a fast build over the RAM budget only because of them drops the peak layers' scratch and runs those layers
portable (memplan.fit_arena), recorded with the reason, instead of being refused. No compile here."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepack.backends.c import codegen
from edgepack.backends.c.lower import _fit_scratch, kernel_record
from edgepack.backends.c.memplan import fit_arena, plan_memory
from edgepack.backends.c.spec import BuildSpec
from edgepack.targets import get_target
from tests.conformance.plans import FAST_PATH_CASES, fast_path_case


@pytest.fixture(scope="module")
def plan():
    return fast_path_case(next(iter(FAST_PATH_CASES)))[0]


def _spec(kernels: str, ram_bytes: int | None) -> BuildSpec:
    spec = BuildSpec.from_target(get_target("cortex-m4"))
    return dataclasses.replace(spec, kernels=kernels, budget=dataclasses.replace(spec.budget, ram_bytes=ram_bytes))


def test_the_record_lists_every_layer_and_counts_the_fast_ones(plan):
    record = kernel_record(plan, "fast", plan_memory(plan, "fast"))
    rows = record["kernel_choices"]
    assert [r["layer"] for r in rows] == list(range(len(plan.layers)))
    fast = sum(r["kernel"].endswith("_fast") for r in rows)
    assert fast == len(plan.layers) - 1  # the average pool has no fast kernel
    assert record["fast_layers"] == f"{fast} of {len(plan.layers)} layers fast; portable (no fast kernel): avgpool"


def test_a_3x3_conv_over_512_planes_needs_41_kb_of_gemm_scratch():
    """The figure the RAM question starts from: ((K + 3) / 4) * 36 bytes with K = 512 * 3 * 3."""
    layer = type("L", (), {"arrays": {"weight": np.zeros((512, 512, 3, 3), np.int8)}})()
    assert codegen.gemm_fast(layer) == ("ep_conv_gemm_fast", 41_472)


def test_scratch_is_an_arena_buffer_so_the_measured_ram_counts_it(plan):
    memory = plan_memory(plan, "fast")
    scratch = {b.name: b.size for b in memory.buffers if b.name.startswith("s")}
    assert scratch == {f"s{r['layer']}": r["scratch_bytes"] for r in codegen.kernel_choices(plan) if r["scratch_bytes"]}
    assert memory.arena_bytes > plan_memory(plan, "portable").arena_bytes


def test_an_arena_within_the_limit_keeps_every_fast_kernel(plan):
    full = plan_memory(plan, "fast")
    fitted = fit_arena(plan, "fast", full.arena_bytes)
    assert fitted.portable_layers == {} and fitted.arena_bytes == full.arena_bytes


def test_scratch_over_the_limit_falls_back_to_portable_at_the_peak_with_the_reason(plan):
    full = plan_memory(plan, "fast")
    fitted = fit_arena(plan, "fast", full.arena_bytes - 1)
    assert fitted.arena_bytes < full.arena_bytes and len(fitted.portable_layers) == 1
    (i, why), = fitted.portable_layers.items()
    assert why.startswith("RAM budget:") and f"{full.arena_bytes:,} B" in why
    assert f"s{i}" not in {b.name for b in fitted.buffers}
    row = codegen.kernel_choices(plan, "fast", fitted.portable_layers)[i]
    assert row["fallback"] and row["scratch_bytes"] == 0 and row["reason"] == why
    assert row["kernel"] == codegen.C_LOWERINGS[row["kind"]].portable_kernel(plan.layers[i])
    assert f"{plan.layers[i].name} (RAM budget)" in kernel_record(plan, "fast", fitted)["fast_layers"]
    source = codegen.generate(plan, "fast", fitted)["model.c"]
    assert f"    {row['kernel']}(&edgepack_l{i}, " in source  # no scratch argument
    assert f"arena + {fitted.offset(f't{i}')});\n    EDGEPACK_LAYER_DONE({i});" in source
    assert fitted.to_json()["scratch_fallbacks"] == {str(i): why}


def test_a_limit_only_portable_meets_drops_scratch_until_the_portable_arena(plan):
    portable = plan_memory(plan, "portable").arena_bytes
    assert fit_arena(plan, "fast", portable).arena_bytes <= portable
    hopeless = fit_arena(plan, "fast", 0)  # stops once the peak holds no scratch, never loops
    assert hopeless.arena_bytes == portable and hopeless.portable_layers


def test_the_lowering_refits_only_a_fast_build_over_its_ram_budget(plan):
    memory = plan_memory(plan, "fast")
    step = {"ram": 100_000, "measured": {"flash": 1_000, "ram": 90_000}}
    assert _fit_scratch(_spec("portable", 99_000), plan, memory, step) is None
    assert _fit_scratch(_spec("fast", 100_000), plan, memory, step) is None
    assert _fit_scratch(_spec("fast", None), plan, memory, step) is None
    over = _fit_scratch(_spec("fast", 100_000 - 1), plan, memory, step)
    assert over is not None and over.portable_layers and over.arena_bytes <= memory.arena_bytes - 1
    assert _fit_scratch(_spec("fast", 100), plan, memory, step) is not None  # smaller, even if still over


def test_a_portable_build_says_its_kernel_set_chose_portable_not_that_no_fast_kernel_exists(plan):
    record = kernel_record(plan, "portable", plan_memory(plan, "portable"))
    assert record["fast_layers"] == ("0 of 8 layers fast; portable kernel set: conv x4, pointwise, add, fc; "
                                     "portable (no fast kernel): avgpool")
    assert not any(r["fallback"] for r in record["kernel_choices"])
