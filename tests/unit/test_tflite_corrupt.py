"""A damaged .tflite is refused in one line naming what is wrong in the file and the fix (exit 2), never an
internal error (exit 3), a LiteRT abort, or a LiteRT refusal blamed on edgepack's exporter (exit 1).

One case per kind of damage the fuzz test (test_tflite_fuzz.py) found, each made by editing one field of a
converter-style model through the tflite schema (tests/tflite_mutations.py). What each did before the
importer checked the file's structure is in the case's comment."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepack.errors import ConfigError, DataError, EdgepackError
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_writer import Graph, bias_scale
from edgepack.interop.tflite_import import read_tflite
from edgepack.plan.plan import QParams
from tests.tflite_mutations import converter_like, edited
from tests.e2e.test_tflite_import import _residual_tflite


@pytest.fixture(scope="module")
def converter() -> bytes:
    """Tensors: 0 input, 1 w0 (8, 3, 3, 3), 2 b0 int32 (8), 3 y0 (1, 24, 24, 8), 4 w1, 7 w2 (16 scales), 21 y6
    (1, 3, 3, 16) from a stride-2 SAME depthwise, 26 MEAN axes, 28 RESHAPE shape; ops 0 CONV_2D (RELU6) ...
    8 MEAN, 9 RESHAPE, 10 FULLY_CONNECTED, 11 SOFTMAX; opcode 0 CONV_2D."""
    return converter_like()


def _constant_at(data: bytes, tensor: int) -> str:
    """The name of the first data byte field of ``tensor``'s buffer."""
    import tflite

    buffer = tflite.Model.GetRootAs(data, 0).Subgraphs(0).Tensors(tensor).Buffer()
    return f"buffer {buffer} Data"


