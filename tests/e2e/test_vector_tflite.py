"""Converter-made models whose input is not an NHWC image: the 640-128-8-128-640 FC autoencoder (a (1, 640)
vector in, 640 values out, not class logits) measured on the user's own (N, 640) --eval-data, and the NCHW model
whose input TRANSPOSE is absorbed (the manifest says so)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgepack as edgepack_api
from tests import converter_models
from tests.cli import edgepack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converter_models.build(tmp_path_factory.mktemp("converter_models"), ["fc_autoencoder", "nchw_transpose"])


def test_autoencoder_on_given_vectors_is_measured_for_fidelity_not_accuracy(converted, tmp_path):
    vectors = np.random.default_rng(4).uniform(-1, 1, (20, 640)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", images=vectors)
    out = tmp_path / "out"
    code, _, err, _ = edgepack("compile", "--model", converted["fc_autoencoder"], "--target", "c-host",
                               "--eval-data", tmp_path / "eval.npz", "-o", out)
    assert code == 0, err
    assert np.load(out / "golden_output.npy").shape[1:] == (640,)
    code, stdout, err, _ = edgepack("bench", out, "--json", tmp_path / "bench.json")
    assert code == 0, stdout + err
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["passed"] and report["accuracy"] is None and report["eval_images"] == 20
    fidelity = report["fidelity"]
    assert fidelity["sqnr_db_vs_reference"] is None and fidelity["max_abs_logit_diff_vs_reference"] == 0  # identical
    assert fidelity["litert_bit_exact_inputs_at_compile"] == 20
    assert "SQNR vs reference inf (identical)" in stdout and "bit-exact with LiteRT on 20 inputs" in stdout


def test_nchw_input_transpose_is_recorded_as_absorbed(converted, tmp_path):
    out = tmp_path / "out"
    code, _, err, _ = edgepack("compile", "--model", converted["nchw_transpose"], "--target", "c-host",
                               "--eval-size", "8", "-o", out)
    assert code == 0, err
    record = json.loads((out / "manifest.json").read_text())["import"]
    assert record["input_layout"].startswith("NCHW") and record["ops"]["TRANSPOSE"] == 1
    assert json.loads((out / "plan.json").read_text())["input"]["shape"] == [3, 32, 32]


def test_python_api_takes_an_autoencoders_eval_vectors_without_labels(converted, tmp_path):
    vectors = np.random.default_rng(1).uniform(-1, 1, (12, 640)).astype(np.float32)
    out = edgepack_api.compile(str(converted["fc_autoencoder"]), "c-host", eval_data=vectors, output=str(tmp_path / "api"))
    report = edgepack_api.bench(out, count=3, warmup=1)
    assert report["passed"] and report["accuracy"] is None and report["eval_images"] == 12
