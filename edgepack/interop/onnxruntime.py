"""ONNX Runtime as a peer: it runs an ONNX file (the QDQ int8 one computes its own way, so it is compared,
never bit-exact). The compile's peer check and the onnxruntime backend's runner share this one session
setup; it sits here, below the front ends and the backends, because both use it.

onnxruntime is imported on first use (`edgepack --help` and a refused flag never load it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def session(path: Path, threads: int = 2):
    """A CPU session on ``path``: ``threads`` intra-op threads, one inter-op, warnings off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(s, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits of ``images`` through session ``s``, ``batch`` images a call."""
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def run_onnx(path: Path, images: np.ndarray, threads: int = 2, batch: int = 64) -> np.ndarray:
    return run_session(session(path, threads), images, batch)
