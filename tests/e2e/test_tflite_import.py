"""--model FILE.tflite: int8 TFLite models read back as the int8 plan, compiled for plan backends and benched
bit-exact with LiteRT's reference kernels (issue 14, item 4)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgepack.interop import litert, tflite_ops, tflite_writer
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_writer import Graph, Tensor, bias_scale
from edgepack.interop.tflite_import import SOFTMAX_DROPPED, read_tflite
from edgepack.errors import ConfigError
from edgepack.plan import reference
from edgepack.plan.plan import QParams

TARGETS = ("c-host", "cortex-m4", "rpi4")


def _cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgepack.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _dequantize_options(b, tfl, o, vector):
    tfl.DequantizeOptionsStart(b)
    return tfl.BuiltinOptions.DequantizeOptions, tfl.DequantizeOptionsEnd(b)


def _serialize_converted(g: Graph) -> bytes:
    """_serialize with edgepack's writer taught DEQUANTIZE while it runs: a converter's float32 output ends in one,
    which edgepack imports but never writes. Every other op is written by the op modules' own registered writers;
    the modules are loaded first, so no writer of theirs is shadowed (or registered twice) whatever ran before."""
    tflite_ops.load()
    assert "DEQUANTIZE" not in tflite_writer.OPTIONS, "edgepack writes DEQUANTIZE now: use its writer, drop this one"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(tflite_writer.OP_VERSIONS, "DEQUANTIZE", 2)
        mp.setitem(tflite_writer.OPTIONS, "DEQUANTIZE", _dequantize_options)
        return _serialize(g)


def _converter_like(ending: str = "dense", float_io: bool = False) -> bytes:
    """What TensorFlow's converter writes for a small Keras MobileNet at 48x48 (int8 in and out): SAME
    padding (stride 2 on even maps: 0 rows top, 1 bottom), per-channel int8 weights, asymmetric
    activations, then as a Keras classifier ends (GlobalAveragePooling2D, Dense, softmax): MEAN over the
    3x3 map (keep_dims, to its own scale and zero point), RESHAPE to (1, features), FULLY_CONNECTED with
    the converter's usual output multiplier (< 0.5) and SOFTMAX. ``ending`` "flat_mean": MEAN without
    keep_dims straight into the FULLY_CONNECTED; "conv": as keras.applications.MobileNet ends, a global
    AVERAGE_POOL_2D, a 1x1 CONV_2D classifier, RESHAPE to (1, classes) and SOFTMAX; "concat": a branch
    joined by CONCATENATION. ``float_io``: the converter's default float32 interface (QUANTIZE first,
    DEQUANTIZE last)."""
    rng = np.random.default_rng(14)
    g = Graph()
    q = QParams(float(np.float32(1 / 127.5)), -1)
    x = g.input = g.activation("serving_default_input:0", (1, 48, 48, 3), q)
    if float_io:
        g.tensors.append(Tensor("float_input", (1, 48, 48, 3), "float32"))
        g.input = len(g.tensors) - 1
        g.op("QUANTIZE", [g.input], [x])
    # (kind, kernel, stride, out channels, activation); spatial 48 -> 24 -> 12 -> 6 -> 3
    layers = [("conv", 3, 2, 8, "RELU6"), ("dw", 3, 1, 8, "RELU6"), ("pw", 1, 1, 16, "RELU6"), ("dw", 3, 2, 16, "RELU"),
              ("pw", 1, 1, 16, "RELU6"), ("dw", 3, 2, 16, "RELU6"), ("dw", 3, 2, 16, "NONE"), ("pw", 1, 1, 24, "RELU6")]
    shape = (1, 48, 48, 3)
    for i, (kind, k, s, o, act) in enumerate(layers):
        c = shape[3]
        fan_in = k * k * (1 if kind == "dw" else c)
        w_scale = rng.uniform(0.004, 0.02, o).astype(np.float32)
        weight = rng.integers(-127, 128, (1, k, k, o) if kind == "dw" else (o, k, k, c)).astype(np.int8)
        out_q = QParams(float(np.float32(q.scale * float(w_scale.mean()) * np.sqrt(fan_in) * 30.0)),
                        -128 if act != "NONE" else int(rng.integers(-10, 10)))
        wt = g.constant(f"w{i}", weight, w_scale, 3 if kind == "dw" else 0)
        bias = g.constant(f"b{i}", rng.integers(-2000, 2000, o).astype(np.int32), bias_scale(q, w_scale))
        shape = (1, -(-shape[1] // s), -(-shape[2] // s), o)
        y = g.activation(f"y{i}", shape, out_q)
        code = "DEPTHWISE_CONV_2D" if kind == "dw" else "CONV_2D"
        extra = {"depth_multiplier": 1} if kind == "dw" else {}
        g.op(code, [x, wt, bias], [y], padding="SAME", stride=s, activation=act, **extra)
        if ending == "concat" and i == 1:
            joined = g.activation("joined", shape[:3] + (2 * o,), out_q)
            g.op("CONCATENATION", [y, x], [joined], axis=3)
            g.output = joined
            return _serialize_converted(g)
        x, q = y, out_q
    features = shape[3]
    w_scale = rng.uniform(0.004, 0.02, 10).astype(np.float32)
    bias = rng.integers(-3000, 3000, 10).astype(np.int32)
    if ending in ("dense", "flat_mean"):
        mean_q = QParams(float(np.float32(q.scale * 0.6)), -20)  # the converter gives the pooled tensor its own range
        keep = ending == "dense"
        pooled = g.activation("pooled", (1, 1, 1, features) if keep else (1, features), mean_q)
        g.op("MEAN", [x, g.constant("reduction_indices", np.array([1, 2], np.int32))], [pooled], keep_dims=keep)
        flat = pooled
        if keep:
            flat = g.activation("flat", (1, features), mean_q)
            g.op("RESHAPE", [pooled, g.constant("flat_shape", np.array([1, features], np.int32))], [flat],
                 new_shape=[1, features])
        logits_q = QParams(float(np.float32(mean_q.scale * float(w_scale.mean()) * np.sqrt(features) * 60.0)), 3)
        logits = g.activation("logits", (1, 10), logits_q)
        wt = g.constant("fc_w", rng.integers(-127, 128, (10, features)).astype(np.int8), w_scale)
        g.op("FULLY_CONNECTED", [flat, wt, g.constant("fc_b", bias, bias_scale(mean_q, w_scale))], [logits],
             activation="NONE")
    else:
        pooled = g.activation("pooled", (1, 1, 1, features), q)
        g.op("AVERAGE_POOL_2D", [x], [pooled], filter_h=3, filter_w=3, stride=1, padding="VALID", activation="NONE")
        logits_q = QParams(float(np.float32(q.scale * float(w_scale.mean()) * np.sqrt(features) * 60.0)), 3)
        logits = g.activation("logits", (1, 10), logits_q)
        wt = g.constant("conv_preds_w", rng.integers(-127, 128, (10, 1, 1, features)).astype(np.int8), w_scale)
        preds = g.activation("conv_preds", (1, 1, 1, 10), logits_q)
        g.op("CONV_2D", [pooled, wt, g.constant("conv_preds_b", bias, bias_scale(q, w_scale))], [preds],
             padding="VALID", stride=1, activation="NONE")
        g.op("RESHAPE", [preds, g.constant("reshape_2", np.array([1, 10], np.int32))], [logits], new_shape=[1, 10])
    probs = g.activation("predictions", (1, 10), QParams(1 / 256, -128))
    g.op("SOFTMAX", [logits], [probs], beta=1.0)
    g.output = probs
    if float_io:
        g.tensors.append(Tensor("float_predictions", (1, 10), "float32"))
        g.output = len(g.tensors) - 1
        g.op("DEQUANTIZE", [probs], [g.output])
    return _serialize_converted(g)


@pytest.fixture(scope="module")
def edgepack_tflite(tmp_path_factory):
    """model.tflite of an edgepack artifact at 64x64 (its global pool is the int16 QUANTIZE pattern)."""
    out = tmp_path_factory.mktemp("source") / "a"
    r = _cli("compile", "--target", "c-host", "--alpha", "0.25", "--resolution", "64", "--eval-size", "16",
             "--calib-size", "32", "-o", out)
    assert r.returncode == 0, r.stderr
    return out / "model.tflite"


def _compile_and_bench(source, target, tmp_path, softmax: str | None):
    out = tmp_path / f"imported-{target}"
    r = _cli("compile", "--model", source, "--target", target, "--eval-size", "16", "-o", out)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["import"]["softmax"] == softmax
    assert manifest["metrics"]["reference_vs_litert_import"]["bit_exact"] is True
    imported = read_tflite(source)
    golden_x, golden_y = np.load(out / "golden_input.npy"), np.load(out / "golden_output.npy")
    assert np.array_equal(golden_y, litert.run_reference_tensor(source, golden_x, imported.litert_tensors(),
                                                                 imported.litert_input(), imported.channels_first))
    report = tmp_path / f"bench-{target}.json"
    r = _cli("bench", out, "--json", report)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(report.read_text())
    assert result["passed"] and any("bit-exact" in c["name"] and c["passed"] for c in result["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_edgepack_written_tflite_compiles_and_benches(edgepack_tflite, target, tmp_path):
    _compile_and_bench(edgepack_tflite, target, tmp_path, softmax=None)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_converter_like_tflite_compiles_and_benches(target, tmp_path):
    source = tmp_path / "converted_net.tflite"
    source.write_bytes(_converter_like())
    imported = read_tflite(source)
    assert imported.softmax == SOFTMAX_DROPPED and imported.classes == 10 and imported.resolution == 48
    strided = [layer for layer in imported.plan.layers if layer.kind in ("conv", "depthwise") and layer.stride == 2]
    assert strided and all(layer.pads == (0, 0, 1, 1) for layer in strided)  # SAME on even maps: bottom/right
    pool, fc = imported.plan.layers[-2:]
    assert (pool.kind, pool.params.pool, fc.kind, fc.params.rounding) == ("avgpool", "mean", "fc", "single")
    assert (fc.arrays["shift"] < 0).all() and pool.output_q != pool.input_q  # rounding once differs; MEAN rescales
    x = np.random.default_rng(4).integers(-128, 128, (24, *imported.plan.input_shape)).astype(np.int8)
    assert len(np.unique(reference.run(imported.plan, x))) > 50  # the head sees varied activations
    _compile_and_bench(source, target, tmp_path, softmax=SOFTMAX_DROPPED)


@pytest.mark.slow
def test_converter_float_interface_is_dropped(tmp_path):
    """The converter's default float32 in/out (QUANTIZE first, DEQUANTIZE last): the plan runs the int8 inside."""
    source = tmp_path / "float_io_net.tflite"
    source.write_bytes(_converter_like(float_io=True))
    imported = read_tflite(source)
    assert imported.float_input and imported.softmax == SOFTMAX_DROPPED
    _compile_and_bench(source, "c-host", tmp_path, softmax=SOFTMAX_DROPPED)


