"""What converters put at a model's edges and between its layers, on TFLiteConverter's own files
(tests/converter_models.py): the default float32 interface (QUANTIZE first, DEQUANTIZE last) absorbed into
the int8 plan with its scales recorded, and a dense layer's vector RESHAPEd to a map for a conv (a decoder).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_import import read_tflite
from edgepack.plan import reference
from tests import converter_models
from tests.e2e.test_tflite_import import _compile_and_bench

RANDOM_INPUTS = 32


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converter_models.build(tmp_path_factory.mktemp("boundary_models"), ["float_io", "fc_reshape_conv"])


def _litert_float_run(path, floats: np.ndarray, tensor: int) -> tuple[np.ndarray, np.ndarray]:
    """LiteRT's reference kernels on the whole file, float32 in and out: (its outputs, int8 tensor ``tensor``)."""
    from ai_edge_litert import interpreter as lite
    it = lite.Interpreter(model_path=str(path), experimental_op_resolver_type=lite.OpResolverType.BUILTIN_REF,
                          num_threads=1, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    outputs, inner = [], []
    for x in floats:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        outputs.append(it.get_tensor(out["index"])[0].copy())
        inner.append(it.get_tensor(tensor)[0].copy())
    return np.array(outputs), np.array(inner)


@pytest.mark.slow
def test_float_interface_reference_matches_litert_on_floats_after_dequantize(converted):
    """LiteRT is given float inputs its QUANTIZE maps exactly onto 32 random int8 inputs; its float outputs are
    the plan's int8 outputs dequantized with the recorded scale (TFLite's DEQUANTIZE: float(double(scale) *
    (q - zp)))."""
    imported = read_tflite(converted["float_io"])
    assert imported.float_input and imported.float_output and imported.softmax is None
    record = imported.record()
    q_in, q_out = imported.plan.input_q, imported.plan.output_q
    assert record["float_input"]["scale"] == q_in.scale and record["float_input"]["zero_point"] == q_in.zero_point
    assert record["float_output"]["scale"] == q_out.scale and record["float_output"]["zero_point"] == q_out.zero_point
    assert "DEQUANTIZE" in record["output"] and "QUANTIZE" in record["input"]
    c, h, w = imported.plan.input_shape
    x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, c, h, w), dtype=np.int8)
    nhwc = x.transpose(0, 2, 3, 1)
    floats = (nhwc.astype(np.float32) - np.float32(q_in.zero_point)) * np.float32(q_in.scale)
    requantized = np.clip(np.round(floats / np.float32(q_in.scale)) + q_in.zero_point, -128, 127)
    assert np.array_equal(requantized, nhwc)  # the floats quantize exactly to the int8 inputs
    got_float, got_logits = _litert_float_run(converted["float_io"], floats, imported.logits_tensor)
    want = reference.run(imported.plan, x)
    assert np.array_equal(got_logits.reshape(RANDOM_INPUTS, -1), want)
    dequantized = (np.float64(q_out.scale) * (want.astype(np.int64) - q_out.zero_point)).astype(np.float32)
    assert np.array_equal(got_float.reshape(RANDOM_INPUTS, -1), dequantized)
    assert len(np.unique(want)) > 20  # varied outputs, not a saturated constant


@pytest.mark.slow
def test_float_interface_model_compiles_and_benches_on_c_host_with_its_scales_recorded(converted, tmp_path):
    _compile_and_bench(converted["float_io"], "c-host", tmp_path, softmax=None)
    record = json.loads((tmp_path / "imported-c-host" / "manifest.json").read_text())["import"]
    plan = json.loads((tmp_path / "imported-c-host" / "manifest.json").read_text())["plan"]
    assert record["float_input"]["scale"] == plan["input"]["scale"]
    assert record["float_output"]["zero_point"] == plan["output"]["zero_point"]


def _op_output(path, k: int) -> int:
    """The tensor index op ``k`` of the file writes."""
    import tflite
    with open(path, "rb") as f:
        return int(tflite.Model.GetRootAsModel(f.read(), 0).Subgraphs(0).Operators(k).Outputs(0))


@pytest.mark.slow
def test_dense_vector_reshaped_to_a_map_is_the_plan_fc_writing_that_map_in_chw_order(converted):
    """FULLY_CONNECTED -> RESHAPE (1, 4, 4, 8) -> CONV_2D: the plan's fc writes the map the RESHAPE makes, in the
    plan's CHW order, and the model is bit-exact with LiteRT BUILTIN_REF on 32 random inputs."""
    source = converted["fc_reshape_conv"]
    imported = read_tflite(source)
    assert [layer.kind for layer in imported.plan.layers] == ["fc", "conv", "fc"]
    assert imported.plan.layers[1].input_shape == (8, 4, 4)
    x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, 16), dtype=np.int8)
    logits, outputs = reference.run(imported.plan, x, collect=True)
    nhwc = litert.run_reference_tensor(source, x, _op_output(source, 1))
    assert nhwc.shape == (RANDOM_INPUTS, 4, 4, 8)
    assert np.array_equal(outputs[0].reshape(RANDOM_INPUTS, 8, 4, 4), nhwc.transpose(0, 3, 1, 2))
    want = litert.run_reference_tensor(source, x, imported.logits_tensor)
    assert np.array_equal(logits, want.reshape(RANDOM_INPUTS, -1)) and len(np.unique(want)) > 20
