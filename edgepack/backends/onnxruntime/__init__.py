"""Host backend: ONNX Runtime on this CPU runs the artifact's ONNX file (QDQ int8 or fp32).
``lower`` (lower.py) records the runtime; ``Runner`` (runner.py) runs the file for bench."""
from edgepack.backends.onnxruntime.lower import lower
from edgepack.backends.onnxruntime.runner import Runner
# run_onnx, run_session and session stay importable here until frontends/torch.py, tests/test_reference.py and
# benchmarks/bench_tvm.py / bench_openvino.py read them from edgepack.interop.onnxruntime
from edgepack.interop.onnxruntime import run_onnx, run_session, session

__all__ = ["lower", "Runner", "run_onnx", "run_session", "session"]
