"""Labelled image data: the bundled digits split, an ImageFolder directory, or an .npz file.

Every source yields float32 NCHW tensors, 3 channels, square at the model's resolution, mapped from
pixels by ``(pixel / 255 - mean) / std`` per channel. The default, mean 0.5 and std 0.5 (pixels to
[-1, 1]), is how the shipped weights were trained; ``--mean``/``--std`` give another model's mapping.
In-memory inputs given to the Python API are used as given (edgepack.inputs).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.devices.tools import cache_dir, replace_atomically
from edgepack.errors import DataError
from edgepack.validate import check_regular_file, file_kind

SHIPPED_DATA = Path(__file__).resolve().parent / "calibration"  # package data: the digits split
DIGITS_FILE = "digits.npz"
SPLITS = {"train": 0, "calibration": 1, "eval": 2}
EVAL_SIZE, CALIBRATION_SIZE = 360, 180
DEFAULT_MEAN, DEFAULT_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
RESIZE_CACHE_VERSION = 1  # in the resized digits' cache key: bump it when resized_digits changes what it stores
RESIZE_CACHE_BYTES = 256 << 20  # the resized digits kept: the eval and calibration splits of two resolutions at 224
RESIZE_CACHE_NAME = re.compile(r"[0-9a-f]{32}\.npy")  # the files resized_digits writes, the only ones it prunes


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # float32 (N, 3, R, R), normalised
    labels: np.ndarray | None  # int64 (N,); None for unlabelled inputs (no accuracy figure)
    source: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def take(self, n: int | None) -> "Dataset":
        if n is None or n >= len(self):
            return self
        return Dataset(self.images[:n], None if self.labels is None else self.labels[:n], f"{self.source}[:{n}]")


def normalise(pixels: np.ndarray, mean=None, std=None) -> np.ndarray:
    """Pixels (any float or int dtype, 0..255) -> model inputs, ``(pixel / 255 - mean) / std`` per
    channel; the default (mean 0.5, std 0.5) maps them to [-1, 1], as the shipped weights expect."""
    mean, std = tuple(mean or DEFAULT_MEAN), tuple(std or DEFAULT_STD)
    if mean == DEFAULT_MEAN and std == DEFAULT_STD:
        return (pixels.astype(np.float32) / 255.0 - 0.5) / 0.5
    shape = (1, len(mean), 1, 1) if pixels.ndim == 4 else (len(mean), 1, 1)
    return ((pixels.astype(np.float32) / 255.0 - np.asarray(mean, np.float32).reshape(shape))
            / np.asarray(std, np.float32).reshape(shape)).astype(np.float32)


def make_digits_file(path: Path) -> Path:
    """Write the 8x8 digits with a fixed stratified train/calibration/eval split (sklearn, offline)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    index = np.arange(len(labels))
    rest, eval_idx = train_test_split(index, test_size=EVAL_SIZE, stratify=labels, random_state=0)
    train_idx, calib_idx = train_test_split(rest, test_size=CALIBRATION_SIZE, stratify=labels[rest], random_state=0)
    split = np.zeros(len(labels), np.uint8)
    split[calib_idx], split[eval_idx] = SPLITS["calibration"], SPLITS["eval"]

    def fill(tmp: Path) -> None:
        np.savez_compressed(tmp, images=images, labels=labels, split=split)
        tmp.chmod(0o644)

    return replace_atomically(path, fill)  # two first compiles at once: neither reads the other's half-written file


def digits_file() -> Path:
    """The shipped digits split; without package data, one made once in the edgepack cache folder
    (EDGEPACK_CACHE, like every other cached helper)."""
    shipped = SHIPPED_DATA / DIGITS_FILE
    if shipped.exists():
        return shipped
    cached = cache_dir() / DIGITS_FILE
    return cached if cached.exists() else make_digits_file(cached)


def resize(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """Bilinear resize of (N, C, H, W) pixels to (N, C, R, R); deterministic (torch on CPU)."""
    import torch
    import torch.nn.functional as F

    if pixels.shape[-1] == resolution and pixels.shape[-2] == resolution:
        return pixels.astype(np.float32)
    t = torch.from_numpy(pixels.astype(np.float32))
    return F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False).numpy()