@pytest.mark.parametrize("zero_point", [-128, 0, 17])
def test_even_average_pool_imports_as_litert_rounds_it(zero_point, tmp_path):
    """TFLite's int8 AVERAGE_POOL_2D rounds the raw sum, zero point included: over an even count with a
    zero point its ties differ from the plan's "average", so it becomes a "raw_average" pool, exact."""
    rng = np.random.default_rng(5)
    g = Graph()
    q = QParams(0.05, zero_point)
    x = g.input = g.activation("map", (1, 4, 4, 8), q)
    pooled = g.activation("pooled", (1, 1, 1, 8), q)
    g.op("AVERAGE_POOL_2D", [x], [pooled], filter_h=4, filter_w=4, stride=1, padding="VALID", activation="NONE")
    w_scale = np.full(3, 0.01, np.float32)
    bias = g.constant("b", np.zeros(3, np.int32), bias_scale(q, w_scale))
    g.output = g.activation("y", (1, 3), QParams(0.05 * 0.01 * 40, 0))
    g.op("FULLY_CONNECTED", [pooled, g.constant("w", rng.integers(-127, 128, (3, 8)).astype(np.int8), w_scale), bias],
         [g.output], activation="NONE")
    source = tmp_path / "even_pool.tflite"
    source.write_bytes(_serialize(g))
    plan = read_tflite(source).plan
    assert plan.layers[0].params.pool == ("average" if zero_point == 0 else "raw_average")
    images = rng.integers(-128, 128, (300, 8, 4, 4)).astype(np.int8)
    want = litert.run_reference_tensor(source, images, pooled).reshape(300, 8)
    got = reference.run(plan, images, collect=True)[1][0].reshape(300, 8)
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {want.size} pooled values differ"


