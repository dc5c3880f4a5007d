"""Every int8 artifact holds model.tflite, checked at compile under LiteRT's reference kernels."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_cli
from edgepack.artifact import verify
from edgepack.interop import litert, tflite_writer
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.plan.plan import Plan

TINY = ["--alpha", "0.25", "--resolution", "32", "--eval-size", "16", "--calib-size", "32"]


def _compile(capsys, target, out):
    code, stdout, err = run_cli(capsys, "compile", "--target", target, *TINY, "-o", str(out))
    assert code == 0, err
    return json.loads((out / "manifest.json").read_text()), stdout


@pytest.mark.slow
def test_host_artifact_holds_a_verified_tflite(capsys, tmp_path):
    manifest, stdout = _compile(capsys, "host", tmp_path / "h")
    verify(tmp_path / "h")  # model.tflite is listed with its sha256 like every file
    assert "model.tflite" in manifest["files"]
    tfl = manifest["tflite"]
    assert tfl["file"] == "model.tflite" and tfl["litert_version"] == litert.version()
    assert tfl["reference_kernels"] == {"bit_exact": True, "golden_images": 8, "eval_images": 16,
                                        "eval_images_total": 16}
    xnn = tfl["xnnpack_vs_reference"]
    assert xnn["images"] == 16 and xnn["values"] == 160
    assert 0 <= xnn["values_differing"] <= xnn["values"] and xnn["max_abs_diff"] <= 1  # float requantization: one step
    assert "bit-exact under LiteRT's reference kernels on 16 images" in stdout
    model = (tmp_path / "h" / "model.tflite").read_bytes()
    assert model == plan_to_tflite(Plan.load(tmp_path / "h"))
    golden = np.load(tmp_path / "h" / "golden_input.npy")
    assert np.array_equal(litert.run_reference(model, golden), np.load(tmp_path / "h" / "golden_output.npy"))


def _wrong_bias(monkeypatch):
    constant = tflite_writer.Graph.constant

    def constant_with_wrong_bias(self, name, data, scale=None, axis=0):
        if name.endswith("/bias"):
            data = data + 3
        return constant(self, name, data, scale, axis)
    monkeypatch.setattr(tflite_writer.Graph, "constant", constant_with_wrong_bias)


def _wrong_zero_point(monkeypatch):
    activation = tflite_writer.Graph.activation

    def activation_with_wrong_zero_point(self, name, shape, q, dtype="int8"):
        index = activation(self, name, shape, q, dtype)
        if name.endswith("/conv"):  # the classifier's output: every logit shifts by one
            self.tensors[index].zero_point = self.tensors[index].zero_point + 1
        return index
    monkeypatch.setattr(tflite_writer.Graph, "activation", activation_with_wrong_zero_point)


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [_wrong_bias, _wrong_zero_point])
def test_a_wrong_tflite_is_refused(capsys, tmp_path, monkeypatch, tamper):
    tamper(monkeypatch)
    code, _, err = run_cli(capsys, "compile", "--target", "host", *TINY, "-o", str(tmp_path / "x"))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "model.tflite is not bit-exact" in err, err
    assert list(tmp_path.iterdir()) == []  # no artifact, no temporary folder


@pytest.mark.slow
def test_compile_writes_nothing_to_stderr(tmp_path):
    """LiteRT's C++ log line ("INFO: Created TensorFlow Lite XNNPACK delegate") must not reach the user."""
    run = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "compile", "--target", "host", *TINY,
                          "-o", str(tmp_path / "h")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "model.tflite" in json.loads((tmp_path / "h" / "manifest.json").read_text())["files"]


@pytest.mark.slow
def test_c_and_tvm_artifacts_hold_it_too(capsys, tmp_path):
    for target in ("c-host", "rpi4"):
        manifest, _ = _compile(capsys, target, tmp_path / target)
        assert "model.tflite" in manifest["files"] and manifest["tflite"]["reference_kernels"]["bit_exact"]
        assert (tmp_path / target / "model.tflite").read_bytes()[4:8] == b"TFL3"


def test_missing_litert_is_a_toolchain_error(monkeypatch):
    from edgepack.errors import ToolchainError

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails as if not installed
    with pytest.raises(ToolchainError, match="pip install ai-edge-litert"):
        litert.run_reference(b"", np.zeros((1, 3, 4, 4), np.int8))
