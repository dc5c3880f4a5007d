"""Which C function the fast kernel set runs each layer with (codegen.kernel_choices), and that a choice is what
model.c calls and what the memory plan reserves scratch for: a layer of a kind the fast set has kernels for
that still runs the portable kernel is a fallback, and the shapes ResNet- and keyword-spotting-style models
hold (3x3 convs over more than 16 planes, rectangular convs, strided pointwise layers, adds, fcs) have none."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from edgepack.backends.c import codegen
from edgepack.backends.c.memplan import plan_memory
from edgepack.plan.plan import QParams
from tests.conformance import executors
from tests.conformance.plans import (CASES, FAST_PATH_CASES, SHAPE_CASES, case, conv_layer, fast_path_case,
                                     shapes_case)

FAST_KINDS = {"conv", "depthwise", "pointwise", "fc", "add"}


def _plans():
    return [case(n)[0] for n in CASES] + [fast_path_case(n)[0] for n in FAST_PATH_CASES] + \
        [shapes_case(list(SHAPE_CASES)[1])[0]]


def test_the_fast_set_has_kernels_for_every_conv_fc_and_add_kind():
    assert {kind for kind in FAST_KINDS if codegen.has_fast_kernel(kind)} == FAST_KINDS
    assert not codegen.has_fast_kernel("maxpool")


@pytest.mark.parametrize("plan", _plans(), ids=lambda p: "-".join(l.name for l in p.layers[:3]))
def test_no_layer_of_the_conformance_plans_falls_back_to_portable_in_fast_mode(plan):
    rows = codegen.kernel_choices(plan, "fast")
    assert [r["name"] for r in rows if r["fallback"]] == []
    assert all(r["kernel"].endswith("_fast") for r in rows if r["kind"] in FAST_KINDS)


def test_a_depthwise_with_depth_multiplier_2_is_reported_as_the_fallback_it_is():
    """The negative control: the 3x1 depthwise x2 of the first SHAPE_CASES plan runs ep_depthwise in fast mode."""
    plan = shapes_case(list(SHAPE_CASES)[0])[0]
    rows = codegen.kernel_choices(plan, "fast")
    assert [(r["kind"], r["kernel"]) for r in rows if r["fallback"]] == [("depthwise", "ep_depthwise")]


def test_the_portable_set_runs_portable_kernels_and_reports_no_fallback():
    plan = fast_path_case(next(iter(FAST_PATH_CASES)))[0]
    rows = codegen.kernel_choices(plan, "portable")
    assert not any(r["fallback"] or r["kernel"].endswith("_fast") or r["scratch_bytes"] for r in rows)


def _conv(in_c: int, k, stride, pads, kind: str = "conv"):
    q = QParams(0.02, 3)
    return conv_layer(np.random.default_rng(0), "c", kind, q, (in_c, 9, 9), 8, k, stride, pads)


@pytest.mark.parametrize("layer,kernel", [
    (_conv(7, 3, 1, (1,) * 4), "ep_conv_fast"),
    (_conv(8, 3, 1, (1,) * 4), "ep_conv_gemm_fast"),
    (_conv(3, 3, 2, (0, 0, 1, 1)), "ep_conv_gemm_fast"),
    (_conv(16, 3, 2, (0, 0, 1, 1)), "ep_conv_gemm_fast"),
    (_conv(17, 3, 1, (1,) * 4), "ep_conv_gemm_fast"),
    (_conv(64, 3, 2, (1,) * 4), "ep_conv_gemm_fast"),
    (_conv(1, (1, 3), 1, (0, 1, 0, 1)), "ep_conv_gemm_fast"),
    (_conv(3, 3, (2, 1), (1,) * 4), "ep_conv_gemm_fast"),
    (_conv(8, 1, 1, (0,) * 4, "pointwise"), "ep_pointwise_fast"),
    (_conv(8, 1, 2, (0,) * 4, "pointwise"), "ep_conv_gemm_fast"),
], ids=["3x3 7 planes", "3x3 8 planes", "3x3/2 3 planes", "3x3/2 16 planes", "3x3 17 planes", "3x3/2 64 planes", "1x3", "3x3/(2,1)",
        "pointwise", "pointwise/2"])
def test_each_conv_shape_gets_its_fast_kernel(layer, kernel):
    assert codegen.layer_kernel(layer, "fast")[0] == kernel


def test_model_c_calls_the_chosen_kernels_with_the_planned_scratch():
    """The choice is what is generated: model.c calls each layer's chosen function, with a scratch pointer when
    the choice has scratch, and the arena holds that scratch."""
    plan = fast_path_case(next(iter(FAST_PATH_CASES)))[0]
    memory = plan_memory(plan, "fast")
    source = codegen.generate(plan, "fast", memory)["model.c"]
    called = re.findall(r"^    (ep_\w+)\(&edgepack_l(\d+), (.*)\);$", source, re.M)
    rows = codegen.kernel_choices(plan, "fast")
    assert [(fn, int(i)) for fn, i, _ in called] == [(r["kernel"], r["layer"]) for r in rows]
    for (_, i, args), r in zip(called, rows):
        has_scratch = f"arena + {memory.offset(f's{i}')}" in args if r["scratch_bytes"] else False
        assert has_scratch == bool(r["scratch_bytes"])
        assert not r["scratch_bytes"] or next(b for b in memory.buffers if b.name == f"s{i}").size == r["scratch_bytes"]


def test_the_scratch_codegen_plans_is_what_the_kernels_h_macros_say(tmp_path):
    """gemm_fast and the fc's scratch against EP_CONV_GEMM_FAST_SCRATCH / EP_FC_FAST_SCRATCH, compiled."""
    ks = (1, 3, 4, 18, 27, 162, 576)
    program = tmp_path / "scratch.c"
    program.write_text('#include <stdio.h>\n#include "kernels.h"\nint main(void) {\n' + "".join(
        f'    printf("%d %d\\n", (int)EP_CONV_GEMM_FAST_SCRATCH({k}), (int)EP_FC_FAST_SCRATCH({k}));\n' for k in ks)
        + "    return 0;\n}\n")
    subprocess.run(["gcc", *executors.CFLAGS, f"-I{executors.RUNTIME}", str(program), "-o", str(tmp_path / "s")],
                   check=True)
    got = [tuple(map(int, line.split())) for line in
           subprocess.run([str(tmp_path / "s")], check=True, capture_output=True, text=True).stdout.splitlines()]
    fc = codegen.C_LOWERINGS["fc"]
    want = []
    for k in ks:
        conv = _conv(k, 1, 2, (0,) * 4, "pointwise")
        fc_layer = type("L", (), {"input_shape": (k,)})()
        want.append((codegen.gemm_fast(conv)[1], fc.fast(fc_layer)[1]))
    assert got == want
