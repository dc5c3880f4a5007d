"""edgepack bench: verify an artifact and measure it on its device; exit 1 if a check fails
or a figure regressed past its tolerance against --baseline."""
from __future__ import annotations

import argparse
import json
import sys

from edgepack.benchmark import compare, saved
from edgepack.cli import output
from edgepack.cli.colour import paint
from edgepack.cli.flags import (check_output_file, non_negative_float, non_negative_int, positive_int, seconds,
                                write_output_file)
from edgepack.cli.paths import absolute
from edgepack.errors import ConfigError
from edgepack.signing import short, verify_signature
from edgepack.validate import check_rpc_address


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="verify an artifact and measure accuracy, fidelity and latency")
    p.add_argument("artifact", help="artifact folder written by `edgepack compile`")
    p.add_argument("--eval-size", type=positive_int, help="use the first N eval images (default: all the compile used)")
    p.add_argument("--eval-data", metavar="PATH", help="the compile's --eval-data, when it was too large to copy into "
                   "the artifact (checked against its recorded sha256)")
    p.add_argument("--count", type=positive_int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument("--device", help="run on this device instead of the target's (openvino: cpu or npu)")
    p.add_argument("--rpc", metavar="HOST:PORT", type=rpc_address,
                   help="TVM artifacts: run on a board over TVM RPC (server, or tracker with --key)")
    p.add_argument("--key", help="with --rpc: the device key to request from the RPC tracker (e.g. rpi4)")
    p.add_argument("--timeout", type=seconds, default=120.0,
                   help="seconds any one run of a device program (native test program, qemu, 16 eval images a run) "
                        "or, with --rpc, any one wait (tracker, free server, session, upload, load, run, timing) may "
                        "last before the device counts as hung (default 120)")
    p.add_argument("--verify-key", metavar="PUB", help="Ed25519 public key: refuse (exit 2) an artifact whose manifest.sig "
                   "is missing or not from this key, before running anything")
    output.add_json_flag(p, "the report")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file, one test case per check")
    p.add_argument("--baseline", metavar="FILE", help="compare with a stored baseline; exit 1 on a regression")
    p.add_argument("--update-baseline", metavar="FILE", help="write this run's figures as the new baseline")
    for name, help_ in (("latency-increase", "fraction, e.g. 0.10"), ("accuracy-drop", "points"),
                        ("agreement-drop", "points"), ("cost-increase", "fraction")):
        p.add_argument(f"--max-{name}", type=non_negative_float, help=f"tolerance override ({help_}); default from the target file")
    p.set_defaults(run=run)


def rpc_address(text: str) -> str:
    """--rpc is checked while parsing, so `--rpc localhost` is refused before any connection."""
    try:
        check_rpc_address(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def check_key(key: str | None, rpc: str | None) -> None:
    """--key means a board at a tracker: without --rpc it would be silently ignored."""
    if key is not None and not rpc:
        raise ConfigError(f"--key {key} names a board at an RPC tracker: pass --rpc TRACKER_HOST:PORT with it, or drop --key")


def _with_badge(text: str) -> str:
    """The closing ``result: PASS`` / ``FAIL (why)`` with its PASS / FAIL in green / red on a terminal (plain in
    a pipe or with NO_COLOR)."""
    head, sep, last = text.rpartition("result: ")
    result, space, why = last.partition(" ")
    if not sep or "\n" in last or result not in ("PASS", "FAIL"):
        return text
    return head + sep + paint(result, "green" if result == "PASS" else "red", sys.stdout) + space + why


def _against_baseline(report: dict, baseline: dict, notes: list[str], args) -> str:
    """Compare with the baseline under the tolerances (flags over the target file's): records the deltas and
    the verdict in ``report``, returns the section's text."""
    tolerances = {**report.get("tolerances", {}), **{k: v for k, v in (
        ("latency_increase", args.max_latency_increase), ("accuracy_drop_points", args.max_accuracy_drop),
        ("agreement_drop_points", args.max_agreement_drop), ("cost_increase", args.max_cost_increase)) if v is not None}}
    deltas = compare.compare(report, baseline, tolerances)
    report["baseline_deltas"] = [d.to_json() for d in deltas]
    report["passed"] = report["passed"] and not any(d.regressed for d in deltas)
    return compare.format_section(args.baseline, deltas, notes)


def _check_not_kept_path(json_path, artifact) -> None:
    """--json naming ARTIFACT.bench.json would overwrite the result bench keeps there for `edgepack report`
    with one report cannot check (no manifest sha256), so the next report and bench ignore it: refused first."""
    from pathlib import Path

    kept = saved.path_for(artifact)
    if json_path not in (None, output.STDOUT) and Path(json_path).resolve() == kept:
        raise ConfigError(f"--json {json_path} is where bench keeps its result for `edgepack report` ({kept.name}, on every "
                          "run): pass another --json path, or drop --json")


def run(args) -> int:
    check_key(args.key, args.rpc)
    args.artifact = absolute(args.artifact)  # libraries run programs from other folders: never hand them a relative path
    args.eval_data = absolute(args.eval_data)
    output.check_json_file(args.json)
    _check_not_kept_path(args.json, args.artifact)
    for flag in ("junit", "update_baseline"):
        check_output_file(getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.verify_key:  # before torch is imported, and before anything in the artifact is loaded
        _, key = verify_signature(args.artifact, args.verify_key)
        output.note(f"signature verified: {args.artifact} is signed by key {short(key)}")
    baseline = compare.load_baseline(args.baseline) if args.baseline else None
    if baseline is not None:  # target, model, kernels and eval size are in the manifest: refuse before the bench
        compare.check_before_bench(baseline, args.baseline, args.artifact, args.eval_size)
    from edgepack.benchmark.run import bench_artifact, format_report  # imports torch

    device_options = {k: v for k, v in (("device", args.device), ("rpc", args.rpc), ("key", args.key)) if v}
    device_options["timeout"] = args.timeout  # runners that start no device program drop it (Runner.check_options)
    manifest_sha = saved.manifest_sha256(args.artifact)  # of the manifest benched, not of a later recompile
    report = bench_artifact(args.artifact, eval_size=args.eval_size, count=args.count, warmup=args.warmup,
                            eval_data=args.eval_data, **device_options)
    baseline_notes = compare.check_matches(baseline, report, args.baseline) if baseline is not None else []
    kept = saved.keep(report, args.artifact, manifest_sha)  # before the text: its last line stays the result
    if kept is not None:
        output.note(f"bench result kept in {kept} (`edgepack report` shows it)")
    if baseline is None:
        print(_with_badge(format_report(report)))
    else:  # the table before the one verdict line, which accounts for it
        section = _against_baseline(report, baseline, baseline_notes, args)
        print(_with_badge(format_report(report, (args.baseline, section))))
    if args.json:
        output.write_json(args.json, json.dumps(report, indent=1))
    if args.junit:
        write_output_file(args.junit, compare.junit_xml(report))
    if args.update_baseline:
        compare.write_baseline(args.update_baseline, report)
        output.note(f"baseline written to {args.update_baseline}")
    return 0 if report["passed"] else 1
