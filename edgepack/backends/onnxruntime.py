"""Host backend: ONNX Runtime on this CPU runs the artifact's ONNX file (QDQ int8 or fp32)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.backends.lowered import Lowered
# run_onnx stays importable here until frontends/torch.py, compiler.py, tests/test_reference.py and
# benchmarks/bench_openvino.py read it from edgepack.interop.onnxruntime
from edgepack.interop.onnxruntime import run_onnx, run_session, session  # noqa: F401


def lower(build, folder: Path) -> Lowered:
    """Nothing to lower: ONNX Runtime reads the ONNX file the compile already wrote."""
    import onnxruntime as ort

    return Lowered({"runtime": "onnxruntime", "onnxruntime_version": ort.__version__, "model_file": build.onnx_file})


class Runner(runner.Runner):
    """Runs float images through ONNX Runtime (QDQ int8 computed its own way: no bit-exactness);
    ``time_one`` times batch-1 inference."""

    device = "host"

    def __init__(self, folder: Path, manifest: dict):
        super().__init__(folder, manifest)
        self.path = Path(folder) / manifest["backend_info"]["model_file"]
        self.session = session(self.path)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        return run_session(self.session, images, batch)

    def time_one(self, image: np.ndarray):
        feed = {self.input_name: image[None]}
        return lambda: self.session.run(None, feed)
