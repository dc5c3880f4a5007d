"""CLI edge cases a user can fix (exit 2, one stderr line, nothing left behind) or that are no error at all
(a closed stdout): huge values, FIFOs and devices where a file is expected, report files that cannot be
written, 16-bit and decompression-bomb PNGs, key prefixes that name no file, a full disk. Each CLI case
runs as its own process, as a user would run it.
"""
from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.cli import SMALL, TRACKED, assert_one_line, edgepack, tree


def tracked(*argv, timeout=60):
    """The CLI as a process that also reports whether torch was imported (refused before any work)."""
    p = subprocess.run([sys.executable, "-c", TRACKED, *map(str, argv)], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout.splitlines(), p.stderr


# ---------------------------------------------------------------- a closed stdout is not an error

@pytest.mark.parametrize("argv", [["targets"], ["info", "--alpha", "0.25", "--resolution", "32"]], ids=["targets", "info"])
def test_closed_stdout_ends_quietly(argv):
    """`edgepack targets | head -1`: the reader is gone before edgepack writes. Exit 141 as `yes | head -1`
    reports, nothing on stderr (no traceback, no "internal error")."""
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *argv], stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    finally:
        os.close(write)
    assert (p.returncode, p.stderr) == (141, "")


def test_closed_pipe_to_anything_else_is_still_reported(capsys, monkeypatch):
    """Only stdout's reader going away is quiet: a BrokenPipeError from a pipe to a device program is a bug
    to report, not something to hide."""
    from edgepack.cli import main, targets_cmd

    def broken(args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(targets_cmd, "run", broken)
    code = main.main(["targets"])
    assert code == 3 and "internal error (BrokenPipeError" in capsys.readouterr().err


# ---------------------------------------------------------------- values too large: refused before torch

HUGE = {
    "info classes 3e9": (["info", "--classes", "3000000000"], "classes 3000000000 must be an integer from 2 to 100,000"),
    "compile classes 3e9": (["compile", "--target", "host", "--classes", "3000000000", "--random-head"],
                            "classes 3000000000 must be an integer from 2 to 100,000"),
    "info resolution 65536": (["info", "--resolution", "65536"], "resolution 65536 needs about"),
    "bench count 1e400": (["bench", "{tmp}", "--count", "1e400"], "--count 1e400 is not a positive integer"),
    "bench timeout 1e300": (["bench", "{tmp}", "--timeout", "1e300"], "--timeout 1e300 is not a number of seconds in (0, 86400]"),
}


@pytest.mark.parametrize("case", HUGE)
def test_huge_values_are_one_line_before_torch(case, tmp_path):
    argv, words = HUGE[case]
    code, out, err = tracked(*[a.format(tmp=tmp_path) for a in argv])
    assert_one_line(code, err, 2, words)
    assert out[-1] == "no torch"


# ---------------------------------------------------------------- keygen prefixes

@pytest.mark.parametrize("prefix", ["", "keys/", ".", "keys/.."])
def test_keygen_refuses_a_prefix_that_names_no_file(prefix, tmp_path):
    """`keygen -o keys/` would write the hidden files keys/.key and keys/.pub."""
    (tmp_path / "keys").mkdir()
    before = tree(tmp_path)
    code, _, err, _ = edgepack("keygen", "-o", prefix, cwd=tmp_path)
    assert_one_line(code, err, 2, "names no file", "release.key")
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- report files checked before the work

@pytest.mark.parametrize("flag", ["--json", "--junit"])
@pytest.mark.parametrize("where", ["/proc", "a FIFO", "a device"])
def test_report_file_that_cannot_be_written_is_refused_before_bench(flag, where, tmp_path):
    """Checked before the artifact is even read: a long bench must not end in losing its report."""
    os.mkfifo(tmp_path / "fifo")
    path = {"/proc": f"/proc/edgepack{flag[1:]}", "a FIFO": tmp_path / "fifo", "a device": "/dev/null"}[where]
    words = {"/proc": "cannot write a file in /proc", "a FIFO": "is a FIFO, not a regular file",
             "a device": "is a character device, not a regular file"}[where]
    (tmp_path / "artifact").mkdir()
    before = tree(tmp_path)
    code, out, err = tracked("bench", tmp_path / "artifact", flag, path)
    assert_one_line(code, err, 2, flag, words)
    assert out[-1] == "no torch" and tree(tmp_path) == before


# ---------------------------------------------------------------- FIFOs where a file is expected

def test_checkpoint_fifo_is_named_as_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "ckpt.pt")
    code, out, err = tracked("compile", "--target", "host", *SMALL, "--checkpoint", tmp_path / "ckpt.pt",
                             "-o", tmp_path / "out")
    assert_one_line(code, err, 2, "--checkpoint", "is a FIFO, not a regular file")
    assert out[-1] == "no torch" and not (tmp_path / "out").exists()


