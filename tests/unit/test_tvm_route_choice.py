"""Which route runs each plan layer on the hand-scheduled TVM sets (scheduled.layer_routes), which kernel set
a compile picks (lower.int8_kernels) and what the manifest records (lower.layer_routes): per layer, not per
plan. No TVM build here (the conformance tier builds and runs the mixed modules)."""
from __future__ import annotations

import dataclasses

import pytest

from edgepack.backends.tvm import scheduled
from edgepack.backends.tvm.lower import int8_kernels, tvm_target
from edgepack.backends.tvm.lower import layer_routes as recorded_routes
from edgepack.backends.tvm.scheduled import GENERIC, SCHEDULED, layer_routes, routes_summary, worth_scheduling
from edgepack.errors import UnsupportedModelError
from edgepack.plan.plan import Plan
from tests.conformance.plans import CONCAT_CASES, LUT_CASES, MAXPOOL_CASES, MUL_CASES, SHAPE_CASES, case, concat_case
from tests.conformance.plans import lut_case, maxpool_case, mul_case, plan_with_unknown_op, shapes_case
from tests.conformance.test_vector_fc_chains import fc_chain


def _routes(plan: Plan) -> list[tuple[str, str]]:
    return [(layer.kind, route) for layer, route in zip(plan.layers, layer_routes(plan))]


def test_layers_the_kernel_sets_lack_are_generic_and_every_other_layer_stays_scheduled():
    plans = [maker(name)[0] for maker, table in ((maxpool_case, MAXPOOL_CASES), (concat_case, CONCAT_CASES),
                                                 (lut_case, LUT_CASES), (mul_case, MUL_CASES)) for name in table]
    for plan in plans:
        for kind, route in _routes(plan):
            assert route == (GENERIC if kind in ("maxpool", "concat", "lut", "mul") else SCHEDULED), (kind, route)
        assert worth_scheduling(plan) and not scheduled.chain_shaped(plan)


def test_a_rectangular_or_depth_multiplied_depthwise_is_generic_a_square_one_scheduled():
    rectangular, square = (shapes_case(name)[0] for name in SHAPE_CASES)
    assert [r for k, r in _routes(rectangular) if k == "depthwise"] == [GENERIC]
    assert [r for k, r in _routes(square) if k == "depthwise"] == [SCHEDULED]
    plan, _ = case("average pool, double-rounding fc, SAME pads")
    i = next(i for i, layer in enumerate(plan.layers) if layer.kind == "depthwise")
    layer = plan.layers[i]
    doubled = dataclasses.replace(layer, output_shape=(2 * layer.output_shape[0], *layer.output_shape[1:]))
    assert layer_routes(plan)[i] == SCHEDULED
    assert scheduled.layer_route(dataclasses.replace(plan, layers=[*plan.layers[:i], doubled]), i) == GENERIC


def test_a_layer_with_an_int32_min_multiplier_is_generic():
    plan, _ = case("average pool, double-rounding fc, SAME pads")
    layer = plan.layers[0]
    arrays = dict(layer.arrays, multiplier=layer.arrays["multiplier"].copy())
    arrays["multiplier"][0] = -(2**31)
    broken = dataclasses.replace(plan, layers=[dataclasses.replace(layer, arrays=arrays), *plan.layers[1:]])
    assert layer_routes(broken)[0] == GENERIC and layer_routes(broken)[1:] == layer_routes(plan)[1:]


def test_an_fc_on_an_unpooled_map_is_generic_on_a_pooled_feature_scheduled():
    plan, _ = case("average pool, double-rounding fc, SAME pads")
    assert _routes(plan)[-2:] == [("avgpool", SCHEDULED), ("fc", SCHEDULED)]
    assert scheduled.layer_route(dataclasses.replace(plan, layers=plan.layers[:-2] + plan.layers[-1:]),
                                 len(plan.layers) - 2) == GENERIC  # the fc now reads the last conv's map


def test_an_fc_only_plan_keeps_the_generic_route_and_a_plan_with_scheduled_convs_takes_the_set(monkeypatch):
    """A kernel set pays for its convs: FC-only plans stay on the whole generic route (tunable with
    MetaSchedule); a max pool plan now takes the set on a CPU that has it."""
    from edgepack.targets import get_target

    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    fc_only, _ = fc_chain("single")
    assert not worth_scheduling(fc_only)
    rpi4 = get_target("rpi4")
    assert int8_kernels(rpi4, fc_only, tvm_target(rpi4)) == "generic"
    assert int8_kernels(rpi4, maxpool_case(next(iter(MAXPOOL_CASES)))[0], tvm_target(rpi4)) == "neon"


def test_the_manifest_records_each_layers_route_and_the_count():
    plan, _ = maxpool_case(next(iter(MAXPOOL_CASES)))
    info = recorded_routes(plan, "neon")
    assert info["hand_scheduled"] == "4 of 6 layers hand-scheduled"
    assert [(r["layer"], r["route"]) for r in info["layer_routes"]] == [
        (layer.name, route) for layer, route in zip(plan.layers, layer_routes(plan))]
    assert recorded_routes(plan, "generic")["hand_scheduled"] == "0 of 6 layers hand-scheduled"
    assert recorded_routes(None, "generic") == {}  # an fp32 build has no plan layers
    assert routes_summary([SCHEDULED, GENERIC, SCHEDULED]) == "2 of 3 layers hand-scheduled"


def test_a_kind_neither_route_lowers_is_refused_by_name_before_any_build():
    from edgepack.backends.tvm import aarch64_neon

    with pytest.raises(UnsupportedModelError, match=r"layer 1 'neg1' is a 'neg' op, which the TVM hand-scheduled"):
        aarch64_neon.plan_to_relax_neon(plan_with_unknown_op("neg"))
