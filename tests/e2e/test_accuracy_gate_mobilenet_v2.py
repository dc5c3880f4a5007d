"""The accuracy gate on per-tensor MobileNetV2 1.0 at 96 for host, as a user runs it: with cross-layer
equalization (the default) int8 stays within 2 points of fp32 and compile exits 0; with --no-equalize int8
collapses (about 14% against 98%) and compile exits 1 with one stderr line naming the drop, the limit and the
worst layer, while the artifact is still written, verifies and records the failure; bench shows the gate as a
failed check and exits 1. The Python API raises AccuracyGateError after writing the artifact."""
from __future__ import annotations

import json

import pytest

import edgepack as edgepack_api
from edgepack.artifact import verify
from edgepack.errors import AccuracyGateError
from tests.cli import assert_one_line, edgepack

pytestmark = pytest.mark.slow  # two MobileNetV2 1.0 compiles (about 3 minutes each on 2 busy cores)

COMPILE = ["compile", "--model", "mobilenet_v2", "--alpha", "1.0", "--resolution", "96",
           "--weight-granularity", "per-tensor", "--target", "host"]


def _gate(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())["metrics"]["accuracy_gate"]


def test_per_tensor_v2_with_equalization_passes_the_gate(tmp_path):
    code, out, err, _ = edgepack(*COMPILE, "-o", tmp_path / "v2pt", cwd=tmp_path, timeout=1200)
    assert code == 0 and not err, err
    gate = _gate(tmp_path / "v2pt")
    assert gate["passed"] and gate["measure"] == "accuracy_drop_points" and gate["images"] == 360
    assert gate["value"] <= 2.0 and gate["limit"] == 1.0 and gate["limit_origin"] == "target host [accuracy_gate]"
    assert "accuracy gate: pass: int8 accuracy" in out


def test_per_tensor_v2_without_equalization_fails_the_gate_and_its_bench(tmp_path):
    folder = tmp_path / "v2pt"
    code, out, err, _ = edgepack(*COMPILE, "--no-equalize", "-o", folder, cwd=tmp_path, timeout=1200)
    gate = _gate(folder)  # written, with the verdict
    assert not gate["passed"] and gate["value"] > 50 and gate["images_apart"] > 100
    assert_one_line(code, err, 1, "edgepack compile: error: accuracy gate failed: int8 accuracy ",
                    f"a drop of {gate['value']:.2f} points", "limit 1 point (target host [accuracy_gate])",
                    "worst layer conv2d_1 (", "--max-accuracy-drop")
    assert "accuracy gate: FAIL" in out
    code, _, err, _ = edgepack("verify", folder, cwd=tmp_path)
    assert code == 0, err  # complete and intact: only the gate failed
    code, out, _, _ = edgepack("bench", folder, "--count", "3", "--warmup", "1", cwd=tmp_path, timeout=600)
    assert code == 1 and out.rstrip().endswith("result: FAIL (1 check failed)")
    failed = [line for line in out.splitlines() if "[FAIL]" in line]
    assert len(failed) == 1
    assert failed[0].startswith(f"  [FAIL] accuracy gate: int8 vs fp32: drop {gate['value']:.2f} points on 360 images")
    assert failed[0].endswith("(expected <= 1 point (target host [accuracy_gate]; a difference of at most 1 eval "
                              "image never fails))")


def test_the_python_api_raises_after_writing_the_artifact(tmp_path):
    """edgepack.compile over the limit: AccuracyGateError (exit code 1, as the CLI's), raised once the artifact is
    complete; the exception carries its folder and the manifest's gate record."""
    with pytest.raises(AccuracyGateError) as info:
        edgepack_api.compile(target="host", architecture="mobilenet_v2", alpha=1.0, resolution=96, eval_size=60,
                             calib_size=32, weight_granularity="per-tensor", equalize=False,
                             output=str(tmp_path / "api"))
    error = info.value
    assert error.exit_code == 1 and error.artifact == tmp_path / "api" and "\n" not in str(error)
    assert verify(error.artifact)["metrics"]["accuracy_gate"] == error.gate and not error.gate["passed"]
    assert error.gate["images"] == 60 and error.gate["images_apart"] > 10
    assert str(error).startswith("accuracy gate failed: int8 accuracy ") and "worst layer conv2d_1 (" in str(error)
