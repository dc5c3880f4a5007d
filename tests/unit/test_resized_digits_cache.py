"""The bundled digits, resized once by torch and read back from the edgepack cache (data.resized_digits), are the
images torch's bilinear resize of the three-channel split gives, bit for bit, whether computed or cached; a warm
cache loads them without importing torch (what keeps torch off bench of a built-in artifact)."""
import hashlib
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
