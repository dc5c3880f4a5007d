"""Host backend: ONNX Runtime on this CPU runs the artifact's ONNX file (QDQ int8 or fp32)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends import runner


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, images: np.ndarray, threads: int = 2, batch: int = 64) -> np.ndarray:
    s = session(path, threads)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def lower(build, folder: Path) -> dict:
    """Nothing to lower: ONNX Runtime reads the ONNX file the compile already wrote."""
    import onnxruntime as ort

    return {"runtime": "onnxruntime", "onnxruntime_version": ort.__version__, "model_file": build.onnx_file}


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
        return np.concatenate([self.session.run(None, {self.input_name: images[i:i + batch]})[0]
                               for i in range(0, len(images), batch)])

    def time_one(self, image: np.ndarray):
        feed = {self.input_name: image[None]}
        return lambda: self.session.run(None, feed)
