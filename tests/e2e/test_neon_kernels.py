"""The AArch64 NEON int8 kernels (backends/tvm/aarch64_neon.py) against the numpy reference, under
qemu-aarch64 with each board's exact CPU, on random plans that reach the corners of the arithmetic:
negative zero points, left shifts, rounding ties, saturation, channel counts that are not multiples
of the 16-channel tile, 1 and 4 threads, and the SDOT path of dotprod CPUs."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.backends.tvm import aarch64_neon
from edgepack.backends.tvm.runner import run_on_qemu
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams

CPUS = {"cortex-a72": ["+neon"], "cortex-a53": ["+neon"], "cortex-a76": ["+neon", "+dotprod"]}


def tvm_target(cpu: str):
    import tvm

    return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu, "mattr": CPUS[cpu],
                              "num-cores": 4})


def _layer(rng, name, kind, cin, cout, hw_in, hw_out, k, stride, pads, in_q, left_shift: bool):
    groups = cin if kind == "depthwise" else 1
    shape = (cout, cin // groups, k, k) if kind != "fc" else (cout, cin)
    w = rng.integers(-127, 128, shape).astype(np.int8)
    out_q = QParams(float(rng.uniform(0.02, 0.2)), int(rng.integers(-128, 100)))
    # multipliers over the whole Q31 range, right shifts up to 12, some left shifts (multiplier > 1)
    mult = rng.integers(1 << 30, (1 << 31) - 1, cout).astype(np.int32)
    shift = rng.integers(-12, -5, cout).astype(np.int32)
    if left_shift:
        shift[::3] = rng.integers(1, 3, len(shift[::3]))
    terms = int(np.prod(shape[1:]))
    bias = rng.integers(-terms * 300, terms * 300, cout).astype(np.int32)
    relu = name in ("l0", "l3")  # linear layers keep negative outputs: round-half-away ties must show
    act_min, act_max = (out_q.zero_point, min(127, out_q.zero_point + 90)) if relu else (-128, 127)
    arrays = {"weight": w, "bias": bias, "multiplier": mult, "shift": shift,
              "weight_scale": np.full(cout, 0.01, np.float32)}
    in_shape = (cin, hw_in, hw_in) if kind != "fc" else (cin,)
    out_shape = (cout, hw_out, hw_out) if kind != "fc" else (cout,)
    return Layer(name, kind, in_shape, out_shape, in_q, out_q, act_min, act_max, stride, pads,
                 "relu" if relu else "none", arrays), out_q


def random_plan(seed: int, c0: int = 3, width: int = 24, res: int = 16, classes: int = 7, left_shift=True,
                asymmetric: bool = False) -> Plan:
    """conv 3x3/2 -> depthwise 3x3/1 -> pointwise -> depthwise 3x3/2 -> pointwise -> global pool -> fc.
    3x3 layers pad 1 all round (PyTorch), or with ``asymmetric`` the stride-2 ones as TensorFlow's SAME
    on even sizes, (top, left, bottom, right) = (0, 0, 1, 1), and the stride-1 one (2, 0, 0, 2)."""
    rng = np.random.default_rng(seed)
    q = QParams(0.05, int(rng.integers(-20, 20)))
    layers, hw = [], res
    same, one = ((0, 0, 1, 1), (2, 0, 0, 2)) if asymmetric else ((1, 1, 1, 1), (1, 1, 1, 1))
    none = (0, 0, 0, 0)
    spec = [("conv", c0, width, 3, 2, same), ("depthwise", width, width, 3, 1, one), ("pointwise", width, 2 * width, 1, 1, none),
            ("depthwise", 2 * width, 2 * width, 3, 2, same), ("pointwise", 2 * width, 40, 1, 1, none)]
    first_q = q
    for i, (kind, cin, cout, k, s, pads) in enumerate(spec):
        hw_out = (hw + pads[0] + pads[2] - k) // s + 1
        layer, q = _layer(rng, f"l{i}", kind, cin, cout, hw, hw_out, k, s, pads, q, left_shift)
        layers.append(layer)
        hw = hw_out
    pool = Layer("pool", "avgpool", (40, hw, hw), (40, 1, 1), q, q)
    layers.append(pool)
    fc, _ = _layer(rng, "fc", "fc", 40, classes, 1, 1, 1, 1, (0, 0, 0, 0), q, left_shift)
    layers.append(fc)
    plan = Plan(first_q, (c0, res, res), layers)
    assert plan.problems() == []
    return plan


def run_neon(plan: Plan, cpu: str, x: np.ndarray, threads: int, tmp_path) -> np.ndarray:
    from tvm.support.cc import cross_compiler

    lib = tmp_path / f"model-{cpu}.so"
    if not lib.exists():
        aarch64_neon.build(plan, tvm_target(cpu)).export_library(str(lib), fcompile=cross_compiler("aarch64-linux-gnu-g++"))
    out, _ = run_on_qemu(lib, "aarch64", cpu, x, plan.layers[-1].output_shape[0], threads=threads)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("cpu", CPUS)
def test_random_plans_bit_exact(cpu, tmp_path):
    for seed, width, res in ((0, 24, 16), (1, 8, 13), (2, 40, 20)):
        plan = random_plan(seed, width=width, res=res, left_shift=seed != 1)
        assert aarch64_neon.supported(plan, tvm_target(cpu))
        x = np.random.default_rng(seed).integers(-128, 128, (12, *plan.input_shape)).astype(np.int8)
        want = reference.run(plan, x)
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        for threads in (1, 4):
            got = run_neon(plan, cpu, x, threads, folder)
            assert got.shape == want.shape
            assert int((got != want).sum()) == 0, f"seed {seed}, {threads} threads: {int((got != want).sum())} values differ"


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76"])
def test_asymmetric_pads_bit_exact(cpu, tmp_path):
    """TensorFlow-SAME pads (0, 0, 1, 1) on the stride-2 layers, (2, 0, 0, 2) on the stride-1 depthwise:
    the zero-point border of the padded NHWC input sits where the plan says (SMULL and SDOT GEMMs)."""
    plan = random_plan(3, width=16, res=16, asymmetric=True)
    x = np.random.default_rng(3).integers(-128, 128, (6, *plan.input_shape)).astype(np.int8)
    want = reference.run(plan, x)
    got = run_neon(plan, cpu, x, 4, tmp_path)
    assert got.shape == want.shape and len(np.unique(want)) > 2
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} values differ"


def test_register_tile_divides_and_fits():
    for m in (1, 7, 49, 196, 12544):
        for n in (16, 32, 48, 768):
            r, nt = aarch64_neon.register_tile(m, n)
            assert m % r == 0 and n % nt == 0 and r * nt <= aarch64_neon.MAX_ACCUMULATORS


def test_packed_weights_hold_every_value_once():
    w = np.arange(40 * 27).reshape(40, 27).astype(np.int8)
    packed = aarch64_neon.pack_weight(w, 48, 32, 8)
    assert packed.shape == (6, 2, 8, 16)
    back = packed.transpose(0, 2, 1, 3).reshape(48, 32)
    assert np.array_equal(back[:40, :27], w) and not back[40:].any() and not back[:, 27:].any()


def test_dotprod_only_where_the_cpu_has_it():
    assert aarch64_neon.uses_dotprod(tvm_target("cortex-a76"))
    assert not aarch64_neon.uses_dotprod(tvm_target("cortex-a72"))
    assert not aarch64_neon.uses_dotprod(tvm_target("cortex-a53"))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rpi4", "rpi5", "arm64-a53"])
def test_board_targets_compile_and_bench_bit_exact(target, tmp_path, capsys):
    """The whole chain for each ARM board: the compile verifies the golden images under qemu with the
    board's CPU (1 and 4 threads); bench checks golden and eval images and reports the cost."""
    import json

    from tests.conftest import run_cli

    out = tmp_path / target
    code, _, err = run_cli(capsys, "compile", "--target", target, "--alpha", "0.75", "--resolution", "32",
                           "--eval-size", "24", "--calib-size", "32", "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend_info"]["kernels"] == "neon"
    code, text, err = run_cli(capsys, "bench", str(out), "--json", str(tmp_path / "r.json"))
    assert code == 0, text + err
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(c["passed"] for c in report["checks"]) and report["cost"]["instructions_per_inference"] > 0
    assert "eval: qemu-aarch64 == reference (bit-exact): 0" in text


@pytest.mark.slow
def test_slower_kernel_fails_the_instruction_gate(tmp_path, capsys, monkeypatch):
    """A kernel change that costs instructions (here: 1-row x 4-channel GEMM tiles instead of the chosen
    ones) is caught by the baseline gate with exit 1 naming the cost check."""
    from tests.conftest import run_cli

    common = ["--target", "rpi4", "--alpha", "0.25", "--resolution", "32", "--eval-size", "8", "--calib-size", "16"]
    assert run_cli(capsys, "compile", *common, "-o", str(tmp_path / "fast"))[0] == 0
    baseline = tmp_path / "base.json"
    assert run_cli(capsys, "bench", str(tmp_path / "fast"), "--update-baseline", str(baseline))[0] == 0
    monkeypatch.setattr(aarch64_neon, "register_tile", lambda m, n: (1, 4))
    assert run_cli(capsys, "compile", *common, "-o", str(tmp_path / "slow"))[0] == 0
    code, out, _ = run_cli(capsys, "bench", str(tmp_path / "slow"), "--baseline", str(baseline))
    assert code == 1, out
    assert "regression(s): cost instructions_per_inference" in out
