"""edgepack command line: each subcommand module registers its parser; this is the one place
an error becomes a one-line message and an exit code (see edgepack.errors): 2 bad input or a
missing tool, 1 a check failed, 3 an internal error (traceback with --verbose), 130/143 interrupted."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from edgepack import __version__

SUBCOMMANDS = ("info", "targets", "compile", "bench", "tune", "debug", "sweep", "report", "keygen", "verify")


_COMMAND = "command"  # the running subcommand, for the stop message


def _on_stop(signum, frame):
    """SIGTERM (what `timeout` and CI cancellation send) and Ctrl-C: remove this process's partial
    artifact and lock, print one line, exit 143 / 130 at once. Raising an exception here instead can
    cross a C++ extension that calls back into Python (onnx's import did: std::terminate, exit -6)."""
    import os

    from edgepack import artifact, devices

    if artifact.defer_signal(signum):
        return  # an artifact is being renamed into place: the signal comes again when it is done
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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgepack", description="MobileNet-style PyTorch CNNs to verified int8 edge artifacts.")
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"edgepack.cli.{name}_cmd").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edgepack.errors import EXIT_INTERNAL, EdgepackError, missing_dependency

    global _COMMAND
    _COMMAND = args.command
    previous = {sig: signal.signal(sig, _on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return int(args.run(args) or 0)
    except EdgepackError as e:
        print(f"edgepack {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edgepack {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --verbose asks for the traceback
        missing = missing_dependency(e)  # a lazily imported package absent from this environment is not a bug
        if missing is not None:
            print(f"edgepack {args.command}: error: {missing}", file=sys.stderr)
            return missing.exit_code
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"edgepack {args.command}: internal error ({type(e).__name__}: {_one_line(e)[:300]}): please report it "
              "with the command line; rerun with --verbose for the traceback", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
