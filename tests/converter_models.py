"""Small int8 .tflite models made the way users get them (issue 21, item 4): Keras layers through TensorFlow's
TFLiteConverter, full-integer (Optimize.DEFAULT, a representative dataset from a fixed-seed generator, int8
input and output), one model per feature edgepack's reach is measured on, plus two positive controls it
already accepts.

TensorFlow is only imported in a child process (``build``): its import takes seconds, its own TFLite runtime
would share a process with LiteRT's, and its converter prints pages to stdout. The parent never imports it,
so the fast tier collects the tests that use these models without TensorFlow. Run as a script to build
them by hand: ``python3 tests/converter_models.py FOLDER [NAME ...]``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SEED = 21  # weights (keras.utils.set_random_seed) and the representative dataset: the same bytes every build
CALIBRATION_SAMPLES = 32

# name -> what the model exercises (the builders below, one per feature, carry the same names)
MODELS = {
    "mobilenet_like": "positive control: conv / depthwise / pointwise / global average pool / dense, 32x32x3",
    "residual_add": "positive control: a residual ADD block, 32x32x3",
    "kws_ds_cnn": "keyword spotting DS-CNN on 49x10x1, 10x4 stride-2 first conv",
    "fc_autoencoder": "640-128-8-128-640 fully connected autoencoder, vector input",
    "conv1d": "1-D conv net on a 30x1 signal",
    "depth_multiplier_8": "first depthwise layer with depth multiplier 8 on 1 channel",
    "resnet_maxpool": "ResNet-style stem with MaxPool and a residual block",
    "se_hardswish": "squeeze-and-excite with hard-swish as Keras writes it (x * relu6(x + 3) / 6)",
    "concat": "two branches joined by a channel concatenation",
    "nchw_transpose": "a channels-first (PyTorch-style) input transposed to NHWC first",
    "float_io": "the converter's default float32 interface: QUANTIZE first, DEQUANTIZE last",
    "fc_reshape_conv": "a decoder's dense layer RESHAPEd to a (4, 4, 8) map, a conv on it, flattened, dense",
    "vector_to_image": "a (1, 64) vector input RESHAPEd to an 8x8x1 image for a conv (an MNIST-style flat input)",
    "resize_nearest": "x2 nearest upsample between convs (Keras Resizing: RESIZE_NEAREST_NEIGHBOR)",
    "upsampling2d": "Keras 3 UpSampling2D((2, 3)) between convs (RESHAPE / TILE ops)",
    "zero_padding": "Keras ZeroPadding2D before a 'valid' stride-2 conv (PAD) and before a max pool, on 15x13",
    "softmax_head": "a dense classifier on a 32-value vector ending in SOFTMAX with spread logits (--keep-softmax)",
    "two_heads": "two outputs: a detector-style 1x1 conv map head and a dense classifier on one conv trunk, 16x16x3",
    "autoencoder_code": "two outputs: a 64-32-8-32-64 autoencoder's reconstruction and its code (read on by the decoder)",
}
FLOAT_INTERFACE = {"float_io"}  # converted without inference_input_type / inference_output_type = int8


def build(folder: Path, names=None) -> dict[str, Path]:
    """name -> folder/name.tflite for ``names`` (default: all), converting only the files not there yet."""
    folder = Path(folder)
    names = list(MODELS) if names is None else list(names)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown converter models {unknown}: choose from {list(MODELS)}")
    paths = {n: folder / f"{n}.tflite" for n in names}
    missing = [n for n, p in paths.items() if not p.exists()]
    if missing:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        r = subprocess.run([sys.executable, __file__, str(folder), *missing], capture_output=True, text=True,
                           timeout=900, env=env, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"converting {missing} failed:\n{r.stderr[-4000:]}")
    return paths


def structure(path: Path) -> tuple[tuple[int, ...], tuple[int, ...] | None, list[str]]:
    """(input shape, weight shape of the first convolution, op names in order) of a .tflite, read with the
    tflite schema package: what the converter made of the Keras layers, checked without TensorFlow."""
    import tflite
    names = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops, first_filter = [], None
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        ops.append(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        if first_filter is None and ops[-1] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            first_filter = tuple(int(d) for d in graph.Tensors(op.Inputs(1)).ShapeAsNumpy())
    inputs = tuple(int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())
    return inputs, first_filter, ops


# ---- run in the child process only: everything below imports TensorFlow inside the functions ----

def _conv_bn(layers, x, filters, kernel, strides=1, activation="relu"):
    """Conv2D + BatchNormalization + activation, as trained models are written (the converter folds the BN)."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation(activation)(x) if activation else x


