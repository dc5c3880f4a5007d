"""Residual graphs end to end: MobileNetV2 (`--model mobilenet_v2`) and a residual network written here
with plain torch.nn (no edgepack code) compile for c-host, cortex-m4, x86-tvm and rpi4 and bench PASS
bit-exact with the int8 reference; random graph plans with adds run bit-exact on every TVM route; operators the plan has no layer for are refused by name. Small models (V2 alpha 0.35 at
32x32 with random weights and BatchNorm statistics, few images) keep this fast."""
from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgepack
from edgepack.artifact import read_manifest
from edgepack.benchmark.run import bench_artifact
from edgepack.data import load_dataset
from edgepack.errors import UnsupportedModelError
from edgepack.model.mobilenet_v2 import MobileNetV2
from edgepack.ops.add import AddParams
from edgepack.plan.plan import Plan
from tests.cli import TRACKED
from tests.conftest import run_cli

RES = 32


def _with_batchnorm_statistics(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Random weights, BatchNorm running statistics of ``images`` (so activations are not degenerate)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.fixture(scope="module")
def v2_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    digits = load_dataset(None, "calibration", RES, 10, (0.5,) * 3, (0.5,) * 3)
    model = _with_batchnorm_statistics(MobileNetV2(0.35, RES, 10), torch.from_numpy(digits.images[:64]))
    with torch.no_grad():
        nn.init.normal_(model.classifier.weight, 0, 0.1)  # logits of a useful spread
    path = tmp_path_factory.mktemp("v2") / "v2_0.35.pt"
    torch.save(model.state_dict(), path)
    return path


class TwoBlockResNet(nn.Module):
    """A ResNet-style network: two residual blocks (the sum through `+`, torch.add and operator.add, a
    ReLU after the first), then global pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                    nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.block2 = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                                    nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.block1(x))
        y = torch.add(x, self.block2(x))
        return self.head(operator.add(y, self.block1(y)))


@pytest.fixture(scope="module")
def user_residual():
    torch.manual_seed(1)
    images = torch.randn(48, 3, RES, RES)
    return _with_batchnorm_statistics(TwoBlockResNet(), images), images.numpy()


def _assert_bit_exact_pass(folder):
    report = bench_artifact(folder, eval_size=8)
    assert report["passed"], report["checks"]
    exact = [c for c in report["checks"] if "bit-exact" in c["name"]]
    assert len(exact) >= 2 and all(c["passed"] for c in exact)
    return read_manifest(folder)


def _assert_residual_memory(folder, manifest):
    """Every add's inputs stay in the arena until the add; the arena is below the naive sum."""
    plan = Plan.load(folder)
    adds = [i for i, layer in enumerate(plan.layers) if layer.kind == "add"]
    assert adds and not plan.is_chain()
    memory = manifest["memory_plan"]
    life = {b["name"]: (b["first"], b["last"]) for b in memory["buffers"]}
    for i in adds:
        for j in plan.inputs_of(i):
            assert j == -1 or life[f"t{j}"][1] >= i
    assert memory["planner"] == "greedy-by-size" and memory["arena_bytes"] < memory["naive_bytes"]
    assert manifest["footprint"]["naive_arena_bytes"] == memory["naive_bytes"]


def _v2_compiled_and_benched(capsys, checkpoint, target: str, eval_size: int, out):
    """The small V2 (alpha 0.35 at RES) compiled for ``target`` through the CLI, benched PASS and bit-exact,
    with its ten residual adds (the stride-1 blocks of Table 2) in the plan: its manifest."""
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", str(RES),
                           "--checkpoint", str(checkpoint), "--target", target, "--calib-size", "16",
                           "--eval-size", str(eval_size), "-o", str(out))
    assert code == 0, err
    manifest = _assert_bit_exact_pass(out)
    assert sum(layer.kind == "add" for layer in Plan.load(out).layers) == 10
    return manifest


@pytest.mark.slow
@pytest.mark.parametrize("target", ["c-host", "cortex-m4"])
def test_mobilenet_v2_compiles_and_benches_bit_exact(target, v2_checkpoint, tmp_path, capsys):
    out = tmp_path / "v2"
    manifest = _v2_compiled_and_benched(capsys, v2_checkpoint, target, eval_size=16, out=out)
    assert manifest["model"]["name"] == "MobileNetV2" and manifest["model"]["builtin"] == "mobilenet_v2"
    _assert_residual_memory(out, manifest)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["c-host", "cortex-m4"])
