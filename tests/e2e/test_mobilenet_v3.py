"""MobileNetV3 through the int8 plan (issue 21): hard-swish and hard-sigmoid are lut layers, the
squeeze-and-excite gate a mul, the residuals adds. With random weights a
compile for c-host benches PASS, bit-exact with the numpy reference; without a checkpoint the missing shipped
weights are named in one line, exit 2, and no artifact is left; the shipped digits weights (Small 0.75, Large 0.75)
compile with the accuracy gate at its default limit."""
from __future__ import annotations

import json

import pytest
import torch

from edgepack.model.mobilenet_v3 import MobileNetV3Small
from edgepack.plan.plan import Plan
from tests.conftest import run_cli

FLAGS = ("compile", "--model", "mobilenet_v3_small", "--alpha", "1.0", "--resolution", "64", "--calib-size", "8",
         "--eval-size", "8")


@pytest.mark.slow
def test_mobilenet_v3_small_compiles_for_c_host_and_benches_bit_exact(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(MobileNetV3Small(1.0, 64, 10).state_dict(), tmp_path / "v3.pt")
    out = tmp_path / "v3"
    # random weights: near-tied logits, so int8 and fp32 may pick other classes on a few of the 8 images; this
    # test is about the ops, so the accuracy gate gets a limit that cannot bind (it is tested on real weights)
    code, _, err = run_cli(capsys, *FLAGS, "--checkpoint", str(tmp_path / "v3.pt"), "--target", "c-host", "-o", str(out),
                           "--max-accuracy-drop", "100")
    assert code == 0, err
    functions = [layer.params.function for layer in Plan.load(out).layers if layer.kind == "lut"]
    kinds = [layer.kind for layer in Plan.load(out).layers]
    assert functions.count("hard_swish") > 10 and "hardsigmoid" in functions and "mul" in kinds and "add" in kinds
    code, text, err = run_cli(capsys, "bench", str(out), "--count", "2", "--warmup", "0")
    assert code == 0, text + err
    assert "bit-exact" in text


@pytest.mark.slow
def test_compile_without_weights_names_them(tmp_path, capsys):
    # digits weights ship for Small 1.0 and Large 0.75 only
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v3_large", "--alpha", "1.0", "--resolution", "64",
                           "--target", "host", "-o", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "no shipped mobilenet_v3_large weights for alpha 1 " in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_shipped_small_weights_fit_cortex_m4_and_pass_the_default_accuracy_gate(tmp_path, capsys):
    """`edgepack compile --model mobilenet_v3_small --target cortex-m4 --resolution 96`: the default width (0.75)
    fits the M4's 1 MB flash budget (Small 1.0's 1.5 MB of weights do not), int8 PTQ stays within the target's
    1-point gate of fp32 (compile exits 1 otherwise) and the firmware benches bit-exact under qemu."""
    out = tmp_path / "small96"
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v3_small", "--resolution", "96", "--target", "cortex-m4",
                           "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["alpha"] == 0.75, manifest["model"]
    gate = manifest["metrics"]["accuracy_gate"]
    assert gate["passed"], gate
    code, text, err = run_cli(capsys, "bench", str(out), "--count", "1", "--warmup", "0")
    assert code == 0 and "bit-exact" in text, text + err


@pytest.mark.slow
def test_shipped_large_weights_pass_the_default_accuracy_gate_on_host(tmp_path, capsys):
    """The shipped Large 0.75 digits weights (the default width) quantize within the host target's 1-point gate
    of fp32 at 96, and the int8 ONNX Runtime build agrees with the reference (compile checks it)."""
    out = tmp_path / "large96"
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v3_large", "--resolution", "96", "--target", "host",
                           "--eval-size", "180", "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["alpha"] == 0.75 and manifest["model"]["weights"] == "shipped digits weights"
    gate = manifest["metrics"]["accuracy_gate"]
    assert gate["passed"] and gate["fp32_accuracy"] > 0.95, gate
