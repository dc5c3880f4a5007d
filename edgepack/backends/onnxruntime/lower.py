"""lower(): nothing to build, ONNX Runtime runs the ONNX file the compile already wrote."""
from __future__ import annotations

from pathlib import Path

from edgepack.backends.lowered import Lowered


def lower(build, folder: Path) -> Lowered:
    """Nothing to lower: ONNX Runtime reads the ONNX file the compile already wrote."""
    import onnxruntime as ort

    return Lowered({"runtime": "onnxruntime", "onnxruntime_version": ort.__version__, "model_file": build.onnx_file})
