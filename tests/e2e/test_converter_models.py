"""Models made by TensorFlow's TFLiteConverter (tests/converter_models.py), one per feature of issue 21: what
`edgepack compile --model FILE.tflite` does with each today. The table below is the contract: an accepted
model compiles for c-host, benches PASS and its int8 reference is bit-exact with LiteRT's reference kernels;
a refused one gets one stderr line, exit 2, naming the first thing edgepack cannot run. When an op or shape
lands, its entry flips from the refusal's words to ACCEPTED and the same test then compiles and benches it.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.interop import litert
from edgepack.interop.tflite_import import read_tflite
from edgepack.plan import reference
from tests import converter_models
from tests.cli import assert_one_line, edgepack
from tests.e2e.test_tflite_import import _compile_and_bench

ACCEPTED = None

# model -> ACCEPTED, or words the one-line refusal must contain (the first unsupported op or shape)
EXPECTED = {
    "mobilenet_like": ACCEPTED,
    "residual_add": ACCEPTED,
    "kws_ds_cnn": ACCEPTED,
    "fc_autoencoder": ACCEPTED,
    "conv1d": ACCEPTED,
    "depth_multiplier_8": ACCEPTED,
    "resnet_maxpool": ACCEPTED,
    "se_hardswish": ACCEPTED,
    "concat": ACCEPTED,
    "nchw_transpose": ACCEPTED,
    "float_io": ACCEPTED,
    "fc_reshape_conv": ACCEPTED,
    "vector_to_image": ACCEPTED,
    "resize_nearest": ACCEPTED,
    "upsampling2d": ACCEPTED,  # its int8 TILE (v3) runs under LiteRT 2.3's reference kernels as v2: litert.TILE_NOTE
    "zero_padding": ACCEPTED,
    "softmax_head": ACCEPTED,
    "two_heads": ACCEPTED,
    "autoencoder_code": ACCEPTED,
}
RANDOM_INPUTS = 32
# (model, target) accepted on C but refused elsewhere today -> the words of that one-line refusal (exit 2); none
# today (the vector-to-map models, fc_reshape_conv and vector_to_image, run on TVM too: VECTOR_MAP_MODELS below)
NOT_YET_ON: dict[tuple[str, str], str] = {}
# A conv reading a vector as its map (an fc's output or the input RESHAPEd to a (1, H, W, C) image): TVM reshapes
# it to (1, C, H, W) before the conv (relax_int8.emit_generic, also inside the hand-scheduled modules)
VECTOR_MAP_MODELS = ("fc_reshape_conv", "vector_to_image")

# model -> (input shape, weight shape of the first convolution, ops) as TFLiteConverter 2.21 writes it: the
# feature each model is named for is in its file (Keras' x * relu6(x + 3) / 6 is fused to HARD_SWISH; the SE
# gate's relu6(x + 3) goes into its CONV_2D, the / 6 is a MUL; Conv1D becomes a (1, W) CONV_2D between RESHAPEs)
CONVERTED = {
    "mobilenet_like": ((1, 32, 32, 3), (8, 3, 3, 3), ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
                                                       "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]),
    "residual_add": ((1, 32, 32, 3), (16, 3, 3, 3), ["CONV_2D", "CONV_2D", "CONV_2D", "ADD", "MEAN",
                                                      "FULLY_CONNECTED"]),
    "kws_ds_cnn": ((1, 49, 10, 1), (16, 10, 4, 1), ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
                                                     "CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"]),
    "fc_autoencoder": ((1, 640), None, ["FULLY_CONNECTED"] * 4),
    "conv1d": ((1, 30, 1), (8, 1, 3, 1), ["RESHAPE", "CONV_2D", "CONV_2D", "RESHAPE", "MEAN", "FULLY_CONNECTED"]),
    "depth_multiplier_8": ((1, 32, 32, 1), (1, 3, 3, 8), ["DEPTHWISE_CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED"]),
    "resnet_maxpool": ((1, 32, 32, 3), (16, 3, 3, 3), ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "CONV_2D", "ADD", "MEAN",
                                                        "FULLY_CONNECTED"]),
    "se_hardswish": ((1, 32, 32, 3), (16, 3, 3, 3), ["CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "CONV_2D", "MUL",
                                                      "MUL", "MEAN", "FULLY_CONNECTED"]),
    "concat": ((1, 32, 32, 3), (8, 3, 3, 3), ["CONV_2D", "CONV_2D", "CONV_2D", "CONCATENATION", "MEAN",
                                               "FULLY_CONNECTED"]),
    "nchw_transpose": ((1, 3, 32, 32), (8, 3, 3, 3), ["TRANSPOSE", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN",
                                                       "FULLY_CONNECTED"]),
    "float_io": ((1, 32, 32, 3), (8, 3, 3, 3), ["QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED",
                                                 "DEQUANTIZE"]),
    "fc_reshape_conv": ((1, 16), (8, 3, 3, 8), ["FULLY_CONNECTED", "RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]),
    "vector_to_image": ((1, 64), (4, 3, 3, 1), ["RESHAPE", "CONV_2D", "MEAN", "FULLY_CONNECTED"]),
    "resize_nearest": ((1, 12, 12, 3), (8, 3, 3, 3), ["CONV_2D", "RESIZE_NEAREST_NEIGHBOR", "CONV_2D", "MEAN",
                                                      "FULLY_CONNECTED"]),
    "upsampling2d": ((1, 12, 12, 3), (8, 3, 3, 3), ["CONV_2D", "RESHAPE", "TILE", "RESHAPE", "TILE", "RESHAPE",
                                                    "CONV_2D", "MEAN", "FULLY_CONNECTED"]),
    "zero_padding": ((1, 15, 13, 3), (8, 3, 3, 3), ["PAD", "CONV_2D", "PAD", "MAX_POOL_2D", "CONV_2D", "MEAN",
                                                    "FULLY_CONNECTED"]),
    "softmax_head": ((1, 32), None, ["FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]),
    "two_heads": ((1, 16, 16, 3), (8, 3, 3, 3), ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                                                 "CONV_2D"]),
    "autoencoder_code": ((1, 64), None, ["FULLY_CONNECTED"] * 4),
}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """name -> .tflite path, every model converted once per test session (about 15 s for all)."""
    return converter_models.build(tmp_path_factory.mktemp("converter_models"))


def test_the_tables_cover_every_converter_model():
    assert list(EXPECTED) == list(CONVERTED) == list(converter_models.MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONVERTED)
def test_converter_writes_the_feature_each_model_is_named_for(name, converted):
    shape, first_filter, ops = CONVERTED[name]
    assert converter_models.structure(converted[name]) == (shape, first_filter, ops)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_converter_model_is_accepted_or_refused_as_the_table_says(name, converted, tmp_path):
    source, refusal = converted[name], EXPECTED[name]
    if refusal is ACCEPTED:
        imported = read_tflite(source)
        _compile_and_bench(source, "c-host", tmp_path, softmax=imported.softmax)
        x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, *imported.plan.input_shape), dtype=np.int8)
        want = litert.run_reference_tensor(source, x, imported.litert_tensors(), imported.litert_input(),
                                           imported.channels_first)
        assert np.array_equal(reference.run(imported.plan, x), want.reshape(RANDOM_INPUTS, -1))
        assert ("tile" in litert.reference_resolver(source)) == ("TILE" in CONVERTED[name][2])  # only TILE is lowered
    else:
        out = tmp_path / "refused"
        code, _, err, _ = edgepack("compile", "--model", source, "--target", "c-host", "-o", out)
        assert_one_line(code, err, 2, "edgepack compile: error:", str(source), refusal)
        assert not out.exists()  # refused before anything is written


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, refusal in EXPECTED.items() if refusal is ACCEPTED])
@pytest.mark.parametrize("target", ["cortex-m4", "rpi4", "x86-tvm"])
def test_every_accepted_converter_model_compiles_and_benches_bit_exact_on_the_boards(target, name, converted, tmp_path):
    """Issue 21: each accepted feature's model also runs on a Cortex-M4 (qemu-system-arm), a Raspberry Pi 4
    (qemu-aarch64) and this host's TVM; their bench is bit-exact with LiteRT's reference kernels' plan."""
    if (name, target) in NOT_YET_ON:
        code, _, err, _ = edgepack("compile", "--model", converted[name], "--target", target, "-o", tmp_path / "o")
        assert_one_line(code, err, 2, "edgepack compile: error:", NOT_YET_ON[name, target])
        return
    _compile_and_bench(converted[name], target, tmp_path, softmax=read_tflite(converted[name]).softmax)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["x86-tvm", "rpi4"])
@pytest.mark.parametrize("name", VECTOR_MAP_MODELS)
def test_a_conv_reading_a_vector_as_its_map_compiles_and_benches_bit_exact_on_tvm(name, target, converted, tmp_path):
    """The converter's FULLY_CONNECTED / input -> RESHAPE (1, H, W, C) -> CONV_2D on this host's TVM and the rpi4
    (qemu-aarch64): compiled (no refusal), bench PASS bit-exact with LiteRT's reference kernels' plan."""
    _compile_and_bench(converted[name], target, tmp_path, softmax=read_tflite(converted[name]).softmax)
