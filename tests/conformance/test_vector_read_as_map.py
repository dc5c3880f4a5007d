"""A convolution reading a vector as its (C, H, W) map (what the .tflite import makes of FULLY_CONNECTED ->
RESHAPE (1, H, W, C) -> CONV_2D, a decoder, and of a (1, F) input RESHAPEd to an image): the plan holds the vector
in CHW order, so every executor reads it with a plain reshape. Bit-exact with the numpy reference on C, the
.tflite export under LiteRT, TVM's generic Relax route and the hand-scheduled sets, which run the vector-reading
layer generic (scheduled.layer_routes) next to their own pointwise / pool / fc in one module."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.ops.fc import FcParams
from edgepack.plan.plan import Plan, QParams
from tests.conformance import executors
from tests.conformance.plans import conv_layer, fc_layer, pool_layer, weighted_layer

VNNI = pytest.mark.skipif(not executors.host_has_vnni(), reason="this CPU has no avx512_vnni")


def vector_map_plan(reader: str, seed: int = 21) -> tuple[Plan, np.ndarray]:
    """``reader`` "conv" / "depthwise": fc 16 -> 128 read as an (8, 4, 4) map by a 3x3 (pads 1) conv or depthwise;
    "input": the (64,) plan input read as a (1, 8, 8) image by a 3x3/2 conv. Then a pointwise, a global pool and
    an fc (the layers the hand-scheduled sets take)."""
    rng = np.random.default_rng(seed)
    q = QParams(0.04, int(rng.integers(-20, 20)))
    if reader == "input":
        layers, in_shape = [conv_layer(rng, "conv0", "conv", q, (1, 8, 8), 8, 3, 2, (0, 0, 1, 1))], (64,)
    else:
        dense = weighted_layer(rng, "fc0", "fc", q, (16,), (128,), (128, 16))
        dense.params = FcParams("single")
        layers, in_shape = [dense, conv_layer(rng, "map1", reader, dense.output_q, (8, 4, 4), 8, 3, 1, (1,) * 4)], (16,)
    reader_layer = layers[-1]
    layers.append(conv_layer(rng, "pointwise", "pointwise", reader_layer.output_q, reader_layer.output_shape, 20, 1))
    shape = layers[-1].output_shape
    layers.append(pool_layer(rng, "pool", layers[-1].output_q, shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc", layers[-1].output_q, shape[0], 5, "single"))
    plan = Plan(q, in_shape, layers)
    assert plan.problems() == [], plan.problems()
    return plan, rng.integers(-128, 128, (32, *in_shape)).astype(np.int8)


READERS = ("conv", "depthwise", "input")
EXECUTORS = [
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_tvm_generic(plan, x), id="TVM generic", marks=pytest.mark.slow),
    pytest.param(lambda plan, x, tmp: executors.run_vnni(plan, x), id="TVM x86 VNNI", marks=[pytest.mark.slow, VNNI]),
    pytest.param(lambda plan, x, tmp: executors.run_neon(plan, x, tmp), id="TVM AArch64 NEON under qemu",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("run", EXECUTORS)
def test_a_vector_read_as_a_map_equals_the_reference_bit_for_bit(run, reader, tmp_path):
    plan, x = vector_map_plan(reader)
    want = executors.assert_bit_exact(run, plan, x, tmp_path)
    assert len(np.unique(want)) > 20  # the logits vary: more than a clamped constant is compared


@pytest.mark.parametrize("reader", READERS)
def test_the_hand_scheduled_sets_run_the_vector_reading_layer_generic_and_keep_the_rest(reader):
    """The kernels index their (pixels, channels) layout, so the layer reading a vector as a map is generic;
    the pointwise after it, the pool and the fc stay hand-scheduled (building the module is the check)."""
    from edgepack.backends.tvm.scheduled import GENERIC, SCHEDULED, layer_routes

    plan, _ = vector_map_plan(reader)
    routes = dict(zip((layer.name for layer in plan.layers), layer_routes(plan)))
    reader_name = "conv0" if reader == "input" else "map1"
    assert routes[reader_name] == GENERIC
    assert [routes[name] for name in ("pointwise", "pool", "fc")] == [SCHEDULED] * 3
    executors.check_vnni(plan)
