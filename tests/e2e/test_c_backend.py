"""The C backend: generated C for Cortex-M4 / M7 (QEMU) and c-host, bit-exact with the numpy reference.

Needs the toolchains DESIGN.md lists (gcc, arm-none-eabi-gcc + newlib, qemu-system-arm,
aarch64-linux-gnu-gcc, qemu-aarch64); CI installs them, so nothing here is skipped.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import edgepack
from edgepack.artifact import read_manifest, verify, write_manifest
from edgepack.backends.c import codegen
from edgepack.backends.c.build import build, require_tools, write_sources
from edgepack.backends.c.memplan import Buffer, check_no_overlap, lower_bound, plan_buffers, plan_memory
from edgepack.backends.c.runner import run_images
from edgepack.backends.c.spec import CROSS_EXE, FIRMWARE, HOST_EXE, BuildSpec
from edgepack.benchmark.run import bench_artifact
from edgepack.errors import ArtifactError, BudgetError, ToolchainError
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams, quantize_multiplier
from edgepack.targets import get_target
from tests.conftest import ALPHA

RES = 64
SMALL = dict(alpha=ALPHA, resolution=RES, eval_size=16, calib_size=32)


def _compile(tmp_path_factory, target):
    out = tmp_path_factory.mktemp("c") / target
    return edgepack.compile(target=target, output=str(out), **SMALL)


@pytest.fixture(scope="module")
def m4_artifact(tmp_path_factory):
    return _compile(tmp_path_factory, "cortex-m4")


@pytest.fixture(scope="module")
def m7_artifact(tmp_path_factory):
    return _compile(tmp_path_factory, "cortex-m7")


@pytest.fixture(scope="module")
def host_artifact_c(tmp_path_factory):
    return _compile(tmp_path_factory, "c-host")


def _check(report, name_part):
    return next(c for c in report["checks"] if name_part in c["name"])


# ---------------------------------------------------------------- end to end on the three targets

@pytest.mark.slow
@pytest.mark.parametrize("fixture,machine", [("m4_artifact", "mps2-an386"), ("m7_artifact", "mps2-an500")])
def test_cortex_m_bench_is_bit_exact(fixture, machine, request):
    folder = request.getfixturevalue(fixture)
    manifest = verify(folder)
    assert {"c/model.c", "c/model.h", "c/kernels.c", "c/kernels.h", "c/kernels_fast.c", "c/edgepack_main.c",
            "c/startup_cortexm.c", "c/cortexm.ld", "c/Makefile", "bin/firmware.elf"} <= set(manifest["files"])
    header = (folder / "c/model.h").read_text()
    assert "int edgepack_invoke(const int8_t *input, int8_t *output);" in header
    assert f"#define EDGEPACK_ARENA_SIZE {manifest['memory_plan']['arena_bytes']}\n" in header
    assert "#define EDGEPACK_INPUT_ZERO_POINT" in header and "#define EDGEPACK_OUTPUT_SCALE" in header

    report = bench_artifact(folder, eval_size=8)
    assert report["passed"], report["checks"]
    assert machine in report["device"] and report["latency"] is None
    for name in ("golden: qemu-system-arm", "eval: qemu-system-arm"):
        check = _check(report, name)
        assert check["passed"] and check["value"] == 0 and "bit-exact" in check["name"]
    cost, fp, mem = report["cost"], manifest["footprint"], manifest["memory_plan"]
    # the cost figure is deterministic: bench measures what compile recorded, to the tick
    assert cost["systick_ticks_per_inference"] == manifest["cost"]["ticks_per_inference"] > 0
    assert cost["same_as_compile"] is True
    # fast kernels beat the portable ones on the same firmware build, both bit-exact
    assert manifest["cost"]["kernels"] == "fast" and manifest["cost"]["portable"]["ticks_per_inference"] > 0
    assert cost["speedup_fast_vs_portable"] > 1.5
    assert len(manifest["cost"]["per_layer_ticks"]) == manifest["plan"]["layers"]
    # footprint: arm-none-eabi-size split, budget respected, arena within the RAM figure
    assert fp["tool"] == "arm-none-eabi-size"
    assert fp["flash_bytes"] == fp["firmware"]["text"] + fp["firmware"]["rodata"] + fp["firmware"]["data"]
    assert fp["ram_bytes"] == fp["firmware"]["data"] + fp["firmware"]["bss"] + fp["stack_bytes"]
    assert 0 < fp["stack_bytes"] < 16384 and fp["firmware"]["bss"] >= mem["arena_bytes"]
    assert fp["flash_bytes"] <= fp["budget"]["flash_bytes"] and fp["ram_bytes"] <= fp["budget"]["ram_bytes"]
    assert fp["model_library"]["rodata"] >= fp["constants_bytes"]
    assert sum(r["total_bytes"] for r in fp["per_layer"]) == fp["constants_bytes"]
    assert fp["per_layer"][0]["weight_bytes"] == np.prod(Plan.load(folder).layers[0].weight.shape)
    assert mem["arena_bytes"] <= mem["naive_bytes"] and mem["arena_bytes"] == mem["lower_bound_bytes"]


@pytest.mark.slow
def test_c_host_native_and_aarch64(host_artifact_c):
    manifest = verify(host_artifact_c)
    assert manifest["backend_info"]["kernels"] == "portable"
    assert "c/kernels_fast.c" not in manifest["files"]  # the portable project is plain C99
    native = bench_artifact(host_artifact_c, eval_size=8, count=5, warmup=1)
    assert native["passed"] and native["device"] == "native"
    assert native["latency"]["count"] == 5 and native["latency"]["median_ms"] > 0  # in-process, via ctypes
    assert _check(native, "eval: native")["value"] == 0
    arm = bench_artifact(host_artifact_c, eval_size=8, device="qemu-aarch64")
    assert arm["passed"] and arm["latency"] is None
    assert _check(arm, "golden: qemu-aarch64")["value"] == 0 and _check(arm, "eval: qemu-aarch64")["value"] == 0
    # the aarch64 binary really is a static aarch64 executable
    head = (host_artifact_c / CROSS_EXE).read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


@pytest.mark.slow
def test_generated_project_is_reproducible(m4_artifact, tmp_path):
    """Same plan -> byte-identical model.c/model.h and firmware, whatever folder it is built in."""
    manifest = read_manifest(m4_artifact)
    spec = BuildSpec.from_json(manifest["target"])
    plan = Plan.load(m4_artifact)
    files = codegen.generate(plan, spec.kernels, plan_memory(plan, spec.kernels))
    for name, text in files.items():
        assert (m4_artifact / "c" / name).read_text() == text
    elf = (m4_artifact / FIRMWARE).read_bytes()
    for where in ("one", "an/other/place"):
        built = build(spec, m4_artifact / "c", tmp_path / where, spec.kernels)
        assert built.files[FIRMWARE].read_bytes() == elf


@pytest.mark.slow
def test_runtime_uses_no_heap_and_no_float(m4_artifact, tmp_path):
    """Built for a Cortex-M4 without FPU, the model library needs no malloc and no float helpers."""
    spec = dataclasses.replace(BuildSpec.from_json(read_manifest(m4_artifact)["target"]),
                               arch_flags=("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"))
    built = build(spec, m4_artifact / "c", tmp_path / "soft", "fast")
    defined, undefined = set(), set()
    for obj in built.objects.values():  # model.o, kernels.o, kernels_fast.o
        out = subprocess.run(["arm-none-eabi-nm", str(obj)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            kind, name = line.split()[-2:]
            (undefined if kind == "U" else defined).add(name)
    undefined -= defined | {"edgepack_layer_done"}  # the application's profiling hook (EDGEPACK_PROFILE)
    assert undefined <= {"memcpy", "memset"}, undefined


# ---------------------------------------------------------------- kernels vs the numpy reference

def _random_layer(rng, kind, c, h, w, out_c=None, k=3, stride=1, pad=1, in_zp=0, out_zp=0, small=False, relu=False):
    """One layer with random int8 weights and requantization that keeps outputs varied; ``pad`` is one
    symmetric int or (top, left, bottom, right).

    ``small`` draws inputs near the zero point and tiny weights: the real multiplier is then > 1,
    which means positive shifts (TFLite convention); two channels get huge biases so that the
    saturating left shift is exercised as well."""
    if kind == "depthwise":
        out_c, wshape = c, (c, 1, k, k)
    elif kind == "conv":
        wshape = (out_c, c, k, k)
    elif kind == "pointwise":
        k, pad, wshape = 1, 0, (out_c, c, 1, 1)
    elif kind == "fc":
        k, pad, wshape = 1, 0, (out_c, c * h * w)
    pads = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
    n = 3
    if small:
        x = np.clip(in_zp + rng.integers(-3, 4, size=(n, c, h, w)), -128, 127).astype(np.int8)
    else:
        x = rng.integers(-128, 128, size=(n, c, h, w)).astype(np.int8)
    if kind == "avgpool":
        q = QParams(0.05, in_zp)
        layer = Layer("pool", "avgpool", (c, h, w), (c, 1, 1), q, QParams(0.05, out_zp))
        return Plan(q, (c, h, w), [layer]), x
    wr = 2 if small else 127
    weight = rng.integers(-wr, wr + 1, size=wshape).astype(np.int8)
    taps = int(np.prod(wshape[1:]))
    dev = float(np.sqrt(np.mean((x.astype(np.float64) - in_zp) ** 2)))
    acc_std = max(np.sqrt(taps * np.mean(weight.astype(np.float64) ** 2)) * dev, 1.0)
    real = 40.0 / acc_std * rng.uniform(0.5, 2.0, size=out_c)
    mult = [quantize_multiplier(float(r)) for r in real]
    bias = rng.integers(-int(3 * acc_std), int(3 * acc_std) + 1, size=out_c).astype(np.int32)
    if small:
        bias[:2] = (2**29, -(2**29))
    arrays = {"weight": weight, "bias": bias, "multiplier": np.array([m for m, _ in mult], np.int32),
              "shift": np.array([s for _, s in mult], np.int32), "weight_scale": np.ones(out_c, np.float32)}
    if kind == "fc":
        in_shape, out_shape = (c * h * w,), (out_c,)
    else:
        in_shape = (c, h, w)
        top, left, bottom, right = pads
        out_shape = (out_c, (h + top + bottom - k) // stride + 1, (w + left + right - k) // stride + 1)
    in_q = QParams(0.05, in_zp)
    layer = Layer(f"random_{kind}", kind, in_shape, out_shape, in_q, QParams(0.1, out_zp),
                  act_min=out_zp if relu else -128, act_max=127, stride=stride, pads=pads,
                  activation="relu" if relu else "none", arrays=arrays)
    return Plan(in_q, (c, h, w), [layer]), x


LAYER_CASES = {
    "conv3x3 s2 p1, odd size, negative zp": dict(kind="conv", c=3, h=9, w=11, out_c=5, stride=2, in_zp=-7, out_zp=-20, relu=True),
    "conv3x3 s1 p1": dict(kind="conv", c=4, h=8, w=7, out_c=3, stride=1, in_zp=-128, out_zp=5),
    "conv3x3 s1 p0": dict(kind="conv", c=2, h=6, w=6, out_c=4, pad=0, in_zp=12, out_zp=-3),
    "conv5x5 s2 p2 (generic)": dict(kind="conv", c=3, h=10, w=9, out_c=3, k=5, stride=2, pad=2, in_zp=-50, out_zp=7),
    "conv3x3 20 in (portable fallback)": dict(kind="conv", c=20, h=5, w=5, out_c=3, in_zp=-1, out_zp=0),
    "depthwise s1 p1, negative zp": dict(kind="depthwise", c=6, h=7, w=9, in_zp=-128, out_zp=-128, relu=True),
    "depthwise s2 p1, odd size": dict(kind="depthwise", c=5, h=9, w=8, stride=2, in_zp=37, out_zp=-9),
    "depthwise s2 p1, even size": dict(kind="depthwise", c=4, h=8, w=8, stride=2, in_zp=-3, out_zp=2),
    "pointwise, channel+pixel tails, positive shifts": dict(kind="pointwise", c=10, h=5, w=3, out_c=7, in_zp=-60, out_zp=-1, small=True),
    "pointwise s2 (portable fallback)": dict(kind="pointwise", c=8, h=6, w=6, out_c=5, stride=2, in_zp=-128, out_zp=-128),
    "pointwise 16 in, negative zp": dict(kind="pointwise", c=16, h=4, w=4, out_c=9, in_zp=-100, out_zp=-128, relu=True),
    "avgpool 6x5": dict(kind="avgpool", c=5, h=6, w=5, in_zp=-3, out_zp=-3),
    "avgpool 2x2, exact halves of both signs": dict(kind="avgpool", c=48, h=2, w=2, in_zp=-5, out_zp=-5),
    "fc, positive shifts": dict(kind="fc", c=4, h=2, w=3, out_c=7, in_zp=-128, out_zp=-38, small=True),
    # (top, left, bottom, right) pads of .tflite models: the fast 3x3 kernels frame their scratch copy with them
    "conv3x3 s2 TFLite SAME pads (0, 0, 1, 1)": dict(kind="conv", c=3, h=10, w=8, out_c=4, stride=2, pad=(0, 0, 1, 1),
                                                     in_zp=-9, out_zp=3),
    "depthwise s2 TFLite SAME pads (0, 0, 1, 1)": dict(kind="depthwise", c=5, h=8, w=10, stride=2, pad=(0, 0, 1, 1),
                                                       in_zp=21, out_zp=-4),
    "depthwise s1 pads (1, 0, 2, 1)": dict(kind="depthwise", c=3, h=7, w=6, pad=(1, 0, 2, 1), in_zp=-40, out_zp=0),
}


def _run_plan(spec, plan, x, kernels, work):
    files = codegen.generate(plan, kernels, plan_memory(plan, kernels))
    write_sources(work / "c", spec, kernels, files)
    built = build(spec, work / "c", work / "build", kernels, shared_library=False)
    binary = built.files[FIRMWARE if spec.kind == "cortex-m" else HOST_EXE]
    return run_images(spec, binary, x, codegen.numel(plan.output_shape), spec.devices()[0]).outputs


@pytest.mark.slow
def test_kernels_match_reference_on_random_layers(tmp_path):
    """Portable and fast kernels (host gcc: fast ones with C emulations of the DSP intrinsics), and
    the fast ones with the real SMLAD/SXTB16 on Cortex-M4 under QEMU, all equal the numpy reference."""
    rng = np.random.default_rng(5)
    host = dataclasses.replace(BuildSpec.from_target(get_target("c-host")), cross=None)
    m4 = BuildSpec.from_target(get_target("cortex-m4"))
    saw_positive_shift = saw_saturation = False
    for i, (name, case) in enumerate(LAYER_CASES.items()):
        plan, x = _random_layer(rng, **case)
        want = reference.run(plan, x).reshape(len(x), -1)
        assert len(np.unique(want)) >= 5 or case["kind"] == "avgpool", f"{name}: degenerate test data"
        layer = plan.layers[0]
        if "shift" in layer.arrays and layer.arrays["shift"].max() > 0:
            saw_positive_shift = True
            saw_saturation |= bool(np.any(want == layer.act_max)) and bool(np.any(want == layer.act_min))
        for spec, kernels in ((host, "portable"), (host, "fast"), (m4, "fast")):
            got = _run_plan(spec, plan, x, kernels, tmp_path / f"{i}-{spec.target}-{kernels}")
            assert np.array_equal(got, want), f"{name}: {spec.target} {kernels} differs in {np.count_nonzero(got != want)} values"
    assert saw_positive_shift and saw_saturation


def test_plan_with_asymmetric_pads_matches_reference(tmp_path):
    """A whole plan with TensorFlow-SAME pads (0, 0, 1, 1) on its stride-2 layers and (2, 0, 0, 2) on a
    stride-1 depthwise (the .tflite importer's plans), portable and fast kernels, natively."""
    from tests.e2e.test_neon_kernels import random_plan

    plan = random_plan(3, width=16, res=16, asymmetric=True)
    x = np.random.default_rng(3).integers(-128, 128, (6, *plan.input_shape)).astype(np.int8)
    want = reference.run(plan, x)
    assert len(np.unique(want)) > 2
    host = dataclasses.replace(BuildSpec.from_target(get_target("c-host")), cross=None)
    for kernels in ("portable", "fast"):
        got = _run_plan(host, plan, x, kernels, tmp_path / kernels).reshape(want.shape)
        assert np.array_equal(got, want), f"{kernels}: {np.count_nonzero(got != want)} values differ"


# ---------------------------------------------------------------- tampering and corrupted weights

def _corrupt_fc_weight(folder: Path) -> tuple[str, str]:
    """Change one int8 weight of the classifier in c/model.c so that the reference output changes."""
    plan = Plan.load(folder)
    gx, gy = np.load(folder / "golden_input.npy"), np.load(folder / "golden_output.npy")
    fc_index = len(plan.layers) - 1
    fc = plan.layers[fc_index]
    _, outs = reference.run(plan, gx, collect=True)
    features = outs[-2].reshape(len(gx), -1).astype(np.int64) - fc.input_q.zero_point
    j = int(np.abs(features[0]).argmax())  # class 0 row, the feature that matters most on image 0
    old = int(fc.weight[0, j])
    new = old - 100 if old > 0 else old + 100
    fc.arrays["weight"] = fc.weight.copy()
    fc.arrays["weight"][0, j] = new
    assert not np.array_equal(reference.run(plan, gx), gy), "the chosen corruption must be visible"
    text = (folder / "c/model.c").read_text()
    head = f"static const int8_t edgepack_l{fc_index}_weight[{fc.weight.size}] = {{\n"
    start = text.index(head) + len(head)
    end = text.index("};", start)
    values = re.split(r",\s*", text[start:end].strip())
    assert int(values[j]) == old
    values[j] = str(new)
    return text[:start] + "    " + ", ".join(values) + "\n" + text[end:], f"{old} -> {new}"


@pytest.mark.slow
def test_corrupted_weight_is_caught(m4_artifact, tmp_path):
    # 1. an edited model.c in an artifact: bench refuses it before running anything
    bad = tmp_path / "tampered"
    shutil.copytree(m4_artifact, bad)
    corrupted, what = _corrupt_fc_weight(bad)
    (bad / "c/model.c").write_text(corrupted)
    with pytest.raises(ArtifactError, match="c/model.c was modified"):
        bench_artifact(bad, eval_size=4)
    # 2. firmware really built from that model.c, with a manifest re-signed to match it (a broken
    #    build that looks consistent): the bit-exact checks against the reference catch it
    manifest = read_manifest(bad)
    spec = BuildSpec.from_json(manifest["target"])
    built = build(spec, bad / "c", tmp_path / "rebuild", spec.kernels)
    shutil.copyfile(built.files[FIRMWARE], bad / FIRMWARE)
    write_manifest(bad, {k: v for k, v in manifest.items() if k != "files"})
    report = bench_artifact(bad, eval_size=8)
    golden = _check(report, "golden: qemu-system-arm")
    assert not report["passed"] and not golden["passed"] and golden["value"] > 0, what


# ---------------------------------------------------------------- budget, toolchain errors

@pytest.mark.slow
def test_budget_overflow_fails_compile_and_leaves_nothing(tmp_path):
    """Two 16 x 128 x 128 activations alive together need 512 KB of arena: over cortex-m4's 256 KB."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    out = tmp_path / "too-big"
    with pytest.raises(BudgetError) as err:
        edgepack.compile(model, target="cortex-m4", resolution=128, eval_size=8, calib_size=16, output=str(out))
    message = str(err.value)
    assert "cortex-m4" in message and "RAM" in message and "> ram_bytes 262,144" in message and "flash" not in message.split("[")[0]
    assert "targets/cortex-m4.toml" in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_tools_name_the_debian_package():
    target = get_target("cortex-m4").to_json()
    spec = BuildSpec.from_json({**target, "toolchain": {**target["toolchain"], "cc": "arm-none-eabi-gcc-absent"}})
    with pytest.raises(ToolchainError, match="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"):
        require_tools(spec)
    spec = BuildSpec.from_json({**target, "run": {**target["run"], "emulator": "qemu-system-arm-absent"}})
    with pytest.raises(ToolchainError, match="qemu-system-arm-absent is not installed.*apt-get install qemu-system-arm"):
        require_tools(spec)


# ---------------------------------------------------------------- static memory plan

def _assert_sound(plan):
    check_no_overlap(plan.buffers, plan.arena_bytes)  # raises on a conflict
    for a in plan.buffers:  # and independently, byte ranges of simultaneously live buffers
        for b in plan.buffers:
            if a is not b and a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert lower_bound(plan.buffers) <= plan.arena_bytes <= plan.naive_bytes


@pytest.mark.slow
def test_memory_plan_of_the_model(m4_artifact):
    plan = Plan.load(m4_artifact)
    for kernels in ("portable", "fast"):
        mem = plan_memory(plan, kernels)
        _assert_sound(mem)
        assert mem.arena_bytes == mem.lower_bound_bytes  # optimal for a chain
        assert mem.candidates["greedy-by-size"] >= mem.arena_bytes
    recorded = read_manifest(m4_artifact)["memory_plan"]
    assert recorded["arena_bytes"] == plan_memory(plan, "fast").arena_bytes < recorded["naive_bytes"] / 3
    # the generated code uses exactly the planned offsets
    calls = re.findall(r"arena \+ (\d+)", (m4_artifact / "c/model.c").read_text())
    offsets = {b["offset"] for b in recorded["buffers"]}
    assert calls and set(map(int, calls)) <= offsets


def test_greedy_planner_on_random_lifetimes():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        buffers = []
        for i in range(n):
            first = int(rng.integers(0, 10))
            buffers.append(Buffer(f"b{i}", int(rng.integers(1, 5000)), first, first + int(rng.integers(0, 4))))
        _assert_sound(plan_buffers(buffers))
    # a chain: t0..t3 over [i, i+1] -> the largest consecutive pair
    chain = [Buffer(f"t{i}", s, i, i + 1) for i, s in enumerate([800, 3000, 200, 1600])]
    mem = plan_buffers(chain)
    assert mem.arena_bytes == 3800 and mem.naive_bytes == 5600  # 800 + 3000 alive at step 1
