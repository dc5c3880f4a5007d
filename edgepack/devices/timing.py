"""Latency statistics in the style of OpenVINO's benchmark_app: warm-up, then count runs. Host-clock timing
of a device run belongs to the devices layer, so every backend runner (edgepack.backends.runner) reads it
from below."""
from __future__ import annotations

import time

import numpy as np


def latency_stats(fn, warmup: int = 5, count: int = 50, max_seconds: float = 30.0) -> dict:
    """Call ``fn`` ``warmup`` times, then up to ``count`` times (stopping after ``max_seconds``)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(max(warmup - 1, 0)):
        fn()
    samples, start = [], time.perf_counter()
    while len(samples) < count and (time.perf_counter() - start < max_seconds or len(samples) < 3):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    ms = np.array(samples) * 1e3
    return {
        "count": len(samples), "duration_s": round(float(ms.sum() / 1e3), 4),
        "median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
        "max_ms": float(ms.max()), "p90_ms": float(np.percentile(ms, 90)),
        "throughput_fps": float(1e3 / ms.mean()), "first_inference_ms": first * 1e3,
    }
