"""OpenVINO backend: intel-cpu and intel-npu artifacts, CPU verification, int8 kernels, bench and --device."""
import json

import numpy as np
import openvino as ov
import pytest
import torch

import edgepack
from edgepack.artifact import verify
from edgepack.benchmark.run import bench_artifact
from edgepack.errors import RegressionError
from tests.conftest import ALPHA, RES, run_cli

SMALL = dict(alpha=ALPHA, resolution=RES, eval_size=40, calib_size=32)
NPU_HERE = "NPU" in ov.Core().available_devices


@pytest.fixture(scope="module")
def cpu_artifact(tmp_path_factory):
    return edgepack.compile(target="intel-cpu", output=str(tmp_path_factory.mktemp("ov") / "cpu"), **SMALL)


@pytest.fixture(scope="module")
def npu_artifact(tmp_path_factory):
    return edgepack.compile(target="intel-npu", output=str(tmp_path_factory.mktemp("ov") / "npu"), **SMALL)


@pytest.mark.slow
def test_intel_cpu_artifact_is_a_static_int8_ir(cpu_artifact):
    manifest = verify(cpu_artifact)
    assert {"model.xml", "model.bin", "qdq.onnx", "plan.json"} <= set(manifest["files"])
    info = manifest["backend_info"]
    assert info["device"] == "CPU" and info["input_shape"] == [1, 3, RES, RES]
    model = ov.Core().read_model(cpu_artifact / "model.xml")
    assert model.inputs[0].get_partial_shape().is_static and list(model.inputs[0].shape) == [1, 3, RES, RES]
    sizes = info["constant_bytes_by_type"]
    assert sizes["i8"] > 5 * sizes.get("f32", 0), sizes  # weights stored as int8, only scales/bias in f32


@pytest.mark.slow
def test_intel_cpu_convolutions_execute_in_int8(cpu_artifact):
    v = json.loads((cpu_artifact / "manifest.json").read_text())["backend_info"]["cpu_verification"]
    assert v["against"] == "numpy int8 reference" and v["eval_images"] == 40
    assert v["top1_agreement"] >= 0.99 and 0 < v["max_abs_logit_diff"] < 1.0
    assert v["disagreements"]["images"] == round((1 - v["top1_agreement"]) * 40)
    layers = v["layers"]
    convs = layers["convolutions"]
    assert convs["total"] == 27 and convs["int8"] == 27  # MobileNetV1: 1 + 13 dw + 13 pw
    assert layers["by_type"]["Convolution"].keys() <= {"u8", "i8"}
    assert layers["int8_layers"] > layers["float_layers"] and layers["by_type"]["FullyConnected"].keys() <= {"u8", "i8"}
    assert any(k.endswith("_I8") for k in layers["kernels"])


@pytest.mark.slow
def test_intel_cpu_bench_reports_latency_and_int8_kernels(cpu_artifact):
    report = bench_artifact(cpu_artifact, count=5)
    assert report["passed"] and report["device"] == "OpenVINO CPU"
    assert report["fidelity"]["top1_agreement_vs_reference"] >= 0.99
    lat = report["latency"]
    assert lat["count"] == 5 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["max_ms"]
    assert lat["throughput_fps"] > 0 and lat["first_inference_ms"] > 0
    d = report["device_details"]
    assert d["compile_load_ms"] > 0 and d["layers"]["convolutions"]["int8"] == 27
    assert d["layers"]["int8_layers"] > 0


@pytest.mark.slow
def test_intel_cpu_bench_cli_prints_load_time_and_int8_counts(cpu_artifact, capsys):
    code, out, err = run_cli(capsys, "bench", str(cpu_artifact), "--count", "3")
    assert code == 0, out + err
    assert "convolutions 27/27 int8" in out and "compile (load) time" in out and "p90" in out
    code, _, err = run_cli(capsys, "bench", str(cpu_artifact), "--device", "gpu")
    assert code == 2 and "use cpu or npu" in err


