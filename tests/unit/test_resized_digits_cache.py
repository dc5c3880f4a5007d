"""The bundled digits, resized once by torch and read back from the edgepack cache (data.resized_digits), are the
images torch's bilinear resize of the three-channel split gives, bit for bit, whether computed or cached; a warm
cache loads them without importing torch (what keeps torch off bench of a built-in artifact)."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from edgepack.data import digits_source, load_digits_split, normalise

RESOLUTIONS = (32, 48, 64, 96, 128, 160, 192, 224)  # every resolution the tests and docs compile at


def torch_path(split: str, resolution: int, classes: int) -> np.ndarray:
    """The images as load_digits_split made them before the cache: torch's resize of the 3-channel pixels."""
    import torch
    import torch.nn.functional as F

    pixels = np.repeat(digits_source(split, classes)[0][:, None], 3, axis=1).astype(np.float32)
    resized = F.interpolate(torch.from_numpy(pixels), size=(resolution, resolution), mode="bilinear", align_corners=False)
    return normalise(resized.numpy())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path))
    return tmp_path / "resized-digits"


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("split, classes", [("eval", 10), ("calibration", 10), ("eval", 4)])
def test_computed_and_cached_images_equal_the_torch_path(cache, split, resolution, classes):
    want = torch_path(split, resolution, classes)
    computed = load_digits_split(split, resolution, classes).images
    assert len(list(cache.glob("*.npy"))) == 1
    cached = load_digits_split(split, resolution, classes).images
    for got in (computed, cached):
        assert got.dtype == np.float32 and got.shape == want.shape and got.tobytes() == want.tobytes()


def test_a_warm_cache_loads_without_importing_torch(cache):
    want = load_digits_split("eval", 32).images  # warms the cache
    code = ("import sys, hashlib\nfrom edgepack.data import load_digits_split\n"
            "print(hashlib.sha256(load_digits_split('eval', 32).images.tobytes()).hexdigest(), 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [hashlib.sha256(want.tobytes()).hexdigest(), "False"]


def test_a_truncated_cache_file_is_made_again(cache):
    want = load_digits_split("eval", 32).images
    (path,) = cache.glob("*.npy")
    path.write_bytes(path.read_bytes()[:1000])  # as a full disk would leave a file written in place
    assert load_digits_split("eval", 32).images.tobytes() == want.tobytes()
    assert path.stat().st_size > 1000


def test_the_least_recently_used_entries_go_first_and_foreign_files_stay(cache, monkeypatch):
    from edgepack import data

    for resolution in (32, 48, 64):
        load_digits_split("eval", resolution)
    by_resolution = {np.load(f).shape[-1]: f for f in cache.glob("*.npy")}
    assert sorted(by_resolution) == [32, 48, 64]
    for age, resolution in enumerate((48, 32, 64)):  # 48 is the oldest, then 32
        os.utime(by_resolution[resolution], (1_000_000 + age, 1_000_000 + age))
    load_digits_split("eval", 48)  # a read makes 48 the most recently used
    foreign = cache / "notes.npy"
    foreign.write_bytes(b"not edgepack's")
    sizes = {r: f.stat().st_size for r, f in by_resolution.items()}
    monkeypatch.setattr(data, "RESIZE_CACHE_BYTES", 2 * sizes[48] + sizes[64])  # 40, 48, 64 fit; not 32 too
    load_digits_split("eval", 40)  # written, then 32 (least recently used) is deleted to fit the budget
    left = {np.load(f).shape[-1] for f in cache.glob("*.npy") if f != foreign}
    assert left == {40, 48, 64} and foreign.read_bytes() == b"not edgepack's"


def test_the_train_split_is_not_cached(cache):
    load_digits_split("train", 32)
    assert not cache.exists() or list(cache.glob("*.npy")) == []
