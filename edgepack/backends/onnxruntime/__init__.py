"""Host backend: ONNX Runtime on this CPU runs the artifact's ONNX file (QDQ int8 or fp32).
``lower`` (lower.py) records the runtime; ``Runner`` (runner.py) runs the file for bench."""
from edgepack.backends.onnxruntime.lower import lower
from edgepack.backends.onnxruntime.runner import Runner

__all__ = ["lower", "Runner"]
