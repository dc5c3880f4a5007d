"""edgepack sweep: build and bench the alpha x resolution matrix for a target."""
from __future__ import annotations

from edgepack.cli.flags import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="compile + bench every alpha x resolution; CSV/JSON table and plots")
    p.add_argument("--target", required=True)
    p.add_argument("--alpha", default="1,0.75,0.5,0.25", help="comma-separated (default 1,0.75,0.5,0.25)")
    p.add_argument("--resolution", default="224,192,160,128", help="comma-separated (default 224,192,160,128)")
    p.add_argument("-o", "--output", default="sweeps/sweep", help="output folder (default sweeps/sweep)")
    p.add_argument("--jobs", type=positive_int, help="parallel builds (default: the number of cores)")
    p.add_argument("--eval-size", type=positive_int, help="eval images per point (default: the whole eval split)")
    p.add_argument("--calib-size", type=positive_int, help="calibration images per point (default: all)")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgepack.benchmark.sweep import check_sweep_output, parse_list, sweep
    from edgepack.targets import get_target
    from edgepack.validate import check_alpha, check_resolution

    alphas = parse_list(args.alpha, check_alpha, "alpha")
    resolutions = parse_list(args.resolution, check_resolution, "resolution")
    get_target(args.target)
    check_sweep_output(args.output)
    sweep(args.target, alphas, resolutions, args.output, jobs=args.jobs, eval_size=args.eval_size, calib_size=args.calib_size)
    return 0
