"""Paths at the CLI edge: made absolute once, so no library call depends on the working folder."""
from __future__ import annotations

from pathlib import Path


def absolute(path: str | None) -> str | None:
    """``path`` made absolute with ``..`` and symlinks resolved (None stays None)."""
    return None if path is None else str(Path(path).expanduser().resolve())
