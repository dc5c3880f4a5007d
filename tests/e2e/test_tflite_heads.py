"""The heads TensorFlow's converter writes for every Keras classifier, imported exactly: FULLY_CONNECTED
(one rounding of acc * M, the plan's fc rounding "single") and MEAN over H and W (1/count folded into the
requantization, the plan's "mean" pool), first in the numpy reference against LiteRT's reference kernels
on one-op models, then in every executor against the reference; AVERAGE_POOL_2D's raw average (the
"raw_average" pool, its one-op check is in test_tflite_import.py) in every executor too."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_writer import Graph, bias_scale
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.ops.fc import FcParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams, mean_requantization, quantize_multiplier


def _scale(rng, low=0.005, high=0.1) -> float:
    return float(np.float32(rng.uniform(low, high)))


def _requantization(in_q: QParams, w_scale: np.ndarray, out_q: QParams) -> dict[str, np.ndarray]:
    """Multipliers and shifts as TFLite derives them from the float32 scales (what LiteRT will use)."""
    pairs = [quantize_multiplier(float(np.float32(in_q.scale)) * float(s) / float(np.float32(out_q.scale)))
             for s in w_scale]
    return {"multiplier": np.array([m for m, _ in pairs], np.int32), "shift": np.array([s for _, s in pairs], np.int32)}


def _single_fc_layer(rng, features: int, classes: int, in_q: QParams, per_channel: bool, ratio: float = 300.0) -> Layer:
    """An fc with output scale ``ratio`` times in_scale * mean(w_scale): right shifts for a large ratio, none below 1
    (then with weights in [-2, 2] and a small bias, so that not every output saturates)."""
    w_scale = rng.uniform(0.002, 0.02, classes if per_channel else 1).astype(np.float32)
    w_scale = np.broadcast_to(w_scale, (classes,)).astype(np.float32)
    out_q = QParams(float(np.float32(in_q.scale * float(w_scale.mean()) * ratio)), int(rng.integers(-20, 20)))
    w_max, b_max = (127, 5000) if ratio >= 1 else (2, 20)
    arrays = {"weight": rng.integers(-w_max, w_max + 1, (classes, features)).astype(np.int8),
              "bias": rng.integers(-b_max, b_max, classes).astype(np.int32),
              "weight_scale": w_scale, **_requantization(in_q, w_scale, out_q)}
    return Layer("fc", "fc", (features,), (classes,), in_q, out_q, arrays=arrays, params=FcParams("single"))


def _mean_layer(rng, channels: int, hw: tuple[int, int], in_q: QParams, out_q: QParams, keep_dims: bool) -> Layer:
    m, s = mean_requantization(in_q.scale, out_q.scale, hw[0] * hw[1])
    arrays = {"multiplier": np.full(channels, m, np.int32), "shift": np.full(channels, s, np.int32)}
    return Layer("mean", "avgpool", (channels, *hw), (channels, 1, 1) if keep_dims else (channels,), in_q, out_q,
                 arrays=arrays, params=AvgPoolParams("mean"))


def test_single_rounding_fc_matches_litert_fully_connected():
    """Random scales (right and left shifts), per-tensor and per-channel weights: LiteRT's int8
    FULLY_CONNECTED equals the plan's fc with rounding "single" on every value, and the plan's default
    (gemmlowp, two roundings) is shown to differ on the same model."""
    rng = np.random.default_rng(12)
    double_differs = 0
    for trial in range(8):
        in_q = QParams(_scale(rng), int(rng.integers(-30, 30)))
        ratio = (3000.0, 300.0, 40.0, 0.3)[trial // 2]
        layer = _single_fc_layer(rng, 48, 10, in_q, per_channel=trial % 2 == 1, ratio=ratio)
        assert (layer.arrays["shift"] >= 0).all() == (ratio < 1)
        g = Graph()
        x = g.input = g.activation("x", (1, 1, 1, 48), in_q)  # FULLY_CONNECTED flattens it to (1, 48)
        w_scale = layer.weight_scales()
        weight = g.constant("w", layer.weight, w_scale if trial % 2 else w_scale[:1])
        bias = g.constant("b", layer.arrays["bias"], bias_scale(in_q, w_scale if trial % 2 else w_scale[:1]))
        g.output = g.activation("y", (1, 10), layer.output_q)
        g.op("FULLY_CONNECTED", [x, weight, bias], [g.output], activation="NONE")
        images = rng.integers(-128, 128, (300, 48, 1, 1)).astype(np.int8)
        want = litert.run_reference(_serialize(g), images).reshape(300, 10)
        got = reference.kernel(layer, images)
        assert np.array_equal(got, want), f"trial {trial}: {int((got != want).sum())} values differ"
        assert len(np.unique(want)) > 20
        double_differs += int((reference.kernel(dataclasses.replace(layer, params=FcParams("double")), images) != want).sum())
    assert double_differs > 0


@pytest.mark.parametrize("keep_dims", [True, False])
def test_mean_pool_matches_litert_mean(keep_dims):
    """LiteRT's int8 MEAN over H and W (QuantizedMeanOrSum): odd, even and 1x1 maps, input and output
    scales equal or not, zero points anywhere: the plan's "mean" pool equals it on every value."""
    rng = np.random.default_rng(7 + keep_dims)
    for hw in ((3, 3), (2, 2), (7, 7), (4, 4), (1, 1), (6, 5)):
        for same_q in (True, False):
            in_q = QParams(_scale(rng), int(rng.integers(-128, 100)))
            out_q = in_q if same_q else QParams(float(np.float32(in_q.scale * rng.uniform(0.3, 3))), int(rng.integers(-50, 50)))
            layer = _mean_layer(rng, 16, hw, in_q, out_q, keep_dims)
            assert Plan(in_q, layer.input_shape, [layer]).problems() == []
            g = Graph()
            x = g.input = g.activation("x", (1, *hw, 16), in_q)
            g.output = g.activation("y", (1, 1, 1, 16) if keep_dims else (1, 16), out_q)
            g.op("MEAN", [x, g.constant("axes", np.array([1, 2], np.int32))], [g.output], keep_dims=keep_dims)
            images = rng.integers(-128, 128, (200, 16, *hw)).astype(np.int8)
            images[100:] = np.clip(images[100:] // 8 + in_q.zero_point, -128, 127)  # near the zero point: ties
            want = litert.run_reference(_serialize(g), images).reshape(200, 16)
            got = reference.kernel(layer, images).reshape(200, 16)
            assert np.array_equal(got, want), f"{hw}, same q {same_q}: {int((got != want).sum())} values differ"


def test_plan_saves_each_ops_params_loads_v3_flat_keys_and_names_their_misuse(tmp_path):
    import json

    from edgepack.errors import ArtifactError

    q = QParams(0.05, 0)
    rng = np.random.default_rng(0)
    mean = _mean_layer(rng, 4, (3, 3), q, QParams(0.03, 5), keep_dims=False)
    fc = _single_fc_layer(rng, 4, 3, QParams(0.03, 5), per_channel=True)
    Plan(q, (4, 3, 3), [mean, fc]).save(tmp_path)
    loaded = Plan.load(tmp_path)
    assert [layer.params for layer in loaded.layers] == [AvgPoolParams("mean"), FcParams("single")]
    assert np.array_equal(loaded.layers[0].arrays["multiplier"], mean.arrays["multiplier"])
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert [layer["params"] for layer in meta["layers"]] == [{"pool": "mean"}, {"rounding": "single"}]
    meta["version"] = 3  # as version 3 wrote them: flat keys on every layer, defaults where the kind has none
    for layer, own in zip(meta["layers"], ({"pool": "mean", "rounding": "double"}, {"pool": "average", "rounding": "single"})):
        del layer["params"]
        layer.update(own, input2_q=None)
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    assert [layer.params for layer in Plan.load(tmp_path).layers] == [AvgPoolParams("mean"), FcParams("single")]
    for layer in meta["layers"]:  # a plan written before these keys loads with the defaults
        del layer["pool"], layer["rounding"]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    assert [layer.params for layer in Plan.load(tmp_path).layers] == [AvgPoolParams("average"), FcParams("double")]
    meta["layers"][0]["rounding"] = "single"  # a flat key on a kind that does not own it
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="rounding 'single' is set on a avgpool layer"):
        Plan.load(tmp_path)
    mean, fc = loaded.layers
    bad_params = dataclasses.replace(mean, params=FcParams("single"))
    uneven = dataclasses.replace(mean, arrays={**mean.arrays, "shift": np.array([-3, -3, -3, -4], np.int32)})
    unknown = dataclasses.replace(fc, params=FcParams("triple"))
    assert "params FcParams are not the avgpool op's (it takes AvgPoolParams)" in Plan(q, (4, 3, 3), [bad_params, fc]).problems()[0]
    assert "same for every channel" in Plan(q, (4, 3, 3), [uneven, fc]).problems()[0]
    assert "'triple'" in Plan(q, (4, 3, 3), [mean, unknown]).problems()[0]