@pytest.mark.slow
def test_float_baseline_runs_in_f32_not_bf16(tmp_path):
    out = edgepack.compile(target="intel-cpu", quant="none", output=str(tmp_path / "fp32"), **SMALL)
    v = verify(out)["backend_info"]["cpu_verification"]
    assert v["against"] == "torch fp32 (folded)" and v["top1_agreement"] == 1.0
    assert v["max_abs_logit_diff"] < 1e-4  # bf16 (this CPU's default) would be ~1e-2
    assert v["layers"]["int8_layers"] == 0
    assert {p for precisions in v["layers"]["by_type"].values() for p in precisions} == {"f32"}


@pytest.mark.slow
def test_intel_npu_records_the_truth_and_bench_needs_device_cpu(npu_artifact, cpu_artifact, capsys):
    manifest = verify(npu_artifact)
    info = manifest["backend_info"]
    assert info["device"] == "NPU" and info["device_config"]["NPU"] == {"PERFORMANCE_HINT": "LATENCY"}
    assert manifest["files"]["model.xml"] == verify(cpu_artifact)["files"]["model.xml"]  # the same IR
    assert info["cpu_verification"]["layers"]["convolutions"]["int8"] == 27
    if NPU_HERE:
        assert info["npu"] == "compiled" and (npu_artifact / "model.npu.blob").is_file()
        code, out, err = run_cli(capsys, "bench", str(npu_artifact), "--count", "3")
        assert code == 0 and "device OpenVINO NPU" in out, out + err
        return
    assert info["npu"] == "not compiled (no NPU device or compiler)"
    assert info["npu_error"].startswith("Exception from ") and "model.npu.blob" not in manifest["files"]
    code, out, err = run_cli(capsys, "bench", str(npu_artifact), "--count", "3")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not compiled" in err and "pass --device cpu" in err
    code, out, err = run_cli(capsys, "bench", str(npu_artifact), "--count", "3", "--device", "cpu")
    assert code == 0, out + err
    assert "device OpenVINO CPU (--device cpu: the artifact targets the NPU, which did not run)" in out
    assert "result: PASS" in out


@pytest.mark.slow
def test_compile_fails_when_the_ir_disagrees_with_the_reference(cpu_artifact, tmp_path):
    """A real mismatch: the plan of the shipped weights against the IR of a randomly initialised model."""
    from edgepack.backends import openvino as backend
    from edgepack.compiler import Build, CompileConfig
    from edgepack.fold import fold
    from edgepack.model.mobilenet import MobileNetV1
    from edgepack.plan.plan import Plan
    from edgepack.quantize.export import export_qdq_onnx
    from edgepack.targets import get_target

    torch.manual_seed(1)
    other = fold(MobileNetV1(ALPHA, RES, 10).eval())
    folder = tmp_path / "mismatch"
    folder.mkdir()
    export_qdq_onnx(other, torch.zeros(2, 3, RES, RES), folder / "model.onnx")
    from edgepack.data import load_digits_split
    from edgepack.plan import reference

    config = CompileConfig(target="intel-cpu", **SMALL)
    plan = Plan.load(cpu_artifact)
    images = load_digits_split("eval", RES).images[:40]
    ref = plan.output_q.dequantize(reference.run_batched(plan, plan.input_q.quantize(images)))
    build = Build(config, get_target("intel-cpu"), other, plan, "model.onnx", np.zeros(1), np.zeros(1),
                  images, np.zeros_like(ref), ref)
    with pytest.raises(RegressionError, match="agrees with the numpy int8 reference on only"):
        backend.lower(build, folder)



def test_disagreements_are_measured_in_output_steps():
    from edgepack.backends.openvino import disagreements

    ref = np.array([[2.0, 2.0, 0.0], [3.0, 1.0, 0.0], [0.0, 1.0, 5.0]])  # row 0: an exact tie, picked as class 0
    dev = np.array([[1.9, 2.1, 0.0], [1.0, 3.0, 0.0], [0.0, 1.0, 5.5]])
    d = disagreements(dev, ref, step=0.5)
    assert d == {"images": 2, "reference_ties": 1, "max_reference_gap_steps": 4.0, "max_abs_diff_steps": 4.0}
    assert disagreements(ref, ref, 0.5)["images"] == 0
