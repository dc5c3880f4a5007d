"""Find an external tool on PATH or say how to install it, and the one cache folder for what edgepack
builds or fetches once per machine (the QEMU plugin, the TVM runtime and runner, tuning records, the digits
split when the package data is missing)."""
from __future__ import annotations

import os
import shutil
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
