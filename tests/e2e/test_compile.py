"""End to end: compile -> artifact -> bench, reproducibility, bring-your-own-model and bad input."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.artifact import sha256, verify
from edgepack.errors import ArtifactError, UnsupportedModelError
from tests.conftest import ALPHA, RES, run_cli

SMALL = ["--alpha", str(ALPHA), "--resolution", str(RES), "--eval-size", "40", "--calib-size", "32"]


@pytest.mark.slow
def test_artifact_contents(host_artifact):
    manifest = verify(host_artifact)
    assert set(manifest["files"]) == {"qdq.onnx", "plan.json", "plan.npz", "golden_input.npy", "golden_output.npy",
                                      "model.tflite"}
    assert manifest["model"] == {"name": "MobileNetV1", "builtin": "mobilenet_v1", "alpha": ALPHA, "resolution": RES,
                                 "classes": 10, "weights": "shipped digits weights", "input_shape": [3, RES, RES]}
    assert manifest["folding"]["max_abs_logit_diff"] < 1e-4
    assert manifest["params"] > 0 and manifest["macs"] > 0
    m = manifest["metrics"]
    assert m["int8_accuracy"] >= m["fp32_accuracy"] - 0.02
    assert np.load(host_artifact / "golden_input.npy").dtype == np.int8


@pytest.mark.slow
def test_bench_passes_and_catches_tampering(host_artifact, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "bench", str(host_artifact), "--count", "5", "--json", str(tmp_path / "r.json"))
    assert code == 0, out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["latency"]["count"] == 5
    assert report["fidelity"]["top1_agreement_vs_reference"] >= 0.99
    import shutil
    bad = tmp_path / "tampered"
    shutil.copytree(host_artifact, bad)
    data = bytearray((bad / "plan.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "plan.npz").write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "bench", str(bad))
    assert code == 2 and "plan.npz was modified" in err and len(err.strip().splitlines()) == 1
    (bad / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="extra.bin is not in the manifest"):
        verify(bad)


@pytest.mark.slow
def test_two_compiles_are_byte_identical(capsys, tmp_path):
    for name in ("a", "b"):
        code, _, err = run_cli(capsys, "compile", "--target", "host", *SMALL, "-o", str(tmp_path / name))
        assert code == 0, err
    a = json.loads((tmp_path / "a" / "manifest.json").read_text())
    files = sorted(a["files"]) + ["manifest.json"]
    assert [sha256(tmp_path / "a" / f) for f in files] == [sha256(tmp_path / "b" / f) for f in files]


@pytest.mark.slow
def test_bring_your_own_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    out = edgepack.compile(model, target="host", resolution=32, eval_size=40, calib_size=32, output=str(tmp_path / "byo"))
    manifest = verify(out)
    assert manifest["model"]["name"] == "Sequential" and manifest["plan"]["layers"] == 5
    kinds = [l["kind"] for l in json.loads((out / "plan.json").read_text())["layers"]]
    assert kinds == ["conv", "depthwise", "pointwise", "avgpool", "fc"]
    assert manifest["metrics"]["reference_vs_onnxruntime"]["top1_agreement"] >= 0.9


def test_unsupported_layer_is_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with pytest.raises(UnsupportedModelError, match="'1' \\(Sigmoid\\)"):
        edgepack.compile(model, target="host", resolution=32, output=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()




def _imports_in_a_fresh_process(code: str) -> str:
    """stdout of ``code`` run by a new interpreter that imports edgepack from this work tree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(edgepack.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                          cwd=root).stdout.strip()


def test_the_plan_format_imports_no_torch():
    """edgepack.plan (the plan, its reference, its golden files) is readable without torch: the torch
    front end builds plans, the plan package never imports it."""
    code = ("import pkgutil, importlib, sys, edgepack.plan as p\n"
            "[importlib.import_module(f'edgepack.plan.{m.name}') for m in pkgutil.iter_modules(p.__path__)]\n"
            "print('torch' in sys.modules)")
    assert _imports_in_a_fresh_process(code) == "False"


def test_compile_preflight_refuses_before_torch_is_imported(tmp_path):
    """compiler.preflight (the CLI's and the API's checks: target, key, output, lock) runs without torch, so
    a bad output is refused in milliseconds; it is the same function for both."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("not an artifact")
    code = ("import sys\nfrom edgepack.compiler import CompileConfig, preflight\nfrom edgepack.errors import EdgepackError\n"
            f"try:\n    with preflight(CompileConfig(output={str(tmp_path / 'out')!r})):\n        pass\n"
            "except EdgepackError as e:\n    print(type(e).__name__, 'torch' in sys.modules)")
    assert _imports_in_a_fresh_process(code) == "OutputError False"
