"""FC-only plans on a vector input (an autoencoder's shape in miniature, 48 -> 24 -> 6 -> 24 -> 48), every fc
rounding once (TFLite's FULLY_CONNECTED, as imported) or twice (the plan's own): on every executor bit-exact with
the numpy reference, and the hand-scheduled TVM sets (conv ... pool ... fc chains on images) leave them to the
generic route. TVM builds are slow; C and the .tflite export under LiteRT run in the fast tier."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.ops.fc import FcParams
from edgepack.plan.plan import Plan, QParams
from tests.conformance import executors
from tests.conformance.plans import weighted_layer

ROUNDINGS = ("double", "single")
SIZES = (48, 24, 6, 24, 48)


def fc_chain(rounding: str, seed: int = 5) -> tuple[Plan, np.ndarray]:
    rng = np.random.default_rng(seed)
    input_q = q = QParams(0.05, int(rng.integers(-20, 20)))
    layers = []
    for k, (features, units) in enumerate(zip(SIZES, SIZES[1:])):
        layer = weighted_layer(rng, f"fc{k}", "fc", q, (features,), (units,), (units, features))
        layer.params = FcParams(rounding)
        layers.append(layer)
        q = layer.output_q
    plan = Plan(input_q, (SIZES[0],), layers)
    assert plan.problems() == []
    return plan, rng.integers(-128, 128, (24, SIZES[0])).astype(np.int8)


EXECUTORS = [
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "fast", tmp), id="C fast"),
    pytest.param(lambda plan, x, tmp: litert.run_reference(plan_to_tflite(plan), x), id="TFLite export under LiteRT"),
    pytest.param(lambda plan, x, tmp: executors.run_tvm_generic(plan, x), id="TVM generic", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("run", EXECUTORS)
def test_fc_chain_on_a_vector_equals_the_reference_bit_for_bit(run, rounding, tmp_path):
    plan, x = fc_chain(rounding)
    want = executors.assert_bit_exact(run, plan, x, tmp_path)
    assert len(np.unique(want)) > 30  # the outputs vary: more than a clamped constant is compared


@pytest.mark.parametrize("target", ["x86-tvm", "rpi4"])
def test_the_hand_scheduled_tvm_sets_leave_a_vector_fc_chain_to_the_generic_executor(target, monkeypatch):
    from edgepack.backends.tvm.lower import int8_kernels, tvm_target
    from edgepack.targets import get_target

    monkeypatch.delenv("EDGEPACK_TVM_INT8_KERNELS", raising=False)
    board = get_target(target)
    assert int8_kernels(board, fc_chain("single")[0], tvm_target(board)) == "generic"
