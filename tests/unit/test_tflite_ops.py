"""The TFLite mapping of an op kind is one module (edgepack.interop.tflite_ops): a toy ``neg`` op (the op
registry's test op) gets its export to TFLite's NEG and its import back from a module the test writes to
a temporary folder, and a plan holding it is written as .tflite, run by LiteRT's reference kernels bit for
bit as the numpy reference, and read back as the same plan, with no edit to tflite_export / tflite_import."""
from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import pytest

from edgepack import ops
from edgepack.errors import ConfigError
from edgepack.interop import litert, tflite_ops, tflite_writer
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.interop.tflite_import import read_tflite, supported_ops
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from tests.conformance.plans import conv_layer, fc_layer, pool_layer, tflite_requantization
from tests.unit.test_op_registry import NEG_MODULE

NEG_TFLITE_MODULE = '''
"""neg as TFLite's NEG, both ways (a toy mapping of tests/unit/test_tflite_ops.py)."""
from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_writer import builtin_options
from edgepack.plan.plan import Layer


@EXPORTS.register("neg")
def export_neg(g, sources, layer, prefix):
    y = g.activation(prefix, g.tensors[sources[0]].shape, layer.output_q)
    g.op("NEG", sources, [y])
    return y


@builtin_options("NEG", 1)
def _neg_options(b, tfl, o, vector):
    tfl.NegOptionsStart(b)
    return tfl.BuiltinOptions.NegOptions, tfl.NegOptionsEnd(b)


@IMPORTS.register("NEG")
def import_neg(r, i, op, inputs, value, out):
    out_q = out.qparams(f"--model {r.path}: op {i}")
    return Layer(f"layer{i}_neg", "neg", value.shape, value.shape, input_q=value.q, output_q=out_q)
'''


def _load(tmp_path, name: str, text: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(f"edgepack_test_{name}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.fixture
def neg_with_tflite_mapping(tmp_path):
    """The toy op and its TFLite mapping, each imported from its own file; unregistered afterwards."""
    tflite_ops.load()  # the built-in mappings first, as any table use would
    _load(tmp_path, "neg", NEG_MODULE)
    try:
        _load(tmp_path, "neg_tflite", NEG_TFLITE_MODULE)
        yield
    finally:
        ops.unregister("neg")
        tflite_ops.EXPORTS.unregister("neg")
        tflite_ops.IMPORTS.unregister("NEG")
        tflite_writer.OPTIONS.pop("NEG", None)
        tflite_writer.OP_VERSIONS.pop("NEG", None)


def conv_neg_pool_fc() -> Plan:
    """conv 3x3 (RELU, output zero point 0) -> neg -> global average pool -> fc. LiteRT's int8 NEG negates the
    raw value (no zero point; -(-128) wraps): the reference's 2 * zp - x when zp is 0 and x > -128, as here."""
    rng = np.random.default_rng(5)
    q = QParams(float(np.float32(0.03)), 3)
    conv = conv_layer(rng, "conv0", "conv", q, (3, 8, 8), 10, 3, 1, (1, 1, 1, 1))
    conv.output_q = QParams(conv.output_q.scale, 0)
    conv.arrays.update(tflite_requantization(q, conv.arrays["weight_scale"], conv.output_q))
    conv.act_min, conv.act_max, conv.activation = 0, 127, "relu"
    negate = Layer("neg1", "neg", conv.output_shape, conv.output_shape, conv.output_q, conv.output_q)
    pool = pool_layer(rng, "pool2", conv.output_q, conv.output_shape, "average", flat=False)
    fc = fc_layer(rng, "fc3", conv.output_q, 10, 5, "double")
    plan = Plan(q, (3, 8, 8), [conv, negate, pool, fc])
    assert plan.problems() == []
    return plan


def test_an_op_module_maps_a_toy_op_to_tflite_and_back(neg_with_tflite_mapping, tmp_path):
    plan = conv_neg_pool_fc()
    source = tmp_path / "neg.tflite"
    source.write_bytes(plan_to_tflite(plan))
    x = np.random.default_rng(6).integers(-128, 128, (32, *plan.input_shape)).astype(np.int8)
    want, (_, negated, _, _) = reference.run(plan, x, collect=True)
    assert len(np.unique(negated)) > 20 and len(np.unique(want)) > 20  # not a saturated test
    assert np.array_equal(litert.run_reference(source, x).reshape(want.shape), want)

    imported = read_tflite(source)
    assert imported.op_counts["NEG"] == 1 and "NEG" in supported_ops()
    assert [layer.kind for layer in imported.plan.layers] == ["conv", "neg", "avgpool", "fc"]
    for a, b in zip(imported.plan.layers, plan.layers):
        assert (a.kind, a.input_shape, a.output_shape, a.pads, a.stride, a.input_q, a.output_q, a.act_min, a.act_max,
                a.inputs, a.params) == \
               (b.kind, b.input_shape, b.output_shape, b.pads, b.stride, b.input_q, b.output_q, b.act_min, b.act_max,
                b.inputs, b.params)
        assert a.arrays.keys() == b.arrays.keys() and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    assert np.array_equal(reference.run(imported.plan, x), want)


def test_without_its_mapping_module_a_tflite_op_is_refused_by_name(neg_with_tflite_mapping, tmp_path):
    source = tmp_path / "neg.tflite"
    source.write_bytes(plan_to_tflite(conv_neg_pool_fc()))
    tflite_ops.IMPORTS.unregister("NEG")
    with pytest.raises(ConfigError, match=r"uses NEG, outside the int8 plan: edgepack imports only ADD, AVERAGE_POOL_2D, "
                                          r"(\w+, )*CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, (\w+, )*RESHAPE, PAD") as refusal:
        read_tflite(source)
    assert str(refusal.value).endswith(", ".join(supported_ops())) and "NEG" not in supported_ops()
