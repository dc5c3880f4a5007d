"""TVM backend: integer Relax lowering bit-exact with the reference on the host, under
qemu-aarch64 (rpi4, the C++ runner) and over a real loopback RPC tracker + server."""
import json
import time

import numpy as np
import pytest

import edgepack
from edgepack.backends.tvm.runner import Runner
from edgepack.errors import DeviceError
from edgepack.backends.tvm.lower import int8_kernels, tvm_target
from edgepack.backends.tvm.rpc_local import LocalRPC
from edgepack.benchmark.run import bench_artifact
from edgepack.errors import ToolchainError
from edgepack.plan.plan import Plan
from edgepack.targets import get_target
from tests.cli import edgepack as run_edgepack
from tests.conftest import ALPHA, RES, run_cli

SMALL = dict(alpha=ALPHA, resolution=RES, eval_size=24, calib_size=32)


@pytest.fixture(scope="module")
def x86_artifact(tmp_path_factory):
    return edgepack.compile(target="x86-tvm", output=str(tmp_path_factory.mktemp("tvm") / "x86"), **SMALL)


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _host_has_vnni() -> bool:
    from tvm.target import codegen

    return codegen.target_has_features("avx512vnni", tvm_target(get_target("x86-tvm")))


@pytest.mark.slow
def test_x86_int8_is_bit_exact_on_host(x86_artifact):
    info = _manifest(x86_artifact)["backend_info"]
    assert info["dtype"] == "int8" and info["tvm_version"].startswith("0.27") and "llvm" in info["tvm_target"]
    assert ("AVX512-VNNI" in info["schedules"]) == _host_has_vnni()  # the fast kernels wherever the CPU has them
    report = bench_artifact(x86_artifact, count=5)
    assert report["passed"] and report["device"] == "host"
    names = [c["name"] for c in report["checks"]]
    assert "eval: host == reference (bit-exact)" in names
    assert report["latency"]["count"] == 5



@pytest.mark.slow
def test_a_device_option_the_runner_does_not_take_is_refused_in_one_line(x86_artifact, capsys):
    """The TVM runner once swallowed unknown options: `--device npu` benched on the host as if accepted."""
    code, out, err = run_cli(capsys, "bench", str(x86_artifact), "--device", "npu")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert "--device" in err and "--rpc, --key, --timeout" in err and "tvm" in err, err


@pytest.mark.slow
def test_a_bad_device_option_value_is_refused_before_connecting(x86_artifact):
    from edgepack.errors import ConfigError

    with pytest.raises(ConfigError, match="--timeout") as e:
        edgepack.bench(x86_artifact, rpc="127.0.0.1:9", timeout=-1)
    assert len(str(e.value).splitlines()) == 1


def test_every_backend_runner_implements_the_one_protocol():
    from edgepack.backends import MODULES, backend_module, runner

    for name in MODULES:
        cls = backend_module(name).Runner
        assert issubclass(cls, runner.Runner), name
        assert all(isinstance(o, runner.Option) for o in cls.OPTIONS.values()), name
    assert set(backend_module("tvm").Runner.OPTIONS) == {"rpc", "key", "timeout"}
    assert backend_module("tflm").Runner.OPTIONS == {}


@pytest.mark.slow
def test_rpi4_under_qemu_is_bit_exact(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compile", "--target", "rpi4", "--alpha", str(ALPHA), "--resolution", str(RES),
                           "--eval-size", "24", "--calib-size", "32", "-o", str(tmp_path / "rpi4"))
    assert code == 0, err
    info = _manifest(tmp_path / "rpi4")["backend_info"]
    assert info["arch"] == "aarch64" and "cortex-a72" in info["tvm_target"]
    assert (tmp_path / "rpi4" / "model.so").read_bytes()[18] == 0xB7  # ELF e_machine = EM_AARCH64
    code, out, _ = run_cli(capsys, "bench", str(tmp_path / "rpi4"))
    assert code == 0, out
    assert "qemu-aarch64 == reference (bit-exact): 0" in out
    assert "not measured" in out and "emulated" in out  # emulated wall-clock is never shown as latency


@pytest.mark.slow
def test_rpi4_fp32_under_qemu_matches_torch(tmp_path):
    out = edgepack.compile(target="rpi4", quant="none", output=str(tmp_path / "fp32"), **SMALL)
    report = bench_artifact(out)
    assert report["passed"], report["checks"]
    golden = [c for c in report["checks"] if c["name"].startswith("golden: fp32")][0]
    assert golden["value"] < 1e-4


@pytest.mark.slow
def test_rpc_tracker_bench_and_dead_server(x86_artifact):
    with LocalRPC(key="x86") as rpc:
        report = bench_artifact(x86_artifact, rpc=rpc.tracker, key="x86", count=5)
        assert report["passed"] and report["device"].startswith("rpc 127.0.0.1")
        lat = report["latency"]
        assert lat["count"] == 5 and lat["min_ms"] <= lat["median_ms"] <= lat["max_ms"]
        runner = Runner(x86_artifact, _manifest(x86_artifact), rpc=rpc.tracker, key="x86", timeout=10)
        rpc.kill_servers()
        start = time.monotonic()
        with pytest.raises(DeviceError, match="failed"):
            runner.run_int8(np.load(x86_artifact / "golden_input.npy"))
        assert time.monotonic() - start < 30


