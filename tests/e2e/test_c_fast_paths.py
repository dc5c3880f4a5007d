"""The C fast kernels for the shapes that ran the portable kernels before (3x3 convs over more than 16 planes,
rectangular convs, strided pointwise layers, add, fc): bit-exact with the numpy reference on the host (the
C emulations of the DSP instructions) and on a Cortex-M4 under QEMU (the instructions themselves), and no
layer of the shipped MobileNets or of the converter-made test models falls back to portable in fast mode."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.backends.c import codegen
from edgepack.interop.tflite_export import write_tflite
from edgepack.plan import reference
from tests import converter_models
from tests.conformance import executors
from tests.conformance.plans import FAST_PATH_CASES, fast_path_case

RUNS = [
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "portable", tmp), id="C portable"),
    pytest.param(lambda plan, x, tmp: executors.run_c(plan, x, "fast", tmp), id="C fast"),
    pytest.param(lambda plan, x, tmp: executors.run_tflite(plan, x), id="TFLite export under LiteRT"),
]


def test_the_fast_path_plans_run_every_new_kernel_on_layers_that_spread_over_int8():
    """What the bit-exact test proves depends on this: the GEMM at strides 1 and 2, over more than 16 planes, on a
    1x3 kernel and a strided pointwise, a partial weight quad, add and fc, with outputs neither constant nor
    saturated."""
    kernels = set()
    for name in FAST_PATH_CASES:
        plan, x = fast_path_case(name)
        for layer, out in zip(plan.layers, reference.run(plan, x, collect=True)[1]):
            assert len(np.unique(out)) >= 4 and np.isin(out, (-128, 127)).mean() < 0.5, f"{name}: {layer.name}"
        rows = codegen.kernel_choices(plan, "fast")
        kernels |= {(r["kind"], r["kernel"]) for r in rows}
        gemm = [plan.layers[r["layer"]] for r in rows if r["kernel"] == "ep_conv_gemm_fast"]
        assert {l.strides for l in gemm} == {(1, 1), (2, 2)} and max(l.input_shape[0] for l in gemm) > 16
        assert any(l.arrays["weight"][0].size % 4 for l in gemm)
    assert {("conv", "ep_conv_gemm_fast"), ("pointwise", "ep_conv_gemm_fast"), ("add", "ep_add_fast"),
            ("fc", "ep_fc_fast")} <= kernels


@pytest.mark.parametrize("name", FAST_PATH_CASES)
@pytest.mark.parametrize("run", RUNS)
def test_the_fast_path_plans_equal_the_reference_bit_for_bit(run, name, tmp_path):
    plan, x = fast_path_case(name)
    want = reference.run(plan, x)
    got = np.asarray(run(plan, x, tmp_path)).reshape(want.shape)
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} outputs differ"


@pytest.mark.slow
def test_the_fast_path_plan_is_bit_exact_on_a_cortex_m4_under_qemu(tmp_path):
    """The plan as a .tflite compiled for cortex-m4 (the DSP instructions, not their C emulations): bench PASS with
    its two bit-exact checks, and the fast kernels are what the artifact ran."""
    plan, _ = fast_path_case(next(iter(FAST_PATH_CASES)))
    model = write_tflite(plan, tmp_path / "fast_path.tflite")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, *plan.input_shape)).astype(np.uint8)
    np.savez(tmp_path / "eval.npz", images=images, labels=np.arange(12) % plan.output_shape[0])
    out = edgepack.compile(str(model), "cortex-m4", eval_data=str(tmp_path / "eval.npz"), output=str(tmp_path / "m4"))
    report = edgepack.bench(out, count=1, warmup=0)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert len([c for c in report["checks"] if "bit-exact" in c["name"]]) == 2
    model_c = (tmp_path / "m4" / "c" / "model.c").read_text()
    assert "ep_conv_gemm_fast(" in model_c and "ep_add_fast(" in model_c and "ep_fc_fast(" in model_c


def _shipped_plan(model: str, alpha: float, resolution: int):
    from edgepack.config import CompileConfig
    from edgepack.data import load_digits_split
    from edgepack.frontends.torch import to_plan
    from edgepack.model.weights import pretrained

    config = CompileConfig(alpha=alpha, resolution=resolution, architecture=model)
    return to_plan(pretrained(alpha, resolution, model=model), load_digits_split("calibration", resolution).take(8),
                   config)


@pytest.mark.slow
@pytest.mark.parametrize("model,alpha", [("mobilenet_v1", 0.25), ("mobilenet_v2", 0.35), ("mobilenet_v3_small", 0.75),
                                         ("mobilenet_v3_large", 0.75)])
def test_no_layer_of_the_shipped_mobilenets_falls_back_to_portable_in_fast_mode(model, alpha):
    """Kernel choices of the plan only (no C build). MobileNetV3's 5x5 depthwise layers and its squeeze-and-excite
    gates run fast kernels too; only its hard-swish / hard-sigmoid tables (lut) and global pools have none."""
    rows = codegen.kernel_choices(_shipped_plan(model, alpha, 96), "fast")
    assert [r["name"] for r in rows if r["fallback"]] == []
    assert {r["kind"] for r in rows} >= {"conv", "depthwise", "pointwise", "fc"}
    assert all(r["kernel"].endswith("_fast") for r in rows if r["kind"] not in ("lut", "avgpool")), model
    if model.startswith("mobilenet_v3"):
        assert {"ep_depthwise_kxk_fast", "ep_mul_channel_fast"} <= {r["kernel"] for r in rows}


CONVERTER = ["kws_ds_cnn", "conv1d", "residual_add", "resnet_maxpool"]


@pytest.mark.slow
def test_no_layer_of_the_converter_test_models_falls_back_to_portable_in_fast_mode(tmp_path):
    """The keyword-spotting DS-CNN (10x4 stride-2 first conv), the 1-D conv net (1x3 kernels), the residual and
    ResNet-style models, as TensorFlow's converter writes them."""
    from edgepack.interop.tflite_import import read_tflite

    for name, path in converter_models.build(tmp_path, CONVERTER).items():
        rows = codegen.kernel_choices(read_tflite(path).plan, "fast")
        assert [r["name"] for r in rows if r["fallback"]] == [], name
        assert all(r["kernel"].endswith("_fast") for r in rows if r["kind"] in ("conv", "fc", "add")), name


