"""Issue 10, findings 8 and 9 (and `report -o`): artifacts are benched by any path, from any folder.

8: a relative artifact path (as the README writes it) works for every C device and for `report`.
9: eval data is recorded by content (sha256, a copy inside the artifact when small), so an artifact
   moved to another folder still benches, and other data is refused by name.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgepack
from edgepack import evaldata
from edgepack.artifact import sha256, verify
from edgepack.data import SPLITS, digits_file
from tests.conftest import run_cli

SMALL = ["--alpha", "0.25", "--resolution", "32"]
EVAL_IMAGES = 24


@pytest.fixture(scope="module")
def c_host(tmp_path_factory) -> Path:
    """A c-host artifact on the bundled digits; tests bench it as `ch` from its parent folder."""
    out = tmp_path_factory.mktemp("paths") / "ch"
    return edgepack.compile(target="c-host", alpha=0.25, resolution=32, eval_size=16, output=str(out))


def write_digits_npz(path: Path, order=slice(None)) -> Path:
    """Digits-like user data: the eval digits scaled to 32 x 32 (nearest), NHWC uint8, 0..255."""
    with np.load(digits_file()) as z:
        keep = z["split"] == SPLITS["eval"]
        images, labels = z["images"][keep][:EVAL_IMAGES], z["labels"][keep][:EVAL_IMAGES]
    big = np.kron(images, np.ones((1, 4, 4), np.uint8))
    np.savez(path, images=np.repeat(big[..., None], 3, axis=3)[order], labels=labels[order])
    return path


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- 8: relative artifact paths

@pytest.mark.slow
@pytest.mark.parametrize("device", [None, "qemu-aarch64"])
def test_bench_c_host_by_relative_path(c_host, capsys, monkeypatch, device):
    monkeypatch.chdir(c_host.parent)
    code, out, err = run_cli(capsys, "bench", "ch", "--count", "3", *(["--device", device] if device else []))
    assert code == 0, out + err
    assert "result: PASS" in out


@pytest.mark.slow
def test_library_runs_a_relative_binary_path(c_host, monkeypatch):
    """Fixed at the source too: the C runner gets the relative folder and runs the program from a temp folder."""
    monkeypatch.chdir(c_host.parent)
    for device in ("native", "qemu-aarch64"):
        assert edgepack.bench("ch", count=3, device=device)["passed"]


@pytest.mark.slow
def test_bench_cortex_m4_by_relative_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "compile", "--target", "cortex-m4", *SMALL, "--eval-size", "8",
                           "--calib-size", "16", "-o", "m4")
    assert code == 0, err
    code, out, err = run_cli(capsys, "bench", "m4", "--count", "1")
    assert code == 0, out + err
    assert "result: PASS" in out


@pytest.mark.slow
def test_report_by_relative_path(c_host, capsys, monkeypatch):
    monkeypatch.chdir(c_host.parent)
    code, out, err = run_cli(capsys, "report", "ch")
    assert code == 0, err
    assert (c_host.parent / "ch.report.html").is_file()
    assert "data-images-loaded" in (c_host.parent / "ch.report.html").read_text()


@pytest.mark.slow
def test_report_output_that_is_a_folder_is_refused(c_host, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pages").mkdir()
    code, _, err = run_cli(capsys, "report", str(c_host), "-o", "pages")
    assert code == 2
    assert "pages is a folder" in one_line(err)
    assert list((tmp_path / "pages").iterdir()) == []


@pytest.mark.slow
def test_report_output_under_a_missing_folder_is_created(c_host, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "report", str(c_host), "-o", "missing/dir/x.html")
    assert code == 0, err
    assert (tmp_path / "missing" / "dir" / "x.html").is_file()
    assert str(tmp_path / "missing" / "dir" / "x.html") in out


# ---------------------------------------------------------------- 9: eval data recorded by content

@pytest.mark.slow
def test_digits_eval_is_recorded_by_content(c_host):
    ev = verify(c_host)["eval"]
    assert ev["source"].startswith("digits:eval") and ev["file"] is None and len(ev["sha256"]) == 64
    assert "spec" not in ev


@pytest.mark.slow
def test_digits_artifact_benches_on_a_cpu_with_other_resize_kernels(tmp_path):
    """At resolution 96 torch's DEFAULT and AVX2 bilinear kernels round differently: the digits
    checksum covers the source pixels, so a bench on another CPU is not refused."""
    import subprocess
    import sys

    art = edgepack.compile(target="host", alpha=0.25, resolution=96, eval_size=16, calib_size=16, output=str(tmp_path / "h"))
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    proc = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "bench", str(art), "--count", "2"],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result: PASS" in proc.stdout


@pytest.mark.slow
def test_edited_eval_checksum_is_refused(c_host, capsys, tmp_path):
    art = shutil.copytree(c_host, tmp_path / "ch")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["eval"]["sha256"] = "0" * 64
    (art / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "bench", str(art), "--count", "1")
    assert code == 2
    assert "differs from what it was compiled with" in one_line(err)


@pytest.mark.slow
def test_artifact_with_own_eval_data_benches_anywhere(tmp_path, capsys, monkeypatch):
    """Compiled with a relative --eval-data, moved elsewhere, data deleted, benched from a third folder."""
    work, elsewhere, third = (tmp_path / d for d in ("work", "elsewhere", "third"))
    for d in (work, elsewhere, third):
        d.mkdir()
    monkeypatch.chdir(work)
    write_digits_npz(work / "my.npz")
    for name in ("a", "b"):
        code, _, err = run_cli(capsys, "compile", "--target", "c-host", *SMALL, "--eval-data", "my.npz", "-o", name)
        assert code == 0, err
    files = sorted(json.loads((work / "a" / "manifest.json").read_text())["files"]) + ["manifest.json"]
    assert "eval_data.npz" in files
    assert [sha256(work / "a" / f) for f in files] == [sha256(work / "b" / f) for f in files]  # still byte-identical

    manifest = verify(work / "a")
    ev = manifest["eval"]
    assert ev["file"] == "eval_data.npz" and ev["images"] == EVAL_IMAGES
    assert ev["source"] == f"npz:{work / 'my.npz'}"  # never relative to where compile ran
    assert manifest["quantization"]["calibration"]["source"].startswith("digits:")
    shutil.move(str(work / "a"), str(elsewhere / "moved"))
    (work / "my.npz").unlink()
    monkeypatch.chdir(third)
    code, out, err = run_cli(capsys, "bench", "../elsewhere/moved", "--count", "3", "--json", "r.json")
    assert code == 0, out + err
    report = json.loads((third / "r.json").read_text())
    assert report["passed"] and report["eval_images"] == EVAL_IMAGES
    assert report["accuracy"] == manifest["metrics"]["int8_accuracy"]  # the very images compile measured


@pytest.mark.slow
def test_eval_data_too_large_to_copy_needs_the_same_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaldata, "COPY_LIMIT_BYTES", 0)
    monkeypatch.chdir(tmp_path)
    write_digits_npz(tmp_path / "my.npz")
    write_digits_npz(tmp_path / "reversed.npz", order=slice(None, None, -1))
    code, _, err = run_cli(capsys, "compile", "--target", "c-host", *SMALL, "--eval-data", "my.npz", "-o", "art")
    assert code == 0, err
    assert verify(tmp_path / "art")["eval"]["file"] is None and not (tmp_path / "art" / "eval_data.npz").exists()

    code, _, err = run_cli(capsys, "bench", "art", "--count", "1")
    assert code == 2
    line = one_line(err)
    assert "too large to copy" in line and "--eval-data PATH" in line
    code, _, err = run_cli(capsys, "report", "art")
    assert code == 2 and "--eval-data PATH" in one_line(err)  # a flag report has too

    code, _, err = run_cli(capsys, "bench", "art", "--count", "1", "--eval-data", "reversed.npz")
    assert code == 2
    assert "--eval-data" in one_line(err) and "not the data this artifact was compiled with" in err
    code, _, err = run_cli(capsys, "bench", "art", "--count", "1", "--eval-data", str(tmp_path / "nothing.npz"))
    assert code == 2 and "nothing.npz" in one_line(err)

    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, out, err = run_cli(capsys, "bench", "../art", "--count", "3", "--eval-data", "../my.npz")
    assert code == 0, out + err
    assert f"on {EVAL_IMAGES} eval images" in out and "result: PASS" in out


def test_eval_copy_gives_the_images_back_bit_for_bit(tmp_path):
    """uint8 pixels are stored as such (4x smaller than float32); other pixels as the float32 images."""
    from edgepack.data import Dataset, normalise

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 6)
    integer = Dataset(normalise(rng.integers(0, 256, (6, 3, 32, 32))), labels, "npz:/data/int.npz")
    fractional = Dataset(normalise(rng.uniform(0, 255, (6, 3, 32, 32))), labels, "npz:/data/float.npz")
    for data, stored in ((integer, "pixels"), (fractional, "images")):
        folder = tmp_path / stored
        folder.mkdir()
        entry = evaldata.record(data, folder, classes=10)
        with np.load(folder / evaldata.EVAL_FILE) as z:
            assert sorted(z.files) == sorted([stored, "labels"])
        back = evaldata.read_copy(folder / entry["file"], entry["source"])
        assert np.array_equal(back.images, data.images) and np.array_equal(back.labels, labels)
        assert evaldata.content_sha256(back) == entry["sha256"]


@pytest.mark.slow
def test_write_report_refuses_a_folder_before_benching(c_host, tmp_path, monkeypatch):
    from edgepack.benchmark import report
    from edgepack.errors import OutputError

    monkeypatch.setattr(report, "artifact_report", lambda *a: pytest.fail("benched before checking -o"))
    with pytest.raises(OutputError, match="is a folder"):
        report.write_report(c_host, tmp_path)