def test_baseline_fifo_is_refused_not_hung(tmp_path):
    os.mkfifo(tmp_path / "baseline.json")
    (tmp_path / "artifact").mkdir()
    code, _, err, _ = edgepack("bench", tmp_path / "artifact", "--baseline", tmp_path / "baseline.json", timeout=60)
    assert_one_line(code, err, 2, "baseline", "is a FIFO, not a regular file")


def _image_folder(root: Path) -> Path:
    from PIL import Image

    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), 40 * c, np.uint8)).save(root / f"c{c}" / "a.png")
    return root


def test_calibration_folder_holding_a_fifo_image_is_refused_not_hung(tmp_path):
    root = _image_folder(tmp_path / "cal")
    os.mkfifo(root / "c0" / "pipe.png")
    code, _, err, seconds = edgepack("compile", "--target", "host", *SMALL, "--calibration", root,
                                     "-o", tmp_path / "out", timeout=120)
    assert_one_line(code, err, 2, "pipe.png is a FIFO, not a regular file")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- images: bit depth, decompression bombs

def test_16_bit_png_is_read_at_its_bit_depth(tmp_path):
    """Pillow's convert("RGB") clips 16-bit grayscale to 255: a ramp would become a white image."""
    from PIL import Image

    from edgepack.data import load_image_folder

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    for name, pixels in (("sixteen", ramp), ("eight", (ramp >> 8).astype(np.uint8))):
        (tmp_path / name / "c0").mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / name / "c0" / "a.png")
    assert Image.open(tmp_path / "sixteen" / "c0" / "a.png").mode.startswith("I")  # really 16-bit on disk
    sixteen = load_image_folder(tmp_path / "sixteen", 32, mean=(0, 0, 0), std=(1, 1, 1)).images * 255
    eight = load_image_folder(tmp_path / "eight", 32, mean=(0, 0, 0), std=(1, 1, 1)).images * 255
    assert np.abs(sixteen - eight).max() <= 1.0  # the same picture, within one 8-bit step
    assert sixteen.min() < 1 and sixteen.max() > 254 and np.mean(sixteen > 254) < 0.01


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height (Pillow reads the size from the header alone)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_decompression_bomb_png_is_one_line(tmp_path):
    root = _image_folder(tmp_path / "cal")
    (root / "c1" / "huge.png").write_bytes(_png_header(20000, 20000))
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "--calibration", root, "-o", tmp_path / "out")
    assert_one_line(code, err, 2, "huge.png is too large to decode safely", "resize it")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- a full disk

def test_full_disk_while_writing_a_report_is_one_line_and_leaves_no_half_file(tmp_path, capsys, monkeypatch):
    """Simulated in-process (os.replace raising ENOSPC after the text is written beside the file): the
    message names the path, exit 2, the old report is intact and no partial file remains."""
    from edgepack.cli import flags, main, targets_cmd

    report = tmp_path / "report.json"
    report.write_text("old")

    def fill_disk(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def run(args):
        flags.write_output_file(report, "x" * 100_000)

    monkeypatch.setattr(os, "replace", fill_disk)
    monkeypatch.setattr(targets_cmd, "run", run)
    code = main.main(["targets"])
    err = capsys.readouterr().err
    assert_one_line(code, err, 2, f"no space left on device (writing {report})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"] and report.read_text() == "old"


@pytest.fixture
def full_disk(tmp_path):
    """A 300 KB tmpfs (root only): the real thing, ENOSPC from the kernel."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the in-process ENOSPC test covers the mapping")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _fill(mount: Path, leave: int = 0) -> None:
    """Fill the disk with one file, then give ``leave`` bytes back."""
    with open(mount / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    if leave:
        os.truncate(mount / "filler", max(0, os.path.getsize(mount / "filler") - leave))


def test_keygen_on_a_full_disk_is_one_line(full_disk):
    _fill(full_disk)
    code, _, err, _ = edgepack("keygen", "-o", full_disk / "release")
    assert_one_line(code, err, 2, "no space left on device", str(full_disk / "release"))
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_bench_report_on_a_full_disk_is_refused_before_bench(full_disk, tmp_path):
    _fill(full_disk)
    (tmp_path / "artifact").mkdir()
    code, out, err = tracked("bench", tmp_path / "artifact", "--json", full_disk / "r.json")
    assert_one_line(code, err, 2, "--json", "no space left on device")
    assert out[-1] == "no torch" and sorted(p.name for p in full_disk.iterdir()) == ["filler"]


@pytest.mark.slow
def test_compile_on_a_full_disk_is_one_line(full_disk):
    _fill(full_disk, leave=64 * 1024)  # room for the first files, not for the artifact
    out = full_disk / "art"
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", out)
    assert_one_line(code, err, 2, "no space left on device", str(out))
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
