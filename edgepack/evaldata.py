"""The eval data an artifact was measured on, recorded by content so the artifact benches anywhere.

Compile records, in the manifest's "eval" entry, what it measured: ``source`` (a description,
never a relative path), ``images`` (N), ``sha256`` (of the normalised float32 images and int64
labels, see ``content_sha256``; for the bundled digits, of their source pixels, see
``bundled_sha256``) and ``file``: the data copied into the artifact as
``eval_data.npz``, or None when it ships with edgepack (the bundled digits split) or is larger
than ``COPY_LIMIT_BYTES``. Bench reloads it from that copy, the digits split or ``--eval-data
PATH`` and refuses data whose sha256 differs: accuracy on other images would not be comparable.

``eval_data.npz`` holds ``labels`` (int64) and either ``pixels`` (uint8 N,3,R,R, 0..255: what
ImageFolder and integer .npz sources hold; ``normalise`` gives the images back bit for bit) or,
when the pixels are not integers, ``images`` (the normalised float32 arrays). It is written with
fixed zip timestamps, so the same inputs still give a byte-identical artifact. Unlabelled inputs
(the Python API's held-out calibration inputs) are stored without ``labels`` and recorded with
``"labelled": false``: bench then reports fidelity but no accuracy. Files are loaded with the
manifest's ``preprocessing`` mean/std (edgepack.data.normalise).

The bundled digits are recorded with ``"labelled": false`` too when a model is measured on them for
fidelity only (an imported .tflite, whose classes are not the digits): ``bundled_eval`` picks the
images from that flag and the model's class count, for compile and bench alike.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgepack.data import Dataset, digits_source, load_dataset, normalise
from edgepack.errors import ArtifactError, DataError
from edgepack.manifest_schema import EvalRecord, Manifest, Preprocessing
from edgepack.plan.plan import QParams, write_npz

EVAL_FILE = "eval_data.npz"
DIGIT_CLASSES = 10  # the bundled digits split
DEFAULT_RANDOM_INPUTS = 64  # random_inputs without a count
COPY_LIMIT_BYTES = 16 << 20  # uncompressed bytes of the stored arrays; larger data stays outside the artifact


def _digest(tag: bytes, pixels: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(tag)
    h.update(repr((pixels.dtype.str, pixels.shape, labels.shape)).encode())
    h.update(pixels.tobytes())
    h.update(labels.tobytes())
    return h.hexdigest()


def content_sha256(data: Dataset) -> str:
    """sha256 of what a bench measures: the images as the model sees them, and the labels."""
    labels = np.zeros(0) if data.labels is None else data.labels
    return _digest(b"edgepack-eval-v1", np.ascontiguousarray(data.images, dtype="<f4"),
                   np.ascontiguousarray(labels, dtype="<i8"))


def bundled_sha256(split: str, classes: int, n: int) -> str:
    """sha256 of the first ``n`` images of a bundled digits split, by their 8x8 uint8 source pixels:
    the bilinear resize after them rounds differently on CPUs with other SIMD kernels (torch's
    DEFAULT vs AVX2 paths differ at 96 and 224), which must not make an artifact unbenchable there."""
    pixels, labels = digits_source(split, classes)
    return _digest(b"edgepack-digits-v1", np.ascontiguousarray(pixels[:n], np.uint8), np.asarray(labels[:n], "<i8"))


def digits_classes(model_classes: int, labelled: bool) -> int:
    """Which digits a bundled eval set holds: labelled, the model's classes (labels 0..classes-1, as
    accuracy needs); unlabelled (fidelity only), all ten, whatever the model's class count."""
    return model_classes if labelled else DIGIT_CLASSES


def bundled_eval(resolution: int, model_classes: int, labelled: bool, n: int | None, mean=None, std=None) -> Dataset:
    """The first ``n`` bundled digits eval images a model of ``model_classes`` classes is measured on,
    without their labels unless ``labelled``: compile takes them and bench reloads them through this one
    function (see digits_classes), so both see the same images."""
    data = load_dataset(None, "eval", resolution, digits_classes(model_classes, labelled), mean, std).take(n)
    if labelled:
        return data
    return Dataset(data.images, None, f"{data.source} ({len(data)} digits images, unlabelled: fidelity only)")


def random_inputs(shape: tuple[int, ...], n: int | None, input_q: QParams, seed: int = 0) -> Dataset:
    """``n`` unlabelled inputs of ``shape`` for a model that takes no images (a vector of F values): seeded
    uniform int8 values, dequantized with ``input_q`` so they quantize back exactly and span the whole int8
    range. Stored in the artifact (``record`` copies them), so bench reloads the same ones."""
    n = DEFAULT_RANDOM_INPUTS if n is None else n
    q = np.random.default_rng(seed).integers(-128, 128, (n, *shape))
    images = (input_q.scale * (q - input_q.zero_point)).astype(np.float32)
    return Dataset(images, None, f"random int8 inputs {list(shape)} (seed {seed}, {n} inputs, unlabelled: fidelity only)")


