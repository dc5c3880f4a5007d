"""argparse types shared by the subcommands: a size is a positive integer, never a Python slice."""
from __future__ import annotations

import argparse
import math


def _number(text: str, whole: bool) -> float | None:
    """The finite number ``text`` names (a whole one if ``whole``), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or (whole and value != int(value)):
        return None
    return int(value) if whole else value


def _type(whole: bool, minimum: float, what: str):
    def parse(text: str):
        value = _number(text, whole)
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


positive_int = _type(True, 1, "a positive integer")
non_negative_int = _type(True, 0, "an integer >= 0")
non_negative_float = _type(False, 0, "a number >= 0")


def positive_float(text: str) -> float:
    value = _number(text, whole=False)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
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


def add_targets_flag(parser) -> None:
    """--targets DIR, for every command that takes a target (see edgepack.targets for the search order)."""
    parser.add_argument("--targets", metavar="DIR", action="append", help="a folder of your own target .toml files, "
                        "searched before EDGEPACK_TARGETS and the built-in targets (a file named like a built-in one "
                        "overrides it); repeatable")