@pytest.mark.slow
def test_unknown_rpc_device_gives_clear_error(x86_artifact, capsys):
    from edgepack.backends.tvm.rpc_local import free_port

    code, _, err = run_cli(capsys, "bench", str(x86_artifact), "--rpc", f"127.0.0.1:{free_port()}", "--timeout", "5")
    assert code == 2 and "nothing accepts connections at" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["auto", "generic"])
def test_x86_int8_kernels_bit_exact(tmp_path, monkeypatch, kernels):
    """alpha 0.75: 24-channel layers are padded to the 16-lane VNNI kernels; the generic Relax
    lowering (CPUs without VNNI) is pinned through the target file's [compiler] int8_kernels.
    Both must equal the reference on the golden and eval images."""
    import dataclasses

    from edgepack import compiler

    x86 = get_target("x86-tvm")
    pinned = dataclasses.replace(x86, compiler=dataclasses.replace(x86.compiler, int8_kernels=kernels))
    monkeypatch.setattr(compiler, "get_target", lambda name, target_dirs=(): pinned)
    out = edgepack.compile(target="x86-tvm", output=str(tmp_path / kernels), **dict(SMALL, alpha=0.75, resolution=32, eval_size=40))
    schedules = _manifest(out)["backend_info"]["schedules"]
    assert ("AVX512-VNNI" in schedules) == (kernels == "auto" and _host_has_vnni())
    report = bench_artifact(out, count=3)
    assert report["passed"], report["checks"]
    assert {"golden: host == reference (bit-exact)", "eval: host == reference (bit-exact)"} <= {c["name"] for c in report["checks"]}


@pytest.mark.slow
def test_int8_kernel_choice(x86_artifact):
    import dataclasses

    plan = Plan.load(x86_artifact)
    x86, rpi4 = get_target("x86-tvm"), get_target("rpi4")
    assert int8_kernels(x86, plan, tvm_target(x86)) == ("vnni" if _host_has_vnni() else "generic")
    assert int8_kernels(x86, None, tvm_target(x86)) == "generic"  # --quant none
    headless = Plan(plan.input_q, plan.layers[1].input_shape, plan.layers[1:])  # starts with a depthwise conv
    # a plan that starts with a depthwise: every layer hand-scheduled now that routes are chosen per layer
    assert int8_kernels(x86, headless, tvm_target(x86)) == ("vnni" if _host_has_vnni() else "generic")
    assert int8_kernels(rpi4, plan, tvm_target(rpi4)) == "neon"
    assert int8_kernels(rpi4, headless, tvm_target(rpi4)) == "neon"
    pinned = dataclasses.replace(rpi4, compiler=dataclasses.replace(rpi4.compiler, int8_kernels="vnni"))
    with pytest.raises(ToolchainError, match="asks for vnni int8 kernels"):
        int8_kernels(pinned, plan, tvm_target(pinned))
    pinned = dataclasses.replace(x86, compiler=dataclasses.replace(x86.compiler, int8_kernels="neon"))
    with pytest.raises(ToolchainError, match="asks for neon int8 kernels"):
        int8_kernels(pinned, plan, tvm_target(pinned))
    generic = dataclasses.replace(rpi4, compiler=dataclasses.replace(rpi4.compiler, int8_kernels="generic"))
    assert int8_kernels(generic, plan, tvm_target(generic)) == "generic"
    bad = dataclasses.replace(x86, compiler=dataclasses.replace(x86.compiler, int8_kernels="fast"))
    with pytest.raises(ToolchainError, match="must be auto, generic, vnni or neon"):
        int8_kernels(bad, plan, tvm_target(bad))


@pytest.mark.slow
def test_vnni_left_shift_and_rounding_paths_bit_exact(x86_artifact):
    """Shipped plans rarely have multipliers > 1; give every layer a left shift, or a long right
    shift, and the VNNI kernels must still equal the reference bit for bit."""
    import tvm
    from tvm import relax

    from edgepack.backends.tvm import x86_vnni
    from edgepack.plan import reference

    assert _host_has_vnni(), "this CPU has no avx512vnni: run this test on the CI machine, which has it"
    plan = Plan.load(x86_artifact)
    scaled = [layer for layer in plan.layers if "shift" in layer.arrays]
    layer = scaled[1]  # same real multipliers, written as a smaller M0 with a left shift of 1
    shift = layer.arrays["shift"].astype(np.int64)
    layer.arrays["multiplier"] = (layer.arrays["multiplier"].astype(np.int64) >> (1 - shift)).astype(np.int32)
    layer.arrays["shift"] = np.ones_like(layer.arrays["shift"])
    scaled[-1].arrays["shift"] = scaled[-1].arrays["shift"] - 3  # logits: longer rounding right shifts
    x = np.load(x86_artifact / "golden_input.npy")
    vm = relax.VirtualMachine(x86_vnni.build(plan, tvm_target(get_target("x86-tvm"))), tvm.cpu())
    got = np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])
    want = reference.run(plan, x)
    assert np.array_equal(got, want)
    assert len(np.unique(want)) > 2  # not every logit saturated


