"""Find an external tool on PATH, or say which Debian package provides it."""
from __future__ import annotations

import shutil

from edgepack.errors import ToolchainError


def find_tool(tool: str, package: str) -> str:
    """The full path of ``tool``; a ToolchainError naming the apt package when it is not installed."""
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} is not installed: on Debian/Ubuntu run `apt-get install {package}`")
    return path
