"""A converter-made .tflite ending in SOFTMAX (tests/converter_models.py "softmax_head": dense, dense, SOFTMAX
on a 32-value vector) compiled with --keep-softmax: the plan ends in the softmax layer, its int8
probabilities are bit-exact with LiteRT BUILTIN_REF's SOFTMAX output (the file's output) on 32 random inputs,
and the artifact benches PASS bit-exact on c-host, cortex-m4 (qemu-system-arm), x86-tvm and rpi4 (qemu-aarch64;
TVM's generic Relax lowering of the softmax). Without the flag the SOFTMAX is still dropped."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_import import SOFTMAX_DROPPED, SOFTMAX_KEPT, read_tflite
from edgepack.plan import reference
from tests import converter_models
from tests.cli import edgepack

MODEL = "softmax_head"
RANDOM_INPUTS = 32


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return converter_models.build(tmp_path_factory.mktemp("softmax_kept"), [MODEL])[MODEL]


@pytest.mark.slow
def test_kept_softmax_is_bit_exact_with_litert_builtin_ref_and_dropped_without_the_flag(source):
    kept, dropped = read_tflite(source, keep_softmax=True), read_tflite(source)
    assert kept.plan.layers[-1].kind == "softmax" and kept.softmax == SOFTMAX_KEPT
    assert dropped.plan.layers[-1].kind == "fc" and dropped.softmax == SOFTMAX_DROPPED
    x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, *kept.plan.input_shape), dtype=np.int8)
    want = litert.run_reference(source, x).reshape(RANDOM_INPUTS, -1)  # the file's output: the SOFTMAX's
    assert np.array_equal(reference.run(kept.plan, x), want)
    assert len(np.unique(want)) > 4  # probabilities spread over more than a few values: the test can fail


@pytest.mark.slow
@pytest.mark.parametrize("target", ["c-host", "cortex-m4", "x86-tvm", "rpi4"])
def test_kept_softmax_compiles_and_benches_bit_exact(source, target, tmp_path):
    out, report = tmp_path / "artifact", tmp_path / "bench.json"
    code, _, err, _ = edgepack("compile", "--model", source, "--target", target, "--keep-softmax", "--eval-size", "16",
                               "-o", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["import"]["softmax"] == SOFTMAX_KEPT
    assert manifest["metrics"]["reference_vs_litert_import"]["bit_exact"] is True
    golden_x, golden_y = np.load(out / "golden_input.npy"), np.load(out / "golden_output.npy")
    assert np.array_equal(golden_y.reshape(len(golden_x), -1), litert.run_reference(source, golden_x).reshape(len(golden_x), -1))
    code, _, err, _ = edgepack("bench", out, "--json", report)
    result = json.loads(report.read_text())
    assert code == 0 and result["passed"], err
    assert any("bit-exact" in c["name"] and c["passed"] for c in result["checks"])


@pytest.mark.slow
def test_a_kept_softmax_runs_generic_beside_the_hand_scheduled_x86_layers(tmp_path):
    """mobilenet_like (convs, mean, dense, SOFTMAX) on x86-tvm: the convs keep their hand-scheduled VNNI route,
    the softmax runs its generic lowering in the same module; bench PASS bit-exact."""
    source = converter_models.build(tmp_path / "models", ["mobilenet_like"])["mobilenet_like"]
    out, report = tmp_path / "artifact", tmp_path / "bench.json"
    code, _, err, _ = edgepack("compile", "--model", source, "--target", "x86-tvm", "--keep-softmax", "--eval-size", "16",
                               "-o", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    routes = {r["kind"]: r["route"] for r in manifest["backend_info"]["layer_routes"]}
    assert routes["softmax"] != "scheduled" and routes["conv"] == "scheduled"
    code, _, err, _ = edgepack("bench", out, "--json", report)
    assert code == 0 and json.loads(report.read_text())["passed"], err
