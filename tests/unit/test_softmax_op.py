"""The softmax op: TFLite's int8 SOFTMAX reference arithmetic (gemmlowp fixed-point exp and reciprocal),
checked bit-exact against LiteRT's BUILTIN_REF kernels on the plan's own .tflite export, its refusals, and
the import of a trailing SOFTMAX kept on request (dropped by default)."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.interop.tflite_import import SOFTMAX_DROPPED, SOFTMAX_KEPT, read_tflite
from edgepack.ops.softmax import exp_on_negative_values, softmax_layer, softmax_scaling
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams, quantize_multiplier

CASES = [  # (classes, input quantization, beta): fine to coarse scales, a diff_min that cuts, beta != 1
    (10, QParams(0.0277, 18), 1.0),
    (3, QParams(0.31, -14), 1.0),
    (7, QParams(0.00123, 20), 1.0),
    (100, QParams(0.051, 2), 1.0),
    (12, QParams(0.1, 0), 0.5),
    (5, QParams(2.0, -3), 1.0),  # the multiplier saturates at 2^31 - 1: only the max survives
]


def _inputs(classes: int, seed: int) -> np.ndarray:
    """32 random int8 logit rows, a few with ties and the extremes."""
    x = np.random.default_rng(seed).integers(-128, 128, (32, classes)).astype(np.int8)
    x[0], x[1, :] = 127, -128
    return x


@pytest.mark.parametrize("classes, q, beta", CASES)
def test_reference_is_bit_exact_with_litert_builtin_ref_softmax(classes, q, beta):
    plan = Plan(q, (classes,), [softmax_layer("softmax", classes, q, beta)])
    assert plan.problems() == []
    x = _inputs(classes, classes)
    ours = reference.run(plan, x)
    theirs = litert.run_reference(plan_to_tflite(plan), x)
    assert np.array_equal(ours, theirs.reshape(ours.shape))


def test_the_exp_is_gemmlowps_close_to_the_real_exponential():
    a = -np.arange(0, 31 << 26, 1 << 22, dtype=np.int64)
    got = exp_on_negative_values(a) / 2**31
    assert np.max(np.abs(got - np.exp(a / 2**26))) < 1e-6


def test_the_scaling_is_tflites_prepare():
    m, shift, diff_min = softmax_scaling(0.0277, 1.0)
    assert (1 << 30) <= m < (1 << 31) and shift == 21 and diff_min == -((31 << 26) >> 21)


@pytest.mark.parametrize("change, problem", [
    (dict(output_q=QParams(0.01, -128)), "scale 1/256"),
    (dict(output_shape=(9,)), "(classes,) vector"),
    (dict(input_shape=(3, 2, 2), output_shape=(3, 2, 2)), "(classes,) vector"),
    (dict(act_min=0), "no fused clamp"),
    (dict(input_q=QParams(1e-9, 0)), "2^-26"),
])
def test_a_broken_softmax_is_refused_naming_the_problem(change, problem):
    good = softmax_layer("softmax", 10, QParams(0.05, 0))
    fields = dict(name="softmax", kind="softmax", input_shape=good.input_shape, output_shape=good.output_shape,
                  input_q=good.input_q, output_q=good.output_q, params=good.params)
    fields.update(change)
    layer = Layer(**fields)
    plan = Plan(layer.input_q, tuple(layer.input_shape), [layer])
    assert any(problem in p for p in plan.problems())


def _fc_softmax_file(tmp_path) -> str:
    """A .tflite of fc (16 -> 10) then SOFTMAX, written by the plan export."""
    rng = np.random.default_rng(3)
    q_in, q_logits = QParams(0.05, 3), QParams(0.12, -5)
    m, s = quantize_multiplier(0.05 * 0.01 / 0.12)
    fc = Layer("fc", "fc", (16,), (10,), q_in, q_logits, arrays={
        "weight": rng.integers(-127, 128, (10, 16)).astype(np.int8), "bias": np.arange(10, dtype=np.int32) * 50,
        "multiplier": np.full(10, m, np.int32), "shift": np.full(10, s, np.int32),
        "weight_scale": np.full(10, 0.01, np.float32)})
    plan = Plan(q_in, (16,), [fc, softmax_layer("softmax", 10, q_logits, inputs=())])
    path = tmp_path / "fc_softmax.tflite"
    path.write_bytes(plan_to_tflite(plan))
    return str(path)


def test_a_trailing_softmax_is_dropped_by_default_and_kept_when_asked(tmp_path):
    path = _fc_softmax_file(tmp_path)
    dropped, kept = read_tflite(path), read_tflite(path, keep_softmax=True)
    assert [l.kind for l in dropped.plan.layers] == ["fc"] and dropped.softmax == SOFTMAX_DROPPED
    assert [l.kind for l in kept.plan.layers][-1] == "softmax" and kept.softmax == SOFTMAX_KEPT
    x = np.random.default_rng(4).integers(-128, 128, (32, 16)).astype(np.int8)
    assert np.array_equal(reference.run(kept.plan, x), litert.run_reference(path, x).reshape(32, 10))
    assert np.array_equal(np.argmax(reference.run(dropped.plan, x), 1), np.argmax(reference.run(kept.plan, x), 1))


def test_keep_softmax_is_refused_for_a_builtin_mobilenet_and_must_be_a_bool():
    from edgepack.config import CompileConfig
    from edgepack.errors import ConfigError

    with pytest.raises(ConfigError, match="--keep-softmax applies to an imported .tflite"):
        CompileConfig(target="c-host", keep_softmax=True)
    with pytest.raises(ConfigError, match="keep_softmax='yes' is not valid"):
        CompileConfig(target="c-host", keep_softmax="yes")
