"""bench's Runner for tflm artifacts: model.tflite through TensorFlow Lite Micro's own interpreter."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.backends.tflm import interpreter
from edgepack.errors import DeviceError
from edgepack.interop import litert


class Runner(runner.Runner):
    """bench: the artifact's model.tflite through TFLM's interpreter (the ``tflite-micro`` package, its
    reference kernels, x86-64) in an arena of exactly edgepack's 64-bit estimate, so bench fails if TFLM
    refuses that arena; int8 in, int8 out, checked bit for bit against the reference, so a kernel of
    TFLM's that rounds otherwise fails bench. No latency: a PC says nothing about a microcontroller's."""

    device = "tflite-micro interpreter (host, reference kernels)"

    def __init__(self, folder: Path, manifest: dict):
        super().__init__(folder, manifest)
        self.model = (Path(folder) / manifest["backend_info"]["model_file"]).read_bytes()
        arena = manifest["backend_info"]["arena"]
        self.arena_bytes = arena.get("arena_bytes_64bit") or interpreter.minimum_arena(self.model)
        if not interpreter.accepts(self.model, self.arena_bytes):
            raise DeviceError(f"TensorFlow Lite Micro refused model.tflite in edgepack's 64-bit arena estimate, "
                              f"{self.arena_bytes} bytes: the estimate is short, an edgepack bug: please report it")
        self.interpreter = interpreter.load(self.model, self.arena_bytes)
        self.litert_differs: int | None = None

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        got = interpreter.run(self.interpreter, x, interpreter.output_count(self.model))
        litert_out = litert.run_reference(self.model, x).reshape(len(x), -1)
        self.litert_differs = int((got != litert_out).sum())  # TFLM's kernels against LiteRT's, same bytes
        return got

    def details(self) -> dict:
        """TFLM's own minimum arena next to the estimate it ran in, and where TFLM and LiteRT's reference
        kernels disagree on the last inputs (an artifact in TFLM's arithmetic, e.g. an imported FULLY_CONNECTED,
        differs from LiteRT by design: the count stays visible)."""
        minimum = interpreter.minimum_arena(self.model, start=self.arena_bytes)
        summary = (f"TFLM ran in edgepack's 64-bit arena estimate, {self.arena_bytes} bytes (TFLM's minimum: {minimum}, "
                   f"estimate/minimum {self.arena_bytes / minimum:.4f}); TFLM vs LiteRT's reference kernels on the "
                   f"eval inputs: {self.litert_differs} values differ")
        return {"summary": summary,"tflm_arena_bytes_run_in": self.arena_bytes, "tflm_minimum_arena_bytes_64bit": minimum,
                "arena_estimate_over_minimum": round(self.arena_bytes / minimum, 4),
                "tflm_vs_litert_reference_values_differing": self.litert_differs}
