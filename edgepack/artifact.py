"""The artifact folder: files + manifest.json with the sha256 of every file.

Written into a temporary sibling folder and renamed into place, so a failed or interrupted
compile leaves nothing half-written; ``verify`` refuses a tampered or partial folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgepack.errors import ArtifactError, ConfigError

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output_dir(out: Path, overwrite: bool = True) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is a file: pass -o with a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ConfigError(f"output folder {out} exists and is not an edgepack artifact: choose an empty or new folder")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"the parent of output {out} is a file: pass -o with a folder path")


@contextlib.contextmanager
def atomic_folder(out: Path):
    """Yield a temporary folder; on success replace ``out`` with it, on failure delete it."""
    out = Path(out).absolute()
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(folder: Path, manifest: dict) -> dict:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {**manifest, "files": {f: {"sha256": sha256(folder / f), "bytes": (folder / f).stat().st_size} for f in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise ArtifactError(f"artifact {folder} does not exist: compile it with `edgepack compile -o {folder}`")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} has no {MANIFEST}: it is not a complete artifact, recompile it")
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is corrupt ({e}): recompile the artifact")


def verify(folder: Path) -> dict:
    """Check every file listed in the manifest exists with its sha256, and no file is unlisted."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed = manifest.get("files", {})
    problems = []
    for name, info in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256(path) != info["sha256"]:
            problems.append(f"{name} was modified (sha256 mismatch)")
    extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != MANIFEST and p.relative_to(folder).as_posix() not in listed)
    problems += [f"{name} is not in the manifest" for name in extra]
    if problems:
        raise ArtifactError(f"artifact {folder} failed verification: {'; '.join(problems)}: recompile it, do not edit artifacts")
    return manifest
