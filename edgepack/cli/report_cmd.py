"""edgepack report: a self-contained HTML page for an artifact or a sweep folder."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report for an artifact or sweep folder")
    p.add_argument("path", help="artifact folder or sweep folder")
    p.add_argument("-o", "--output", help="HTML file (default: <artifact>.report.html or <sweep>/report.html)")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgepack.benchmark.report import write_report

    print(f"report written to {write_report(args.path, args.output)}")
    return 0
