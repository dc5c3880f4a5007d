"""What converters write between layers, on small files edgepack's exporter writes and a test then edits:
a MUL whose constant is its first operand (TFLite's MUL(c, x)) imports as the MUL(x, c) it equals; a dense
layer's vector read by a conv as a map (a decoder) runs on C, TVM and under LiteRT as the numpy reference; a QUANTIZE
int8 -> int8 between layers is a table equal to TFLite's requantize."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edgepack.errors import ConfigError
from edgepack.interop import litert
from edgepack.interop.tflite_export import _serialize, plan_to_tflite
from edgepack.interop.tflite_import import read_tflite
from edgepack.ops.lut import LutParams, lut_layer
from edgepack.plan import reference
from edgepack.interop.tflite_writer import Graph, bias_scale
from edgepack.plan.plan import Plan, QParams
from tests import converter_models, tflite_mutations
from edgepack.ops.fc import FcParams
from tests.conformance import executors
from tests.conformance.plans import conv_layer, fc_layer, pool_layer, weighted_layer


def _mul_constant_plan(constant: int) -> Plan:
    """conv 3x3/2 -> MUL by a one-element constant (a mul_constant lut) -> global pool -> fc."""
    rng = np.random.default_rng(7)
    q = QParams(0.02, -5)
    conv = conv_layer(rng, "conv0", "conv", q, (3, 9, 9), 6, 3, 2, (1,) * 4)
    constant_q = QParams(float(np.float32(0.01)), 3)
    params = LutParams("mul_constant", constant=constant, constant_q=constant_q, activation="none")
    mul_q = QParams(float(np.float32(conv.output_q.scale * 0.6)), conv.output_q.zero_point)
    mul = lut_layer("mul1", params, conv.output_shape, conv.output_q, mul_q)
    pool = pool_layer(rng, "pool2", mul_q, mul.output_shape, "average", flat=False)
    plan = Plan(q, (3, 9, 9), [conv, mul, pool, fc_layer(rng, "fc3", pool.output_q, 6, 4, "single")])
    assert plan.problems() == [], plan.problems()
    return plan


def _swap_mul_operands(data: bytes, path) -> bytes:
    """The file with its MUL's two inputs exchanged: MUL(constant, x)."""
    _, _, names = converter_models.structure(path)
    k = names.index("MUL")
    by_name = {f.what: f for f in tflite_mutations.fields(data)}
    x, c = (struct.unpack_from("<i", data, by_name[f"op {k} Inputs[{j}]"].position)[0] for j in (0, 1))
    return tflite_mutations.edited(data, **{f"op {k} Inputs[0]": c, f"op {k} Inputs[1]": x})


@pytest.mark.parametrize("constant", [77, -40])
def test_mul_with_the_constant_first_imports_as_the_plan_it_was_written_from(constant, tmp_path):
    plan = _mul_constant_plan(constant)
    written = tmp_path / "mul_x_c.tflite"
    written.write_bytes(plan_to_tflite(plan))
    swapped = tmp_path / "mul_c_x.tflite"
    swapped.write_bytes(_swap_mul_operands(written.read_bytes(), written))
    assert swapped.read_bytes() != written.read_bytes()
    imported = read_tflite(swapped)
    assert [layer.kind for layer in imported.plan.layers] == ["conv", "lut", "avgpool", "fc"]
    assert imported.plan.layers[1].params == plan.layers[1].params
    assert np.array_equal(imported.plan.layers[1].arrays["table"], plan.layers[1].arrays["table"])
    x = np.random.default_rng(3).integers(-128, 128, (16, 3, 9, 9), dtype=np.int8)
    want = litert.run_reference(swapped, x).reshape(16, -1)
    assert np.array_equal(reference.run(imported.plan, x), want)
    assert len(np.unique(want)) > 8


def _decoder_plan() -> Plan:
    """fc 16 -> 128 read by a 3x3 conv as the (8, 4, 4) map it is, then global pool and fc: what the import makes of
    FULLY_CONNECTED -> RESHAPE (1, 4, 4, 8) -> CONV_2D."""
    rng = np.random.default_rng(11)
    q = QParams(0.04, 9)
    dense = weighted_layer(rng, "fc0", "fc", q, (16,), (128,), (128, 16))
    dense.params = FcParams("single")
    conv = conv_layer(rng, "conv1", "conv", dense.output_q, (8, 4, 4), 6, 3, 1, (1,) * 4)
    pool = pool_layer(rng, "pool2", conv.output_q, conv.output_shape, "average", flat=False)
    head = weighted_layer(rng, "fc3", "fc", pool.output_q, (6,), (5,), (5, 6), spread=30.0)
    head.params, head.act_min, head.act_max, head.activation = FcParams("single"), -128, 127, "none"
    plan = Plan(q, (16,), [dense, conv, pool, head])
    assert plan.problems() == [], plan.problems()
    return plan


