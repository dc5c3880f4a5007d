"""Bench baselines record what they measured (target, device, kernels, eval size, model) and a bench
refuses one measured on something else; a broken baseline file is one line on stderr, exit 2."""
import json
import shutil
from pathlib import Path

import pytest

import edgepack
from edgepack.benchmark.compare import device_identity
from tests.conftest import run_cli

SMALL = dict(alpha=0.25, resolution=32, eval_size=16, calib_size=32)
FAST = ("--count", "3", "--warmup", "1", "--max-latency-increase", "100")


@pytest.fixture(scope="module")
def host_small(tmp_path_factory):
    return edgepack.compile(target="host", output=str(tmp_path_factory.mktemp("host") / "host"), **SMALL)


@pytest.fixture(scope="module")
def x86_generic(tmp_path_factory):
    """An x86-tvm artifact with the generic int8 kernels: what a CPU without AVX512-VNNI compiles."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPACK_TVM_INT8_KERNELS", "generic")
    try:
        return edgepack.compile(target="x86-tvm", output=str(tmp_path_factory.mktemp("tvm") / "x86"), **SMALL)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def baselines(tmp_path_factory, host_small, x86_generic):
    """Baselines written by --update-baseline: {"host": path, "x86-generic": path}, each in its own folder."""
    from edgepack.cli.main import main

    paths = {}
    for name, artifact in (("host", host_small), ("x86-generic", x86_generic)):
        path = tmp_path_factory.mktemp(name) / f"{name}.json"
        assert main(["bench", str(artifact), *FAST, "--update-baseline", str(path)]) == 0
        paths[name] = path
    return paths


def edited(src: Path, dst: Path, **changes) -> Path:
    data = json.loads(src.read_text())
    data.update(changes)
    dst.write_text(json.dumps(data))
    return dst


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
def test_update_baseline_records_what_was_measured(baselines):
    tvm = json.loads(baselines["x86-generic"].read_text())
    assert tvm["version"] == 2 and tvm["target"] == "x86-tvm" and tvm["backend"] == "tvm"
    assert tvm["device"] == "host" and tvm["kernels"] == "generic" and tvm["eval_images"] == 16
    assert tvm["model"] == {"alpha": 0.25, "resolution": 32, "classes": 10, "quant": "ptq"}
    assert "avx2" in tvm["cpu_features"] and tvm["edgepack_version"] == edgepack.__version__
    host = json.loads(baselines["host"].read_text())
    assert host["target"] == "host" and host["kernels"] is None and host["latency"]["median_ms"] > 0


def test_rpc_device_identity_has_no_port():
    assert device_identity("rpc 127.0.0.1:48207 key x86") == "rpc key x86"
    assert device_identity("rpc 10.0.0.7:9090") == "rpc 10.0.0.7"
    assert device_identity("host") == "host" and device_identity("qemu-aarch64") == "qemu-aarch64"


@pytest.mark.slow
def test_matching_baseline_passes(host_small, baselines, capsys):
    code, out, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(baselines["host"]))
    assert code == 0 and "no regression" in out and err == ""


@pytest.mark.slow
def test_x86_tvm_baseline_refused_for_host_artifact(host_small, baselines, capsys):
    code, out, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(baselines["x86-generic"]))
    line = one_error_line(err)
    assert code == 2 and 'target "x86-tvm"' in line and '"host"' in line and "--update-baseline" in line
    assert "no regression" not in out


@pytest.mark.slow
def test_vnni_baseline_refused_for_generic_artifact_naming_the_matching_file(x86_generic, baselines, tmp_path, capsys):
    shutil.copy(baselines["x86-generic"], tmp_path / "x86-generic.json")
    vnni = edited(baselines["x86-generic"], tmp_path / "x86-vnni.json", kernels="vnni")
    code, _, err = run_cli(capsys, "bench", str(x86_generic), *FAST, "--baseline", str(vnni))
    line = one_error_line(err)
    assert code == 2 and 'kernels "vnni"' in line and '"generic"' in line
    assert f"use {tmp_path / 'x86-generic.json'}" in line


@pytest.mark.slow
@pytest.mark.parametrize("field, value, named", [
    ("eval_images", 120, "eval_images 120"),
    ("device", "rpc key x86", 'device "rpc key x86"'),
    ("model", {"alpha": 0.5, "resolution": 32, "classes": 10, "quant": "ptq"}, "model.alpha 0.5"),
])
def test_other_mismatches_refused(host_small, baselines, tmp_path, capsys, field, value, named):
    other = edited(baselines["host"], tmp_path / "other.json", **{field: value})
    code, _, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(other))
    assert code == 2 and named in one_error_line(err)


@pytest.mark.slow
def test_edgepack_version_difference_is_reported_not_refused(host_small, baselines, tmp_path, capsys):
    older = edited(baselines["host"], tmp_path / "older.json", edgepack_version="0.0.1")
    code, out, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(older))
    assert code == 0 and err == ""
    assert 'note: baseline edgepack_version "0.0.1"' in out and "no regression" in out


@pytest.mark.slow
def test_version_1_baseline_refused(host_small, baselines, tmp_path, capsys):
    v1 = edited(baselines["host"], tmp_path / "v1.json", version=1)
    code, _, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(v1))
    line = one_error_line(err)
    assert code == 2 and "version 1" in line and f"--update-baseline {v1}" in line


def _invalid(kind: str, base: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.json"
    if kind == "list":
        path.write_text(json.dumps([json.loads(base.read_text())]))
    elif kind == "wrong-type":
        edited(base, path, accuracy="high")
    elif kind == "missing-field":
        data = json.loads(base.read_text())
        del data["kernels"]
        path.write_text(json.dumps(data))
    elif kind == "directory":
        path.mkdir()
    elif kind == "non-utf8":
        path.write_bytes(b'{"format": "\xff\xfe"}')
    elif kind == "not-json":
        path.write_text("{not json")
    elif kind in ("unreadable", "parent-is-file"):
        path.write_text(base.read_text())
        if kind == "parent-is-file":
            path = path / "baseline.json"
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind, expected", [
    ("list", "holds a JSON list"),
    ("wrong-type", '"accuracy" is "high"'),
    ("missing-field", 'no "kernels" field'),
    ("directory", "is a directory"),
    ("non-utf8", "not UTF-8"),
    ("not-json", "not valid JSON"),
    ("unreadable", "cannot be read (Permission denied)"),
    ("parent-is-file", "cannot be read"),
])
def test_invalid_baseline_one_line_exit_2(host_small, baselines, tmp_path, capsys, monkeypatch, kind, expected):
    path = _invalid(kind, baselines["host"], tmp_path)
    if kind == "unreadable":  # chmod 000 does not stop root: deny the read itself
        read_bytes = Path.read_bytes

        def denied(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return read_bytes(self)
        monkeypatch.setattr(Path, "read_bytes", denied)
    code, out, err = run_cli(capsys, "bench", str(host_small), *FAST, "--baseline", str(path))
    line = one_error_line(err)
    assert code == 2 and expected in line and str(path) in line, line
    assert "result:" not in out  # refused before benching


@pytest.mark.slow
def test_update_baseline_into_a_directory_is_one_line(host_small, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", str(host_small), *FAST, "--update-baseline", str(tmp_path))
    assert code == 2 and str(tmp_path) in one_error_line(err)