@pytest.mark.slow
def test_edgepack_written_tflite_reads_back_as_its_plan(edgepack_tflite):
    from edgepack.plan.plan import Plan

    original, imported = Plan.load(edgepack_tflite.parent), read_tflite(edgepack_tflite).plan
    assert imported.input_q == original.input_q and len(imported.layers) == len(original.layers)
    for a, b in zip(imported.layers, original.layers):
        assert (a.kind, a.input_shape, a.output_shape, a.pads, a.stride, a.input_q, a.output_q, a.act_min, a.act_max) == \
               (b.kind, b.input_shape, b.output_shape, b.pads, b.stride, b.input_q, b.output_q, b.act_min, b.act_max)
        assert a.arrays.keys() == b.arrays.keys() and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


@pytest.mark.slow
def test_python_api_compiles_a_tflite_path(edgepack_tflite, tmp_path):
    import edgepack

    folder = edgepack.compile(str(edgepack_tflite), "c-host", output=str(tmp_path / "api"), eval_size=8)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["name"] == "model" and manifest["model"]["resolution"] == 64
    assert edgepack.bench(folder)["passed"]


@pytest.mark.parametrize("ending", ["flat_mean", "conv"])
def test_other_converter_heads_match_litert(ending, tmp_path):
    """MEAN without keep_dims straight into FULLY_CONNECTED, and keras.applications.MobileNet's AVERAGE_POOL_2D
    and 1x1 CONV_2D classifier: the imported plan's logits are LiteRT's reference kernels' on every value."""
    source = tmp_path / f"{ending}.tflite"
    source.write_bytes(_converter_like(ending))
    imported = read_tflite(source)
    pool, fc = imported.plan.layers[-2:]
    want_heads = {"flat_mean": ("mean", "single", (pool.input_shape[0],)), "conv": ("average", "double", (pool.input_shape[0], 1, 1))}
    assert (pool.params.pool, fc.params.rounding, pool.output_shape) == want_heads[ending]
    x = np.random.default_rng(4).integers(-128, 128, (24, *imported.plan.input_shape)).astype(np.int8)
    want = litert.run_reference_tensor(source, x, imported.logits_tensor)
    got = reference.run(imported.plan, x)
    assert len(np.unique(want)) > 10 and np.array_equal(got, want.reshape(got.shape))


