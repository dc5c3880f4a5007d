"""Converter-made models with two outputs (tests/converter_models.py): "two_heads", a 1x1 conv map head and a dense
classifier on one trunk, and "autoencoder_code", an autoencoder's code (also the decoder's input: an output a later
layer reads) and reconstruction. Imported, compiled and benched: the plan keeps the file's outputs in its order, the
reference is bit-exact with LiteRT's reference kernels on every output, the C, TVM and tflm targets run them bit-exact
on their devices (bench PASS, fidelity per output, no accuracy), and the qdq.onnx backends refuse them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_import import read_tflite
from edgepack.plan import reference
from tests import converter_models
from tests.cli import assert_one_line, edgepack

RANDOM_INPUTS = 32
MODELS = {"two_heads": [(6,), (4, 8, 8)], "autoencoder_code": [(8,), (64,)]}  # name -> its outputs' plan shapes


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converter_models.build(tmp_path_factory.mktemp("converted"), list(MODELS))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_both_outputs_are_imported_in_the_files_order_and_match_litert_bit_for_bit(name, converted):
    imported = read_tflite(converted[name])
    plan = imported.plan
    file_shapes = [tuple(int(d) for d in t["shape"]) for t in litert._interpreter(converted[name], True).get_output_details()]
    nhwc = [(1, s[1], s[2], s[0]) if len(s) == 3 else (1, *s) for s in plan.output_shapes]
    assert file_shapes == nhwc and set(plan.output_shapes) == set(MODELS[name])
    x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, *plan.input_shape), dtype=np.int8)
    want = litert.run_reference_tensor(converted[name], x, imported.litert_tensors(), imported.litert_input(),
                                       imported.channels_first)
    got = reference.run(plan, x)
    assert got.shape == (RANDOM_INPUTS, sum(int(np.prod(s)) for s in MODELS[name])) and np.array_equal(got, want)
    for a, b in plan.output_segments():  # neither output is constant: each decides something
        assert len(np.unique(got[:, a:b])) >= 8


@pytest.mark.slow
def test_the_autoencoders_code_is_an_output_its_decoder_reads(converted):
    """What sets autoencoder_code apart from two_heads: an output tensor with a reader (the C keeps it in the output
    buffer, where the next layer reads it)."""
    plan = read_tflite(converted["autoencoder_code"]).plan
    code = next(i for i in plan.output_layers if plan.layers[i].output_shape == (8,))
    assert code in plan.last_readers() and code != len(plan.layers) - 1


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("target", ["c-host", "cortex-m4", "rpi4", "x86-tvm", "tflm"])
def test_a_two_output_model_compiles_and_benches_bit_exact(name, target, converted, tmp_path):
    out = tmp_path / "artifact"
    code, _, err, _ = edgepack("compile", "--model", converted[name], "--target", target, "--eval-size", "16",
                               "-o", out, timeout=900)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["metrics"]["reference_vs_litert_import"]
    # tflm: the plan is in TFLM's arithmetic (its FULLY_CONNECTED rounds twice), LiteRT's reproduced by the import's plan
    assert record["bit_exact"] is True or target == "tflm" and record["import_bit_exact_in_litert_arithmetic"] is True
    plan = read_tflite(converted[name]).plan
    assert [o["shape"] for o in manifest["plan"]["outputs"]] == [list(s) for s in plan.output_shapes]
    assert np.load(out / "golden_output.npy").shape[1:] == plan.output_row_shape
    code, text, err, _ = edgepack("bench", out, "--json", tmp_path / "bench.json", timeout=900)
    assert code == 0, text + err
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["passed"] and report["accuracy"] is None and report["outputs"] == 2
    assert [c["passed"] for c in report["checks"] if "bit-exact" in c["name"]] == [True, True]
    assert [o["sqnr_db_vs_reference"] for o in report["fidelity"]["outputs"]] == [None, None]  # identical
    assert "accuracy: none (the model has 2 outputs" in text and "  output 1 (" in text and "result: PASS" in text


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "intel-cpu"])
def test_a_qdq_onnx_target_refuses_the_model_before_any_work(target, converted, tmp_path):
    """onnxruntime and openvino run qdq.onnx, which an imported .tflite (the only source of several outputs) does not
    give: one line, exit 2, no artifact."""
    out = tmp_path / "refused"
    code, _, err, _ = edgepack("compile", "--model", converted["two_heads"], "--target", target, "-o", out)
    assert_one_line(code, err, 2, "edgepack compile: error:", f"target {target} runs qdq.onnx")
    assert not out.exists()


@pytest.mark.parametrize("target", ["host", "intel-cpu"])
def test_a_backend_without_several_outputs_refuses_such_a_plan_by_name(target):
    """The guard compile applies once a plan is read, whatever its source: the qdq.onnx backends hand over one output."""
    from edgepack.compiler import check_multi_output
    from edgepack.errors import UnsupportedModelError
    from edgepack.targets import get_target
    from tests.conformance.plans import MULTI_OUTPUT_CASES, multi_output_case

    plan, _ = multi_output_case(next(iter(MULTI_OUTPUT_CASES)))
    with pytest.raises(UnsupportedModelError, match=f"target {target}: the .* backend runs models with one output, this "
                       "one has 3: use a target of the tvm, c or tflm backend \\(.*c-host.*rpi4.*tflm"):
        check_multi_output(get_target(target), plan)
    for runs in ("c-host", "rpi4", "tflm"):
        check_multi_output(get_target(runs), plan)
