"""edgepack command line: each subcommand module registers its parser; this is the one place
an error becomes a one-line message and an exit code (see edgepack.errors): 2 bad input or a
missing tool, 1 a check failed, 3 an internal error (traceback with --verbose), 130/143 interrupted."""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import select
import signal
import sys
import traceback

from edgepack import artifact, devices, progress
from edgepack.cli import output
from edgepack.cli.flags import FlagType
from edgepack.errors import EXIT_INTERNAL, ConfigError, EdgepackError, OutputError, missing_dependency
from edgepack.version import __version__

SUBCOMMANDS = ("info", "targets", "compile", "bench", "tune", "debug", "sweep", "report", "keygen", "verify")


_COMMAND = "command"  # the running subcommand, for the stop message


def _on_stop(signum, frame):
    """SIGTERM (what `timeout` and CI cancellation send) and Ctrl-C: remove this process's partial
    artifact and lock, print one line, exit 143 / 130 at once. Raising an exception here instead can
    cross a C++ extension that calls back into Python (onnx's import did: std::terminate, exit -6)."""
    if artifact.defer_signal(signum) or devices.defer_signal(signum):
        return  # an artifact is being renamed into place, or a device program started: the signal comes again
    artifact.abandon()
    devices.abandon()  # device programs' process groups, sweep workers, run folders
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    print(f"edgepack {_COMMAND}: {what}", file=sys.stderr, flush=True)
    os._exit(143 if signum == signal.SIGTERM else 130)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one stderr line (the usage text is what --help is for)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}: see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)

    def _get_value(self, action, arg_string):
        """A flag typed by edgepack.cli.flags.FlagType is checked with its name, so the line is the one the
        Python API raises for the same value (argparse's own hook passes only the text)."""
        if isinstance(action.type, FlagType) and action.option_strings:
            try:
                return action.type.check(arg_string, action.option_strings[-1])
            except ConfigError as e:
                print(f"{self.prog}: error: {_one_line(e)}", file=sys.stderr)
                sys.exit(2)
        return super()._get_value(action, arg_string)

    def _get_values(self, action, arg_strings):
        """``--count=--`` is the value "--" (refused by the flag's check), not an empty list: argparse 3.11
        strips a "--" even from an option's own value and then skips the type check."""
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgepack", description="MobileNet-style PyTorch CNNs to verified int8 edge artifacts.")
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    add_verbosity_flags(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"edgepack.cli.{name}_cmd").add_parser(sub)
    for subparser in sub.choices.values():  # `edgepack compile ... --verbose` as well as `edgepack --verbose compile`
        add_verbosity_flags(subparser, default=argparse.SUPPRESS)
    return parser


def add_verbosity_flags(parser, default) -> None:
    """--quiet / --verbose (see edgepack.cli.output); a subcommand's copy defaults to SUPPRESS, so leaving it
    out keeps what was given before the subcommand."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="only results and errors: no progress bars, no notes, no library log")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="also compile's stage times and an internal error's traceback")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:  # one before the subcommand, one after: the group cannot see both
        parser.error("--quiet and --verbose ask for opposite things: pass one of them")
    show_library_log()
    global _COMMAND
    _COMMAND = args.command
    previous = {sig: signal.signal(sig, _on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with output.conventions(args):  # --json - (human text to stderr), --quiet, --verbose
            code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is a BrokenPipeError we handle
        return code
    except EdgepackError as e:
        print(f"edgepack {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edgepack {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --verbose asks for the traceback
        if isinstance(e, BrokenPipeError) and _stdout_closed():
            return SIGPIPE_EXIT
        # a lazily imported package absent from this environment, or a full disk, is not a bug
        expected = missing_dependency(e) or disk_full(e, args)
        if expected is not None:
            print(f"edgepack {args.command}: error: {expected}", file=sys.stderr)
            return expected.exit_code
        if args.verbose:
            traceback.print_exc()
        print(f"edgepack {args.command}: internal error ({type(e).__name__}: {_one_line(e)[:300]}): please report it "
              "with the command line; rerun with --verbose for the traceback", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _StdoutHandler(logging.Handler):
    """The message alone, on whatever sys.stdout is when it is logged (a test's capture included)."""

    def emit(self, record: logging.LogRecord) -> None:
        with progress.clear():  # a progress bar on the same terminal steps aside
            print(self.format(record))


def show_library_log() -> None:
    """Library code logs what it verified (the edgepack loggers, INFO) instead of printing; the CLI shows it
    on stdout, once however often main runs in one process."""
    logger = logging.getLogger("edgepack")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler())


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


SIGPIPE_EXIT = 128 + signal.SIGPIPE  # 141: what a shell reports for `yes | head -1`


def _stdout_closed() -> bool:
    """Whether stdout's reader went away (`edgepack targets | head -1`: end quietly, as other Unix tools do),
    rather than a pipe to a device program; if so stdout is pointed at /dev/null, or Python would report the
    unflushed rest when it exits."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poll.poll(0)):
            return False
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a descriptor
        return False
    return True


# The output paths a subcommand writes, by argparse attribute: where a full disk most likely is.
OUTPUT_ARGS = ("output", "json", "junit", "update_baseline", "plot")


def disk_full(e: BaseException, args) -> "OutputError | None":
    """An OSError ENOSPC or EDQUOT anywhere in ``e``'s chain as the one-line error naming the path (the file
    being written when known, else the command's output paths); None for anything else."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left on device" if e.errno == errno.ENOSPC else "disk quota exceeded"
            paths = [e.filename] if e.filename else [getattr(args, a) for a in OUTPUT_ARGS if getattr(args, a, None)]
            where = f" (writing {', '.join(map(str, paths))})" if paths else ""
            return OutputError(f"{what}{where}: free some space there, or write to another disk")
        e = e.__cause__ or e.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
