"""argparse types shared by the subcommands (each one check of edgepack.validate: a size is a positive integer,
never a Python slice), and the report files they write."""
from __future__ import annotations

import argparse

from edgepack import validate
from edgepack.errors import ConfigError, OutputError


class FlagType:
    """An argparse type backed by one edgepack.validate check, so a bad flag gets the very message the Python
    API gives for the same value: OneLineParser (cli/main.py) passes the flag's name to ``check``."""

    def __init__(self, check):
        self.check = check
        self.__name__ = check.__name__

    def __call__(self, text: str, flag: str = "value"):
        try:
            return self.check(text, flag)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


positive_int = FlagType(validate.check_count)
non_negative_int = FlagType(validate.check_non_negative_count)
non_negative_float = FlagType(validate.check_non_negative_number)
seconds = FlagType(validate.check_timeout)  # a wait limit: > 0 and at most a day


def check_output_file(path, flag: str) -> None:
    """Before any work: an output file flag must name a regular file (or a new one) in a folder this process
    can write, so a report is not lost after a long bench. Checked with a probe file that is removed at once."""
    import os
    import tempfile
    from pathlib import Path

    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder: pass a file path")
    kind = validate.file_kind(p)
    if kind is not None:  # a FIFO would block the write, a device would swallow it
        raise OutputError(f"{flag} {p} is {kind}, not a regular file: pass a file path")
    folder = next(parent for parent in p.absolute().parents if parent.exists())
    if not folder.is_dir():
        raise OutputError(f"{flag} {p}: {folder} is a file, not a folder: pass a file path under a folder")
    disk = os.statvfs(folder)
    if disk.f_blocks and not disk.f_bavail:  # a full disk now fails the write only after the whole run (/proc has none)
        raise OutputError(f"{flag} {p}: no space left on device ({folder} has no free blocks): free some space there, "
                          "or write to another disk")
    try:
        if p.exists():
            with open(p, "ab"):  # appends nothing; the write replaces it later
                pass
        else:
            with tempfile.TemporaryFile(dir=folder):  # unnamed or unlinked at once: nothing stays
                pass
    except OSError as e:
        where = p if p.exists() else f"a file in {folder}"
        raise OutputError(f"{flag} {p}: cannot write {where} ({e.strerror}): pass a file path in a folder you can "
                          "write") from None


def write_output_file(path, text: str) -> None:
    """Write a report file checked by check_output_file, creating missing parent folders (as compile does).
    Written beside it and renamed into place: a full disk leaves no half file (and the old one intact), and
    the OSError names the file (cli/main.py reports a full disk with it)."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    temp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".partial")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temp, p)
    except OSError as e:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
        if e.filename is None:
            e.filename = str(p)
        raise


def add_targets_flag(parser) -> None:
    """--targets DIR, for every command that takes a target (see edgepack.targets for the search order)."""
    parser.add_argument("--targets", metavar="DIR", action="append", help="a folder of your own target .toml files, "
                        "searched before EDGEPACK_TARGETS and the built-in targets (a file named like a built-in one "
                        "overrides it); repeatable")
