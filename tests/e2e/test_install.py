"""Installable like a library (issue 12 item 4): build the wheel, install it into a fresh venv (no
editable install, nothing downloaded: torch and the other dependencies come from the system site
packages), and run the CLI from a temporary folder: targets, a compile for a built-in target and for a
user board file (--targets DIR), and bench. Everything the CLI reads must be package data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--alpha", "0.25", "--resolution", "32", "--eval-size", "16", "--calib-size", "16"]


def build_leftovers() -> set[str]:
    return {p.name for p in REPO.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}


def run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv holding only the wheel built from a copy of the tree (the repo gets no build/ or egg-info)."""
    root, before = tmp_path_factory.mktemp("install"), build_leftovers()
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "edgepack", source / "edgepack", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEPACK_TARGETS", "VIRTUAL_ENV")}
    env["EDGEPACK_PROGRESS"] = "off"
    wheel = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", source],
                root, env)
    assert wheel.returncode == 0, wheel.stderr
    run([sys.executable, "-m", "venv", "--system-site-packages", root / "venv"], root, env).check_returncode()
    python = root / "venv" / "bin" / "python"
    install = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", *(root / "dist").glob("*.whl")], root, env)
    assert install.returncode == 0, install.stderr
    assert build_leftovers() == before  # the build left nothing in the repo
    return root / "venv", env


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_folder(venv, tmp_path):
    folder, env = venv
    edgepack = folder / "bin" / "edgepack"
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([folder / "bin" / "python", "-c", "import edgepack; print(edgepack.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(folder), where  # the wheel runs, not the editable /work/main

    listed = run([edgepack, "targets"], work, env)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert {"host", "rpi4", "c-host", "cortex-m4", "intel-npu", "tflm"} <= {line.split()[0] for line in listed.stdout.splitlines()}

    built = run([edgepack, "compile", "--target", "c-host", *SMALL, "-o", "art"], work, env)
    assert built.returncode == 0, built.stderr
    bench = run([edgepack, "bench", "art"], work, env)
    assert bench.returncode == 0 and "result: PASS" in bench.stdout, bench.stdout + bench.stderr

    # a board file of the user's own, beside a broken one that must not stop it
    boards = tmp_path / "boards"
    boards.mkdir()
    text = (REPO / "edgepack" / "targets" / "c-host.toml").read_text()
    (boards / "my-board.toml").write_text(text.replace('name = "c-host"', 'name = "my-board"'))
    (boards / "typo.toml").write_text('name = "typo"\ndescription = "x"\nbackend = "c"\n[compiler]\nkernel = "fast"\n')
    listed = run([edgepack, "targets", "--targets", boards], work, env)
    assert listed.returncode == 2 and len(listed.stderr.splitlines()) == 1 and str(boards / "typo.toml") in listed.stderr
    assert any(line.startswith("my-board ") and str(boards / "my-board.toml") in line for line in listed.stdout.splitlines())
    built = run([edgepack, "compile", "--target", "my-board", "--targets", boards, *SMALL, "-o", "mine"], work, env)
    assert built.returncode == 0, built.stderr
    bench = run([edgepack, "bench", "mine"], work, env)  # the manifest holds the target: no --targets needed
    assert bench.returncode == 0 and "target my-board" in bench.stdout and "result: PASS" in bench.stdout, bench.stdout
    # written where it ran, nothing else: the artifacts, and the results bench keeps beside them for `report`
    assert sorted(p.name for p in work.iterdir()) == ["art", "art.bench.json", "mine", "mine.bench.json"]