def resized_digits(images: np.ndarray, resolution: int) -> np.ndarray:
    """(N, 1, R, R) float32: the (N, H, W) digits bilinearly resized by torch (``resize``) once, then read back from
    the edgepack cache bit for bit, keyed by R, the pixels' sha256 and torch's version: bench of a built-in
    artifact reloads its eval images without importing torch (over a second of its start)."""
    pixels = images[:, None]
    if images.shape[-2:] == (resolution, resolution):
        return pixels.astype(np.float32)
    key = hashlib.sha256(repr((RESIZE_CACHE_VERSION, _torch_version(), resolution, pixels.dtype.str,
                               pixels.shape)).encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()
    path = cache_dir() / "resized-digits" / f"{key[:32]}.npy"
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.dtype == np.float32 and cached.shape == (*pixels.shape[:2], resolution, resolution):
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used: pruned last
            return cached
    except (OSError, ValueError, EOFError):  # not there yet, or unreadable: made again
        pass
    resized = resize(pixels, resolution)

    def fill(tmp: Path) -> None:
        np.save(tmp, resized)
        tmp.chmod(0o644)

    with contextlib.suppress(OSError):  # a read-only cache folder costs the next call the torch import, nothing else
        replace_atomically(path, fill)  # two compiles at once: neither reads the other's half-written file
        prune_resize_cache(path.parent, keep=path)
    return resized


def prune_resize_cache(folder: Path, keep: Path) -> None:
    """Delete the least recently used resized digits until the folder's own files fit RESIZE_CACHE_BYTES (``keep``,
    the one just written, stays): one resolution's eval and calibration splits at 224 are about 100 MB. Files it
    did not name are left alone; a file another process deletes first is skipped."""
    entries = []
    for f in folder.iterdir():
        with contextlib.suppress(OSError):
            if RESIZE_CACHE_NAME.fullmatch(f.name) and f != keep:
                st = f.stat()
                entries.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in entries) + keep.stat().st_size
    for _, size, f in sorted(entries):
        if total <= RESIZE_CACHE_BYTES:
            break
        with contextlib.suppress(OSError):
            f.unlink()
        total -= size


def _torch_version() -> str:
    """torch's installed version, read without importing it (the resize it computes is what the cache keeps)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def digits_source(split: str, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 uint8 source pixels and int64 labels of a bundled digits split (labels < ``classes``)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    with np.load(digits_file()) as z:
        keep = (z["split"] == SPLITS[split]) & (z["labels"] < classes)
        return z["images"][keep], z["labels"][keep].astype(np.int64)


def load_digits_split(split: str, resolution: int, classes: int = 10, mean=None, std=None) -> Dataset:
    """The bundled digits data, resized to ``resolution``; ``classes`` < 10 keeps labels 0..classes-1."""
    images, labels = digits_source(split, classes)
    # the train split (QAT's, which imports torch anyway) is resized each time: at 224 it alone is 250 MB
    one_channel = resize(images[:, None], resolution) if split == "train" else resized_digits(images, resolution)
    pixels = np.repeat(one_channel, 3, axis=1)  # one channel resized: the three are equal
    return Dataset(normalise(pixels, mean, std), labels, f"digits:{split}")


SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # Pillow's modes for 16-bit grayscale (PNG, TIFF)


def read_image(f: Path, resolution: int) -> np.ndarray:
    """One image file as float32 (3, R, R) pixels in 0..255, whatever its bit depth: 16-bit grayscale is
    scaled by 255/65535 (Pillow's convert("RGB") would clip it to 255, a white image). Refuses a FIFO or
    device (opening one would wait forever) and an image over Pillow's decompression-bomb limit."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    check_regular_file(f, "image", DataError, "remove it from the class folder")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a warning line would break one-line stderr
            with Image.open(f) as im:
                if im.mode in SIXTEEN_BIT_MODES:
                    gray = np.asarray(im, np.float32)
                    if gray.min() < 0 or gray.max() > 65535:
                        raise DataError(f"image {f} has {im.mode} pixels outside 0..65535: save it as 8- or 16-bit PNG")
                    gray = Image.fromarray(gray * np.float32(255 / 65535))  # mode "F"
                    return np.repeat(np.asarray(gray.resize((resolution, resolution), Image.BILINEAR))[None], 3, axis=0)
                rgb = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"image {f} is too large to decode safely ({' '.join(str(e).split())}): resize it "
                        f"(the model reads {resolution}x{resolution})")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {f}: {e}; remove or re-save it as PNG/JPEG")
    return np.asarray(rgb, np.float32).transpose(2, 0, 1)