@pytest.mark.parametrize("executor", ["C portable", "C fast", "TFLite export under LiteRT",
                                      pytest.param("TVM generic", marks=pytest.mark.slow)])
def test_a_conv_reading_an_fc_vector_as_its_map_is_bit_exact_with_the_reference(executor, tmp_path):
    plan = _decoder_plan()
    x = np.random.default_rng(12).integers(-128, 128, (24, 16), dtype=np.int8)
    want = reference.run(plan, x)
    assert len(np.unique(want)) > 20
    if executor == "TFLite export under LiteRT":
        got = litert.run_reference(plan_to_tflite(plan), x)  # RESHAPE, GATHER into HWC order, RESHAPE first
    elif executor == "TVM generic":
        got = executors.run_tvm_generic(plan, x)  # the fc's (1, 128) reshaped to (1, 8, 4, 4) before the conv
    else:
        got = executors.run_c(plan, x, executor.split()[1], tmp_path)
    assert np.array_equal(got.reshape(want.shape), want)


def test_the_reference_reads_an_fc_vector_as_the_map_in_chw_order():
    plan = _decoder_plan()
    x = np.random.default_rng(13).integers(-128, 128, (4, 16), dtype=np.int8)
    _, outputs = reference.run(plan, x, collect=True)
    as_map = outputs[0].reshape(4, 8, 4, 4)
    assert np.array_equal(outputs[1], reference.kernel(plan.layers[1], as_map))


def _fc(g: Graph, x: int, units: int, q_out: QParams, rng) -> int:
    """A FULLY_CONNECTED of random int8 weights (per-channel scales) on the (1, F) tensor ``x``."""
    features, q_in = g.tensors[x].shape[-1], g.quant[x]
    w_scale = rng.uniform(0.002, 0.01, units).astype(np.float32)
    weight = g.constant(f"w{len(g.tensors)}", rng.integers(-127, 128, (units, features)).astype(np.int8), w_scale)
    bias = g.constant(f"b{len(g.tensors)}", rng.integers(-500, 500, units).astype(np.int32), bias_scale(q_in, w_scale))
    y = g.activation(f"y{len(g.tensors)}", (1, units), q_out)
    g.op("FULLY_CONNECTED", [x, weight, bias], [y], activation="NONE")
    return y


def _requantizing_model(out_q: QParams) -> bytes:
    """64 values -> FULLY_CONNECTED 32 -> QUANTIZE int8 -> int8 to ``out_q`` -> FULLY_CONNECTED 5, written by hand
    as a converter writes a change of scale between layers."""
    g, rng = Graph(), np.random.default_rng(9)
    x = g.input = g.activation("features", (1, 64), QParams(0.05, 3))
    hidden = _fc(g, x, 32, QParams(0.04, -20), rng)
    moved = g.activation("requantized", (1, 32), out_q)
    g.op("QUANTIZE", [hidden], [moved])
    g.output = _fc(g, moved, 5, QParams(0.1, 0), rng)
    return _serialize(g)


@pytest.mark.parametrize("out_q", [QParams(float(np.float32(scale)), zp)
                                   for scale, zp in ((0.013, 40), (0.11, -7), (0.04, -20))],
                         ids=["finer, saturating", "coarser", "same"])
def test_a_requantize_between_layers_is_a_table_bit_exact_with_litert(out_q, tmp_path):
    path = tmp_path / "requantize.tflite"
    path.write_bytes(_requantizing_model(out_q))
    imported = read_tflite(path)
    assert [layer.kind for layer in imported.plan.layers] == ["fc", "lut", "fc"]
    requantize = imported.plan.layers[1]
    assert requantize.output_q == out_q and requantize.name.endswith("_requantize")
    x = np.random.default_rng(10).integers(-128, 128, (32, 64), dtype=np.int8)
    moved = litert.run_reference_tensor(path, x, 4)  # the QUANTIZE's output tensor
    _, outputs = reference.run(imported.plan, x, collect=True)
    assert np.array_equal(outputs[1], moved.reshape(32, -1)) and len(np.unique(outputs[1])) > 40
    assert np.array_equal(reference.run(imported.plan, x), litert.run_reference(path, x).reshape(32, -1))
    exported = plan_to_tflite(imported.plan)  # LEAKY_RELU of alpha 1: the same table under LiteRT
    assert np.array_equal(litert.run_reference(exported, x), litert.run_reference(path, x))


