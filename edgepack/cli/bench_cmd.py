"""edgepack bench: verify an artifact and measure it on its device; exit 1 if a check fails."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="verify an artifact and measure accuracy, fidelity and latency")
    p.add_argument("artifact", help="artifact folder written by `edgepack compile`")
    p.add_argument("--eval-size", type=int, help="use the first N eval images (default: all the compile used)")
    p.add_argument("--count", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument("--device", help="run on this device instead of the target's (openvino: cpu or npu)")
    p.add_argument("--rpc", metavar="HOST:PORT", help="TVM artifacts: run on a board over TVM RPC (server, or tracker with --key)")
    p.add_argument("--key", help="with --rpc: the device key to request from the RPC tracker (e.g. rpi4)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a silent device counts as dead (default 120)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgepack.benchmark.run import bench_artifact, format_report

    device_options = {k: v for k, v in (("device", args.device), ("rpc", args.rpc), ("key", args.key)) if v}
    if args.rpc:
        device_options["timeout"] = args.timeout
    report = bench_artifact(args.artifact, eval_size=args.eval_size, count=args.count, warmup=args.warmup, **device_options)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["passed"] else 1
