"""edgepack command line: each subcommand module registers its parser; this is the one place
an expected error (EdgepackError) becomes a one-line message and an exit code."""
from __future__ import annotations

import argparse
import importlib
import sys

from edgepack import __version__

SUBCOMMANDS = ("info", "targets", "compile", "bench", "tune", "debug", "sweep", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepack", description="MobileNet-style PyTorch CNNs to verified int8 edge artifacts.")
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"edgepack.cli.{name}_cmd").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edgepack.errors import EdgepackError

    try:
        return int(args.run(args) or 0)
    except EdgepackError as e:
        print(f"edgepack {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"edgepack {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