def load_image_folder(root: Path, resolution: int, mean=None, std=None) -> Dataset:
    """ImageFolder layout: one sub-folder per class (sorted names = label order), PNG/JPEG inside."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            images.append(read_image(f, resolution))
            labels.append(label)
    if not images:
        raise DataError(f"no PNG/JPEG images under {root}: use one sub-folder per class with images inside")
    return Dataset(normalise(np.stack(images), mean, std), np.asarray(labels, np.int64), f"folder:{root}")


def load_npz(path: Path, resolution: int, mean=None, std=None) -> Dataset:
    """An .npz with ``images`` (N,3,R,R) or (N,R,R,3), pixel range 0..255, and ``labels`` (N,); or, for a model
    that takes a vector of F = ``resolution`` values, ``images`` (N, F) used as they are (see _vectors)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], (z["labels"] if "labels" in z.files else None)
    except KeyError:
        raise DataError(f"{path} lacks 'images' or 'labels': save them with np.savez(path, images=..., labels=...)")
    except ValueError as e:
        if "pickle" not in str(e):
            raise DataError(f"{path} is not a readable .npz file ({' '.join(str(e).split())[:120]}): write it with numpy.savez")
        raise DataError(f"{path} is not an .npz file of plain arrays: write it with numpy.savez(path, images=..., labels=...)")
    except Exception as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}): write it with numpy.savez")
    if images.ndim == 2:
        return _vectors(path, images, labels, resolution)
    if isinstance(resolution, tuple):
        return _maps(path, images, labels, resolution)
    if labels is None:
        raise DataError(f"{path} lacks 'images' or 'labels': save them with np.savez(path, images=..., labels=...)")
    check_pixels(images, str(path))
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.transpose(0, 3, 1, 2)
    want = (3, resolution, resolution)
    if images.ndim != 4 or tuple(images.shape[1:]) != want:
        raise DataError(
            f"{path}: images have shape {tuple(images.shape)}, expected (N, 3, {resolution}, {resolution}) "
            f"or (N, {resolution}, {resolution}, 3): resize them to the model resolution or pass --resolution"
        )
    if len(images) == 0:
        raise DataError(f"{path} holds no images: give at least one calibration image")
    if np.ndim(labels) != 1 or len(labels) != len(images):
        raise DataError(f"{path}: labels have shape {np.shape(labels)} for {len(images)} images: give one integer label per image, shape (N,)")
    if not np.issubdtype(labels.dtype, np.integer):
        numeric = np.issubdtype(labels.dtype, np.floating) and bool(np.all(np.isfinite(labels)))
        if not numeric or not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{path}: labels are not whole numbers (dtype {labels.dtype}): store class indices 0..N-1 as integers")
    return Dataset(normalise(images, mean, std), labels.astype(np.int64), f"npz:{path}")


def npz_vector_length(spec) -> int | None:
    """F when ``spec`` is an .npz whose ``images`` are (N, F) vectors (the CLI's --calibration of a model of
    nn.Linear layers: its input is F values), else None (load_npz says what is wrong with a bad file)."""
    if spec is None or not str(spec).lower().endswith(".npz") or not Path(spec).is_file():
        return None
    try:
        with np.load(spec, allow_pickle=False) as z:
            shape = z["images"].shape if "images" in z.files else ()
    except Exception:  # noqa: BLE001 - unreadable: load_npz refuses it with the reason
        return None
    return int(shape[1]) if len(shape) == 2 else None


def npz_map_shape(spec) -> tuple[int, int, int] | None:
    """(C, H, W) when ``spec`` is an .npz whose ``images`` are (N, C, H, W) maps other than 3-channel square
    images (the CLI's --calibration of a user model on a 49x10 spectrogram or a one-channel map: its input is
    that shape, the inputs taken as they are), else None."""
    if spec is None or not str(spec).lower().endswith(".npz") or not Path(spec).is_file():
        return None
    try:
        with np.load(spec, allow_pickle=False) as z:
            shape = tuple(int(d) for d in z["images"].shape) if "images" in z.files else ()
    except Exception:  # noqa: BLE001 - unreadable: load_npz refuses it with the reason
        return None
    if len(shape) != 4 or (shape[1] == 3 and shape[2] == shape[3]) or (shape[3] == 3 and shape[1] == shape[2]):
        return None
    return shape[1:]