def _bundled_digest(model_classes: int, labelled: bool, n: int) -> str:
    return bundled_sha256("eval", digits_classes(model_classes, labelled), n)


def quantization_mapping(input_q: QParams) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The --mean/--std that map pixels 0..255 onto the float range an int8 input quantization represents,
    [scale * (-128 - zp), scale * (127 - zp)]: an imported model's inputs then quantize to pixel - 128 and use
    the whole int8 range, where a fixed mapping (e.g. to [-1, 1]) would clip part of it or leave it unused."""
    std = 1.0 / (255.0 * float(input_q.scale))
    mean = (128.0 + int(input_q.zero_point)) / 255.0
    return (mean,) * 3, (std,) * 3


def stored_arrays(data: Dataset) -> dict[str, np.ndarray]:
    """The smallest arrays that give ``data`` back exactly: uint8 pixels when the images are
    normalised integer pixels, else the float32 images themselves."""
    images = np.asarray(data.images, np.float32)
    labels = {} if data.labels is None else {"labels": np.asarray(data.labels, np.int64)}
    pixels = np.clip(np.rint((images * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)
    if np.array_equal(normalise(pixels), images):
        return {"pixels": pixels, **labels}
    return {"images": images, **labels}


def is_bundled(source: str) -> bool:
    return source.startswith("digits:")


def record(data: Dataset, folder: Path, classes: int) -> dict:
    """The manifest's "eval" entry for ``data`` (a model of ``classes`` classes); copies it into
    ``folder`` when it is small and does not ship with edgepack."""
    if is_bundled(data.source):
        entry = {"source": data.source, "images": len(data), "sha256": _bundled_digest(classes, data.labelled, len(data)),
                 "file": None}
        return entry if data.labelled else {**entry, "labelled": False}
    arrays = stored_arrays(data)
    small = sum(a.nbytes for a in arrays.values()) <= COPY_LIMIT_BYTES
    if small:
        write_npz(Path(folder) / EVAL_FILE, arrays)
    entry = {"source": data.source, "images": len(data), "sha256": content_sha256(data), "file": EVAL_FILE if small else None}
    if not data.labelled:
        entry["labelled"] = False
    return entry


def read_copy(path: Path, source: str) -> Dataset:
    try:
        with np.load(path) as z:
            labels = z["labels"].astype(np.int64) if "labels" in z.files else None
            images = normalise(z["pixels"]) if "pixels" in z.files else z["images"]
    except Exception as e:
        raise ArtifactError(f"cannot read the eval data {path} ({e}): recompile the artifact")
    return Dataset(np.asarray(images, np.float32), labels, source)


def load(manifest: Manifest | dict, folder: Path, eval_data: str | Path | None = None) -> Dataset:
    """The eval images the artifact was compiled with, from ``eval_data`` if given (checked against
    the recorded sha256), else its own copy, else the bundled digits split. ``manifest``: a Manifest, or
    a dict with its model, eval and preprocessing sections (what debug still passes)."""
    if isinstance(manifest, Manifest):
        model, ev, mapping = manifest.model, manifest.eval, manifest.preprocessing
        resolution, classes, shape = model.resolution, model.classes, model.input_shape
    else:
        ev, mapping = EvalRecord.from_json(manifest["eval"]), Preprocessing.from_json(manifest.get("preprocessing"))
        resolution, classes = manifest["model"]["resolution"], manifest["model"]["classes"]
        shape = manifest["model"].get("input_shape", ())
    if len(shape) == 1:  # a model of F-value vectors: an --eval-data .npz holds (N, F) inputs
        resolution = shape[0]
    return _load_recorded(ev, resolution, classes, mapping, folder, eval_data)


def _load_recorded(ev: EvalRecord, resolution: int, classes: int, mapping: Preprocessing, folder: Path,
                   eval_data: str | Path | None) -> Dataset:
    n, mean, std = int(ev.images), mapping.mean, mapping.std
    what = f"{ev.source}, {n} images, sha256 {ev.sha256[:12]}"
    if eval_data is not None:
        data = load_dataset(Path(eval_data), "eval", resolution, classes, mean, std)
        if len(data) < n or content_sha256(data.take(n)) != ev.sha256:
            raise DataError(f"--eval-data {eval_data} is not the data this artifact was compiled with ({what}): "
                            "pass the same images and labels, in the same order, with --eval-data")
        return data.take(n)
    if ev.file:
        data = read_copy(Path(folder) / ev.file, ev.source)
        found = content_sha256(data)
    elif is_bundled(ev.source):
        data = bundled_eval(resolution, classes, ev.labelled, n, mean, std)
        found = _bundled_digest(classes, ev.labelled, n)
    else:
        raise DataError(f"artifact {folder} holds no copy of its eval data ({what}; too large to copy): "
                        "pass the same data with --eval-data PATH")
    if len(data) != n or found != ev.sha256:
        raise DataError(f"the eval data found for {folder} differs from what it was compiled with ({what}): "
                        "recompile the artifact with this edgepack")
    return data
