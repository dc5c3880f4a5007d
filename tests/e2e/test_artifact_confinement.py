"""An artifact is confined to its folder: what its manifest names, verify and bench read or run only
inside it, whatever a hand-edited (and re-hashed) manifest says; a compile never writes into, over or
around another artifact or its own inputs; nothing edgepack must open can block it (FIFOs).

Each CLI case runs as its own process and checks the exit code, the whole stderr (one line), the time,
and that nothing outside ran or changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from edgepack.artifact import write_manifest
from tests.cli import SMALL, assert_one_line as one_line, edgepack, tree as snapshot


@pytest.fixture(scope="module")
def c_artifact(small_artifacts):
    return small_artifacts("c-host")


@pytest.fixture
def evil(tmp_path):
    """A program outside every artifact that records whether anything ran it."""
    marker = tmp_path / "ran"
    script = tmp_path / "outside" / "evil.sh"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return script, marker


def tampered(src: Path, dst: Path, edit) -> Path:
    """A copy of ``src`` whose manifest ``edit`` changed, re-hashed as an attacker would (verify's sha256s pass)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.pop("files")
    edit(dst, manifest)
    write_manifest(dst, manifest)
    return dst


# ---------------------------------------------------------------- what a manifest names stays inside

NAMED_OUTSIDE = {
    "binary by absolute path": lambda m, evil: m["backend_info"]["binaries"].__setitem__("native", str(evil)),
    "binary by ..": lambda m, evil: m["backend_info"]["binaries"].__setitem__("native", "../outside/evil.sh"),
    "emulator by path": lambda m, evil: m["target"]["run"].__setitem__("cross_emulator", str(evil)),
    "emulator option loading a plugin": lambda m, evil: m["target"]["run"].update(
        emulator_args=["-plugin", str(evil)]),
    "golden output outside": lambda m, evil: m["golden"].__setitem__("output", "/etc/passwd"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", NAMED_OUTSIDE)
def test_manifest_naming_anything_outside_is_refused_before_it_runs(case, c_artifact, tmp_path, evil):
    script, marker = evil
    art = tampered(c_artifact, tmp_path / "art", lambda d, m: NAMED_OUTSIDE[case](m, script))
    before = snapshot(tmp_path / "art")
    for command in (["verify", art], ["bench", art, "--eval-size", "1", "--count", "1"]):
        code, _, err, seconds = edgepack(*command)
        one_line(code, err, 2, "manifest.json", "recompile")
        assert seconds < 60
    assert not marker.exists(), "bench ran a program the manifest named outside the artifact"
    assert snapshot(art) == before


@pytest.mark.slow
def test_file_entry_outside_the_folder_with_the_right_sha256_is_refused(c_artifact, tmp_path):
    art = tampered(c_artifact, tmp_path / "art", lambda d, m: None)
    (tmp_path / "outside.bin").write_bytes(b"outside")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["../outside.bin"] = {"sha256": hashlib.sha256(b"outside").hexdigest(), "bytes": 7}
    (art / "manifest.json").write_text(json.dumps(manifest))
    code, _, err, _ = edgepack("verify", art)
    one_line(code, err, 2, "'../outside.bin'", "leaves the artifact folder")


@pytest.mark.slow
@pytest.mark.parametrize("link", ["file", "folder"])
def test_symlink_inside_an_artifact_is_refused_and_never_followed(link, c_artifact, tmp_path, evil):
    script, marker = evil
    art = tmp_path / "art"
    shutil.copytree(c_artifact, art)
    if link == "file":  # the device binary replaced by a link to a program outside, same name, so the manifest is untouched
        (art / "bin" / "edgepack_run").unlink()
        (art / "bin" / "edgepack_run").symlink_to(script)
    else:
        shutil.rmtree(art / "bin")
        (art / "bin").symlink_to(script.parent)
    for command in (["verify", art], ["bench", art, "--eval-size", "1", "--count", "1"]):
        code, _, err, _ = edgepack(*command)
        one_line(code, err, 2, "symbolic link" if link == "file" else "bin")
    assert not marker.exists()


@pytest.mark.slow
def test_host_model_file_outside_is_not_loaded(tmp_path):
    src = tmp_path / "host"
    code, _, err, _ = edgepack("compile", "--target", "host", *SMALL, "-o", src, timeout=600)
    assert code == 0, err
    art = tampered(src, tmp_path / "art", lambda d, m: m["backend_info"].__setitem__("model_file", str(src / "qdq.onnx")))
    code, _, err, _ = edgepack("bench", art, "--eval-size", "1", "--count", "1")
    one_line(code, err, 2, "backend_info.model_file", "not a file listed")


# ---------------------------------------------------------------- a manifest is parsed against its schema

SCHEMA_CASES = {
    "a list": ("[1, 2]", "a JSON list"),
    "a string": ('"artifact"', "a JSON str"),
    "files as a list": (lambda m: {**m, "files": ["qdq.onnx"]}, "files is"),
    "resolution 'big'": (lambda m: {**m, "model": {**m["model"], "resolution": "big"}}, "model.resolution is 'big'"),
    "an unknown key": (lambda m: {**m, "surprise": 1}, "'surprise' was unexpected"),
    "no golden": (lambda m: {k: v for k, v in m.items() if k != "golden"}, "'golden'"),
    "a bad sha256": (lambda m: {**m, "files": {k: {**v, "sha256": "x"} for k, v in m["files"].items()}}, "sha256"),
    "unknown backend": (lambda m: {**m, "backend": "evil"}, "backend 'evil'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_malformed_manifest_is_one_line_for_verify_and_bench(case, c_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(c_artifact, art)
    edit, words = SCHEMA_CASES[case]
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(edit if isinstance(edit, str) else json.dumps(edit(manifest)))
    for command in (["verify", art], ["bench", art, "--eval-size", "1"]):
        code, _, err, _ = edgepack(*command)
        one_line(code, err, 2, "manifest.json", words)


# ---------------------------------------------------------------- FIFOs never block

@pytest.mark.slow
@pytest.mark.parametrize("name", ["manifest.json", "manifest.sig", "plan.json"])
def test_fifo_in_an_artifact_is_refused_without_opening_it(name, c_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(c_artifact, art)
    if (art / name).exists():
        (art / name).unlink()
    os.mkfifo(art / name)
    code, _, err, seconds = edgepack("verify", art, timeout=30)
    one_line(code, err, 2, name, "FIFO")
    assert seconds < 20
    code, _, err, seconds = edgepack("compile", "--target", "c-host", *SMALL, "-o", art, timeout=30)
    one_line(code, err, 2, str(art))
    assert seconds < 20 and (art / name).exists()


# ---------------------------------------------------------------- compile never writes into, over or around

@pytest.mark.slow
def test_compile_into_a_folder_inside_an_artifact_is_refused(c_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(c_artifact, art)
    before = snapshot(art)
    code, _, err, seconds = edgepack("compile", "--target", "c-host", *SMALL, "-o", art / "sub")
    one_line(code, err, 2, "inside the edgepack artifact", "choose a -o outside it")
    assert seconds < 10 and snapshot(art) == before
    assert edgepack("verify", art)[0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_compile_over_a_folder_holding_an_artifact_is_refused(force, c_artifact, tmp_path):
    holder = tmp_path / "holder"
    shutil.copytree(c_artifact, holder / "inner")
    before = snapshot(holder)
    code, _, err, _ = edgepack("compile", "--target", "c-host", *SMALL, "-o", holder, *(["--force"] if force else []))
    one_line(code, err, 2, "holds the edgepack artifact", "inner")
    assert snapshot(holder) == before


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--calibration", "--eval-data"])
def test_compile_over_a_folder_holding_its_own_input_is_refused(flag, c_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(c_artifact, art)
    before = snapshot(art)
    for given in (art, art / "plan.npz"):  # the output folder itself, or a file inside it
        code, _, err, _ = edgepack("compile", "--target", "c-host", *SMALL, flag, given, "-o", art, "--force")
        one_line(code, err, 2, f"holds the {flag} input")
    assert snapshot(art) == before


# ---------------------------------------------------------------- keys: both or neither

def test_keygen_on_a_full_disk_leaves_no_half_key_pair(tmp_path, monkeypatch):
    import errno

    from edgepack import signing

    real_fdopen = os.fdopen
    calls = []

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *a, **k):  # the second file (the public key) hits the full disk
        calls.append(fd)
        f = real_fdopen(fd, mode, *a, **k)
        return FullDisk(f) if len(calls) == 2 else f

    monkeypatch.setattr(signing.os, "fdopen", fdopen)
    with pytest.raises(OSError):
        signing.generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------- debug runs no code a manifest names

@pytest.mark.slow
def test_debug_never_imports_model_code_the_manifest_names(tmp_path, evil):
    from tests.e2e.test_user_model import NET_SOURCE

    _, marker = evil
    import numpy as np

    (tmp_path / "net.py").write_text(NET_SOURCE)
    pixels = np.random.default_rng(2).integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    np.savez(tmp_path / "calib.npz", images=pixels, labels=np.arange(20) % 7)
    code, _, err, _ = edgepack("compile", "--target", "host", "--model", f"{tmp_path / 'net.py'}:SevenClassNet",
                               "--resolution", "32", "--calibration", tmp_path / "calib.npz", "--mean", "0", "--std", "1",
                               "-o", tmp_path / "src", timeout=600)
    assert code == 0, err
    smuggled = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + NET_SOURCE
    (tmp_path / "evil.py").write_text(smuggled)

    def point_at_evil(d, m):  # the code rides inside the artifact, with a record that matches it
        (d / "evil.py").write_text(smuggled)
        m["model"]["module"] = {"spec": f"{d / 'evil.py'}:SevenClassNet", "file": str(d / "evil.py"),
                                "sha256": hashlib.sha256(smuggled.encode()).hexdigest()}

    art = tampered(tmp_path / "src", tmp_path / "art", point_at_evil)
    code, _, err, _ = edgepack("debug", art)
    one_line(code, err, 2, "does not run code an artifact names", "--model")
    code, _, err, _ = edgepack("debug", art, "--model", f"{tmp_path / 'net.py'}:SevenClassNet")
    one_line(code, err, 2, "is not the code")
    code, _, err, _ = edgepack("report", art, "-o", tmp_path / "r.html")
    assert code == 0, err
    assert not marker.exists(), "debug or report imported code the artifact named"
