"""TensorFlow Lite Micro backend, for firmware teams that link TFLM: the artifact's model.tflite (already
verified bit-exact at compile under LiteRT's reference kernels) as a C array, and the tensor arena TFLM
needs, estimated by edgepack's planner for TFLM's layout. TFLM itself is not built here (it is in no
package registry); bench runs the same bytes with LiteRT's reference kernels, the kernels TFLM ports.

``lower`` (lower.py) writes model_data.c/.h and the arena estimate; ``Runner`` (runner.py) runs the
same bytes for bench.
"""
from edgepack.backends.tflm.lower import lower
from edgepack.backends.tflm.runner import Runner

__all__ = ["lower", "Runner"]
