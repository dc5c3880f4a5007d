"""The golden images an artifact carries (golden_input.npy, golden_output.npy): the inputs compile ran and
the outputs it recorded, which bench replays. One loader, because a damaged or swapped .npy file is bad
input the user can fix by recompiling (exit 2), never a ValueError from deep inside numpy or a pickle run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.errors import ArtifactError
from edgepack.plan.plan import Plan

INPUT, OUTPUT = "golden_input.npy", "golden_output.npy"


def load_npy(path: Path, dtype=None, row_shape: tuple[int, ...] | None = None, mmap: bool = False) -> np.ndarray:
    """One of the artifact's .npy arrays, (N, *row_shape) of ``dtype`` with N >= 1 (None: any). Pickled
    objects are refused; a damaged header, a truncated body or another shape is an ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} is missing or not a regular file: recompile the artifact")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as e:  # ValueError (header), EOFError, OSError, UnpicklingError: a damaged file either way
        raise ArtifactError(f"cannot read {path} ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
                            "recompile the artifact")
    want = f"{np.dtype(dtype).name if dtype is not None else 'any type'} (N, {', '.join(map(str, row_shape or ('...',)))})"
    if (not isinstance(array, np.ndarray) or array.ndim < 1 or len(array) == 0
            or (dtype is not None and array.dtype != dtype)
            or (row_shape is not None and tuple(array.shape[1:]) != tuple(row_shape))):
        got = f"{array.dtype} {list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ArtifactError(f"{path} holds {got}, not the {want} its plan expects: recompile the artifact")
    return array


def load_golden(folder: Path, plan: Plan | None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, outputs) of the golden images: int8 rows of the plan's input and output shapes, or float32
    images and logits for an fp32 artifact (``plan`` None); as many outputs as inputs."""
    folder = Path(folder)
    if plan is not None:
        x = load_npy(folder / INPUT, np.int8, tuple(plan.input_shape))
        y = load_npy(folder / OUTPUT, np.int8, plan.output_row_shape)
    else:
        x, y = load_npy(folder / INPUT, np.float32), load_npy(folder / OUTPUT, np.float32)
        if x.ndim != 4 or y.ndim != 2:
            raise ArtifactError(f"{folder}/{INPUT} and {OUTPUT} hold {list(x.shape)} and {list(y.shape)}, not "
                                "(N, C, H, W) images and (N, classes) logits: recompile the artifact")
    if len(x) != len(y):
        raise ArtifactError(f"{folder}/{INPUT} holds {len(x)} images but {OUTPUT} {len(y)} outputs: recompile the artifact")
    return x, y
