"""TensorFlow Lite Micro backend, for firmware teams that link TFLM: the artifact's model.tflite (already
verified bit-exact at compile, under LiteRT's reference kernels, or under TFLM's interpreter where the plan
takes TFLM's arithmetic: an imported FULLY_CONNECTED rounds twice in TFLM, once in LiteRT, see
edgepack.ops.fc.as_tflm) as a C array, the ops to register and the
tensor arena TFLM needs, computed as TFLM's allocator lays it out (arena.py). bench runs the same bytes in
TFLM's own interpreter (the ``tflite-micro`` package, interpreter.py) in the estimated arena.

``lower`` (lower.py) writes model_data.c/.h; ``Runner`` (runner.py) runs the same bytes for bench.
"""
from edgepack.backends.tflm.lower import lower
from edgepack.backends.tflm.runner import Runner

__all__ = ["lower", "Runner"]
