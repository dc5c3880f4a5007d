"""The elementwise int8 op (edgepack.ops.lut): each function's table equals what LiteRT's reference kernel of
its TFLite builtin outputs for all 256 int8 inputs, over random input/output quantizations (the proof that the
transcribed arithmetic is TFLite's); the problems a lut layer is refused for (a damaged table among them); its
params through plan.json / plan.npz; the .tflite export and import of the six builtins; the hard sigmoid,
which has no builtin, exported as a GATHER from its table."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgepack.errors import ConfigError
from edgepack.interop import tflite_ops
from edgepack.interop.tflite_export import _serialize, write_tflite
from edgepack.interop.tflite_import import read_tflite
from edgepack.interop.tflite_ops.lut import BUILTINS
from edgepack.interop.tflite_writer import Graph
from edgepack.ops.lut import LOGISTIC_OUTPUT, LutParams, hard_swish_multipliers, lut_layer, lut_table
from edgepack.ops.mul import mul_requantization
from edgepack.plan import reference
from edgepack.plan.plan import Plan, QParams
from tests.conformance import executors
from tests.conformance.plans import LUT_CASES, lut_case

INPUTS = np.arange(-128, 128, dtype=np.int8)


def litert_outputs(function: str, alpha: float | None, in_q: QParams, out_q: QParams) -> np.ndarray:
    """The builtin of ``function`` alone in a .tflite, run by LiteRT's reference kernels on every int8 value."""
    tflite_ops.load()
    g = Graph()
    g.input = g.activation("x", (1, 256), in_q)
    g.output = g.activation("y", (1, 256), out_q)
    g.op(BUILTINS[function], [g.input], [g.output], alpha=alpha)
    it = Interpreter(model_content=_serialize(g), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], INPUTS[None])
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])[0]


def random_quantizations(function: str, seed: int, count: int = 12):
    """``count`` (alpha, input q, output q) TFLite accepts for ``function``: float32 scales over two decades,
    any zero point (a logistic's output is TFLite's fixed one)."""
    rng, found = np.random.default_rng(seed), []
    while len(found) < count:
        in_q = QParams(float(np.float32(10 ** rng.uniform(-2.5, -0.5))), int(rng.integers(-128, 128)))
        out_q = QParams(float(np.float32(10 ** rng.uniform(-2.5, -0.5))), int(rng.integers(-128, 128)))
        out_q = LOGISTIC_OUTPUT if function == "logistic" else out_q
        alpha = float(np.float32(rng.uniform(-0.5, 1.5))) if function == "leaky_relu" else None
        if function != "hard_swish" or hard_swish_multipliers(in_q, out_q)[0][1] <= 0:
            found.append((alpha, in_q, out_q))
    return found


@pytest.mark.parametrize("function", sorted(BUILTINS))
def test_the_table_is_what_litert_reference_kernel_outputs_for_every_int8_input(function):
    for alpha, in_q, out_q in random_quantizations(function, seed=len(function)):
        want = litert_outputs(function, alpha, in_q, out_q)
        got = lut_table(LutParams(function, alpha), in_q, out_q)
        assert np.array_equal(got, want), f"{function} alpha {alpha} {in_q} -> {out_q}: " \
            f"{int((got != want).sum())} of 256 entries differ"


def test_the_tables_are_not_trivially_equal_across_functions():
    """Each function's table differs from the others' at the same quantization (a test that passed for a
    table of the wrong function would prove nothing)."""
    in_q, out_q = QParams(0.06, 0), QParams(0.06, 0)  # inputs over +-7.6: every function's bounds act
    tables = {f: lut_table(LutParams(f, 0.1 if f == "leaky_relu" else None), in_q, out_q).tobytes()
              for f in ("hard_swish", "hardsigmoid", "leaky_relu", "logistic", "relu", "relu6", "relu_n1_to_1")}
    assert len(set(tables.values())) == len(tables)


def test_the_hard_sigmoid_table_rounds_relu6_of_x_plus_3_over_6():
    in_q, out_q = QParams(0.04, 3), QParams(1 / 255, -128)
    x = in_q.dequantize(INPUTS).astype(np.float64)
    want = np.clip(np.round(np.clip(x + 3, 0, 6) / 6 / out_q.scale) + out_q.zero_point, -128, 127)
    assert np.abs(lut_table(LutParams("hardsigmoid"), in_q, out_q) - want).max() <= 1


def _one_lut_plan(layer):
    return Plan(layer.input_q, layer.input_shape, [layer])


LAYER = lut_layer("hs", LutParams("hard_swish"), (4, 5, 5), QParams(0.03, -10), QParams(0.02, -100))


