"""edgepack debug: per-layer SQNR / max error of the int8 plan against the fp32 folded model."""
from __future__ import annotations

from edgepack.cli.flags import check_output_file, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("debug", help="per-layer int8 vs fp32 error; names the layers that lose the most")
    p.add_argument("artifact")
    p.add_argument("--images", type=positive_int, default=32, help="calibration images to use (default 32)")
    p.add_argument("--plot", metavar="PNG", help="write a per-layer plot")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--model", metavar="FILE.py:NAME", help="the --model the artifact was compiled from (checked by "
                   "sha256): debug runs that code only when you name it here, never because the artifact does")
    p.set_defaults(run=run)


def run(args) -> int:
    check_output_file(args.plot, "--plot")
    check_output_file(args.json, "--json")
    from edgepack.benchmark.debug import debug_artifact, format_debug, plot_debug, write_json

    d = debug_artifact(args.artifact, images=args.images, model=args.model)
    print(format_debug(d))
    if args.plot:
        print(f"plot written to {plot_debug(d, args.plot)}")
    if args.json:
        write_json(d, args.json)
    return 0