def _classifier_head(layers, x, classes=10):
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(classes)(x)


def mobilenet_like(keras, layers):
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2, activation="relu6")
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = _conv_bn(layers, x, 16, 1, activation="relu6")
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)
    x = _conv_bn(layers, x, 24, 1, activation="relu6")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def residual_add(keras, layers):
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 16, 3, strides=2)
    y = _conv_bn(layers, x, 16, 3)
    y = _conv_bn(layers, y, 16, 3, activation=None)
    x = layers.Add()([x, y])
    return keras.Model(inp, _classifier_head(layers, x))


def kws_ds_cnn(keras, layers):
    """The MLPerf Tiny keyword-spotting DS-CNN's shape, narrowed: MFCC 49x10, a 10x4 stride-2 first conv."""
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = _conv_bn(layers, inp, 16, (10, 4), strides=2)
    for _ in range(2):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = _conv_bn(layers, x, 16, 1)
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = layers.Flatten()(x)
    return keras.Model(inp, layers.Dense(12)(x))


def fc_autoencoder(keras, layers):
    """The MLPerf Tiny anomaly-detection autoencoder's shape: 640 log-mel values in, 640 out, 8 in the middle."""
    inp = keras.Input((640,), batch_size=1)
    x = inp
    for units in (128, 8, 128):
        x = layers.Dense(units, activation="relu")(x)
    return keras.Model(inp, layers.Dense(640)(x))


def conv1d(keras, layers):
    inp = keras.Input((30, 1), batch_size=1)
    x = layers.Conv1D(8, 3, padding="same", activation="relu")(inp)
    x = layers.Conv1D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, layers.Dense(4)(x))


def depth_multiplier_8(keras, layers):
    inp = keras.Input((32, 32, 1), batch_size=1)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=8, activation="relu")(inp)
    x = _conv_bn(layers, x, 16, 1)
    return keras.Model(inp, _classifier_head(layers, x))


def resnet_maxpool(keras, layers):
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 16, 3, strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    y = _conv_bn(layers, x, 16, 3)
    y = _conv_bn(layers, y, 16, 3, activation=None)
    x = layers.Activation("relu")(layers.Add()([x, y]))
    return keras.Model(inp, _classifier_head(layers, x))


def _hard_sigmoid(layers, x):
    """keras.applications.MobileNetV3's hard_sigmoid: ReLU(6)(x + 3) * (1 / 6)."""
    return layers.Rescaling(1.0 / 6.0)(layers.ReLU(6.0)(layers.Rescaling(1.0, offset=3.0)(x)))


def se_hardswish(keras, layers):
    """keras.applications.MobileNetV3's hard_swish (x * hard_sigmoid(x)) and its squeeze-and-excite block."""
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 16, 3, strides=2, activation=None)
    x = layers.Multiply()([x, _hard_sigmoid(layers, x)])
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(8, 1, activation="relu")(s)
    s = _hard_sigmoid(layers, layers.Conv2D(16, 1)(s))
    x = layers.Multiply()([x, s])
    return keras.Model(inp, _classifier_head(layers, x))


def concat(keras, layers):
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2)
    x = layers.Concatenate()([_conv_bn(layers, x, 8, 1), _conv_bn(layers, x, 8, 3)])
    return keras.Model(inp, _classifier_head(layers, x))


def nchw_transpose(keras, layers):
    """What a PyTorch model exported channels-first looks like to the converter: (3, 32, 32) in, TRANSPOSE first."""
    inp = keras.Input((3, 32, 32), batch_size=1)
    x = layers.Permute((2, 3, 1))(inp)
    x = _conv_bn(layers, x, 8, 3, strides=2)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    return keras.Model(inp, _classifier_head(layers, x))


def float_io(keras, layers):
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    return keras.Model(inp, _classifier_head(layers, x))


