"""The int8 pad (edgepack.ops.pad, TFLite's PAD / PADV2): the reference against a loop over the output, the
problems a plan with one is refused for, its constant through plan.json / plan.npz, and the .tflite both ways
(PAD for the zero point, PADV2 for another constant; a zero-point PAD folded into the conv it feeds, kept as a
pad layer before any other op; batch / channel padding and PADV2 constants quantized unlike the output refused)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.errors import ArtifactError, ConfigError
from edgepack.interop.tflite_export import _serialize, plan_to_tflite, write_tflite
from edgepack.interop.tflite_import import read_tflite
from edgepack.interop.tflite_writer import Graph
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.ops.pad import PadParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from tests.conformance import executors
from tests.conformance.plans import PAD_CASES, conv_layer, fc_layer, pad_case, pad_layer, pool_layer

Q = QParams(0.05, -7)


def loop_pad(x: np.ndarray, pads, value: int) -> np.ndarray:
    """reference_ops::Pad, output position by output position: the input where it lies, else the constant."""
    top, left, bottom, right = pads
    n, c, h, w = x.shape
    out = np.empty((n, c, h + top + bottom, w + left + right), np.int8)
    for y in range(out.shape[2]):
        for xx in range(out.shape[3]):
            inside = 0 <= y - top < h and 0 <= xx - left < w
            out[:, :, y, xx] = x[:, :, y - top, xx - left] if inside else value
    return out


@pytest.mark.parametrize("pads, value", [((1, 1, 1, 1), -7), ((0, 2, 3, 0), 100), ((2, 0, 0, 1), -128),
                                         ((0, 0, 0, 0), 5)])
def test_reference_frames_the_input_with_the_constant(pads, value):
    x = np.random.default_rng(sum(pads)).integers(-128, 128, (3, 2, 5, 4)).astype(np.int8)
    layer = pad_layer("pad", Q, (2, 5, 4), pads, value)
    assert Plan(Q, (2, 5, 4), [layer]).problems() == []
    got = reference.kernel(layer, x)
    assert got.dtype == np.int8 and np.array_equal(got, loop_pad(x, pads, value))


def _pad(out_shape=(2, 6, 6), q_out=Q, params=PadParams(-7), **kw) -> Layer:
    return Layer("pad", "pad", (2, 4, 4), out_shape, Q, q_out, pads=(1, 1, 1, 1), params=params, **kw)


@pytest.mark.parametrize("layer, problem", [
    (_pad(q_out=QParams(0.1, -7)), "pad: a pad must keep its input's scale and zero point"),
    (_pad(out_shape=(2, 6, 5)), "pad: output [2, 6, 5] does not follow from input [2, 4, 4] and pads [1, 1, 1, 1] "
                                "(expected [2, 6, 6])"),
    (_pad(out_shape=(3, 6, 6)), "pad: output [3, 6, 6] does not follow"),
    (_pad(params=PadParams(128)), "pad: pad value 128 is not an int8 integer"),
    (_pad(params=PadParams(1.5)), "pad: pad value 1.5 is not an int8 integer"),
    (_pad(params=MaxPoolParams(2)), "pad: params MaxPoolParams are not the pad op's (it takes PadParams)"),
    (_pad(act_min=-7, activation="relu"), "pad: a pad takes no activation"),
    (_pad(arrays={"multiplier": np.ones(2, np.int32)}), "pad: a pad has no arrays, got multiplier"),
    (Layer("pad", "pad", (2, 4, 4), (2, 6, 6), Q, Q, pads=(1, -1, 1, 3), params=PadParams(0)),
     "pad: pads [1, -1, 1, 3] are not 4 non-negative integers"),
    (Layer("pad", "pad", (2, 4, 4), (2, 6, 6), Q, Q, stride=2, pads=(1, 1, 1, 1), params=PadParams(0)),
     "pad: a pad has stride 1, got 2"),
])
def test_a_plan_with_a_broken_pad_is_refused_naming_the_problem(layer, problem):
    found = Plan(Q, (2, 4, 4), [layer]).problems()
    assert len(found) == 1 and problem in found[0], found


def test_a_pad_without_its_constant_or_of_a_vector_is_refused():
    assert Plan(Q, (2, 4, 4), [Layer("pad", "pad", (2, 4, 4), (2, 6, 6), Q, Q, pads=(1,) * 4)]).problems() == [
        "pad: a pad needs its constant (PadParams)"]
    vector = Layer("pad", "pad", (32,), (2, 6, 6), Q, Q, pads=(1,) * 4, params=PadParams(0))
    assert Plan(Q, (2, 4, 4), [vector]).problems() == ["pad: a pad layer reads a (C, H, W) map, not [32]"]


def test_the_constant_is_saved_as_the_layers_params_and_loaded_typed(tmp_path):
    plan, x = pad_case(next(iter(PAD_CASES)))
    plan.save(tmp_path)
    saved = json.loads((tmp_path / "plan.json").read_text())["layers"][2]
    assert saved["kind"] == "pad" and saved["params"] == {"value": 37} and saved["pads"] == [2, 0, 1, 3]
    loaded = Plan.load(tmp_path)
    assert loaded.layers[2].params == PadParams(37)
    assert np.array_equal(reference.run(loaded, x), reference.run(plan, x))
    meta = json.loads((tmp_path / "plan.json").read_text())
    del meta["layers"][2]["params"]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"pad2: a pad needs its constant \(PadParams\)"):
        Plan.load(tmp_path)


def _ops(data: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(model_content=data)._get_ops_details()]


@pytest.mark.parametrize("name", PAD_CASES)
def test_the_export_writes_pad_or_padv2_and_reads_back_with_zero_point_pads_folded_into_the_conv(name, tmp_path):
    plan, x = pad_case(name)
    data = plan_to_tflite(plan)
    assert [op for op in _ops(data) if op.startswith("PAD")] == (["PAD", "PADV2"] if "PAD 1" in name[:5]
                                                                 else ["PADV2", "PAD"])
    imported = read_tflite(write_tflite(plan, tmp_path / "m.tflite")).plan
    pads = [(layer.kind, layer.pads, layer.params) for layer in imported.layers if layer.kind in ("pad", "conv")]
    kept = next(layer for layer in plan.layers if layer.kind == "pad" and layer.params.value != layer.output_q.zero_point)
    folded = next(layer for layer in plan.layers if layer.kind == "pad" and layer is not kept)
    assert ("pad", kept.pads, kept.params) in pads and ("conv", folded.pads, None) in pads and len(pads) == 3
    assert np.array_equal(reference.run(imported, x), reference.run(plan, x))


def test_a_zero_point_pad_before_a_max_pool_is_imported_as_a_pad_layer_bit_exact_under_litert(tmp_path):
    """Only a conv takes a PAD as its own pads: before a max pool (whose pads never win) it stays a pad layer."""
    rng = np.random.default_rng(3)
    q = QParams(0.02, 5)
    layers = [conv_layer(rng, "conv0", "conv", q, (3, 7, 9), 6, 3, 1, (1,) * 4)]
    layers.append(pad_layer("pad1", layers[0].output_q, layers[0].output_shape, (1, 0, 2, 1)))
    c, h, w = layers[1].output_shape
    layers.append(Layer("max2", "maxpool", (c, h, w), (c, h // 2, w // 2), layers[1].output_q, layers[1].output_q,
                        stride=2, params=MaxPoolParams(2)))
    layers.append(pool_layer(rng, "pool3", layers[2].output_q, layers[2].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc4", layers[3].output_q, c, 4, "single"))
    plan = Plan(q, (3, 7, 9), layers)
    assert plan.problems() == []
    x = rng.integers(-128, 128, (16, 3, 7, 9)).astype(np.int8)
    imported = read_tflite(write_tflite(plan, tmp_path / "m.tflite")).plan
    assert [layer.kind for layer in imported.layers] == ["conv", "pad", "maxpool", "avgpool", "fc"]
    assert imported.layers[1].pads == (1, 0, 2, 1) and imported.layers[1].params == PadParams(layers[0].output_q.zero_point)
    assert np.array_equal(reference.run(imported, x), reference.run(plan, x))
    assert np.array_equal(executors.run_tflite(plan, x), reference.run(plan, x))


def _pad_only_file(tmp_path, paddings, constant_q: QParams | None = None, out_q: QParams = Q) -> str:
    """input (1, 4, 4, 2) -> PAD (or PADV2 of 3 in ``constant_q``) -> output, written by hand."""
    g = Graph()
    g.input = g.activation("input", (1, 4, 4, 2), Q)
    pads = g.constant("paddings", np.array(paddings, np.int32))
    shape = tuple(d + sum(p) for d, p in zip((1, 4, 4, 2), paddings))
    g.output = g.activation("padded", shape, out_q)
    if constant_q is None:
        g.op("PAD", [g.input, pads], [g.output])
    else:
        value = g.constant("value", np.array([3], np.int8), np.array([constant_q.scale], np.float32))
        g.tensors[value].zero_point = np.array([constant_q.zero_point], np.int64)
        g.op("PADV2", [g.input, pads, value], [g.output])
    path = tmp_path / "pad.tflite"
    path.write_bytes(_serialize(g))
    return str(path)


@pytest.mark.parametrize("paddings, constant_q, out_q, refusal", [
    ([[0, 0], [1, 1], [1, 1], [0, 2]], None, Q, r"op 0 \(PAD\) pads the batch or channel axis: the int8 plan pads "
                                                r"height and width only"),
    ([[1, 0], [1, 1], [1, 1], [0, 0]], QParams(0.05, -7), Q, r"op 0 \(PADV2\) pads the batch or channel axis"),
    ([[0, 0], [1, 1], [1, 1], [0, 0]], None, QParams(0.05, 0), r"op 0 \(PAD\) changes the quantization"),
    ([[0, 0], [1, 1], [1, 1], [0, 0]], QParams(0.05, 0), Q, r"op 0 \(PADV2\) has a constant quantized unlike its "
                                                            r"output: LiteRT's int8 PADV2 needs"),
])
def test_an_imported_pad_the_plan_cannot_express_is_refused_by_name(tmp_path, paddings, constant_q, out_q, refusal):
    with pytest.raises(ConfigError, match=refusal):
        read_tflite(_pad_only_file(tmp_path, paddings, constant_q, out_q))


def test_the_refusal_list_of_supported_layers_names_the_pad_layers():
    from edgepack.quantize.layers import PAD_OPS, SHARED_OPS, SUPPORTED_LAYERS

    assert "ZeroPad2d/ConstantPad2d/F.pad (constant, height and width)" in SUPPORTED_LAYERS
    assert PAD_OPS <= SHARED_OPS  # annotated to keep the input's quantization, as the plan's pad requires
