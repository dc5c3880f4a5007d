import numpy as np
import pytest
from PIL import Image

import edgepack.data
from edgepack.data import load_dataset, load_digits_split
from edgepack.errors import DataError


def test_digits_split_is_fixed_and_stratified():
    a, b = load_digits_split("eval", 32), load_digits_split("eval", 32)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.images, b.images)
    assert a.images.shape == (360, 3, 32, 32) and a.images.dtype == np.float32
    assert set(np.bincount(a.labels)) <= {35, 36, 37}
    sizes = {s: len(load_digits_split(s, 32)) for s in ("train", "calibration", "eval")}
    assert sizes == {"train": 1257, "calibration": 180, "eval": 360}


def test_digits_made_without_package_data_land_in_EDGEPACK_CACHE(tmp_path, monkeypatch):
    monkeypatch.setattr(edgepack.data, "SHIPPED_DATA", tmp_path / "no-package-data")
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the old code wrote to ~/.cache/edgepack
    made = edgepack.data.digits_file()
    assert made == tmp_path / "cache" / "digits.npz" and made.is_file()
    assert not (tmp_path / "home").exists()
    with np.load(made) as z:
        assert len(z["labels"]) == 1797 and z["images"].shape == (1797, 8, 8)


def test_image_folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    d = load_dataset(tmp_path, "calibration", 32)
    assert d.images.shape == (4, 3, 32, 32) and d.labels.tolist() == [0, 0, 1, 1]


def test_npz_nhwc_and_nchw(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 32, 32, 3), np.uint8), labels=np.arange(3))
    np.savez(tmp_path / "b.npz", images=np.zeros((3, 3, 32, 32), np.uint8), labels=np.arange(3))
    assert load_dataset(tmp_path / "a.npz", "eval", 32).images.shape == (3, 3, 32, 32)
    assert load_dataset(tmp_path / "b.npz", "eval", 32).images.min() == -1.0


@pytest.mark.parametrize("images,match", [
    (np.zeros((0, 3, 32, 32), np.uint8), "no images"),
    (np.zeros((2, 3, 30, 30), np.uint8), "expected"),
    (np.zeros((2, 32, 32), np.uint8), "expected"),
])
def test_bad_npz(tmp_path, images, match):
    np.savez(tmp_path / "x.npz", images=images, labels=np.zeros(len(images)))
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "x.npz", "calibration", 32)


def test_empty_folder_and_missing(tmp_path):
    with pytest.raises(DataError, match="no PNG"):
        load_dataset(tmp_path, "calibration", 32)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", "calibration", 32)