@pytest.mark.parametrize("damage, message", [
    (lambda l: dataclasses.replace(l, arrays={"table": l.arrays["table"] + np.int8(1)}), "is not TFLite's hard_swish"),
    (lambda l: dataclasses.replace(l, output_q=QParams(0.021, -100)), "is not TFLite's hard_swish"),
    (lambda l: dataclasses.replace(l, arrays={"table": l.arrays["table"][:255]}), "one array, 'table', int8"),
    (lambda l: dataclasses.replace(l, arrays={"table": l.arrays["table"].astype(np.int16)}), "one array"),
    (lambda l: dataclasses.replace(l, arrays={}), "one array"),
    (lambda l: dataclasses.replace(l, params=LutParams("gelu")), "lut function 'gelu' is unknown"),
    (lambda l: dataclasses.replace(l, params=LutParams("leaky_relu")), "a leaky_relu needs one"),
    (lambda l: dataclasses.replace(l, params=LutParams("relu", 0.1)), "alpha 0.1 is for a leaky_relu only"),
    (lambda l: dataclasses.replace(l, params=LutParams("logistic")), "scale 1/256, zero point -128"),
    (lambda l: dataclasses.replace(l, output_q=QParams(0.0001, 0)), "TFLite's HARD_SWISH refuses it"),
    (lambda l: dataclasses.replace(l, output_shape=(4, 5, 4)), "keeps its input's shape"),
    (lambda l: dataclasses.replace(l, act_min=0), "no fused clamp"),
])
def test_a_damaged_lut_layer_is_refused(damage, message):
    assert _one_lut_plan(LAYER).problems() == []
    problems = _one_lut_plan(damage(LAYER)).problems()
    assert any(message in p for p in problems), problems


def test_the_reference_is_the_table_lookup():
    x = np.random.default_rng(1).integers(-128, 128, (3, 4, 5, 5)).astype(np.int8)
    assert np.array_equal(reference.kernel(LAYER, x), LAYER.arrays["table"][x.astype(np.int16) + 128])


def test_the_function_and_alpha_survive_plan_save_and_load(tmp_path):
    plan, _ = lut_case(next(iter(LUT_CASES)))
    plan.save(tmp_path)
    loaded = Plan.load(tmp_path)
    for a, b in zip(plan.layers, loaded.layers):
        assert a.params == b.params and set(a.arrays) == set(b.arrays)
    assert loaded.layers[4].params == LutParams("leaky_relu", 0.2) and loaded.problems() == []


@pytest.mark.parametrize("name", LUT_CASES)
def test_the_tflite_export_reads_back_as_the_same_lut_layers(name, tmp_path):
    plan, x = lut_case(name)
    imported = read_tflite(write_tflite(plan, tmp_path / "m.tflite")).plan
    def luts(p):  # a .tflite holds alpha as float32: the table is computed from that float32 alpha either way
        return [(layer.params.function, np.float32(layer.params.alpha or 0), layer.input_q, layer.output_q,
                 layer.arrays["table"].tobytes()) for layer in p.layers if layer.kind == "lut"]

    assert luts(imported) == luts(plan) and len(luts(plan)) == 3
    assert np.array_equal(reference.run(imported, x), reference.run(plan, x))


def test_a_hard_sigmoid_exports_as_a_gather_from_its_table_bit_exact_under_litert(tmp_path):
    """No builtin computes PyTorch's hard sigmoid: the export writes CAST, ADD 128, GATHER from the table."""
    plan, x = lut_case(next(iter(LUT_CASES)))
    first = plan.layers[0]
    layer = lut_layer("hsig", LutParams("hardsigmoid"), plan.input_shape, plan.input_q, first.output_q)
    plan = dataclasses.replace(plan, layers=[layer] + plan.layers[1:])
    assert plan.problems() == []
    assert np.array_equal(executors.run_tflite(plan, x), reference.run(plan, x))
    with pytest.raises(ConfigError, match="CAST"):  # the import takes the six builtins only: the chain is named
        read_tflite(write_tflite(plan, tmp_path / "hsig.tflite"))


# ---- mul_constant: a MUL by a one-element constant (a converter's "/ 6") ------------------------------------

def _mul_constant_layer(constant: int, constant_q: QParams, activation: str, in_q: QParams, out_q: QParams,
                        shape=(1, 256)):
    return lut_layer("mulc", LutParams("mul_constant", constant=constant, constant_q=constant_q, activation=activation),
                     shape, in_q, out_q)


