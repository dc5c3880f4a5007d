"""TILE in an int8 .tflite, from tiny files written here: Keras 3's UpSampling2D chain (RESHAPE to rank 5, TILE,
RESHAPE, TILE, RESHAPE, the converter's int8 TILE being opcode version 3) imports as a resize_nearest whose numpy
reference equals LiteRT's reference kernels, which are given the file with only the TILE opcode's version changed
(LiteRT 2.3's BUILTIN_REF registers TILE up to version 2: edgepack.interop.litert); a TILE that repeats no rows and
columns is refused in one line naming the op."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.errors import ConfigError
from edgepack.interop import litert
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_import import read_tflite
from edgepack.interop.tflite_writer import Graph, bias_scale, builtin_options
from edgepack.plan import reference
from edgepack.plan.plan import QParams
from tests.cli import assert_one_line, edgepack

RANDOM_INPUTS = 32
Q = QParams(0.05, -3)
CONVERTER_TILE_VERSION = 3  # TFLiteConverter 2.21 writes an int8 TILE as version 3


@builtin_options("TILE", CONVERTER_TILE_VERSION)
def _tile_options(b, tfl, o, vector):
    """edgepack never writes a TILE; these tests do, as the converter writes Keras 3's UpSampling2D."""
    tfl.TileOptionsStart(b)
    return tfl.BuiltinOptions.TileOptions, tfl.TileOptionsEnd(b)


def _reshape(g: Graph, x: int, shape: tuple[int, ...]) -> int:
    y = g.activation(f"reshaped{len(g.tensors)}", shape, Q)
    g.op("RESHAPE", [x, g.constant(f"shape{len(g.tensors)}", np.array(shape, np.int32))], [y], new_shape=list(shape))
    return y


def _tile(g: Graph, x: int, multiples: list[int]) -> int:
    shape = tuple(d * m for d, m in zip(g.tensors[x].shape, multiples))
    y = g.activation(f"tiled{len(g.tensors)}", shape, Q)
    g.op("TILE", [x, g.constant(f"multiples{len(g.tensors)}", np.array(multiples, np.int32))], [y])
    return y


def _model(tiles) -> bytes:
    """A (1, 4, 4, 2) map through ``tiles`` (a function of the graph and the map's tensor returning the tiled
    map's), flattened into one FULLY_CONNECTED to 5."""
    g, rng = Graph(), np.random.default_rng(3)
    x = g.input = g.activation("image", (1, 4, 4, 2), Q)
    tiled = tiles(g, x)
    flat = _reshape(g, tiled, (1, int(np.prod(g.tensors[tiled].shape))))
    features, w_scale = g.tensors[flat].shape[1], rng.uniform(0.002, 0.01, 5).astype(np.float32)
    weight = g.constant("w", rng.integers(-127, 128, (5, features)).astype(np.int8), w_scale)
    bias = g.constant("b", rng.integers(-500, 500, 5).astype(np.int32), bias_scale(Q, w_scale))
    g.output = g.activation("logits", (1, 5), QParams(0.1, 1))
    g.op("FULLY_CONNECTED", [flat, weight, bias], [g.output], activation="NONE")
    return _serialize(g)


def _upsampling2d(g: Graph, x: int) -> int:
    """UpSampling2D((2, 3)) as the converter writes it: rows repeated, then columns."""
    rows = _reshape(g, _tile(g, _reshape(g, x, (1, 4, 1, 4, 2)), [1, 1, 2, 1, 1]), (1, 8, 4, 1, 2))
    return _reshape(g, _tile(g, rows, [1, 1, 1, 3, 1]), (1, 8, 12, 2))


def _stacked(g: Graph, x: int) -> int:
    """A rank-5 RESHAPE, TILE, RESHAPE back that stacks two copies of the map (rows 0-3, 0-3): no upsample."""
    return _reshape(g, _tile(g, _reshape(g, x, (1, 1, 4, 4, 2)), [1, 2, 1, 1, 1]), (1, 8, 4, 2))


def _write(tmp_path, tiles) -> tuple:
    path = tmp_path / f"{tiles.__name__.strip('_')}.tflite"
    path.write_bytes(_model(tiles))
    return path


def test_the_upsampling_chain_imports_as_a_resize_bit_exact_with_litert_reference_kernels(tmp_path):
    path = _write(tmp_path, _upsampling2d)
    imported = read_tflite(path)
    resize = [layer for layer in imported.plan.layers if layer.kind == "resize_nearest"]
    assert [(layer.input_shape, layer.output_shape) for layer in resize] == [((2, 4, 4), (2, 8, 12))]
    x = np.random.default_rng(21).integers(-128, 128, (RANDOM_INPUTS, *imported.plan.input_shape), dtype=np.int8)
    want = litert.run_reference_tensor(path, x, imported.logits_tensor)
    got = reference.run(imported.plan, x)
    assert len(np.unique(got)) > 5 and np.array_equal(got, want.reshape(RANDOM_INPUTS, -1))


def test_litert_reference_kernels_get_the_file_with_only_its_tile_version_lowered(tmp_path):
    """One int32 changes (the TILE opcode's version, 3 -> 2); without that LiteRT's reference resolver refuses the
    file; a file without a TILE is given as it is, and the manifest's account names the TILE only when it changed."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = _model(_upsampling2d)
    lowered = litert.reference_model(data)
    changed = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(lowered, np.uint8))
    assert len(lowered) == len(data) and len(changed) == 1 and (data[changed[0]], lowered[changed[0]]) == (3, 2)
    with pytest.raises((ValueError, RuntimeError), match="TILE' version '3'"):
        Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF).allocate_tensors()
    Interpreter(model_content=lowered, experimental_op_resolver_type=OpResolverType.BUILTIN_REF).allocate_tensors()
    assert "tile" in litert.reference_resolver(data)
    plain = _model(lambda g, x: x)
    assert litert.reference_model(plain) == plain and "tile" not in litert.reference_resolver(plain)


def test_a_tile_outside_an_upsampling_chain_is_refused_in_one_line(tmp_path):
    path = _write(tmp_path, lambda g, x: _tile(g, x, [1, 2, 1, 1]))
    out = tmp_path / "refused"
    code, _, err, _ = edgepack("compile", "--model", path, "--target", "c-host", "-o", out)
    assert_one_line(code, err, 2, "edgepack compile: error:", "op 0 (TILE) tiles a tensor outside an UpSampling2D "
                    "pattern", "use UpSampling2D or Resizing")
    assert not out.exists()


def test_a_reshape_tile_chain_that_repeats_no_rows_and_columns_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"op 0 \(RESHAPE\) starts RESHAPE / TILE ops taking \[2, 4, 4\] \(C, H, W\) "
                                          r"to \[1, 8, 4, 2\] that repeat no rows and columns") as refused:
        read_tflite(_write(tmp_path, _stacked))
    assert "\n" not in str(refused.value)