def _vectors(path: Path, vectors: np.ndarray, labels: np.ndarray | None, length: int) -> Dataset:
    """(N, F) model inputs, not pixels: taken as given (no mean/std mapping, the model's own float input
    values), labels optional (without them the model is measured for fidelity only)."""
    if not np.issubdtype(vectors.dtype, np.number) or vectors.dtype == bool or not np.isfinite(vectors).all():
        raise DataError(f"{path}: images of shape {vectors.shape} are not finite numbers: store the model's float inputs")
    if vectors.shape[1] != length or len(vectors) == 0:
        raise DataError(f"{path}: images have shape {tuple(vectors.shape)}, the model takes vectors of {length} values: "
                        f"store (N, {length}) inputs")
    if labels is not None and (np.ndim(labels) != 1 or len(labels) != len(vectors) or not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{path}: labels have shape {np.shape(labels)} ({labels.dtype}) for {len(vectors)} inputs: give "
                        "one integer label per input, shape (N,), or none")
    labels = None if labels is None else labels.astype(np.int64)
    return Dataset(vectors.astype(np.float32), labels, f"npz:{path}")


def _maps(path: Path, images: np.ndarray, labels: np.ndarray | None, shape: tuple[int, int, int]) -> Dataset:
    """(N, C, H, W) inputs of a model whose input is not a (3, R, R) image (a 49x10 spectrogram, a (1, L) signal,
    one channel), ``shape`` = (C, H, W): its own float inputs, taken as they are like vectors (no resize, no
    3 channels, no pixel mapping), labels optional."""
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"{path}: images have shape {tuple(images.shape)}, the model takes {tuple(shape)} inputs: "
                        f"store (N, {', '.join(map(str, shape))}) arrays of its float inputs")
    flat = _vectors(path, images.reshape(len(images), -1), labels, int(np.prod(shape)))
    return Dataset(flat.images.reshape((-1, *shape)), flat.labels, flat.source)


def check_pixels(images: np.ndarray, where: str) -> None:
    """Raw pixels must be finite numbers in 0..255; floats all within 0..1 are a scaling mistake."""
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
        raise DataError(f"{where}: images have dtype {images.dtype}: store pixels as uint8 (or numbers 0..255)")
    if images.size == 0:
        return
    if np.issubdtype(images.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(images)))
        if bad:
            raise DataError(f"{where}: {bad} pixel values are NaN or infinite: clean the images (pixels are 0..255)")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        raise DataError(f"{where}: pixel values span {low:g}..{high:g}, expected 0..255: store the raw pixels, not normalised ones")
    if np.issubdtype(images.dtype, np.floating) and high <= 1.0:
        raise DataError(f"{where}: pixel values lie within 0..1 but edgepack expects 0..255: multiply the images by 255")


def check_labels(data: "Dataset", classes: int) -> None:
    """Labels must be integers 0..classes-1, one per image: anything else makes accuracy meaningless."""
    labels = data.labels
    if labels is None:
        return
    if labels.ndim != 1 or len(labels) != len(data.images):
        raise DataError(f"{data.source}: labels have shape {labels.shape} for {len(data.images)} images: give one integer label per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{data.source}: labels span {int(labels.min())}..{int(labels.max())} but the model has {classes} "
                        f"classes (0..{classes - 1}): pass --classes to match the data, or fix the labels")


def load_dataset(spec: str | Path | None, split: str, resolution: int, classes: int = 10, mean=None, std=None) -> Dataset:
    """``None`` -> bundled digits split; a directory -> ImageFolder; a file -> .npz; pixels mapped
    to inputs with ``mean``/``std`` (see normalise)."""
    if spec is None or str(spec) == "digits":
        data = load_digits_split(split, resolution, classes, mean, std)
    else:
        path = Path(spec)
        if path.is_dir():
            folders = sorted(p.name for p in path.iterdir() if p.is_dir())
            if len(folders) > classes:
                raise DataError(f"{path} has {len(folders)} class folders but the model has {classes} classes: "
                                "give one sub-folder per class (sorted names = labels 0..N-1), or pass --classes")
            data = load_image_folder(path, resolution, mean, std)
        elif path.is_file():
            data = load_npz(path, resolution, mean, std)
        elif file_kind(path) is not None:  # a FIFO, socket or device: never opened (a FIFO would block)
            raise DataError(f"data {path} is {file_kind(path)}, not a regular file or a folder: pass an ImageFolder "
                            "directory or an .npz file")
        else:
            raise DataError(f"data {path} does not exist: pass an ImageFolder directory or an .npz file")
    if len(data) == 0:
        raise DataError(f"{data.source} is empty: give at least one image")
    check_labels(data, classes)
    return data
