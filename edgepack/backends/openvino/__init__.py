"""OpenVINO backend (targets intel-cpu, intel-npu): the artifact's ONNX file -> a static-shape IR.

``lower`` (lower.py) converts and verifies; ``Runner`` (runner.py) runs the IR for bench; inference.py
holds what both run (load, infer, layer precisions); spec.py what the target file says.
"""
from edgepack.backends.openvino.inference import describe_layers, infer_all, layer_precisions, load, one_line
from edgepack.backends.openvino.lower import disagreements, lower
from edgepack.backends.openvino.runner import Runner

__all__ = ["lower", "Runner", "disagreements", "describe_layers", "infer_all", "layer_precisions", "load", "one_line"]
