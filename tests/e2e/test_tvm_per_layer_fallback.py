"""Issue 21's user CNN (tests/e2e/test_user_cnn_reach.py: MaxPool, torch.cat, Hardswish, a squeeze-and-excite
gate, a residual add) on the TVM targets: the hand-scheduled kernel sets run its convs, the max pool, concat,
hard-swish / hard-sigmoid tables and the mul run their generic lowering in the same module, and the artifact
benches PASS bit-exact with the numpy reference. Before the per-layer fallback one max pool sent the whole
plan to the generic route: on rpi4 (qemu-aarch64, Cortex-A72) that costs about 3.9x the instructions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgepack
from tests.conformance.executors import host_has_vnni
from tests.e2e.test_user_cnn_reach import NET_SOURCE
from tests.e2e.test_user_model import net_from_source

RES, CLASSES = 48, 3
GENERIC_KINDS = {"maxpool", "concat", "lut", "mul"}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((64, 3, RES, RES), dtype=np.float32), np.arange(16) % CLASSES


def _compile_and_bench(target: str, data, folder: Path) -> tuple[dict, dict]:
    images, labels = data
    out = edgepack.compile(net_from_source(NET_SOURCE, "ReachNet"), target, calibration=images[:48],
                           eval_data=(images[48:], labels), output=str(folder))
    report = edgepack.bench(out, count=2, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert any("bit-exact" in c["name"] for c in report["checks"]), report["checks"]
    return json.loads((Path(out) / "manifest.json").read_text())["backend_info"], report


@pytest.mark.slow
@pytest.mark.parametrize("target,kernels", [
    pytest.param("x86-tvm", "vnni", marks=pytest.mark.skipif(not host_has_vnni(), reason="this CPU has no avx512_vnni")),
    pytest.param("rpi4", "neon"),
])
def test_the_user_cnn_runs_its_convs_hand_scheduled_and_the_rest_generic(target, kernels, data, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    info, report = _compile_and_bench(target, data, tmp_path / target)
    assert info["kernels"] == kernels
    routes = {r["layer"]: (r["kind"], r["route"]) for r in info["layer_routes"]}
    assert {kind for kind, route in routes.values() if route == "generic"} == GENERIC_KINDS, routes
    assert all(route == "scheduled" for kind, route in routes.values() if kind in ("conv", "pointwise", "add", "fc"))
    scheduled = sum(route == "scheduled" for _, route in routes.values())
    assert info["hand_scheduled"] == f"{scheduled} of {len(routes)} layers hand-scheduled"
    assert report["device_details"]["summary"].startswith(f"kernels {kernels}: {info['hand_scheduled']}; generic: ")


@pytest.mark.slow
def test_the_per_layer_fallback_costs_rpi4_far_fewer_instructions_than_the_whole_plan_generic(data, tmp_path,
                                                                                            monkeypatch):
    """Measured: 2,648,174 instructions per inference on the whole generic route, 687,038 per layer."""
    counts = {}
    for kernels in ("generic", "auto"):
        monkeypatch.setenv("EDGEPACK_TVM_INT8_KERNELS", kernels)
        info, report = _compile_and_bench("rpi4", data, tmp_path / kernels)
        assert info["kernels"] == {"generic": "generic", "auto": "neon"}[kernels]
        counts[kernels] = report["cost"]["instructions_per_inference"]
    assert counts["auto"] * 2 < counts["generic"], counts


def _input_read_by_non_convs():
    """Two plans whose model input (NCHW, as a generic layer's output) is read by kinds other than a conv: one
    starting with a depthwise, one with a residual add of the input (test_residual's graph)."""
    import dataclasses

    from edgepack.plan.plan import Plan
    from tests.e2e.test_neon_kernels import _layer, random_plan
    from tests.e2e.test_residual import _random_add

    chain, rng = random_plan(4, width=8, res=8), np.random.default_rng(4)
    headless = Plan(chain.input_q, chain.layers[1].input_shape, chain.layers[1:])
    c, res = chain.input_shape[0], chain.input_shape[1]
    pointwise, q = _layer(rng, "p", "pointwise", c, c, res, res, 1, 1, (0, 0, 0, 0), chain.input_q, False)
    add, q = _random_add(rng, "input+p", -1, 0, chain.input_shape, chain.input_q, q, "mixed", False)
    graph = Plan(chain.input_q, chain.input_shape,
                 [pointwise, add, dataclasses.replace(chain.layers[0], input_q=q), *chain.layers[1:]])
    return {"depthwise first": headless, "add of the model input": graph}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["depthwise first", "add of the model input"])
@pytest.mark.parametrize("kernels", [
    pytest.param("vnni", marks=pytest.mark.skipif(not host_has_vnni(), reason="this CPU has no avx512_vnni")),
    pytest.param("neon"),
])
def test_a_model_input_read_by_a_depthwise_or_an_add_is_converted_to_the_kernel_layout(name, kernels, tmp_path):
    """Every layer stays hand-scheduled: the input reaches them through one to_scheduled copy; bit-exact."""
    from edgepack.backends.tvm.scheduled import SCHEDULED, layer_routes
    from edgepack.plan import reference
    from tests.conformance import executors

    plan = _input_read_by_non_convs()[name]
    assert plan.problems() == [] and set(layer_routes(plan)) == {SCHEDULED}
    x = np.random.default_rng(5).integers(-128, 128, (6, *plan.input_shape)).astype(np.int8)
    want = reference.run(plan, x)
    got = executors.run_vnni(plan, x) if kernels == "vnni" else executors.run_neon(plan, x, tmp_path)
    assert np.array_equal(np.asarray(got).reshape(want.shape), want)
