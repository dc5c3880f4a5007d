"""Find an external tool on PATH or say how to install it, and the one cache folder for what edgepack
builds or fetches once per machine (the QEMU plugin, the TVM runtime and runner, tuning records, the digits
split when the package data is missing)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgepack.errors import ToolchainError

# How the missing-tool message says to install ``package``: a target file's tools are named for Debian/Ubuntu,
# the tools scripts/setup.sh installs point there too. Tests pin both wordings.
DEBIAN = "on Debian/Ubuntu run `apt-get install {package}`"
SETUP = "apt-get install -y {package} (or run scripts/setup.sh)"


def require(tool: str, package: str, how: str = DEBIAN) -> str:
    """The full path of ``tool``; a one-line ToolchainError saying how to install ``package`` when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} is not installed: {how.format(package=package)}")
    return path


def cache_dir() -> Path:
    """Where built helpers live: EDGEPACK_CACHE, else ~/.cache/edgepack. Read at each call, so a test or a
    user setting EDGEPACK_CACHE after import is honoured."""
    return Path(os.environ.get("EDGEPACK_CACHE", Path.home() / ".cache" / "edgepack"))


def replace_atomically(dest: Path, fill) -> Path:
    """``fill(tmp)`` writes the file under a temporary name beside ``dest``, which is then renamed onto it:
    a concurrent compile (two users, two test workers) sees the old file or the whole new one, never half of
    one, and a program that has the old file loaded keeps its copy (a new inode, not a rewrite in place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    try:
        fill(Path(tmp))
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def copy_atomically(source: Path, dest: Path) -> Path:
    """shutil.copy2 (bytes and mode) by way of replace_atomically."""
    return replace_atomically(dest, lambda tmp: shutil.copy2(source, tmp))
