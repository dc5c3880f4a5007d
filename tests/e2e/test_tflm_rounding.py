"""TFLM's FULLY_CONNECTED rounds acc * M twice (gemmlowp: TFLM's kernels are built without
TFLITE_SINGLE_ROUNDING), LiteRT's reference kernel once, so on ties they differ by 1. A tflm artifact claims
what TFLM computes (the imported fc's rounding "tflm", still written as FULLY_CONNECTED) and bench checks it
bit for bit in TFLM's own interpreter; any other target keeps LiteRT's arithmetic. Every other op of the
converter models (CONV_2D, DEPTHWISE_CONV_2D, MEAN, ADD, MAX_POOL_2D, RESIZE_NEAREST_NEIGHBOR) agrees
between the two runtimes on 300 random inputs each, so the fc is the only difference handled here."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgepack.backends.tflm import interpreter
from edgepack.config import CompileConfig
from edgepack.frontends import tflite as tflite_front
from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.plan import reference
from edgepack.plan.plan import Plan, QParams
from tests import converter_models
from tests.conftest import run_cli
from tests.conformance.plans import weighted_layer

# an fc head after MEAN / ADD + MAX_POOL_2D / RESIZE_NEAREST_NEIGHBOR / AVERAGE_POOL_2D, an fc chain, an fc read by a conv
FC_HEAD_MODELS = ["fc_autoencoder", "mobilenet_like", "resnet_maxpool", "resize_nearest", "kws_ds_cnn", "fc_reshape_conv"]


def _fc_chain_file(tmp_path):
    """A 96 -> 64 -> 48 -> 10 chain of FULLY_CONNECTED ops (an imported plan's fcs round once: "single")."""
    rng = np.random.default_rng(22)
    layers, q, features = [], QParams(0.05, -3), 96
    for i, units in enumerate((64, 48, 10)):
        layer = weighted_layer(rng, f"fc{i}", "fc", q, (features,), (units,), (units, features), steps=60.0)
        layer.params = type(layer.params)("single")
        layers.append(layer)
        q, features = layer.output_q, units
    path = tmp_path / "fc_chain.tflite"
    path.write_bytes(plan_to_tflite(Plan(QParams(0.05, -3), (96,), layers)))
    return path


def _plan_for(target: str, path):
    return tflite_front.to_source(CompileConfig(target=target, tflite_model=str(path), eval_size=8)).plan


def test_a_tflm_compile_of_an_imported_fc_rounds_as_tflm_while_c_host_keeps_litert(tmp_path):
    path = _fc_chain_file(tmp_path)
    tflm_plan, host_plan = _plan_for("tflm", path), _plan_for("c-host", path)
    assert [layer.params.rounding for layer in tflm_plan.layers] == ["tflm"] * 3
    assert [layer.params.rounding for layer in host_plan.layers] == ["single"] * 3
    x = np.random.default_rng(5).integers(-128, 128, (400, 96), dtype=np.int8)
    data = path.read_bytes()
    tflm_out = interpreter.run(interpreter.load(data, 1 << 16), x).reshape(len(x), -1)
    litert_out = litert.run_reference(data, x).reshape(len(x), -1)
    assert np.array_equal(tflm_out, reference.run(tflm_plan, x).reshape(len(x), -1))
    assert np.array_equal(litert_out, reference.run(host_plan, x).reshape(len(x), -1))
    assert (tflm_out != litert_out).sum() > 0  # the two runtimes do differ on this model: the test can tell them apart


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converter_models.build(tmp_path_factory.mktemp("tflm_rounding_models"), FC_HEAD_MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", FC_HEAD_MODELS)
def test_converter_models_with_an_fc_bench_bit_exact_in_tflm(name, converted, tmp_path, capsys):
    art = tmp_path / name
    code, out, err = run_cli(capsys, "compile", "--target", "tflm", "--model", str(converted[name]), "-o", str(art))
    assert code == 0, out + err
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["tflite"]["tflm_interpreter"]["bit_exact"] is True
    assert {layer["params"]["rounding"] for layer in json.loads((art / "plan.json").read_text())["layers"]
            if layer["kind"] == "fc"} == {"tflm"}
    code, out, err = run_cli(capsys, "bench", str(art))
    assert code == 0 and "result: PASS" in out, out + err
    assert "[PASS] eval: tflite-micro interpreter (host, reference kernels) == reference (bit-exact): 0" in out
    assert "TFLM vs LiteRT's reference kernels on the eval inputs:" in out  # the runtimes' difference stays visible


@pytest.mark.slow
def test_bench_fails_when_the_artifact_claims_litert_rounding_where_tflm_differs(converted, tmp_path, capsys):
    """The artifact as it was before its fcs took TFLM's arithmetic (rounding "single", LiteRT's golden outputs):
    consistent in itself, but TFLM computes otherwise, and bench must say so, not pass."""
    art = tmp_path / "fc_autoencoder"
    code, out, err = run_cli(capsys, "compile", "--target", "tflm", "--model", str(converted["fc_autoencoder"]),
                             "-o", str(art))
    assert code == 0, out + err
    plan = json.loads((art / "plan.json").read_text())
    for layer in plan["layers"]:
        layer["params"]["rounding"] = "single"
    (art / "plan.json").write_text(json.dumps(plan))
    golden_x = np.load(art / "golden_input.npy")
    golden_y = np.load(art / "golden_output.npy")
    np.save(art / "golden_output.npy", litert.run_reference(art / "model.tflite", golden_x).reshape(golden_y.shape))
    manifest = json.loads((art / "manifest.json").read_text())
    for name in ("plan.json", "golden_output.npy"):  # re-recorded, so bench reads the edit as the artifact's claim
        data = (art / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (art / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(capsys, "bench", str(art))
    assert code != 0 and "[FAIL] eval: tflite-micro interpreter (host, reference kernels) == reference" in out, out + err
