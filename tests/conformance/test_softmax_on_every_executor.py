"""The softmax op on every executor that lowers it, bit for bit with the numpy reference (TFLite's int8
SOFTMAX reference arithmetic): the generated C (portable and fast sets, compiled for this host), the
.tflite export under LiteRT's BUILTIN_REF kernels, and TVM's generic Relax lowering (int64 fixed point).
A plan of vectors (these: the softmax reads a (classes,) vector) keeps TVM's generic route on every TVM target."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.ops.softmax import softmax_layer
from edgepack.plan.plan import Layer, Plan, QParams, quantize_multiplier
from tests.conformance import executors

IMAGES = 32


def _fc(rng, features: int, classes: int, q_in: QParams, q_out: QParams) -> Layer:
    m, s = quantize_multiplier(q_in.scale * 0.01 / q_out.scale)
    return Layer("fc", "fc", (features,), (classes,), q_in, q_out, arrays={
        "weight": rng.integers(-127, 128, (classes, features)).astype(np.int8),
        "bias": rng.integers(-2000, 2000, classes).astype(np.int32), "multiplier": np.full(classes, m, np.int32),
        "shift": np.full(classes, s, np.int32), "weight_scale": np.full(classes, 0.01, np.float32)})


def _softmax_alone(classes: int, q: QParams, beta: float) -> Plan:
    return Plan(q, (classes,), [softmax_layer("softmax", classes, q, beta)])


def _fc_softmax(classes: int, q: QParams, beta: float) -> Plan:
    rng, q_in = np.random.default_rng(classes), QParams(0.04, -7)
    return Plan(q_in, (24,), [_fc(rng, 24, classes, q_in, q), softmax_layer("softmax", classes, q, beta)])


CASES = {  # name: (plan builder, classes, logits quantization, beta)
    "softmax of 10 raw int8 logits": (_softmax_alone, 10, QParams(0.0277, 18), 1.0),
    "softmax of 3 coarse logits (saturated multiplier)": (_softmax_alone, 3, QParams(2.0, -3), 1.0),
    # 1000 classes: a scale where the exps sum below 512 (TFLite's kernel aborts past that: TFLITE_CHECK)
    "softmax of 1000 logits, beta 0.5": (_softmax_alone, 1000, QParams(0.05, 5), 0.5),
    "fc then softmax of 7 classes": (_fc_softmax, 7, QParams(0.09, -2), 1.0),
}


def case(name: str) -> tuple[Plan, np.ndarray]:
    build, classes, q, beta = CASES[name]
    plan = build(classes, q, beta)
    assert plan.problems() == []
    x = np.random.default_rng(len(name)).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    x[0, :256] = 127  # ties at the top (256 of them: the exps sum below 512)
    return plan, x


EXECUTORS = [
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "fast", tmp), id="C fast"),
    pytest.param(lambda plan, x, tmp: litert.run_reference(plan_to_tflite(plan), x), id="TFLite export under LiteRT"),
    pytest.param(lambda plan, x, tmp: executors.run_tvm_generic(plan, x), id="TVM generic", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("run", EXECUTORS)
def test_softmax_output_equals_the_reference_bit_for_bit(run, name, tmp_path):
    plan, x = case(name)
    executors.assert_bit_exact(run, plan, x, tmp_path)
