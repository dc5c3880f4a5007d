"""Shared pieces of the benchmark scripts: interleaved timing rounds and a markdown table."""
from __future__ import annotations

import statistics
import time


def interleaved(runners: dict, rounds: int = 7, per_round: int = 20, warmup: int = 5) -> dict:
    """Time every runner in turn, round after round, so machine drift hits all alike; medians in ms.
    Each round starts with a different runner and re-warms each runner before its timed runs: on this 2-core host the first OpenVINO inference right after torch calls took
    6.5 ms instead of 1.4 ms (torch's OpenMP threads still spinning), which biased whoever came first."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = runners[name]
            for _ in range(warmup):
                fn()
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t) * 1e3)
    return {name: {"median_ms": statistics.median(s), "p90_ms": sorted(s)[int(0.9 * (len(s) - 1))], "count": len(s)}
            for name, s in samples.items()}


def markdown(results: dict, extra: dict[str, dict] | None = None) -> str:
    fastest = min(r["median_ms"] for r in results.values())
    extra = extra or {}
    cols = sorted({k for e in extra.values() for k in e})
    lines = ["| runtime | median ms | p90 ms | x fastest |" + "".join(f" {c} |" for c in cols),
             "|---|---:|---:|---:|" + "---|" * len(cols)]
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["median_ms"]):
        cells = "".join(f" {extra.get(name, {}).get(c, '')} |" for c in cols)
        lines.append(f"| {name} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['median_ms'] / fastest:.2f} |{cells}")
    return "\n".join(lines)
