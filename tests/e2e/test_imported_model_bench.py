"""An imported int8 .tflite of any class count compiles and benches with no --eval-data: it is measured for
fidelity (bit-exactness and agreement with the int8 reference, and LiteRT at compile), never scored against
the digit labels; its inputs are the digits mapped onto the range its input quantization represents."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepack import evaldata
from edgepack.data import load_dataset
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_writer import Graph as _Graph, bias_scale as _bias_scale
from edgepack.plan.plan import QParams

RESOLUTION = 32
VWW_INPUT = QParams(float(np.float32(1 / 255)), -128)  # as visual wake words' int8 input: [0, 1], not [-1, 1]


def edgepack(*argv, timeout=300):
    """Run the CLI as a process; (exit code, stdout, stderr, seconds)."""
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "EDGEPACK_PROGRESS": "auto"})
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def converter_like(classes: int, input_q: QParams = VWW_INPUT) -> bytes:
    """A small int8 classifier as TensorFlow's converter writes one (per-channel weights, SAME padding, MEAN
    and FULLY_CONNECTED to ``classes`` logits), taking ``input_q`` inputs at 32x32."""
    rng = np.random.default_rng(classes)
    g = _Graph()
    q = input_q
    x = g.input = g.activation("input", (1, RESOLUTION, RESOLUTION, 3), q)
    shape = (1, RESOLUTION, RESOLUTION, 3)
    for i, (kind, k, s, o) in enumerate([("conv", 3, 2, 8), ("dw", 3, 2, 8), ("pw", 1, 1, 16)]):
        fan_in = k * k * (1 if kind == "dw" else shape[3])
        w_scale = rng.uniform(0.004, 0.02, o).astype(np.float32)
        weight = rng.integers(-127, 128, (1, k, k, o) if kind == "dw" else (o, k, k, shape[3])).astype(np.int8)
        out_q = QParams(float(np.float32(q.scale * float(w_scale.mean()) * np.sqrt(fan_in) * 30.0)), -128)
        wt = g.constant(f"w{i}", weight, w_scale, 3 if kind == "dw" else 0)
        bias = g.constant(f"b{i}", rng.integers(-2000, 2000, o).astype(np.int32), _bias_scale(q, w_scale))
        shape = (1, -(-shape[1] // s), -(-shape[2] // s), o)
        y = g.activation(f"y{i}", shape, out_q)
        g.op("DEPTHWISE_CONV_2D" if kind == "dw" else "CONV_2D", [x, wt, bias], [y], padding="SAME", stride=s,
             activation="RELU6", **({"depth_multiplier": 1} if kind == "dw" else {}))
        x, q = y, out_q
    mean_q = QParams(float(np.float32(q.scale * 0.6)), -20)
    pooled = g.activation("pooled", (1, shape[3]), mean_q)
    g.op("MEAN", [x, g.constant("axes", np.array([1, 2], np.int32))], [pooled], keep_dims=False)
    w_scale = rng.uniform(0.004, 0.02, classes).astype(np.float32)
    logits_q = QParams(float(np.float32(mean_q.scale * float(w_scale.mean()) * np.sqrt(shape[3]) * 60.0)), 3)
    g.output = g.activation("logits", (1, classes), logits_q)
    g.op("FULLY_CONNECTED", [pooled, g.constant("fc_w", rng.integers(-127, 128, (classes, shape[3])).astype(np.int8), w_scale),
                             g.constant("fc_b", rng.integers(-3000, 3000, classes).astype(np.int32),
                                        _bias_scale(mean_q, w_scale))], [g.output], activation="NONE")
    return _serialize(g)


@pytest.fixture(scope="module", params=[2, 10], ids=["2-class", "10-class"])
def imported(request, tmp_path_factory):
    """(the .tflite, its c-host artifact compiled with no --eval-data, the compile's stderr)."""
    folder = tmp_path_factory.mktemp(f"imported{request.param}")
    source = folder / f"net{request.param}.tflite"
    source.write_bytes(converter_like(request.param))
    code, _, err, _ = edgepack("compile", "--model", source, "--target", "c-host", "-o", folder / "art")
    assert code == 0, err
    return source, folder / "art", err


@pytest.mark.slow
def test_imported_model_benches_with_fidelity_and_no_accuracy(imported, tmp_path):
    _, art, compile_err = imported
    assert compile_err == ""
    manifest = json.loads((art / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["int8_accuracy"] is None and metrics["fp32_accuracy"] is None and "no labelled" in metrics["accuracy_note"]
    assert metrics["reference_vs_litert_import"]["bit_exact"] is True
    assert manifest["eval"]["labelled"] is False and manifest["eval"]["images"] == 360  # every digit, whatever the classes
    report = tmp_path / "bench.json"
    code, out, err, _ = edgepack("bench", art, "--json", report)
    assert (code, err) == (0, ""), err
    assert "accuracy: none" in out and "fidelity: top-1 agreement" in out and out.splitlines()[-1] == "result: PASS"
    result = json.loads(report.read_text())
    assert result["passed"] and result["accuracy"] is None and result["eval_images"] == 360
    assert result["fidelity"]["top1_agreement_vs_reference"] == 1.0
    assert any(c["name"].startswith("eval:") and "bit-exact" in c["name"] and c["passed"] for c in result["checks"])


@pytest.mark.slow
def test_imported_model_inputs_use_the_whole_int8_range(imported):
    """VWW-style input quantization ([0, 1]): the digits pixels p become int8 p - 128, where the default
    [-1, 1] mapping clipped every pixel below 128 to -128."""
    _, art, _ = imported
    golden = np.load(art / "golden_input.npy").astype(np.int32)
    digits = load_dataset(None, "eval", RESOLUTION, 10).take(len(golden)).images  # (p / 255 - 0.5) / 0.5
    pixels = (digits.astype(np.float64) + 1.0) * 127.5
    assert np.abs(golden - (np.rint(pixels) - 128)).max() <= 1
    assert golden.min() == -128 and golden.max() >= 120 and len(np.unique(golden)) > 200
    assert (golden == -128).mean() <= (pixels < 0.5).mean() + 0.01  # only the black pixels sit at -128
    mapping = json.loads((art / "manifest.json").read_text())["preprocessing"]
    assert "input quantization" in mapping["input_mapping"] and mapping["mean"] == [0.0] * 3


@pytest.mark.slow
def test_imported_model_scores_accuracy_only_on_the_users_labels(tmp_path):
    """--eval-data digits, given explicitly, labels a 2-class model's eval set with digits 0 and 1; --mean/--std
    given are used as given."""
    source = tmp_path / "net2.tflite"
    source.write_bytes(converter_like(2))
    code, _, err, _ = edgepack("compile", "--model", source, "--target", "c-host", "--eval-data", "digits",
                               "--mean", "0.5", "--std", "0.5", "-o", tmp_path / "art")
    assert code == 0, err
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["preprocessing"]["input_mapping"] == "--mean/--std as given"
    assert manifest["eval"]["images"] == 72 and "labelled" not in manifest["eval"]
    code, out, err, _ = edgepack("bench", tmp_path / "art", "--json", tmp_path / "bench.json")
    assert (code, err) == (0, ""), err
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["passed"] and result["accuracy"] == manifest["metrics"]["int8_accuracy"] is not None


@pytest.mark.slow
def test_python_api_imports_a_model_as_the_cli_does(imported, tmp_path):
    import edgepack

    source, art, _ = imported
    folder = edgepack.compile(str(source), "c-host", output=str(tmp_path / "api"))
    cli, api = (json.loads((f / "manifest.json").read_text()) for f in (art, folder))
    assert api["preprocessing"] == cli["preprocessing"] and api["eval"] == cli["eval"]
    report = edgepack.bench(folder)
    assert report["passed"] and report["accuracy"] is None and "fidelity" in report


@pytest.mark.parametrize("classes", [2, 3, 5, 10, 1000])
@pytest.mark.parametrize("eval_size", [None, 7])
def test_compile_and_bench_select_the_same_digits_for_an_imported_model(classes, eval_size, tmp_path):
    """What compile records for an imported model's default eval set, bench finds again (any class count)."""
    from edgepack.config import CompileConfig
    from edgepack.frontends.tflite import imported_eval_set

    config = CompileConfig(target="c-host", resolution=RESOLUTION, classes=classes, model_name="net",
                           tflite_model="net.tflite", eval_size=eval_size)
    data = imported_eval_set(config, classes, None)
    manifest = {"model": {"resolution": RESOLUTION, "classes": classes}, "eval": evaldata.record(data, tmp_path, classes),
                "preprocessing": config.preprocessing}
    back = evaldata.load(manifest, tmp_path)
    assert back.labels is None and data.labels is None and len(back) == (eval_size or 360)
    assert np.array_equal(back.images, data.images)


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(1e-4, 1.0), zero_point=st.integers(-128, 127))
def test_quantization_mapping_puts_pixels_on_the_whole_int8_range(scale, zero_point):
    """Pixels 0..255 mapped by quantization_mapping quantize to exactly pixel - 128, for any input quantization."""
    from edgepack.data import normalise

    q = QParams(float(np.float32(scale)), zero_point)
    mean, std = evaldata.quantization_mapping(q)
    pixels = np.arange(256, dtype=np.float32)[None, None, None, :].repeat(3, axis=1)
    x = normalise(pixels, mean, std)
    assert np.array_equal(q.quantize(x).astype(np.int32)[0, 0, 0], np.arange(256) - 128)