def test_fully_connected_after_a_flattened_map_matches_litert(tmp_path):
    """RESHAPE of a 2x2 map to (1, F) flattens in NHWC order; the imported fc's weights follow the plan's CHW
    order, and the fc rounds acc * M once (rounding "single"), as LiteRT's kernel."""
    rng = np.random.default_rng(3)
    g = Graph()
    q = QParams(0.05, 7)
    x = g.input = g.activation("map", (1, 2, 2, 4), q)
    flat = g.activation("flat", (1, 16), q)
    g.op("RESHAPE", [x, g.constant("shape", np.array([1, 16], np.int32))], [flat], new_shape=[1, 16])
    w_scale = rng.uniform(0.005, 0.02, 6).astype(np.float32)
    wt = g.constant("w", rng.integers(-2, 3, (6, 16)).astype(np.int8), w_scale)
    bias = g.constant("b", rng.integers(-100, 100, 6).astype(np.int32), bias_scale(q, w_scale))
    y = g.activation("y", (1, 6), QParams(float(np.float32(0.05 * 0.005 * 1.3)), -2))
    g.op("FULLY_CONNECTED", [flat, wt, bias], [y], activation="NONE")
    g.output = y
    source = tmp_path / "flat_fc.tflite"
    source.write_bytes(_serialize(g))
    imported = read_tflite(source)
    assert [(layer.kind, layer.params.rounding) for layer in imported.plan.layers] == [("fc", "single")]
    assert imported.softmax is None
    x = rng.integers(-128, 128, (400, 4, 2, 2)).astype(np.int8)
    got = reference.run(imported.plan, x)
    assert np.array_equal(got, litert.run_reference(source, x)) and 0.05 < float((np.abs(got) < 127).mean())


