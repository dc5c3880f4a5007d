"""What edgepack writes into its cache folder (the digits split, TVM runtime libraries and runner, tuning
records) is renamed into place whole: two compiles at once (two users, two pytest-xdist workers) never read
half a file, and a program that has the old file loaded keeps it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgepack.devices.tools import copy_atomically, replace_atomically


def test_a_failed_cache_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path):
    dest = tmp_path / "cache" / "lib.so"
    dest.parent.mkdir()
    dest.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(dest, half_then_fail)
    assert dest.read_bytes() == b"old" and os.listdir(dest.parent) == ["lib.so"]


def test_a_replaced_cache_file_is_a_new_file_so_an_open_copy_still_reads_the_old_bytes(tmp_path):
    """shutil.copy2 onto a loaded .so rewrites it in place (a running runner would crash); a rename does not."""
    dest, new = tmp_path / "libtvm_runtime.so", tmp_path / "new.so"
    dest.write_bytes(b"A" * 4096)
    new.write_bytes(b"B" * 10)
    new.chmod(0o755)
    with open(dest, "rb") as loaded:
        copy_atomically(new, dest)
        assert loaded.read() == b"A" * 4096
    assert dest.read_bytes() == b"B" * 10 and dest.stat().st_mode & 0o777 == 0o755  # copy2 keeps the mode
    assert sorted(os.listdir(tmp_path)) == ["libtvm_runtime.so", "new.so"]


def test_two_processes_making_the_digits_cache_at_once_each_read_a_whole_file(tmp_path):
    """Both start with no cached split, as two first compiles on a fresh machine do."""
    script = ("import sys; from pathlib import Path; import numpy as np; from edgepack.data import make_digits_file\n"
              "for _ in range(3):\n"
              "    with np.load(make_digits_file(Path(sys.argv[1]))) as z: assert len(z['labels']) == 1797\n")
    dest = tmp_path / "cache" / "digits.npz"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(dest)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert os.listdir(dest.parent) == ["digits.npz"]  # no temporary file left behind
    with np.load(dest) as z:
        assert z["images"].shape == (1797, 8, 8)