def test_a_quantize_to_int16_outside_the_pool_pattern_is_still_refused_by_name(tmp_path):
    g, rng = Graph(), np.random.default_rng(9)
    x = g.input = g.activation("features", (1, 64), QParams(0.05, 3))
    hidden = _fc(g, x, 32, QParams(0.04, -20), rng)
    wide = g.activation("wide", (1, 32), QParams(0.04, 0))
    g.tensors[wide].dtype = "int16"
    g.op("QUANTIZE", [hidden], [wide])
    g.output = wide
    path = tmp_path / "int16.tflite"
    path.write_bytes(_serialize(g))
    with pytest.raises(ConfigError, match=r"op 1 \(QUANTIZE\).*int8 -> int16 -> int8 global-pool pattern"):
        read_tflite(path)


def _reshaped_vector_model(dense: bool, channels: int = 3) -> bytes:
    """(1, 48) -> [FULLY_CONNECTED 48 ->] RESHAPE (1, 4, 4, 3) -> 3x3 CONV_2D SAME -> RESHAPE (1, 48) -> FC 5."""
    g, rng, q = Graph(), np.random.default_rng(14), QParams(0.05, 3)
    x = g.input = g.activation("features", (1, 48), q)
    if dense:
        x = _fc(g, x, 48, q, rng)
    h = 4 if channels == 3 else 48 // (4 * channels)
    image = g.activation("image", (1, 4, h, channels), q)
    g.op("RESHAPE", [x, g.constant("to_map", np.array([1, 4, h, channels], np.int32))], [image],
         new_shape=[1, 4, h, channels])
    w_scale = np.full(6, 0.01, np.float32)
    weight = g.constant("w", rng.integers(-127, 128, (6, 3, 3, channels)).astype(np.int8), w_scale)
    bias = g.constant("b", rng.integers(-200, 200, 6).astype(np.int32), bias_scale(q, w_scale))
    mapped = g.activation("conv", (1, 4, h, 6), QParams(0.1, -2))
    g.op("CONV_2D", [image, weight, bias], [mapped], padding="SAME", stride=1, activation="NONE")
    flat = g.activation("flat", (1, 24 * h), QParams(0.1, -2))
    g.op("RESHAPE", [mapped, g.constant("to_flat", np.array([1, 24 * h], np.int32))], [flat], new_shape=[1, 24 * h])
    g.output = _fc(g, flat, 5, QParams(0.2, 1), rng)
    return _serialize(g)


def test_an_input_vector_reshaped_to_a_many_channel_map_is_refused_by_what_it_is(tmp_path):
    """HWC and CHW orders differ and no fc writes the vector to reorder: refused, naming the fix."""
    path = tmp_path / "input_to_map.tflite"
    path.write_bytes(_reshaped_vector_model(dense=False))
    with pytest.raises(ConfigError, match=r"op 0 \(RESHAPE\) reshapes a vector to \[1, 4, 4, 3\] that is not a "
                                          r"FULLY_CONNECTED's output.*straight from a FULLY_CONNECTED"):
        read_tflite(path)


@pytest.mark.parametrize("dense, channels", [(True, 3), (False, 1)], ids=["from an fc, 3 channels", "input, 1 channel"])
def test_a_vector_reshaped_to_a_map_for_a_conv_is_bit_exact_with_litert(dense, channels, tmp_path):
    path = tmp_path / "vector_map.tflite"
    path.write_bytes(_reshaped_vector_model(dense, channels))
    imported = read_tflite(path)
    assert [layer.kind for layer in imported.plan.layers] == ["fc"] * dense + ["conv", "fc"]
    x = np.random.default_rng(15).integers(-128, 128, (32, 48), dtype=np.int8)
    want = litert.run_reference(path, x).reshape(32, -1)
    assert np.array_equal(reference.run(imported.plan, x), want) and len(np.unique(want)) > 20
