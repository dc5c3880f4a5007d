"""Helpers for tests that run the CLI as its own process, as a user would: the one runner, the one-line
stderr assertion, a folder snapshot, and the re-hash an attacker (or a careless script) does after an edit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgepack.artifact import write_manifest

SMALL = ["--alpha", "0.25", "--resolution", "32", "--eval-size", "16", "--calib-size", "16"]

# The CLI in a process that also says whether torch was imported: why a bad flag costs milliseconds.
TRACKED = ("import sys\nfrom edgepack.cli.main import main\ntry:\n    rc = main(sys.argv[1:])\n"
           "except SystemExit as e:\n    rc = e.code\nprint('torch imported' if 'torch' in sys.modules else 'no torch')\n"
           "sys.exit(rc)")


def edgepack(*argv, cwd=None, timeout=600, env=None):
    """Run the CLI as a process (no stdin; ``env`` added to this one's); (exit code, stdout, stderr, seconds)."""
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *map(str, argv)], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
                       env={**os.environ, "EDGEPACK_PROGRESS": "auto", **(env or {})})
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def assert_one_line(code, err, want_code, *words):
    assert code == want_code, err
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{err}"
    for w in words:
        assert w in lines[0], lines[0]


def tree(folder: Path) -> dict:
    """Every entry under ``folder``: the bytes of regular files, None for anything else (never opened)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() and not p.is_fifo()
                                               else None)
            for p in sorted(folder.rglob("*"))}


def resign(folder: Path) -> None:
    """Update the manifest's sha256s after an edit, as an attacker (or a careless script) would."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    manifest.pop("files")
    write_manifest(folder, manifest)
