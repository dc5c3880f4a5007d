"""Inputs that are not NHWC images, read from tiny .tflite files written here: a (1, F) vector into a chain of
FULLY_CONNECTED (the plan's input is (F,)), and an NCHW input whose first op TRANSPOSEs it to NHWC (absorbed: the
plan's (C, H, W) is that input's own layout). Each plan's numpy reference must equal LiteRT's reference kernels
on the file fed in its own layout; any other TRANSPOSE is refused by what it does, in one line."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.data import load_npz, npz_vector_length
from edgepack.errors import ConfigError, DataError
from edgepack.interop import litert
from edgepack.interop.tflite_export import _serialize, plan_to_tflite
from edgepack.interop.tflite_import import read_tflite
from edgepack.interop.tflite_writer import Graph, bias_scale, builtin_options
from edgepack.plan import reference
from edgepack.plan.plan import QParams

RANDOM_INPUTS = 32


@builtin_options("TRANSPOSE", 2)
def _transpose_options(b, tfl, o, vector):
    """edgepack never writes a TRANSPOSE; these tests do, as PyTorch exports write one."""
    tfl.TransposeOptionsStart(b)
    return tfl.BuiltinOptions.TransposeOptions, tfl.TransposeOptionsEnd(b)


def _fc(g: Graph, x: int, units: int, q_out: QParams, rng, activation="NONE") -> int:
    features, q_in = g.tensors[x].shape[-1], g.quant[x]
    w_scale = rng.uniform(0.002, 0.01, units).astype(np.float32)
    weight = g.constant(f"w{len(g.tensors)}", rng.integers(-127, 128, (units, features)).astype(np.int8), w_scale)
    bias = g.constant(f"b{len(g.tensors)}", rng.integers(-500, 500, units).astype(np.int32), bias_scale(q_in, w_scale))
    y = g.activation(f"y{len(g.tensors)}", (1, units), q_out)
    g.op("FULLY_CONNECTED", [x, weight, bias], [y], activation=activation)
    return y


def _vector_model() -> bytes:
    """64 values -> 16 (ReLU) -> 64: an FC-only autoencoder in miniature."""
    g, rng = Graph(), np.random.default_rng(7)
    x = g.input = g.activation("features", (1, 64), QParams(0.05, 3))
    hidden = _fc(g, x, 16, QParams(0.04, -128), rng, activation="RELU")
    g.output = _fc(g, hidden, 64, QParams(0.03, 2), rng)
    return _serialize(g)


def _nchw_model(perm: list[int]) -> bytes:
    """(1, 3, 4, 4) channels-first in, TRANSPOSE by ``perm``, flattened, one FULLY_CONNECTED to 5."""
    g, rng, q = Graph(), np.random.default_rng(8), QParams(0.05, -4)
    x = g.input = g.activation("image", (1, 3, 4, 4), q)
    moved = g.activation("nhwc", tuple((1, 3, 4, 4)[p] for p in perm), q)
    g.op("TRANSPOSE", [x, g.constant("perm", np.array(perm, np.int32))], [moved])
    flat = g.activation("flat", (1, 48), q)
    g.op("RESHAPE", [moved, g.constant("shape", np.array([1, 48], np.int32))], [flat], new_shape=[1, 48])
    g.output = _fc(g, flat, 5, QParams(0.1, 0), rng)
    return _serialize(g)


def _random_inputs(plan) -> np.ndarray:
    return np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, *plan.input_shape)).astype(np.int8)


def test_vector_input_fc_chain_matches_litert_reference_kernels(tmp_path):
    path = tmp_path / "vector.tflite"
    path.write_bytes(_vector_model())
    imported = read_tflite(path)
    assert imported.plan.input_shape == (64,) and [layer.kind for layer in imported.plan.layers] == ["fc", "fc"]
    x = _random_inputs(imported.plan)
    got = reference.run(imported.plan, x)
    assert len(np.unique(got)) > 20  # the outputs vary: the check below compares more than one clamped value
    assert np.array_equal(got, litert.run_reference_tensor(path, x, imported.logits_tensor))
    # written back as .tflite, the plan still takes a (1, 64) vector and gives the same values
    assert np.array_equal(got, litert.run_reference(plan_to_tflite(imported.plan), x))


def test_nchw_input_transpose_is_absorbed_and_fed_channels_first(tmp_path):
    path = tmp_path / "nchw.tflite"
    path.write_bytes(_nchw_model([0, 2, 3, 1]))
    imported = read_tflite(path)
    assert imported.channels_first and imported.plan.input_shape == (3, 4, 4)
    assert imported.record()["input_layout"].startswith("NCHW")
    x = _random_inputs(imported.plan)
    want = litert.run_reference_tensor(path, x, imported.logits_tensor, channels_first=True)
    assert np.array_equal(reference.run(imported.plan, x), want)


@pytest.mark.parametrize("perm", [[0, 1, 3, 2], [0, 3, 1, 2]])
def test_other_input_transpose_is_refused_by_what_it_does(perm, tmp_path):
    path = tmp_path / "transposed.tflite"
    path.write_bytes(_nchw_model(perm))
    with pytest.raises(ConfigError) as e:
        read_tflite(path)
    message = str(e.value)
    assert f"op 0 (TRANSPOSE) permutes the input [1, 3, 4, 4] with perm {perm}" in message
    assert "only a TRANSPOSE of an NCHW model input to NHWC (perm [0, 2, 3, 1])" in message
    assert len(message.splitlines()) == 1


def test_vector_npz_is_taken_as_the_models_inputs_labels_optional(tmp_path):
    """--eval-data / --calibration for a model of F-value vectors: (N, F) float inputs as they are (not pixels:
    no 0..255 check, no mean/std), with or without labels; another length is refused naming the one it takes."""
    vectors = np.random.default_rng(3).normal(0, 0.5, (6, 64)).astype(np.float32)
    np.savez(tmp_path / "unlabelled.npz", images=vectors)
    np.savez(tmp_path / "labelled.npz", images=vectors, labels=np.arange(6))
    data = load_npz(tmp_path / "unlabelled.npz", 64)
    assert np.array_equal(data.images, vectors) and data.labels is None
    assert load_npz(tmp_path / "labelled.npz", 64).labels.tolist() == list(range(6))
    with pytest.raises(DataError, match=r"images have shape \(6, 64\), the model takes vectors of 640 values"):
        load_npz(tmp_path / "unlabelled.npz", 640)


def test_the_cli_reads_a_vector_models_input_length_from_its_calibration_npz(tmp_path):
    np.savez(tmp_path / "vectors.npz", images=np.zeros((4, 40), np.float32))
    np.savez(tmp_path / "images.npz", images=np.zeros((4, 3, 8, 8), np.uint8), labels=np.arange(4))
    assert npz_vector_length(tmp_path / "vectors.npz") == 40
    assert npz_vector_length(tmp_path / "images.npz") is None and npz_vector_length(None) is None
    assert npz_vector_length(tmp_path / "missing.npz") is None  # load_npz refuses it later, with the reason