def test_user_residual_network_compiles_and_benches_bit_exact(target, user_residual, tmp_path):
    model, images = user_residual
    out = edgepack.compile(model, target=target, calibration=images, output=str(tmp_path / "res"))
    manifest = _assert_bit_exact_pass(out)
    plan = Plan.load(out)
    adds = [layer for layer in plan.layers if layer.kind == "add"]
    assert len(adds) == 3 and adds[0].activation == "relu" and adds[0].act_min == adds[0].output_q.zero_point
    _assert_residual_memory(out, manifest)


@pytest.mark.slow
def test_user_residual_network_on_host_benches_pass(user_residual, tmp_path):
    """host runs the QDQ ONNX file in ONNX Runtime (float arithmetic around int8 tensors): not bit-exact, so
    bench checks top-1 agreement with the integer reference instead."""
    model, images = user_residual
    out = edgepack.compile(model, target="host", calibration=images, output=str(tmp_path / "res"))
    report = bench_artifact(out, eval_size=8)
    assert report["passed"], report["checks"]
    assert report["fidelity"]["top1_agreement_vs_reference"] >= 0.99
    assert sum(layer.kind == "add" for layer in Plan.load(out).layers) == 3


class Absolute(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(torch.abs(y - 1).mean((2, 3)))


def test_an_operator_the_plan_cannot_express_is_refused_by_name(tmp_path):
    images = np.random.default_rng(0).standard_normal((8, 3, RES, RES)).astype(np.float32)
    with pytest.raises(UnsupportedModelError, match=r"^(sub|abs): operator (sub|abs)\.\w+ is not supported by the int8 plan"):
        edgepack.compile(Absolute(), target="c-host", calibration=images, output=str(tmp_path / "abs"))
    assert not (tmp_path / "abs").exists()


def test_v2_without_shipped_weights_names_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v2", "--alpha", "1.4", "--resolution", str(RES),
                           "--target", "host", "-o", str(tmp_path / "x"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no shipped mobilenet_v2 weights for alpha 1.4" in err and "--checkpoint" in err


# ---- residual graphs through the TVM backend: generic Relax, x86 VNNI kernels, AArch64 NEON kernels ----------

from tests.e2e.test_tvm_backend import _host_has_vnni  # noqa: E402 (TVM tests below only)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["x86-tvm", "rpi4"])
def test_mobilenet_v2_compiles_for_tvm_and_benches_bit_exact(target, v2_checkpoint, tmp_path, capsys):
    """V2's ten residual adds through the hand-scheduled kernels (VNNI on this host's CPU where it has
    avx512vnni, NEON under qemu-aarch64 -cpu cortex-a72): golden and eval images equal the reference."""
    manifest = _v2_compiled_and_benched(capsys, v2_checkpoint, target, eval_size=8, out=tmp_path / "v2")
    expected = "neon" if target == "rpi4" else "vnni" if _host_has_vnni() else "generic"
    assert manifest["backend_info"]["kernels"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("target, kernels", [("x86-tvm", "auto"), ("x86-tvm", "generic"), ("rpi4", "auto")])
def test_user_residual_network_compiles_for_tvm_and_benches_bit_exact(target, kernels, user_residual, tmp_path,
                                                                      monkeypatch):
    """The plain-torch ResNet-style network (a long-lived residual input, an add with ReLU, full 3x3 convs
    between adds) on the generic Relax route and the hand-scheduled kernels."""
    monkeypatch.setenv("EDGEPACK_TVM_INT8_KERNELS", kernels)
    model, images = user_residual
    out = edgepack.compile(model, target=target, calibration=images, output=str(tmp_path / "res"))
    manifest = _assert_bit_exact_pass(out)
    expected = "generic" if kernels == "generic" else "neon" if target == "rpi4" else "vnni" if _host_has_vnni() else "generic"
    assert manifest["backend_info"]["kernels"] == expected
    assert sum(layer.kind == "add" for layer in Plan.load(out).layers) == 3


def _random_add(rng, name: str, a: int, b: int, shape, qa, qb, output: str, relu: bool):
    """An add of tensors ``a`` and ``b``; ``output`` "saturating" (an output scale 50-200x below the inputs'),
    "tie" (exactly twice equal input scales: every odd sum rounds a half, away from zero) or "mixed"."""
    from edgepack.plan.plan import Layer, QParams, add_multipliers

    factor = {"saturating": rng.uniform(0.005, 0.02), "tie": 2.0, "mixed": rng.uniform(0.6, 2.5)}[output]
    out = QParams(float(max(qa.scale, qb.scale) * factor), int(rng.integers(-100, 100)))
    multiplier, shift = add_multipliers(qa, qb, out)
    return Layer(name, "add", shape, shape, qa, out, out.zero_point if relu else -128, 127,
                 activation="relu" if relu else "none", arrays={"multiplier": multiplier, "shift": shift},
                 inputs=(a, b), params=AddParams(qb)), out


def random_graph_plan(seed: int, width: int, res: int = 12, classes: int = 5) -> Plan:
    """conv 3x3/2 (l0) -> pointwise (l1) -> add(l0, l1) -> depthwise -> add(., l0: alive across three
    layers, saturating) -> pointwise -> add(l5, l5) with ReLU -> conv 3x3 -> add(l6, l7) with ReLU -> global
    pool -> fc, random weights and multipliers (left shifts too), zero points of either sign, ``width``
    channels (not a multiple of 16: padded lanes)."""
    from edgepack.plan.plan import Layer, QParams
    from tests.e2e.test_neon_kernels import _layer

    rng = np.random.default_rng(seed)
    q_in = QParams(0.05, int(rng.integers(-20, 20)))
    hw, one, none = (res + 2 - 3) // 2 + 1, (1, 1, 1, 1), (0, 0, 0, 0)
    layers, qs, shape = [], [], (width, hw, hw)

    def put(made):
        layers.append(made[0])
        qs.append(made[1])

    put(_layer(rng, "l0", "conv", 3, width, res, hw, 3, 2, one, q_in, True))
    put(_layer(rng, "l1", "pointwise", width, width, hw, hw, 1, 1, none, qs[0], True))
    layers[1].output_q = qs[1] = QParams(qs[0].scale, qs[1].zero_point)  # l0's scale: the "tie" add below
    put(_random_add(rng, "a2", 0, 1, shape, qs[0], qs[1], "tie", False))
    put(_layer(rng, "l3", "depthwise", width, width, hw, hw, 3, 1, one, qs[2], False))
    put(_random_add(rng, "a4", 3, 0, shape, qs[3], qs[0], "saturating", False))
    put(_layer(rng, "l5", "pointwise", width, width, hw, hw, 1, 1, none, qs[4], True))
    put(_random_add(rng, "a6", 5, 5, shape, qs[5], qs[5], "mixed", True))
    put(_layer(rng, "l7", "conv", width, width, hw, hw, 3, 1, one, qs[6], False))
    put(_random_add(rng, "a8", 6, 7, shape, qs[6], qs[7], "mixed", True))
    layers.append(Layer("pool", "avgpool", shape, (width, 1, 1), qs[8], qs[8]))
    layers.append(_layer(rng, "fc", "fc", width, classes, 1, 1, 1, 1, none, qs[8], True)[0])
    plan = Plan(q_in, (3, res, res), layers)
    assert plan.problems() == [] and not plan.is_chain()
    return plan


GRAPH_CASES = ((0, 24), (1, 8), (2, 40))  # (seed, width)


def _graph_case(seed: int, width: int):
    from edgepack.plan import reference

    plan = random_graph_plan(seed, width)
    x = np.random.default_rng(seed).integers(-128, 128, (16, *plan.input_shape)).astype(np.int8)
    want, outputs = reference.run(plan, x, collect=True)
    assert np.isin(outputs[4], (-128, 127)).mean() > 0.3  # the saturating add saturates
    return plan, x, want


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["generic", "vnni"])
def test_random_graph_plans_bit_exact_on_x86(kernels):
    """Random graph plans with adds (mixed scales and zero points, saturation, rounding ties, one tensor
    added to itself, a residual input alive across layers) on the generic Relax route and the VNNI kernels."""
    from tests.e2e.test_tvm_backend import run_on_x86

    for seed, width in GRAPH_CASES:
        plan, x, want = _graph_case(seed, width)
        got = run_on_x86(plan, kernels, x)
        assert got.shape == want.shape and int((got != want).sum()) == 0, f"seed {seed}: {int((got != want).sum())} differ"


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76"])
def test_random_graph_plans_bit_exact_on_neon(cpu, tmp_path):
    """The same plans through the NEON kernels under qemu-aarch64 (SMULL GEMMs on the A72, SDOT on the A76),
    1 and 4 threads."""
    from edgepack.backends.tvm import aarch64_neon
    from tests.e2e.test_neon_kernels import run_neon, tvm_target

    for seed, width in GRAPH_CASES:
        plan, x, want = _graph_case(seed, width)
        assert aarch64_neon.supported(plan, tvm_target(cpu))
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        for threads in (1, 4):
            got = run_neon(plan, cpu, x, threads, folder)
            assert got.shape == want.shape
            assert int((got != want).sum()) == 0, f"seed {seed}, {threads} threads: {int((got != want).sum())} differ"


def test_an_add_of_the_model_input_runs_bit_exact_on_the_generic_route():
    """A plan that adds the model input itself later: the hand-scheduled sets take it (their per-layer
    routes, tests/e2e/test_tvm_per_layer_fallback.py) and the generic Relax lowering, every set's fallback,
    must run it bit-exact too."""
    import dataclasses

    import tvm
    from tvm import relax

    from edgepack.backends.tvm import x86_vnni
    from edgepack.backends.tvm.lower import tvm_target
    from edgepack.backends.tvm.relax_int8 import plan_to_relax
    from edgepack.plan import reference
    from edgepack.targets import get_target
    from tests.e2e.test_neon_kernels import _layer, random_plan

    chain, rng = random_plan(4, width=8, res=8), np.random.default_rng(4)
    c, res = chain.input_shape[0], chain.input_shape[1]
    pointwise, q = _layer(rng, "p", "pointwise", c, c, res, res, 1, 1, (0, 0, 0, 0), chain.input_q, False)
    add, q = _random_add(rng, "input+p", -1, 0, chain.input_shape, chain.input_q, q, "mixed", False)
    graph = Plan(chain.input_q, chain.input_shape,
                 [pointwise, add, dataclasses.replace(chain.layers[0], input_q=q), *chain.layers[1:]])
    assert graph.problems() == []
    tgt = tvm_target(get_target("x86-tvm"))
    assert x86_vnni.supported(graph, tgt) == x86_vnni.supported(chain, tgt) == _host_has_vnni()
    x = rng.integers(-128, 128, (6, *graph.input_shape)).astype(np.int8)
    ex = tvm.compile(plan_to_relax(graph), target=tgt, relax_pipeline=relax.get_default_pipeline(tgt))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    got = np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])
    assert np.array_equal(got, reference.run(graph, x))