def random_mul_constants(seed: int, count: int = 16):
    """``count`` mul_constant layers over random quantizations, constants and fused activations that TFLite's
    MUL prepares (output scale not below 2^-15 of the input scales' product)."""
    rng, found = np.random.default_rng(seed), []
    while len(found) < count:
        q = [QParams(float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128))) for _ in range(3)]
        layer = _mul_constant_layer(int(rng.integers(-128, 128)), q[1], ("none", "relu", "relu6")[len(found) % 3],
                                    q[0], q[2])
        if int(mul_requantization(q[0], q[1], q[2])[1][0]) <= 15:
            found.append(layer)
    return found


def test_a_mul_constant_table_is_what_litert_reference_mul_outputs_for_every_int8_input():
    """The export (MUL by a (1,) int8 constant) run by LiteRT's reference kernels gives the table bit-exact."""
    tflite_ops.load()
    for layer in random_mul_constants(seed=6):
        g = Graph()
        g.input = g.activation("x", (1, 256), layer.input_q)
        g.output = tflite_ops.EXPORTS["lut"](g, [g.input], layer, "mulc")
        it = Interpreter(model_content=_serialize(g), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], INPUTS[None])
        it.invoke()
        want = it.get_tensor(it.get_output_details()[0]["index"])[0]
        got = layer.arrays["table"]
        assert np.array_equal(got, want), f"{layer.params} {layer.input_q} -> {layer.output_q}: " \
            f"{int((got != want).sum())} of 256 entries differ"


def test_a_mul_constant_table_is_not_the_identity_nor_constant():
    """x / 6 with a clamp: the table moves with x and stays in relu6's range (a test of the test's inputs)."""
    layer = _mul_constant_layer(127, QParams(1 / 127 / 6, 0), "relu6", QParams(0.05, 0), QParams(0.01, -128))
    table = layer.arrays["table"].astype(np.int64)
    x = layer.input_q.dequantize(INPUTS).astype(np.float64)
    want = np.clip(np.round(np.clip(x / 6, 0, 6) / 0.01) - 128, -128, 127)
    assert np.abs(table - want).max() <= 1 and len(set(table.tolist())) > 50


MULC = _mul_constant_layer(42, QParams(0.004, 3), "none", QParams(0.03, -10), QParams(0.02, 5), shape=(4, 5, 5))


@pytest.mark.parametrize("damage, message", [
    (lambda l: dataclasses.replace(l, arrays={"table": l.arrays["table"] + np.int8(1)}), "is not TFLite's mul_constant"),
    (lambda l: dataclasses.replace(l, params=dataclasses.replace(l.params, constant=43)), "is not TFLite's mul_constant"),
    (lambda l: dataclasses.replace(l, params=dataclasses.replace(l.params, constant=None)), "needs its constant"),
    (lambda l: dataclasses.replace(l, params=dataclasses.replace(l.params, constant=300)), "an int8 value"),
    (lambda l: dataclasses.replace(l, params=dataclasses.replace(l.params, activation="tanh")), "an int8 value"),
    (lambda l: dataclasses.replace(l, output_q=QParams(1e-9, 0)), "below 2^-15"),
    (lambda l: dataclasses.replace(l, params=LutParams("relu", constant=3)), "for a mul_constant only"),
])
def test_a_damaged_mul_constant_lut_is_refused(damage, message):
    assert _one_lut_plan(MULC).problems() == []
    problems = _one_lut_plan(damage(MULC)).problems()
    assert any(message in p for p in problems), problems


def test_a_mul_constant_survives_plan_save_and_load_and_other_functions_keep_their_json(tmp_path):
    plan = _one_lut_plan(MULC)
    plan.save(tmp_path)
    loaded = Plan.load(tmp_path)
    assert loaded.layers[0].params == MULC.params and loaded.problems() == []
    assert set(LAYER.params.to_json()) == {"function", "alpha"}


def test_a_mul_constant_exports_as_mul_and_reads_back_as_the_same_lut(tmp_path):
    plan, x = lut_case(next(iter(LUT_CASES)))
    first = _mul_constant_layer(42, QParams(float(np.float32(0.004)), 3), "relu", plan.input_q, plan.layers[0].output_q,
                                shape=plan.input_shape)
    plan = dataclasses.replace(plan, layers=[first] + plan.layers[1:])
    assert plan.problems() == []
    imported = read_tflite(write_tflite(plan, tmp_path / "mulc.tflite")).plan
    assert imported.layers[0].kind == "lut" and imported.layers[0].params == first.params
    assert imported.problems() == []
    assert np.array_equal(reference.run(imported, x), reference.run(plan, x))
    assert np.array_equal(executors.run_tflite(plan, x), reference.run(plan, x))
