"""bench's Runner for onnxruntime artifacts: the ONNX file in an ONNX Runtime session on this CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.interop.onnxruntime import run_session, session


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
