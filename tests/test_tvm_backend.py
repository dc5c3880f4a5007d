"""TVM backend: integer Relax lowering bit-exact with the reference on the host, under
qemu-aarch64 (rpi4, the C++ runner) and over a real loopback RPC tracker + server."""
import json
import time

import numpy as np
import pytest

import edgepack
from edgepack.backends.tvm.device import DeviceError, Runner
from edgepack.backends.tvm.rpc_local import LocalRPC
from edgepack.benchmark.run import bench_artifact
from tests.conftest import ALPHA, RES, run_cli

SMALL = dict(alpha=ALPHA, resolution=RES, eval_size=24, calib_size=32)


@pytest.fixture(scope="module")
def x86_artifact(tmp_path_factory):
    return edgepack.compile(target="x86-tvm", output=str(tmp_path_factory.mktemp("tvm") / "x86"), **SMALL)


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_x86_int8_is_bit_exact_on_host(x86_artifact):
    info = _manifest(x86_artifact)["backend_info"]
    assert info["dtype"] == "int8" and info["tvm_version"].startswith("0.27") and "llvm" in info["tvm_target"]
    report = bench_artifact(x86_artifact, count=5)
    assert report["passed"] and report["device"] == "host"
    names = [c["name"] for c in report["checks"]]
    assert "eval: host == reference (bit-exact)" in names
    assert report["latency"]["count"] == 5


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


def test_unknown_rpc_device_gives_clear_error(x86_artifact, capsys):
    from edgepack.backends.tvm.rpc_local import free_port

    code, _, err = run_cli(capsys, "bench", str(x86_artifact), "--rpc", f"127.0.0.1:{free_port()}", "--timeout", "5")
    assert code == 2 and "RPC device" in err and len(err.strip().splitlines()) == 1
