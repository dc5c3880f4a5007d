"""Shared pieces of the benchmark scripts: interleaved timing rounds and a markdown table."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(runners: dict[str, Callable[[], object]], rounds: int = 7, per_round: int = 20, warmup: int = 10) -> dict:
    """Time every runner in turn, round after round, so machine drift hits all alike; medians in ms."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
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
