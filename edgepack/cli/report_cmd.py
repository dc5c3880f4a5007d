"""edgepack report: a self-contained HTML page for an artifact or a sweep folder."""
from __future__ import annotations

from edgepack.benchmark.report import write_report
from edgepack.cli import output
from edgepack.cli.flags import check_output_file, positive_int
from edgepack.cli.paths import absolute


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report for an artifact or sweep folder(s)")
    p.add_argument("path", nargs="+", help="artifact folder or sweep folder; several sweep folders (e.g. a MobileNetV1 "
                   "and a MobileNetV2 sweep) share one table and one accuracy-vs-Mult-Adds plot, a series per model")
    p.add_argument("-o", "--output", help="HTML file (default: <artifact>.report.html, <sweep>/report.html, or for "
                   "several sweeps <first>+<second>.report.html beside the first); missing parent folders are created")
    p.add_argument("--eval-data", metavar="PATH", help="the compile's --eval-data, when it was too large to copy into "
                   "the artifact (as for bench)")
    p.add_argument("--model", metavar="FILE.py:NAME", help="as for debug: the --model the artifact was compiled from, "
                   "for the per-layer section (report runs no code the artifact names)")
    p.add_argument("--bench", metavar="FILE", help="show this bench result (what `edgepack bench ARTIFACT --json FILE` "
                   "wrote) instead of the one bench keeps beside the artifact (ARTIFACT.bench.json)")
    p.add_argument("--rebench", action="store_true", help="run bench again (20 timed runs) even when a bench result "
                   "of this artifact is kept; without one, report runs it anyway and says so")
    p.add_argument("--eval-size", type=positive_int, help="when report runs bench: the first N eval images (default: "
                   "all the compile used); a kept bench result of another size is measured again")
    p.add_argument("--images", type=positive_int, default=32, help="calibration images for the per-layer section "
                   "(default 32, as for debug)")
    p.set_defaults(run=run)


def run(args) -> int:
    check_output_file(args.output, "-o")  # before the bench it runs, not after
    path = write_report([absolute(p) for p in args.path], absolute(args.output), eval_data=absolute(args.eval_data),
                        model=args.model, bench=absolute(args.bench), eval_size=args.eval_size, images=args.images,
                        rebench=args.rebench)
    output.note(f"report written to {path}")
    return 0