def run_on_x86(plan: Plan, kernels: str, x: np.ndarray) -> np.ndarray:
    """int8 outputs of ``plan`` built for this host with the VNNI kernels or the generic Relax route."""
    import tvm
    from tvm import relax

    from edgepack.backends.tvm import x86_vnni
    from edgepack.backends.tvm.relax_int8 import plan_to_relax

    tgt = tvm_target(get_target("x86-tvm"))
    if kernels == "vnni":
        assert _host_has_vnni() and x86_vnni.supported(plan, tgt)
        ex = x86_vnni.build(plan, tgt)
    else:
        ex = tvm.compile(plan_to_relax(plan), target=tgt, relax_pipeline=relax.get_default_pipeline(tgt))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])


@pytest.mark.parametrize("kernels", ["generic", "vnni"])
def test_asymmetric_pads_bit_exact_on_host(kernels):
    """A plan with TensorFlow-SAME pads (0, 0, 1, 1) on its stride-2 layers and (2, 0, 0, 2) on a
    stride-1 depthwise (the .tflite importer's plans): the generic Relax route and the VNNI kernels both
    equal the reference bit for bit."""
    import tvm
    from tvm import relax

    from edgepack.plan import reference
    from tests.e2e.test_neon_kernels import random_plan

    plan = random_plan(3, width=16, res=16, asymmetric=True)  # left and right shifts mixed in each layer
    x = np.random.default_rng(3).integers(-128, 128, (6, *plan.input_shape)).astype(np.int8)
    got = run_on_x86(plan, kernels, x)
    want = reference.run(plan, x)
    assert len(np.unique(want)) > 2
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} values differ"


def test_vnni_mixed_left_and_right_shifts_in_one_layer_bit_exact():
    """Every scaled layer mixes left-shift channels (multiplier > 1) with right-shift ones, as imported
    .tflite models can; the int8 logits layer with a left shift once failed the VNNI build in TVM's
    NarrowDataType ("conflicts with memorization"). The kernels equal the reference bit for bit."""
    import tvm
    from tvm import relax

    from edgepack.backends.tvm import x86_vnni
    from edgepack.plan import reference
    from tests.e2e.test_neon_kernels import random_plan

    plan = random_plan(3, width=16, res=16, left_shift=True)
    for layer in plan.layers:
        if "shift" in layer.arrays:
            assert layer.arrays["shift"].max() > 0 >= layer.arrays["shift"].min(), layer.name
    tgt = tvm_target(get_target("x86-tvm"))
    assert _host_has_vnni() and x86_vnni.supported(plan, tgt)
    vm = relax.VirtualMachine(x86_vnni.build(plan, tgt), tvm.cpu())
    x = np.random.default_rng(3).integers(-128, 128, (6, *plan.input_shape)).astype(np.int8)
    got = np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])
    want = reference.run(plan, x)
    assert len(np.unique(want)) > 2
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} values differ"


@pytest.mark.slow
def test_tune_mobilenet_v2_then_a_generic_compile_uses_the_records_bit_exact(tmp_path, monkeypatch):
    """`tune --model mobilenet_v2` measures the residual graph's tasks on this CPU; the generic Relax
    lowering of a V2 compile then builds from those records and stays bit-exact. tune runs as its own process, as
    a user runs it: MetaSchedule configures Python logging process-wide (dictConfig closes every handler and binds
    a console handler to the sys.stdout of the moment), which is not the test process's to keep."""
    monkeypatch.setenv("EDGEPACK_TUNING_DIR", str(tmp_path / "tuning"))
    code, _, err, _ = run_edgepack("tune", "--target", "x86-tvm", "--model", "mobilenet_v2", "--alpha", "0.35",
                                   "--resolution", "32", "--trials", "4", timeout=1200)
    assert code == 0, err
    records = tmp_path / "tuning" / "x86-tvm" / "database_tuning_record.json"
    assert records.read_text().count("\n") >= 1
    monkeypatch.setenv("EDGEPACK_TVM_INT8_KERNELS", "generic")
    folder = edgepack.compile(target="x86-tvm", architecture="mobilenet_v2", output=str(tmp_path / "v2"),
                              **dict(SMALL, alpha=0.35, resolution=32))
    assert "MetaSchedule records for x86-tvm" in json.dumps(_manifest(folder)["backend_info"])
    report = bench_artifact(folder, count=3)
    assert report["passed"], report["checks"]
    assert "eval: host == reference (bit-exact)" in {c["name"] for c in report["checks"]}
