"""What converters write between layers, on small files edgepack's exporter writes and a test then edits:
a MUL whose constant is its first operand (TFLite's MUL(c, x)) imports as the MUL(x, c) it equals."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.interop.tflite_import import read_tflite
from edgepack.ops.lut import LutParams, lut_layer
from edgepack.plan import reference
from edgepack.plan.plan import Plan, QParams
from tests import converter_models, tflite_mutations
from tests.conformance.plans import conv_layer, fc_layer, pool_layer


def _mul_constant_plan(constant: int) -> Plan:
    """conv 3x3/2 -> MUL by a one-element constant (a mul_constant lut) -> global pool -> fc."""
    rng = np.random.default_rng(7)
    q = QParams(0.02, -5)
    conv = conv_layer(rng, "conv0", "conv", q, (3, 9, 9), 6, 3, 2, (1,) * 4)
    params = LutParams("mul_constant", constant=constant, constant_q=QParams(float(np.float32(0.01)), 3), activation="none")
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