def head_plan(pool: str = "mean", seed: int = 3) -> Plan:
    """tests.e2e.test_neon_kernels.random_plan (SAME pads), its requantization derived from the scales as TFLite
    does, ending as the converter's models do: a MEAN pool that rescales (pool "mean"), or an
    AVERAGE_POOL_2D over an even count at a non-zero zero point ("raw_average"), then a single-rounding
    fc whose multipliers mix one left shift with right shifts."""
    from tests.e2e.test_neon_kernels import random_plan

    plan = random_plan(seed, width=16, res=16, classes=64, asymmetric=True)
    rng = np.random.default_rng(seed)
    for layer in plan.layers[:-2]:  # requantization as TFLite derives it from the scales, so LiteRT can run it
        if layer.activation == "relu":  # and a clamp .tflite can express (fused RELU)
            layer.act_max = 127
        w_scale = rng.uniform(0.005, 0.02, layer.output_shape[0]).astype(np.float32)
        layer.arrays.update(weight_scale=w_scale, **_requantization(layer.input_q, w_scale, layer.output_q))
    avgpool, fc = plan.layers[-2:]
    c, h, w = avgpool.input_shape
    if pool == "mean":
        pooled_q = QParams(float(np.float32(avgpool.input_q.scale * 1.7)), -7)
        pooling = _mean_layer(rng, c, (h, w), avgpool.input_q, pooled_q, keep_dims=True)
    else:
        pooled_q = avgpool.input_q
        assert (h * w) % 2 == 0 and pooled_q.zero_point != 0  # where raw_average and average differ
        pooling = dataclasses.replace(avgpool, params=AvgPoolParams("raw_average"))
    head = _single_fc_layer(rng, fc.input_shape[0], fc.output_shape[0], pooled_q, per_channel=True, ratio=400.0)
    head.arrays["weight_scale"][0] *= 600.0  # channel 0 scales up (a left shift), with weights in [-1, 1]
    head.arrays["weight"][0], head.arrays["bias"][0] = rng.integers(-1, 2, fc.input_shape[0]), 3
    head.arrays.update(_requantization(pooled_q, head.arrays["weight_scale"], head.output_q))
    assert head.arrays["shift"][0] > 0 > head.arrays["shift"][1:].max()
    plan = Plan(plan.input_q, plan.input_shape, plan.layers[:-2] + [pooling, head])
    assert plan.problems() == []
    return plan


