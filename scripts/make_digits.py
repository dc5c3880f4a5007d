"""Regenerate calibration/digits.npz: scikit-learn's offline digits with a fixed stratified split."""
from edgepack.data import DIGITS_FILE, REPO_CALIBRATION, make_digits_file

if __name__ == "__main__":
    print(make_digits_file(REPO_CALIBRATION / DIGITS_FILE))
