"""Issue 10, table-driven: every bad input a skeptical user tried gets exit 2 (or 1 / 3 / 143 where
stated), exactly one stderr line (the whole stderr: nothing filtered) naming the problem, and
leaves nothing behind. Each CLI case runs as its own process, as a user would run it.

RPC faults (finding 7) are in test_rpc_faults.py, relative paths and eval data by content (8, 9)
in test_artifact_paths.py, baselines (5) in test_baseline.py, signatures in test_signing.py.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.artifact import output_lock
from tests.cli import SMALL, TRACKED, assert_one_line, edgepack, resign as _resign, tree
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def artifact(small_artifacts):
    return small_artifacts("host")


@pytest.fixture(scope="module")
def fp32_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "fp32"
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "--quant", "none", "-o", out)
    assert code == 0, err
    return out


# ---------------------------------------------------------------- flags: exit 2, one line, < 2 s, no torch

FLAG_CASES = {  # finding 4 (sizes), 6 (resolution bound), 12 (flags before torch), plus the old list
    "alpha 0": (["compile", "--target", "host", "--alpha", "0"], "alpha"),
    "alpha 1.5": (["compile", "--target", "host", "--alpha", "1.5"], "alpha"),
    "alpha nan": (["compile", "--target", "host", "--alpha", "nan"], "alpha"),
    "resolution 100": (["compile", "--target", "host", "--resolution", "100"], "multiple of 32"),
    "resolution 4096": (["compile", "--target", "host", "--resolution", "4096"], "GiB"),
    "classes 1": (["compile", "--target", "host", "--classes", "1"], "classes"),
    "unknown target": (["compile", "--target", "pdp11"], "unknown target 'pdp11'"),
    "unknown quant": (["compile", "--target", "host", "--quant", "int4"], "quantization"),
    "calib-size 0": (["compile", "--target", "host", "--calib-size", "0"], "--calib-size"),
    "eval-size -3": (["compile", "--target", "host", "--eval-size", "-3"], "--eval-size"),
    "qat-epochs 0": (["compile", "--target", "host", "--qat-epochs", "0"], "--qat-epochs"),
    "bench eval-size -3": (["bench", "{artifact}", "--eval-size", "-3"], "--eval-size"),
    "bench eval-size 0": (["bench", "{artifact}", "--eval-size", "0"], "--eval-size"),
    "bench count 0": (["bench", "{artifact}", "--count", "0"], "--count"),
    "bench warmup -1": (["bench", "{artifact}", "--warmup", "-1"], "--warmup"),
    "bench timeout 0": (["bench", "{artifact}", "--timeout", "0"], "--timeout"),
    "bench max-latency -1": (["bench", "{artifact}", "--max-latency-increase", "-1"], "--max-latency-increase"),
    "bench json is a folder": (["bench", "{artifact}", "--json", "{tmp}"], "is a folder"),
    "debug images -5": (["debug", "{artifact}", "--images", "-5"], "--images"),
    "debug images 0": (["debug", "{artifact}", "--images", "0"], "--images"),
    "sweep jobs 0": (["sweep", "--target", "host", "--jobs", "0"], "--jobs"),
    "sweep alpha 2": (["sweep", "--target", "host", "--alpha", "1,2"], "alpha"),
    "sweep unknown target": (["sweep", "--target", "pdp11"], "unknown target"),
    "sweep into a project": (["sweep", "--target", "host", "-o", "{tmp}/project"], "not an edgepack sweep"),
    "tune trials 0": (["tune", "--target", "x86-tvm", "--trials", "0"], "--trials"),
    "tune alpha 0": (["tune", "--target", "x86-tvm", "--alpha", "0"], "alpha"),
    "tune unknown model": (["tune", "--target", "x86-tvm", "--model", "resnet50"], "unknown model 'resnet50'"),
    "tune v1 alpha 1.4": (["tune", "--target", "x86-tvm", "--alpha", "1.4"], "outside (0, 1]"),
    "info alpha 0": (["info", "--alpha", "0"], "alpha"),
    "info resolution 33": (["info", "--resolution", "33"], "multiple of 32"),
    "missing subcommand flag": (["compile"], "--target"),
    "unknown flag": (["compile", "--target", "host", "--alpah", "0.5"], "--alpah"),
    "checkpoint missing": (["compile", "--target", "host", "--checkpoint", "{tmp}/nope.pt"], "does not exist"),
    "checkpoint is a folder": (["compile", "--target", "host", "--checkpoint", "{tmp}"], "is a folder"),  # finding 13
    "calibration missing": (["compile", "--target", "host", "--calibration", "{tmp}/nope.npz"], "does not exist"),
    "output is a file": (["compile", "--target", "host", "-o", "{tmp}/file"], "is not a folder"),
    "output under a file": (["compile", "--target", "host", "-o", "{tmp}/file/sub"], "is a file"),
    "output read-only": (["compile", "--target", "host", "-o", "/proc/edgepack-out"], "writable"),  # finding 10
    "output not an artifact": (["compile", "--target", "host", "-o", "{tmp}/project"], "not an edgepack artifact"),
}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flag_is_one_line_before_torch(case, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "index.html").write_text("<html>")
    fake_artifact = tmp_path / "artifact"  # flags are checked before the artifact is even read
    fake_artifact.mkdir()
    argv, word = FLAG_CASES[case]
    argv = [a.format(tmp=tmp_path, artifact=fake_artifact) for a in argv]
    before = tree(tmp_path)
    p = subprocess.run([sys.executable, "-c", TRACKED, *argv], capture_output=True, text=True, timeout=60)
    assert_one_line(p.returncode, p.stderr, 2, word)
    assert p.stdout.splitlines()[-1] == "no torch"  # refused before the heavy imports: well under 2 s
    assert tree(tmp_path) == before  # nothing written, nothing removed


# ---------------------------------------------------------------- findings 1 and 2: the output folder

def test_output_never_deletes_a_git_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("my project")
    (repo / "manifest.json").write_text(json.dumps({"name": "web app", "files": {}}))  # a web manifest
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    before = tree(repo)
    for argv in (["-o", repo], ["-o", repo, "--force"], ["-o", "."]):
        code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, *argv, cwd=repo)
        assert_one_line(code, err, 2, "not an edgepack artifact")
        assert tree(repo) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo")]


@pytest.mark.slow
def test_output_artifact_with_user_files_needs_force(artifact, tmp_path):
    out = tmp_path / "art"
    shutil.copytree(artifact, out)
    (out / "notes.txt").write_text("mine")
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", out)
    assert_one_line(code, err, 2, "notes.txt", "--force")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    (out / "plan.json").write_text("{}")  # an edited file counts too
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", out)
    assert_one_line(code, err, 2, "plan.json was modified", "--force")
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", out, "--force")
    assert code == 0 and err == "", err
    assert (out / "plan.json").read_bytes() == (artifact / "plan.json").read_bytes()
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", out)  # unchanged artifact: replaced
    assert code == 0, err


def test_output_is_locked_while_a_compile_writes_it(tmp_path):
    out = tmp_path / "art"
    with output_lock(out):
        code, _, err, seconds = edgepack("compile", "--target", "host", *SMALL, "-o", out)
    assert_one_line(code, err, 2, "another edgepack run is writing")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the lock file goes with its holder


@pytest.mark.slow
def test_two_concurrent_compiles_to_one_folder(tmp_path):
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "edgepack.cli.main", "compile", "--target", "host", *SMALL, "-o", str(out)]
    procs = [subprocess.Popen(cmd + q, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for q in (["--quant", "ptq"], ["--quant", "none"])]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2)
    assert_one_line(2, err, 2, "another edgepack run is writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


# ---------------------------------------------------------------- finding 11: signals

@pytest.mark.slow
def test_sigterm_and_ctrl_c_leave_nothing_and_sigkill_leftovers_are_removed(tmp_path):
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "edgepack.cli.main", "compile", "--target", "host", *SMALL, "-o", str(out)]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".art.edgepack-partial-*")) and time.monotonic() < deadline:
            time.sleep(0.1)  # wait until the temporary folder exists: the worst moment to stop
        assert list(tmp_path.glob(".art.edgepack-partial-*")), "the compile never started writing"
        p.send_signal(sig)
        code = p.wait(timeout=60)
        err = p.stderr.read()
        if sig != signal.SIGKILL:  # Ctrl-C alike; the compile is then inside onnx's native import
            assert_one_line(code, err, 143 if sig == signal.SIGTERM else 130,
                            "terminated" if sig == signal.SIGTERM else "interrupted")
            assert sorted(x.name for x in tmp_path.iterdir()) == []
        else:
            assert list(tmp_path.glob(".art.edgepack-partial-*"))  # SIGKILL cannot be handled ...
    code, _, err, _ = edgepack(*cmd[3:])
    assert code == 0, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["art"]  # ... the next compile removes what it left


# ---------------------------------------------------------------- findings 3, 6, 13: data and weights

def _digits_like(n=16, res=32, **override):
    rng = np.random.default_rng(0)
    data = {"images": rng.integers(0, 256, (n, 3, res, res)).astype(np.uint8), "labels": np.arange(n) % 10}
    data.update(override)
    return data


def _image_folder(root: Path, classes: int) -> Path:
    from PIL import Image

    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 10 * c, np.uint8)).save(root / f"class{c:02d}" / "a.png")
    return root


DATA_CASES = {
    # finding 3: labels
    "labels out of range": ("--eval-data", _digits_like(labels=np.full(16, 10)), "labels span 10..10"),
    "labels negative": ("--eval-data", _digits_like(labels=-np.ones(16, int)), "labels span -1..-1"),
    "labels not integers": ("--eval-data", _digits_like(labels=np.full(16, 1.5)), "not whole numbers"),
    "labels 2-D": ("--eval-data", _digits_like(labels=np.zeros((16, 2), int)), "labels have shape (16, 2)"),
    "folder of 12 classes": ("--eval-data", "folder12", "12 class folders"),
    # finding 6: pixels
    "NaN eval pixels": ("--eval-data", _digits_like(images=np.full((16, 3, 32, 32), np.nan, np.float32)), "NaN"),
    "eval pixels in 0..1": ("--eval-data", _digits_like(images=np.random.default_rng(0).random((16, 3, 32, 32))), "0..1"),
    "NaN calibration pixels": ("--calibration", _digits_like(images=np.full((16, 3, 32, 32), np.nan)), "NaN"),
    "normalised pixels": ("--calibration", _digits_like(images=np.full((16, 3, 32, 32), -1.0)), "expected 0..255"),
    # finding 13: wording
    "random bytes as npz": ("--calibration", b"\x93NUMPY random bytes", "not a readable .npz"),
    "pickled npz": ("--calibration", "pickled", "not an .npz file of plain arrays"),
    "empty calibration": ("--calibration", _digits_like(n=0), "no images"),
    "wrong-shaped calibration": ("--calibration", _digits_like(res=64), "expected (N, 3, 32, 32)"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_refused_by_name(case, tmp_path):
    flag, content, word = DATA_CASES[case]
    path = tmp_path / "data.npz"
    if content == "folder12":
        path = _image_folder(tmp_path / "folder", 12)
    elif content == "pickled":
        np.savez(path, images=np.array([{"a": 1}], dtype=object), labels=np.zeros(1))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, **content)
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, flag, path, "-o", tmp_path / "out")
    assert_one_line(code, err, 2, word)
    assert "pickle" not in err or content == "pickled"
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def _checkpoint(tmp_path: Path, kind: str) -> Path:
    from edgepack.model.weights import pretrained

    state = pretrained(0.25, 32).state_dict()
    if kind == "nan weight":
        state["features.0.0.weight"][0, 0, 0, 0] = float("nan")
    elif kind == "extra keys":
        state["head.weight"] = torch.zeros(3)
    elif kind == "missing keys":
        state.pop("classifier.bias")
    elif kind == "other alpha":
        state = pretrained(0.5, 32).state_dict()
    torch.save(state, tmp_path / "ckpt.pt")
    return tmp_path / "ckpt.pt"


CHECKPOINT_CASES = {
    "nan weight": "NaN or infinite",  # finding 6
    "extra keys": "1 unexpected keys (e.g. head.weight)",  # finding 13: not told to pass --alpha
    "missing keys": "1 missing keys (e.g. classifier.bias)",
    "other alpha": "pass the --alpha and --classes it was trained with",
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_is_refused_by_name(case, tmp_path):
    path = _checkpoint(tmp_path, case)
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "--checkpoint", path, "-o", tmp_path / "out")
    assert_one_line(code, err, 2, CHECKPOINT_CASES[case])
    assert (case == "other alpha") == ("--alpha" in err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- finding 10: tracebacks in bench / debug

@pytest.mark.slow
def test_debug_of_an_fp32_artifact_is_one_line(fp32_artifact):
    code, _, err, _ = edgepack("debug", fp32_artifact)
    assert_one_line(code, err, 2, "fp32 artifact", "--quant ptq")


@pytest.mark.slow
def test_resigned_corrupt_plan_is_one_line(artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    data = bytearray((bad / "plan.npz").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # damages a deflate stream: zlib.error before
    (bad / "plan.npz").write_bytes(bytes(data))
    _resign(bad)
    for argv in (["bench", bad], ["debug", bad]):
        code, _, err, _ = edgepack(*argv)
        assert_one_line(code, err, 2, "cannot read the int8 plan")


@pytest.mark.slow
def test_resigned_plan_outside_the_int8_contract_is_one_line(artifact, tmp_path):
    from edgepack.plan.plan import Plan

    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    plan = Plan.load(bad)
    plan.layers[0].arrays["bias"][:] = 2**31 - 1  # the accumulator would leave int32 (OverflowError before)
    plan.save(bad)
    _resign(bad)
    code, _, err, _ = edgepack("bench", bad)
    assert_one_line(code, err, 2, "bias too large for the int32 accumulator")


@pytest.mark.slow
def test_internal_error_exits_3_with_one_line(artifact, capsys, monkeypatch):
    import edgepack.benchmark.run as run

    def broken(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(run, "bench_artifact", broken)
    code, _, err = run_cli(capsys, "bench", str(artifact))
    assert_one_line(code, err, 3, "internal error", "please report", "--verbose")
    code, _, err = run_cli(capsys, "--verbose", "bench", str(artifact))
    assert code == 3 and "Traceback" in err


def test_exception_classes_live_in_errors_py():
    """Only edgepack/errors.py defines exception classes (a review finding of issue 10)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "edgepack"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception", "Unavailable"))
                    for b in node.bases):
                offenders.append(f"{path.relative_to(root)}:{node.name}")
    assert offenders == []