def fc_reshape_conv(keras, layers):
    """A decoder's first steps: a dense layer's vector reshaped to a map, a conv on that map."""
    inp = keras.Input((16,), batch_size=1)
    x = layers.Reshape((4, 4, 8))(layers.Dense(4 * 4 * 8, activation="relu")(inp))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    return keras.Model(inp, layers.Dense(6)(layers.Flatten()(x)))


def resize_nearest(keras, layers):
    """A decoder's x2 upsample between convs as Keras' Resizing (nearest) writes it: RESIZE_NEAREST_NEIGHBOR with
    half_pixel_centers, tf.image.resize's index (Keras 3's UpSampling2D is the RESHAPE / TILE chain of upsampling2d)."""
    inp = keras.Input((12, 12, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2)
    x = layers.Resizing(12, 12, interpolation="nearest")(x)
    x = _conv_bn(layers, x, 8, 3)
    return keras.Model(inp, _classifier_head(layers, x))


def upsampling2d(keras, layers):
    """Keras 3's UpSampling2D((2, 3)) between convs: ops.repeat on H then W, which the converter writes as RESHAPE to
    rank 5, TILE, RESHAPE, TILE, RESHAPE back to the map."""
    inp = keras.Input((12, 12, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2)
    x = layers.UpSampling2D((2, 3))(x)
    x = _conv_bn(layers, x, 8, 3)
    return keras.Model(inp, _classifier_head(layers, x))


def zero_padding(keras, layers):
    """Explicit padding as Keras writes it: ZeroPadding2D then a 'valid' stride-2 conv (the converter's PAD, which
    the import folds into the conv), and ZeroPadding2D before a max pool (a pad layer of its own), on 15x13."""
    inp = keras.Input((15, 13, 3), batch_size=1)
    x = layers.ZeroPadding2D(((1, 2), (0, 1)))(inp)
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2, use_bias=False)(x)))
    x = layers.MaxPooling2D(2)(layers.ZeroPadding2D(((0, 1), (1, 0)))(x))
    x = _conv_bn(layers, x, 8, 3)
    return keras.Model(inp, _classifier_head(layers, x))


def vector_to_image(keras, layers):
    inp = keras.Input((64,), batch_size=1)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(layers.Reshape((8, 8, 1))(inp))
    return keras.Model(inp, _classifier_head(layers, x, classes=3))


def softmax_head(keras, layers):
    """Logits spread over several units (weights of stddev 1): the kept SOFTMAX's int8 probabilities vary."""
    inp = keras.Input((32,), batch_size=1)
    x = layers.Dense(32, activation="relu")(inp)
    logits = layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(x)
    return keras.Model(inp, layers.Softmax()(logits))


def two_heads(keras, layers):
    """A shared trunk, then a map head (box-like, 4 values per pixel) and a classifier head: two int8 outputs."""
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = _conv_bn(layers, inp, 8, 3, strides=2)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    boxes = layers.Conv2D(4, 1)(x)
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=x.shape[1:3])(x))
    return keras.Model(inp, [boxes, layers.Dense(6)(x)])


def autoencoder_code(keras, layers):
    """The code is an output and the decoder's input: an output tensor that a later layer reads."""
    inp = keras.Input((64,), batch_size=1)
    code = layers.Dense(8, activation="relu")(layers.Dense(32, activation="relu")(inp))
    x = layers.Dense(32, activation="relu")(code)
    return keras.Model(inp, [code, layers.Dense(64)(x)])


def _convert(model, float_interface: bool = False) -> bytes:
    """TFLiteConverter as its full-integer guide says: Optimize.DEFAULT, a representative dataset, int8 ops and
    int8 input and output (with ``float_interface``, the converter's default float32 input and output)."""
    import numpy as np
    import tensorflow as tf
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(SEED)
    samples = [rng.uniform(-1, 1, (1, *shape)).astype(np.float32) for _ in range(CALIBRATION_SAMPLES)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_interface:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _build_here(folder: Path, names) -> None:
    """The child process: each model from the same seed, converted and written."""
    import keras
    from keras import layers
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        keras.utils.set_random_seed(SEED)
        model = globals()[name](keras, layers)
        (folder / f"{name}.tflite").write_bytes(_convert(model, name in FLOAT_INTERFACE))


if __name__ == "__main__":
    _build_here(Path(sys.argv[1]), sys.argv[2:] or list(MODELS))
