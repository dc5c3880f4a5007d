"""Where a command's text goes, the same for every subcommand:

- ``--json FILE`` writes the JSON report to FILE (checked before any work, replaced whole); ``--json -`` (or
  ``--json`` alone) writes it to stdout, and then stdout holds the JSON only: every human line moves to stderr;
- ``--quiet`` drops the notes (``... written to``), the library's INFO log and the progress bars; errors and
  the command's result still print;
- ``--verbose`` adds the details a user rarely needs (compile's stage times, an internal error's traceback)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys

from edgepack import progress
from edgepack.cli.flags import check_output_file, write_output_file

STDOUT = "-"
_state = {"stdout": None, "quiet": False, "verbose": False}


def add_json_flag(parser, what: str) -> None:
    parser.add_argument("--json", metavar="FILE", nargs="?", const=STDOUT,
                        help=f"write {what} as JSON to FILE; '-' (or --json alone) writes it to stdout, and the human "
                             "text then goes to stderr")


def check_json_file(path) -> None:
    """--json FILE checked before any work, as every other output file (stdout needs no check)."""
    if path != STDOUT:
        check_output_file(path, "--json")


def write_json(path, text: str) -> None:
    """The JSON text to ``path``, or to the real stdout for '-' (human text is on stderr then)."""
    if path == STDOUT:
        stream = _state["stdout"] or sys.stdout
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
    else:
        write_output_file(path, text if text.endswith("\n") else text + "\n")


def note(text: str) -> None:
    """A line that says what was done (a file written, a signature checked): dropped by --quiet."""
    if not _state["quiet"]:
        with progress.clear():  # a progress bar on the same terminal steps aside
            print(text)


def quiet() -> bool:
    return _state["quiet"]


def verbose() -> bool:
    return _state["verbose"]


@contextlib.contextmanager
def conventions(args):
    """For the span of one command: human text to stderr under ``--json -``; --quiet silences the library's
    INFO log and the progress bars (EDGEPACK_PROGRESS=off, so sweep's worker processes inherit it)."""
    before = dict(_state)
    _state.update(stdout=sys.stdout, quiet=bool(getattr(args, "quiet", False)),
                  verbose=bool(getattr(args, "verbose", False)))
    logger = logging.getLogger("edgepack")
    level, progress = logger.level, os.environ.get("EDGEPACK_PROGRESS")
    try:
        if _state["quiet"]:
            logger.setLevel(logging.WARNING)
            os.environ["EDGEPACK_PROGRESS"] = "off"
        elif _state["verbose"]:
            logger.setLevel(logging.DEBUG)  # e.g. compile's stage times
        with contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", None) == STDOUT else contextlib.nullcontext():
            yield
    finally:
        logger.setLevel(level)
        if progress is None:
            os.environ.pop("EDGEPACK_PROGRESS", None)
        else:
            os.environ["EDGEPACK_PROGRESS"] = progress
        _state.update(before)