def test_mean_over_channels_is_refused(tmp_path):
    """Only a global MEAN (axes H and W) is a plan pool; one over the channels is refused by what it averages."""
    g = Graph()
    q = QParams(0.05, 0)
    x = g.input = g.activation("map", (1, 3, 3, 4), q)
    y = g.output = g.activation("mean", (1, 3, 3, 1), q)
    g.op("MEAN", [x, g.constant("axes", np.array([3], np.int32))], [y], keep_dims=True)
    source = tmp_path / "mean.tflite"
    source.write_bytes(_serialize(g))
    with pytest.raises(ConfigError, match=r"op 0 \(MEAN\) does not average .* over H and W: only a global mean"):
        read_tflite(source)


def test_quantize_multiplier_rounds_ties_away_from_zero_as_tflite():
    """TFLite's QuantizeMultiplier uses std::round: 0.5 + 2^-32 is mantissa * 2^31 = 2^30 + 0.5 exactly."""
    from edgepack.plan.plan import quantize_multiplier

    assert quantize_multiplier(0.5 + 2.0**-32) == ((1 << 30) + 1, 0)


@pytest.fixture(scope="module")
def v2_tflite(tmp_path_factory):
    """model.tflite of an edgepack MobileNetV2 artifact (alpha 0.35, 32x32, random weights with BatchNorm
    statistics of the digits): 10 residual ADDs, each reading the block input and the projection conv."""
    import torch

    from edgepack.data import load_dataset
    from edgepack.model.mobilenet_v2 import MobileNetV2
    from tests.e2e.test_residual import _with_batchnorm_statistics

    torch.manual_seed(0)
    digits = load_dataset(None, "calibration", 32, 10, (0.5,) * 3, (0.5,) * 3)
    model = _with_batchnorm_statistics(MobileNetV2(0.35, 32, 10), torch.from_numpy(digits.images[:64]))
    folder = tmp_path_factory.mktemp("v2source")
    torch.save(model.state_dict(), folder / "v2.pt")
    r = _cli("compile", "--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", "32", "--checkpoint",
             folder / "v2.pt", "--target", "c-host", "--calib-size", "16", "--eval-size", "16", "-o", folder / "a")
    assert r.returncode == 0, r.stderr
    return folder / "a" / "model.tflite"


@pytest.mark.slow
def test_edgepack_written_v2_tflite_reads_back_as_its_graph_plan(v2_tflite):
    from edgepack.plan.plan import Plan

    original, imported = Plan.load(v2_tflite.parent), read_tflite(v2_tflite).plan
    assert not original.is_chain() and len(imported.layers) == len(original.layers)
    assert sum(layer.kind == "add" for layer in imported.layers) == 10
    for a, b in zip(imported.layers, original.layers):
        assert (a.kind, a.inputs, a.input_shape, a.pads, a.stride, a.input_q, a.params, a.output_q, a.act_min,
                a.act_max) == (b.kind, b.inputs, b.input_shape, b.pads, b.stride, b.input_q, b.params, b.output_q,
                               b.act_min, b.act_max)
        assert a.arrays.keys() == b.arrays.keys() and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


@pytest.mark.slow
def test_edgepack_written_v2_tflite_compiles_and_benches(v2_tflite, tmp_path):
    _compile_and_bench(v2_tflite, "c-host", tmp_path, softmax=None)


