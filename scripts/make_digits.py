"""Regenerate edgepack/calibration/digits.npz (package data): scikit-learn's offline digits with a fixed stratified split."""
from edgepack.data import DIGITS_FILE, SHIPPED_DATA, make_digits_file

if __name__ == "__main__":
    print(make_digits_file(SHIPPED_DATA / DIGITS_FILE))