def test_v2_memory_estimate_is_its_own_and_checked_before_torch(tmp_path):
    """MobileNetV2's widest activation (the first 6x expansion, 96 alpha channels at R/2) is 1.5x V1's: at a
    resolution between the two estimates V2 is refused and V1 is not; the CLI refuses before torch loads."""
    import subprocess
    import sys

    from edgepack.config import CompileConfig
    from edgepack.errors import ConfigError
    from edgepack.validate import MEMORY_HEADROOM, available_memory, compile_memory_estimate

    def estimate(model, r, images=540):  # the default calibration and eval images
        return compile_memory_estimate(1.0, r, images, architecture=model)

    growth = [estimate(model, 192, 128) - estimate(model, 96, 128) for model in ("mobilenet_v1", "mobilenet_v2")]
    assert 1.3 < growth[1] / growth[0] < 1.5  # measured with 128 images: 1.34x (validate.WIDEST_CHANNELS)
    limit = MEMORY_HEADROOM * available_memory()
    between = next(r for r in range(32, 8192, 32) if estimate("mobilenet_v2", r) > 1.03 * limit)
    assert estimate("mobilenet_v1", between) < 0.97 * limit
    CompileConfig(target="c-host", alpha=1.0, resolution=between)
    with pytest.raises(ConfigError, match=rf"resolution {between} needs about .* GiB"):
        CompileConfig(target="c-host", alpha=1.0, resolution=between, architecture="mobilenet_v2")
    p = subprocess.run([sys.executable, "-c", TRACKED, "compile", "--model", "mobilenet_v2", "--alpha", "1.4",
                        "--resolution", "4096", "--target", "c-host", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "needs about" in p.stderr, p.stderr
    assert p.stdout.splitlines()[-1] == "no torch" and not (tmp_path / "out").exists()
