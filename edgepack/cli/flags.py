"""argparse types shared by the subcommands: a size is a positive integer, never a Python slice."""
from __future__ import annotations

import argparse
import math


def _integer(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def positive_int(text: str) -> int:
    value = _integer(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def check_output_file(path, flag: str) -> None:
    """Before any work: an output file flag must not name a folder, or a path under a file."""
    from pathlib import Path

    from edgepack.errors import OutputError

    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder: pass a file path")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {p}: {parent} is a file, not a folder: pass a file path under a folder")
            break


def write_output_file(path, text: str) -> None:
    """Write a report file checked by check_output_file, creating missing parent folders (as compile does)."""
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
