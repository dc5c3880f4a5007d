"""bench's Runner for tflm artifacts: model.tflite through LiteRT's reference kernels on this host."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.interop import litert


class Runner(runner.Runner):
    """bench: the artifact's model.tflite through LiteRT's reference kernels (the kernels TFLM ports),
    on this host; int8 in, int8 out, so bench checks it bit for bit against the reference. No latency:
    reference kernels on a PC say nothing about a microcontroller's."""

    device = "litert-reference-kernels (host)"

    def __init__(self, folder: Path, manifest: dict):
        super().__init__(folder, manifest)
        self.model = (Path(folder) / manifest["backend_info"]["model_file"]).read_bytes()

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        return litert.run_reference(self.model, x).reshape(len(x), -1)