CASES = {  # name: (fields to set, error class, words of the message)
    # struct.error reading tensor 32768 (internal error)
    "output index past the tensor table": ({"op 0 Outputs[0]": 32768}, DataError,
                                           ["is corrupt", "op 0 reads or writes tensor 32768", "has 33 tensors"]),
    # ValueError: cannot reshape 32 bytes of int16 into (8,)
    "type that disagrees with the buffer size": ({"tensor 2 Type": 7}, DataError,
                                                 ["tensor 2 ('b0') has 32 bytes in buffer", "[8] of int16 needs 16"]),
    # TypeError: data type '-1' not understood
    "type outside the schema": ({"tensor 2 Type": -1}, DataError, ["tensor 2 ('b0') has type -1", "does not define"]),
    # ValueError: cannot reshape (negative dimension)
    "negative dimension": ({"tensor 1 Shape[0]": -1}, DataError, ["tensor 1 ('w0') has shape [-1, 3, 3, 3]",
                                                                  "dimensions must be positive"]),
    # OverflowError in quantize_multiplier
    "infinite scale": ({"tensor 3 quantization Scale[0]": math.inf}, DataError,
                       ["tensor 3 ('y0') has scale inf", "positive and finite"]),
    # ValueError: cannot convert float NaN to integer
    "NaN weight scale": ({"tensor 1 quantization Scale[5]": math.nan}, DataError, ["tensor 1 ('w0') has scale nan"]),
    # ZeroDivisionError: float division by zero
    "zero scale": ({"tensor 3 quantization Scale[0]": -0.0}, DataError, ["tensor 3 ('y0') has scale -0.0"]),
    # OverflowError: RELU6's bound 6 / scale as an int
    "output scale so small the requantization overflows": ({"tensor 3 quantization Scale[0]": 1e-30}, ConfigError,
                                                           ["op 0 (CONV_2D) requantizes channel", "overflows int32"]),
    # silently used as int8 (the plan would clamp with a zero point no int8 holds)
    "zero point outside int8": ({"tensor 3 quantization ZeroPoint[0]": 200}, DataError,
                                ["tensor 3 ('y0') has zero point 200, outside int8's [-128, 127]"]),
    # struct.error reading opcode 99
    "opcode index past the opcode table": ({"op 1 OpcodeIndex": 99}, DataError, ["op 1 uses opcode 99"]),
    # struct.error reading buffer 9999
    "buffer index past the buffer table": ({"tensor 1 Buffer": 9999}, DataError, ["tensor 1 ('w0') uses buffer 9999"]),
    # ZeroDivisionError in the conv output size
    "stride 0": ({"op 0 Conv2DOptions StrideH": 0, "op 0 Conv2DOptions StrideW": 0}, ConfigError,
                 ["op 0 (CONV_2D) has stride 0"]),
    # ValueError: buffer is smaller than requested size (numpy reading past the end)
    "vector longer than the file": ({"tensor 1 ShapeLength": 2**30}, DataError, ["points outside the file"]),
    # a loop over 2^31 operators
    "table length beyond the file": ({"subgraph OperatorsLength": 2**31 - 1}, DataError,
                                     ["claims 2147483647 operators in"]),
    # read as Conv2DOptions from another table
    "options of another op": ({"op 0 BuiltinOptionsType": 5}, DataError,
                              ["op 0 (CONV_2D) has builtin options of type 5, not Conv2DOptions"]),
    # imported, then LiteRT refused it at compile: exit 1 "an edgepack exporter bug"
    "conv output of another type": ({"tensor 3 Type": 7}, ConfigError, ["op 0 (CONV_2D) outputs int16"]),
    "zero points missing": ({"tensor 7 quantization ZeroPointLength": 0}, DataError,
                            ["tensor 7 ('w2') has 16 scales and 0 zero points"]),
    "schema version": ({"model Version": 9}, ConfigError, ["TFLite schema version 9, not 3"]),
    "op version LiteRT lacks": ({"opcode 0 Version": 100}, DataError,
                                ["LiteRT's reference kernels refuse it", "CONV_2D' version '100'"]),
    # imported, then LiteRT aborted the whole process (SIGABRT) at compile
    "softmax beta 0": ({"op 11 SoftmaxOptions Beta": 0.0}, ConfigError, ["op 11 (SOFTMAX) has beta 0.0"]),
    # imported, then the plan and LiteRT disagreed at compile (exit 1)
    "SAME output size that does not follow": ({"tensor 21 Shape[1]": 2}, ConfigError,
                                              ["op 6 (DEPTHWISE_CONV_2D) outputs 2x3 from 6x6 at stride 2 with SAME"]),
    "requantization that overflows int32": ({"tensor 4 quantization Scale[0]": 17419.55}, ConfigError,
                                            ["op 1 (DEPTHWISE_CONV_2D) requantizes channel", "overflows int32"]),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_tflite_is_refused_by_what_is_wrong(converter, case, tmp_path):
    values, error, words = CASES[case]
    path = tmp_path / "damaged.tflite"
    path.write_bytes(edited(converter, **values))
    with pytest.raises(EdgepackError) as caught:
        read_tflite(path)
    message = str(caught.value)
    assert type(caught.value) is error and caught.value.exit_code == 2, message
    assert "\n" not in message and f"--model {path}" in message, message
    for word in words:
        assert word in message, message


def test_reshape_to_a_shape_its_output_does_not_have_is_refused(converter, tmp_path):
    """RESHAPE's shape operand says [1, 20] for a (1, 24) output: LiteRT reshapes by the operand (it refused
    the file at compile, exit 1)."""
    path = tmp_path / "reshape.tflite"
    path.write_bytes(edited(converter, **{f"{_constant_at(converter, 28)}[4]": 20}))
    with pytest.raises(ConfigError, match=r"op 9 \(RESHAPE\) reshapes to \[1, 20\] into a tensor of shape \[1, 24\]"):
        read_tflite(path)


def test_mean_axis_outside_the_map_is_refused(converter, tmp_path):
    """MEAN over axes [5, 2] of a 4-D map: 5 is no axis (it passed as 5 % 4 = 1, then LiteRT refused it)."""
    path = tmp_path / "mean.tflite"
    path.write_bytes(edited(converter, **{f"{_constant_at(converter, 26)}[0]": 5}))
    with pytest.raises(ConfigError, match=r"op 8 \(MEAN\) does not average"):
        read_tflite(path)


def test_float_input_quantized_into_another_shape_is_refused(tmp_path):
    """The converter's float32 input (tensor 1) QUANTIZEd into the int8 input of another shape (LiteRT was
    fed the plan's shape and refused at compile, exit 1)."""
    data = converter_like(float_io=True)
    path = tmp_path / "float_io.tflite"
    path.write_bytes(edited(data, **{"tensor 1 Shape[1]": 7}))
    with pytest.raises(ConfigError, match=r"op 0 \(QUANTIZE\) quantizes \[1, 7, 48, 3\] into \[1, 48, 48, 3\]"):
        read_tflite(path)


def test_add_whose_output_scale_would_abort_litert_is_refused(tmp_path):
    """An ADD output scale below 2^-19 of its inputs' makes LiteRT's int8 ADD abort the process (SIGABRT)."""
    data, sum_tensor = _residual_tflite("NONE")
    path = tmp_path / "add.tflite"
    path.write_bytes(edited(data, **{f"tensor {sum_tensor} quantization Scale[0]": 1e-9}))
    with pytest.raises(ConfigError, match=r"op 1 \(ADD\) has output scale 1e-09, below 2\^-19 of its input scales"):
        read_tflite(path)


def _flat_input_model(shape=(1, 64)) -> bytes:
    """An int8 model of batch 1 whose input of ``shape`` (64 values) is one FULLY_CONNECTED's."""
    g = Graph()
    q = QParams(0.05, 3)
    x = g.input = g.activation("features", shape, q)
    w_scale = np.full(4, 0.01, np.float32)
    g.output = g.activation("logits", (1, 4), QParams(0.02, 0))
    g.op("FULLY_CONNECTED", [x, g.constant("w", np.ones((4, 64), np.int8), w_scale),
                             g.constant("b", np.zeros(4, np.int32), bias_scale(q, w_scale))], [g.output], activation="NONE")
    return _serialize(g)


def _cli(*args, timeout=60):
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stderr, time.monotonic() - start


def test_five_dimensional_input_model_is_told_the_inputs_edgepack_imports(tmp_path):
    """An int8 model of batch 1 with a 5-D input was told to "convert with full int8 quantization and batch 1",
    which it already is: the message says what the file has and the image or vector inputs edgepack imports."""
    path = tmp_path / "five_d.tflite"
    path.write_bytes(_flat_input_model((1, 2, 2, 2, 8)))
    code, err, seconds = _cli("compile", "--model", path, "--target", "c-host", "-o", tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "input 'features' is int8 [1, 2, 2, 2, 8], not an image, a signal or a vector" in err and "(1, F)" in err, err
    assert "batch 1" not in err and "full int8" not in err, err
    assert not (tmp_path / "out").exists() and seconds < 30


@pytest.mark.parametrize("values, words", [
    ({"op 0 Outputs[0]": 32768}, "op 0 reads or writes tensor 32768"),  # exit 3 (struct.error) before
    ({"op 11 SoftmaxOptions Beta": 0.0}, "op 11 (SOFTMAX) has beta 0.0"),  # LiteRT's abort: exit -6 before
    ({"opcode 0 Version": 100}, "version '100'"),  # exit 1, "an edgepack exporter bug", before
])
def test_damaged_tflite_compile_exits_2_in_one_line(converter, values, words, tmp_path):
    path = tmp_path / "damaged.tflite"
    path.write_bytes(edited(converter, **values))
    code, err, seconds = _cli("compile", "--model", path, "--target", "c-host", "-o", tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert err.startswith(f"edgepack compile: error: --model {path}") and seconds < 30
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["damaged.tflite"]


def test_python_api_refuses_a_damaged_tflite_as_the_cli_does(converter, tmp_path):
    import edgepack

    path = tmp_path / "damaged.tflite"
    path.write_bytes(edited(converter, **{"tensor 2 Type": 7}))
    with pytest.raises(DataError, match=r"tensor 2 \('b0'\) has 32 bytes in buffer \d+ but its shape \[8\] of int16 "
                                        "needs 16"):
        edgepack.compile(str(path), "c-host", output=str(tmp_path / "api"))
    assert not (tmp_path / "api").exists()