def _residual_tflite(activation: str, second: str = "residual") -> tuple[bytes, int]:
    """A residual block as a converter writes one: a 1x1 CONV_2D, then ADD of its output and the block's input
    (each with its own scale and zero point, the sum with a third, fused ``activation``), then MEAN and
    FULLY_CONNECTED; the file and the sum's tensor index. ``second``: "constant" adds a constant tensor,
    "broadcast" a (1, 1, 1, C) activation."""
    rng = np.random.default_rng(13)
    g = Graph()
    q = QParams(float(np.float32(0.043)), 5)
    x = g.input = g.activation("input", (1, 6, 6, 8), q)
    w_scale = rng.uniform(0.004, 0.02, 8).astype(np.float32)
    conv_q = QParams(float(np.float32(0.071)), -9)
    y = g.activation("conv", (1, 6, 6, 8), conv_q)
    g.op("CONV_2D", [x, g.constant("w", rng.integers(-127, 128, (8, 1, 1, 8)).astype(np.int8), w_scale, 0),
                     g.constant("b", rng.integers(-300, 300, 8).astype(np.int32), bias_scale(q, w_scale))], [y],
         padding="VALID", stride=1, activation="NONE")
    if second == "constant":
        addend = g.constant("c", rng.integers(-128, 128, (1, 6, 6, 8)).astype(np.int8), np.float32([0.05]))
    elif second == "broadcast":
        addend = g.activation("pooled", (1, 1, 1, 8), q)
        g.op("AVERAGE_POOL_2D", [x], [addend], filter_h=6, filter_w=6, stride=1, padding="VALID", activation="NONE")
    else:
        addend = x
    sum_q = QParams(float(np.float32(0.09)), -3)
    s = g.activation("sum", (1, 6, 6, 8), sum_q)
    g.op("ADD", [y, addend], [s], activation=activation)
    mean_q = QParams(float(np.float32(0.05)), 2)
    pooled = g.activation("mean", (1, 8), mean_q)
    g.op("MEAN", [s, g.constant("axes", np.array([1, 2], np.int32))], [pooled], keep_dims=False)
    fc_scale = rng.uniform(0.004, 0.02, 4).astype(np.float32)
    g.output = g.activation("logits", (1, 4), QParams(float(np.float32(0.02)), 1))
    g.op("FULLY_CONNECTED", [pooled, g.constant("fc_w", rng.integers(-127, 128, (4, 8)).astype(np.int8), fc_scale),
                             g.constant("fc_b", np.zeros(4, np.int32), bias_scale(mean_q, fc_scale))], [g.output],
         activation="NONE")
    return _serialize(g), s


@pytest.mark.parametrize("activation", ["NONE", "RELU", "RELU6"])
def test_residual_add_imports_as_litert_computes_it(activation, tmp_path):
    """ADD of a conv's output and the block input (three scales and zero points, fused activation): the
    imported plan is a graph whose add reads both, and its sums are LiteRT's reference kernels' on every value."""
    source = tmp_path / "residual.tflite"
    data, sum_tensor = _residual_tflite(activation)
    source.write_bytes(data)
    plan = read_tflite(source).plan
    assert [layer.kind for layer in plan.layers] == ["pointwise", "add", "avgpool", "fc"]
    add = plan.layers[1]
    assert add.inputs == (0, -1) and add.input_q != add.params.input2_q and add.activation == activation.lower()
    images = np.random.default_rng(6).integers(-128, 128, (300, 8, 6, 6)).astype(np.int8)
    sums = reference.run(plan, images, collect=True)[1][1]
    want = litert.run_reference_tensor(source, images, sum_tensor).reshape(300, 6, 6, 8).transpose(0, 3, 1, 2)
    assert np.array_equal(sums, want), f"{int((sums != want).sum())} of {want.size} sums differ"
    assert len(np.unique(sums)) > 60 and (activation == "NONE" or sums.min() == add.act_min)  # RELU6: 68 levels
    assert np.array_equal(reference.run(plan, images), litert.run_reference(source, images))


@pytest.mark.parametrize("second, why", [("constant", "a constant operand"), ("broadcast", "no broadcasting")])
def test_add_the_plan_cannot_express_is_refused(second, why, tmp_path):
    source = tmp_path / f"{second}.tflite"
    source.write_bytes(_residual_tflite("NONE", second)[0])
    with pytest.raises(ConfigError, match=rf"op \d \(ADD\) .*{why}"):
        read_tflite(source)