def _pointwise_plan(h: int, w: int, in_c: int = 12, outs: tuple[int, int] = (16, 8)):
    """pointwise (l0) -> pointwise (l1) -> global pool -> fc over an (in_c, h, w) input: pixel counts whose last
    block of 4 is partial; ``outs``: the two pointwise layers' output channels."""
    from edgepack.plan.plan import Plan, QParams
    from tests.conformance.plans import conv_layer, fc_layer, pool_layer

    rng = np.random.default_rng(h * 10 + w)
    q = QParams(0.03, -7)
    layers = [conv_layer(rng, "pointwise0", "pointwise", q, (in_c, h, w), outs[0], 1)]
    layers.append(conv_layer(rng, "pointwise1", "pointwise", layers[0].output_q, layers[0].output_shape, outs[1], 1))
    layers.append(pool_layer(rng, "pool2", layers[1].output_q, layers[1].output_shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc3", layers[2].output_q, outs[1], 5, "double"))
    return Plan(q, (in_c, h, w), layers)


@pytest.mark.parametrize("h,w,outs", [(1, 1, (16, 8)), (1, 2, (16, 8)), (3, 3, (16, 8)), (2, 3, (16, 8)),
                                      (1, 7, (16, 8)), (3, 4, (16, 8)), (3, 3, (15, 7)), (1, 7, (15, 7))])
def test_pointwise_layers_whose_last_pixel_block_is_partial_equal_the_reference(h, w, outs, tmp_path):
    """1 to 3 leftover pixels run by twos, then one (ep_pointwise_pixels: two output channels a pass, an odd last
    channel alone), none computed and dropped; the odd channel counts take that last lone channel."""
    plan = _pointwise_plan(h, w, outs=outs)
    assert plan.problems() == []
    x = np.random.default_rng(5).integers(-128, 128, (16, *plan.input_shape)).astype(np.int8)
    want, outputs = reference.run(plan, x, collect=True)
    assert len(np.unique(outputs[1])) >= 4
    for kernels in ("portable", "fast"):
        got = executors.run_c(plan, x, kernels, tmp_path / kernels).reshape(want.shape)
        assert int((got != want).sum()) == 0, kernels


def _small_plane_plan(res: int, width: int = 12):
    """Depthwise 3x3 layers on small planes between pointwise ones: at ``res`` 6 the kernel's 6-wide stride-1 and
    3-wide stride-2 paths, at 7 its generic odd width and 3-wide stride 2; then a pointwise on a 3x3 plane (a
    partial last block of pixels), a 3x3 -> 3x3 depthwise (3-wide stride 1) and a padless 3x3 -> 1x1 one."""
    from edgepack.plan.plan import Plan, QParams
    from tests.conformance.plans import conv_layer, fc_layer, pool_layer

    rng = np.random.default_rng(res)
    q = QParams(0.03, -7)
    layers = []
    for kind, out_c, stride, pads in (("depthwise", width, 1, (1, 1, 1, 1)), ("depthwise", width, 2, (0, 0, 1, 1)),
                                      ("pointwise", 16, 1, (0, 0, 0, 0)), ("depthwise", 16, 1, (1, 1, 1, 1)),
                                      ("pointwise", 24, 1, (0, 0, 0, 0)), ("depthwise", 24, 1, (0, 0, 0, 0))):
        in_q, shape = (layers[-1].output_q, layers[-1].output_shape) if layers else (q, (width, res, res))
        layers.append(conv_layer(rng, f"{kind}{len(layers)}", kind, in_q, shape, out_c,
                                 1 if kind == "pointwise" else 3, stride, pads))
    layers.append(pool_layer(rng, "pool6", layers[-1].output_q, layers[-1].output_shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc7", layers[-1].output_q, 24, 5, "double"))
    return Plan(q, (width, res, res), layers)


@pytest.mark.parametrize("res", [6, 7])
def test_small_plane_depthwise_and_3x3_pointwise_layers_equal_the_reference(res, tmp_path):
    """ep_depthwise_small_fast (chosen for every depthwise here) and ep_pointwise_fast on a 3x3 plane, bit-exact
    with the reference on the host (the C emulations of the DSP instructions), outputs spread over int8."""
    plan = _small_plane_plan(res)
    assert plan.problems() == []
    rows = codegen.kernel_choices(plan, "fast")
    assert {r["kernel"] for r in rows if r["kind"] == "depthwise"} == {"ep_depthwise_small_fast"}
    assert [r["kernel"] for r in rows if r["kind"] == "pointwise"] == ["ep_pointwise_fast"] * 2
    assert [tuple(plan.layers[r["layer"]].output_shape[1:]) for r in rows if r["kind"] == "pointwise"] == [(3, 3)] * 2
    x = np.random.default_rng(11).integers(-128, 128, (16, *plan.input_shape)).astype(np.int8)
    want, outputs = reference.run(plan, x, collect=True)
    for layer, out in zip(plan.layers[:6], outputs):
        assert len(np.unique(out)) >= 8 and np.isin(out, (-128, 127)).mean() < 0.5, layer.name
    for kernels in ("portable", "fast"):
        got = executors.run_c(plan, x, kernels, tmp_path / kernels).reshape(want.shape)
        assert int((got != want).sum()) == 0, kernels


def test_large_depthwise_planes_keep_the_framed_kernel_whose_scratch_is_smaller():
    """Input planes over codegen.DW_SMALL_MAX_PLANE (24x24) run ep_depthwise_fast: the small-plane kernel's
    int32 sums (4 bytes an output) would raise the arena's peak where the early, large layers set it."""
    from edgepack.plan.plan import QParams
    from tests.conformance.plans import conv_layer

    rng = np.random.default_rng(0)
    kernels = {res: codegen.layer_kernel(conv_layer(rng, "dw", "depthwise", QParams(0.03, 0), (8, res, res), 8, 3, 1,
                                                    (1, 1, 1, 1)), "fast") for res in (24, 25)}
    assert kernels[24] == ("ep_depthwise_small_fast", (26 * 26 + 4 + 3) // 4 * 4 + 4 * 24 * 24)
    assert kernels[25] == ("ep_depthwise_fast", 27 * 27 + 4)


def _bench_on_cortex_m4(plan, name: str, seed: int, tmp_path) -> str:
    """``plan`` as a .tflite compiled for cortex-m4 (the DSP instructions themselves, not their C emulations): bench
    PASS with its two bit-exact checks; returns the generated model.c."""
    model = write_tflite(plan, tmp_path / f"{name}.tflite")
    images = np.random.default_rng(seed).integers(0, 256, (12, *plan.input_shape)).astype(np.uint8)
    np.savez(tmp_path / "eval.npz", images=images, labels=np.arange(12) % plan.output_shape[0])
    out = edgepack.compile(str(model), "cortex-m4", eval_data=str(tmp_path / "eval.npz"), output=str(tmp_path / "m4"))
    report = edgepack.bench(out, count=1, warmup=0)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert len([c for c in report["checks"] if "bit-exact" in c["name"]]) == 2
    return (tmp_path / "m4" / "c" / "model.c").read_text()


@pytest.mark.slow
def test_small_plane_kernels_are_bit_exact_on_a_cortex_m4_under_qemu(tmp_path):
    """The small-plane plan on cortex-m4: bit-exact, and model.c calls ep_depthwise_small_fast."""
    assert "ep_depthwise_small_fast(" in _bench_on_cortex_m4(_small_plane_plan(7), "small_planes", 4, tmp_path)


def test_model_h_says_how_many_layers_run_each_kernel_and_which_fell_back():
    """model.h named only the kernel set ("kernels: fast") even when layers ran portable: it now carries the
    kernel summary and a count per kernels.h function, the RAM-budget fallbacks of memplan.fit_arena included."""
    from edgepack.backends.c.memplan import fit_arena, plan_memory

    plan = _small_plane_plan(6)
    header = " ".join(line.lstrip(" *") for line in
                      codegen.generate(plan, "fast", plan_memory(plan, "fast"))["model.h"].splitlines())
    assert "kernel set fast: 7 of 8 layers fast; portable (no fast kernel): avgpool." in header
    assert ("Layers per kernel: ep_depthwise_small_fast x4, ep_pointwise_fast x2, ep_avgpool x1, ep_fc_fast x1."
            in header)
    fitted = fit_arena(plan, "fast", plan_memory(plan, "fast").arena_bytes - 8)
    assert list(fitted.portable_layers) == [0], "8 bytes under the arena force layer 0's scratch out"
    header = " ".join(line.lstrip(" *") for line in codegen.generate(plan, "fast", fitted)["model.h"].splitlines())
    assert "6 of 8 layers fast; portable (no fast kernel): avgpool; fallback to portable: depthwise0 (RAM budget)." \
        in header
    assert "Layers per kernel: ep_depthwise x1, ep_depthwise_small_fast x3, ep_pointwise_fast x2," in header


def _assert_each_layer_bit_exact(plan, x, layers: int, tmp_path):
    """The plan cut after each of its first ``layers`` layers, portable and fast C against the reference: a wrong
    value of an early layer can vanish in the pool and fc at the end, so every layer's own output is compared."""
    from edgepack.plan.plan import Plan

    for k in range(1, layers + 1):
        cut = Plan(plan.input_q, plan.input_shape, plan.layers[:k])
        want = reference.run(cut, x)
        for kernels in ("portable", "fast"):
            got = executors.run_c(cut, x, kernels, tmp_path / f"{k}{kernels}").reshape(want.shape)
            assert int((got != want).sum()) == 0, f"{kernels}: {plan.layers[k - 1].name}"


def _wide_depthwise_plan(width: int = 10):
    """Depthwise layers ep_depthwise_kxk_fast takes, between pointwise ones: MobileNetV3's 5x5 at stride 2 (12x12 ->
    6x6, TFLite's SAME pads (1, 1, 2, 2)) and stride 1 (6x6, an odd 3x3 plane), a 7x7 at stride 1 (a 2-quad row,
    odd output width 3), a 3x3 with strides (1, 2), which the 3x3 kernels (equal strides) leave to it (one quad), and a
    3x5 (the 5-wide rows of other heights)."""
    from edgepack.plan.plan import Plan, QParams
    from tests.conformance.plans import conv_layer, fc_layer, pool_layer

    rng = np.random.default_rng(52)
    q = QParams(0.03, -7)
    layers = []
    for kind, out_c, k, stride, pads in (("depthwise", width, 5, 2, (1, 1, 2, 2)), ("depthwise", width, 5, 1, (2, 2, 2, 2)),
                                         ("pointwise", 16, 1, 1, (0, 0, 0, 0)), ("depthwise", 16, 7, 1, (3, 2, 3, 1)),
                                         ("depthwise", 16, 3, (1, 2), (1, 1, 1, 1)), ("depthwise", 16, (3, 5), 1, (1, 2, 1, 2)),
                                         ("depthwise", 16, 5, 2, (2, 2, 2, 2)), ("depthwise", 16, 5, 1, (2, 2, 2, 2))):
        in_q, shape = (layers[-1].output_q, layers[-1].output_shape) if layers else (q, (width, 12, 12))
        layers.append(conv_layer(rng, f"{kind}{len(layers)}", kind, in_q, shape, out_c, k, stride, pads))
    layers.append(pool_layer(rng, "pool8", layers[-1].output_q, layers[-1].output_shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc9", layers[-1].output_q, 16, 5, "double"))
    return Plan(q, (width, 12, 12), layers)


def test_wide_depthwise_layers_equal_the_reference_portable_and_fast(tmp_path):
    """ep_depthwise_kxk_fast (5x5 at strides 1 and 2, 7x7, 3x5, a 3x3 of unequal strides; planes 12x12 down to 3x1)
    bit-exact with the reference on the host (the C emulations of the DSP instructions), as the portable kernel."""
    plan = _wide_depthwise_plan()
    assert plan.problems() == []
    rows = codegen.kernel_choices(plan, "fast")
    assert [r["kernel"] for r in rows if r["kind"] == "depthwise"] == ["ep_depthwise_kxk_fast"] * 7
    x = np.random.default_rng(12).integers(-128, 128, (16, *plan.input_shape)).astype(np.int8)
    want, outputs = reference.run(plan, x, collect=True)
    for layer, out in zip(plan.layers[:8], outputs):
        assert len(np.unique(out)) >= 8 and np.isin(out, (-128, 127)).mean() < 0.5, layer.name
    _assert_each_layer_bit_exact(plan, x, len(plan.layers), tmp_path)


def _squeeze_excite_plan(width: int = 16, res: int = 6):
    """MobileNetV3's squeeze-and-excite tail with the gate on either side: 5x5 depthwise -> global mean (TFLite's
    MEAN, (C, 1, 1)) -> pointwise -> map * gate (ep_mul_channel_fast, the gate second) and gate * map (first), the
    two products multiplied (ep_mul_fast) -> global average -> fc."""
    from edgepack.ops.mul import MulParams, mul_requantization
    from edgepack.plan.plan import Layer, Plan, QParams
    from tests.conformance.plans import conv_layer, fc_layer, pool_layer

    rng = np.random.default_rng(35)
    q = QParams(0.03, -7)
    layers = [conv_layer(rng, "depthwise0", "depthwise", q, (width, res, res), width, 5, 1, (2, 2, 2, 2))]
    layers.append(pool_layer(rng, "pool1", layers[0].output_q, layers[0].output_shape, "mean", flat=False))
    layers.append(conv_layer(rng, "gate2", "pointwise", layers[1].output_q, layers[1].output_shape, width, 1))

    def mul(name, a, b, steps):
        qa, qb = layers[a].output_q, layers[b].output_q
        qo = QParams(float(np.float32(qa.scale * qb.scale * steps)), int(rng.integers(-30, 30)))
        multiplier, shift = mul_requantization(qa, qb, qo)
        shape_a, shape_b = layers[a].output_shape, layers[b].output_shape
        out_shape = shape_a if shape_a[1:] != (1, 1) else shape_b
        return Layer(name, "mul", shape_a, out_shape, qa, qo, -128, 127, inputs=(a, b), params=MulParams(qb, shape_b),
                     arrays={"multiplier": multiplier, "shift": shift})

    layers.append(mul("mul3", 0, 2, 60.0))
    layers.append(mul("mul4", 2, 0, 45.0))
    layers.append(mul("mul5", 3, 4, 80.0))
    layers.append(pool_layer(rng, "pool6", layers[-1].output_q, layers[-1].output_shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc7", layers[-1].output_q, width, 5, "double"))
    return Plan(q, (width, res, res), layers)


def test_squeeze_excite_gates_and_global_pools_equal_the_reference_portable_and_fast(tmp_path):
    """ep_mul_channel_fast (gate second and first) and ep_mul_fast, bit-exact with the reference on the host as their
    portable twins, the products spread over int8."""
    plan = _squeeze_excite_plan()
    assert plan.problems() == []
    kernels = [r["kernel"] for r in codegen.kernel_choices(plan, "fast")]
    assert kernels[:7] == ["ep_depthwise_kxk_fast", "ep_mean_pool", "ep_pointwise_fast", "ep_mul_channel_fast",
                           "ep_mul_channel_fast", "ep_mul_fast", "ep_avgpool"]
    x = np.random.default_rng(14).integers(-128, 128, (16, *plan.input_shape)).astype(np.int8)
    want, outputs = reference.run(plan, x, collect=True)
    for layer, out in zip(plan.layers[:7], outputs):
        assert len(np.unique(out)) >= 8 and np.isin(out, (-128, 127)).mean() < 0.5, layer.name
    _assert_each_layer_bit_exact(plan, x, len(plan.layers), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wide_depthwise", "squeeze_excite"])
def test_wide_depthwise_and_squeeze_excite_kernels_are_bit_exact_on_a_cortex_m4_under_qemu(name, tmp_path):
    """The two plans above on cortex-m4: bit-exact, and model.c calls the new kernels."""
    plan = {"wide_depthwise": _wide_depthwise_plan, "squeeze_excite": _squeeze_excite_plan}[name]()
    model_c = _bench_on_cortex_m4(plan, name, 6, tmp_path)
    wanted = ["ep_depthwise_kxk_fast("] + (["ep_mul_channel_fast(", "ep_mul_fast("] if name == "squeeze_excite" else [])
    assert all(fn in model_c for fn in wanted), [fn for fn in wanted if fn not in model_c]
