"""In-memory model inputs for the Python API, in NNCF's shape: a numpy array or torch tensor of
inputs (N, C, H, W), or any iterable of them (a DataLoader, a list of batches, ``(input, label)``
pairs: the first element is the input). They are used exactly as given: no resizing, no scaling.

Without labelled eval data a compile has no accuracy figure; its fidelity figures (reference vs
ONNX Runtime and fp32, SQNR) are measured on the last ``HELD_OUT_SHARE`` of the calibration inputs,
which are then not used for calibration (``split_held_out``).
"""
from __future__ import annotations

import os

import numpy as np

from edgepack.data import Dataset
from edgepack.errors import DataError

HELD_OUT_SHARE = 0.2  # of the calibration inputs, kept for fidelity when no eval data is given
IN_MEMORY_SOURCE = "in-memory"


def is_in_memory(value) -> bool:
    """A path names a file or folder (the CLI's data); anything else is in-memory inputs."""
    return value is not None and not isinstance(value, (str, bytes, os.PathLike))


def _array(value) -> np.ndarray | None:
    """A numpy array for an array or tensor, None for anything else."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def _batch(value, what: str, single_ok: bool = True) -> np.ndarray:
    """One batch (B, C, H, W) or, from an iterable, one input (C, H, W), as float32 (B, C, H, W); for a model of
    vectors (nn.Linear first) a batch (B, F) or one input (F,), as (B, F)."""
    x = _array(value)
    if x is None:
        raise DataError(f"{what} holds a {type(value).__name__}: give numpy arrays or torch tensors of model inputs (N, C, H, W)")
    if x.ndim in (1, 3) and single_ok:
        x = x[None]
    if x.ndim not in (2, 4):
        raise DataError(f"{what} has shape {tuple(x.shape)}: give model inputs shaped (N, C, H, W), or (N, F) vectors")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{what} has dtype {x.dtype}: give float model inputs, preprocessed as the model expects")
    return x.astype(np.float32, copy=False)


def inputs_of(value, what: str) -> np.ndarray:
    """All inputs of ``value`` (array, tensor, or an iterable of them or of (input, label) pairs)."""
    if _array(value) is not None:
        batches = [_batch(value, what, single_ok=False)]
    else:
        try:
            items = iter(value)
        except TypeError:
            raise DataError(f"{what} is a {type(value).__name__}: give an array, a tensor, or an iterable of them "
                            "(a DataLoader, a list of batches)")
        batches = [_batch(item[0] if isinstance(item, (tuple, list)) else item, what) for item in items]
    if not batches or sum(len(b) for b in batches) == 0:
        raise DataError(f"{what} holds no inputs: give at least one (N, C, H, W) input")
    shapes = {tuple(b.shape[1:]) for b in batches}
    if len(shapes) > 1:
        raise DataError(f"{what} mixes input shapes {sorted(shapes)}: give inputs of one shape (C, H, W)")
    x = np.ascontiguousarray(np.concatenate(batches))
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what} holds {int(np.count_nonzero(~np.isfinite(x)))} NaN or infinite values: clean the inputs")
    return x


def labelled_of(value, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` or an iterable of (input batch, label batch) pairs -> (images, int64 labels)."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and _array(value[1]) is not None \
            and np.ndim(_array(value[1])) == 1 and not isinstance(value[0], (tuple, list)):
        images, labels = inputs_of(value[0], what), _array(value[1])
    else:
        try:
            pairs = list(value)
        except TypeError:
            raise DataError(f"{what} is a {type(value).__name__}: give (inputs, labels) or an iterable of (input, label) batches")
        if not all(isinstance(p, (tuple, list)) and len(p) >= 2 for p in pairs):
            raise DataError(f"{what} has no labels: give (inputs, labels), or leave it out (no accuracy figure)")
        images = inputs_of([p[0] for p in pairs], what)
        labels = np.concatenate([np.atleast_1d(_array(p[1]) if _array(p[1]) is not None else np.asarray(p[1]))
                                 for p in pairs])
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{what}: labels have shape {labels.shape} for {len(images)} inputs: give one integer label per input")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{what}: labels have dtype {labels.dtype}: give integer class indices")
    return images, labels.astype(np.int64)


def check_shape(images: np.ndarray, what: str, resolution, given_by: str = "", channels: int = 3):
    """The inputs' resolution R for (3, R, R) images; their (C, H, W) for any other map (a 49x10 spectrogram,
    one channel, a (1, L) signal), taken as they are; F for (N, F) vectors. A ``resolution`` given (``given_by``
    names where it came from: the option, or the other inputs) that differs is an error naming both."""
    if images.ndim == 2:
        return int(images.shape[1])
    _, c, h, w = (int(d) for d in images.shape)
    shape = h if (c, h) == (channels, w) else (c, h, w)
    if resolution is not None and shape != resolution:
        given = given_by or f"resolution={resolution} was given"
        raise DataError(f"{what} has {_size(shape)} inputs but {given}: give inputs of one shape "
                        f"(or pass resolution={h} with {h}x{h} inputs)" if isinstance(shape, int) else
                        f"{what} has {_size(shape)} inputs but {given}: give inputs of one shape")
    return shape


def _size(shape) -> str:
    """R x R for a square 3-channel input, C x H x W otherwise."""
    return f"{shape}x{shape}" if isinstance(shape, int) else "x".join(map(str, shape))


def split_held_out(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held out): the last HELD_OUT_SHARE of the inputs (at least one) is held out."""
    if len(images) < 2:
        raise DataError(f"calibration holds {len(images)} input: give at least 2 (the last {HELD_OUT_SHARE:.0%} "
                        "measure fidelity when no eval_data is given), or pass eval_data")
    held = max(1, int(round(len(images) * HELD_OUT_SHARE)))
    return images[:-held], images[-held:]


def datasets(calibration, eval_data, resolution: int | None,
             unlabelled_ok: bool = False) -> tuple[Dataset | None, Dataset | None, int | tuple | None]:
    """(calibration, eval, resolution: R, or (C, H, W) for another map, or F for vectors, see check_shape) for the
    API's in-memory arguments; None where a path or nothing was given (those are loaded from files as before).
    ``unlabelled_ok``: eval_data may be inputs alone (an imported .tflite, which has no calibration to hold out
    from: an autoencoder's vectors have no labels), measured for fidelity only."""
    cal = ev = None
    given_by = "" if resolution is None else f"resolution={resolution} was given"
    if is_in_memory(calibration):
        images = inputs_of(calibration, "calibration")
        resolution = check_shape(images, "calibration", resolution, given_by)
        given_by = given_by or f"calibration has {_size(resolution)} inputs"
        if eval_data is None:
            images, held = split_held_out(images)
            ev = Dataset(held, None, f"{IN_MEMORY_SOURCE} calibration, last {len(held)} inputs held out (unlabelled)")
        cal = Dataset(images, None, f"{IN_MEMORY_SOURCE} calibration")
    if is_in_memory(eval_data):
        alone = unlabelled_ok and _array(eval_data) is not None  # one array or tensor of inputs, no labels
        images, labels = (inputs_of(eval_data, "eval_data"), None) if alone else labelled_of(eval_data, "eval_data")
        resolution = check_shape(images, "eval_data", resolution, given_by)
        ev = Dataset(images, labels, f"{IN_MEMORY_SOURCE} eval_data")
    return cal, ev, resolution