def _head_images(plan: Plan, n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, (n, *plan.input_shape)).astype(np.int8)


@pytest.mark.parametrize("pool", ["mean", "raw_average"])
def test_head_plan_exports_to_a_tflite_litert_reproduces(pool):
    """The exporter writes the mean pool as MEAN, the raw average as AVERAGE_POOL_2D and the single-rounding
    fc as FULLY_CONNECTED: LiteRT's reference kernels give the plan's outputs bit for bit."""
    from edgepack.interop.tflite_export import plan_to_tflite

    plan = head_plan(pool)
    x = _head_images(plan)
    want = reference.run(plan, x)
    assert np.array_equal(litert.run_reference(plan_to_tflite(plan), x).reshape(want.shape), want)
    # the images tell the roundings apart, so the executors' tests below can fail on a wrong one
    *body, pooling, head = plan.layers
    twice = Plan(plan.input_q, plan.input_shape, body + [pooling, dataclasses.replace(head, params=FcParams("double"))])
    assert len(np.unique(want)) > 100 and (reference.run(twice, x) != want).any()
    if pool == "raw_average":
        average = Plan(plan.input_q, plan.input_shape, body + [dataclasses.replace(pooling, params=AvgPoolParams("average")), head])
        assert (reference.run(average, x, collect=True)[1][-2] != reference.run(plan, x, collect=True)[1][-2]).any()


@pytest.mark.parametrize("pool", ["mean", "raw_average"])
@pytest.mark.parametrize("kernels", ["generic", "vnni"])
def test_head_plan_bit_exact_in_tvm_on_host(kernels, pool):
    import tvm
    from tvm import relax
    from tvm.target import codegen

    from edgepack.backends.tvm import x86_vnni
    from edgepack.backends.tvm.lower import tvm_target
    from edgepack.backends.tvm.relax_int8 import plan_to_relax
    from edgepack.targets import get_target

    plan = head_plan(pool)
    tgt = tvm_target(get_target("x86-tvm"))
    if kernels == "vnni":
        assert codegen.target_has_features("avx512vnni", tgt) and x86_vnni.supported(plan, tgt)
        ex = x86_vnni.build(plan, tgt)
    else:
        ex = tvm.compile(plan_to_relax(plan), target=tgt, relax_pipeline=relax.get_default_pipeline(tgt))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x = _head_images(plan)
    got = np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])
    want = reference.run(plan, x)
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} values differ"


@pytest.mark.slow
@pytest.mark.parametrize("cpu, pool", [("cortex-a72", "mean"), ("cortex-a76", "raw_average")])
def test_head_plan_bit_exact_in_neon_under_qemu(cpu, pool, tmp_path):
    """SMULL (a72) and SDOT (a76) kernel sets, each with one of the pools; the fc is the same TE kernel."""
    from tests.e2e.test_neon_kernels import run_neon

    plan = head_plan(pool)
    x = _head_images(plan)
    want = reference.run(plan, x)
    got = run_neon(plan, cpu, x, 4, tmp_path)
    assert got.shape == want.shape
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} values differ"


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["mean", "raw_average"])
def test_head_plan_bit_exact_in_c_on_host_and_cortex_m4(pool, tmp_path):
    from edgepack.backends.c.spec import BuildSpec
    from edgepack.targets import get_target
    from tests.e2e.test_c_backend import _run_plan

    plan = head_plan(pool)
    x = _head_images(plan)
    want = reference.run(plan, x)
    host = dataclasses.replace(BuildSpec.from_target(get_target("c-host")), cross=None)
    m4 = BuildSpec.from_target(get_target("cortex-m4"))
    for spec, kernels in ((host, "portable"), (host, "fast"), (m4, "fast")):
        got = _run_plan(spec, plan, x, kernels, tmp_path / f"{spec.target}-{kernels}").reshape(want.shape)
        assert np.array_equal(got, want), f"{spec.target} {kernels}: {np.count_nonzero(got != want)} values differ"
