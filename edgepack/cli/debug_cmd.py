"""edgepack debug: per-layer SQNR / max error of the int8 plan against the fp32 folded model."""
from __future__ import annotations

import json

from edgepack.cli import output
from edgepack.cli.flags import check_output_file, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("debug", help="per-layer int8 vs fp32 error; names the layers that lose the most")
    p.add_argument("artifact")
    p.add_argument("--images", type=positive_int, default=32, help="calibration images to use (default 32)")
    p.add_argument("--plot", metavar="PNG", help="write a per-layer plot")
    output.add_json_flag(p, "the figures")
    p.add_argument("--model", metavar="FILE.py:NAME", help="the --model the artifact was compiled from (checked by "
                   "sha256): debug runs that code only when you name it here, never because the artifact does")
    p.set_defaults(run=run)


def run(args) -> int:
    check_output_file(args.plot, "--plot")
    output.check_json_file(args.json)
    from edgepack.benchmark.debug import debug_artifact, format_debug, plot_debug

    d = debug_artifact(args.artifact, images=args.images, model=args.model)
    print(format_debug(d))
    if args.plot:
        output.note(f"plot written to {plot_debug(d, args.plot)}")
    if args.json:
        output.write_json(args.json, json.dumps(d, indent=1))
    return 0
