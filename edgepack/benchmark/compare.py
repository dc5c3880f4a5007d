"""Baselines: compare a bench report with a stored one under tolerances; JUnit output for CI.

Tolerances come from the target file's [tolerances] table, overridden by flags:
  latency_increase (fraction, 0.10 = +10%), accuracy_drop_points, agreement_drop_points,
  cost_increase (fraction). A regression beyond a tolerance fails the bench (exit code 1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from edgepack.errors import ConfigError

DEFAULT_TOLERANCES = {"latency_increase": 0.10, "accuracy_drop_points": 0.5, "agreement_drop_points": 0.5, "cost_increase": 0.02}
BASELINE_KEYS = ("target", "backend", "device", "eval_images", "accuracy", "fidelity", "latency", "cost")


@dataclass
class Delta:
    check: str
    baseline: float
    current: float
    limit: str
    regressed: bool

    def to_json(self) -> dict:
        return self.__dict__.copy()


def baseline_from(report: dict) -> dict:
    return {"format": "edgepack-bench-baseline", "version": 1, **{k: report.get(k) for k in BASELINE_KEYS}}


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} does not exist: create it with `edgepack bench ARTIFACT --update-baseline {path}`")
    except json.JSONDecodeError as e:
        raise ConfigError(f"baseline {path} is not valid JSON ({e}): regenerate it with --update-baseline")
    if data.get("format") != "edgepack-bench-baseline":
        raise ConfigError(f"{path} is not an edgepack bench baseline: regenerate it with --update-baseline")
    return data


def compare(report: dict, baseline: dict, tolerances: dict) -> list[Delta]:
    tol = {**DEFAULT_TOLERANCES, **tolerances}
    deltas = []
    if baseline.get("accuracy") is not None:
        drop = (baseline["accuracy"] - report["accuracy"]) * 100
        deltas.append(Delta("accuracy (%)", baseline["accuracy"] * 100, report["accuracy"] * 100,
                            f"drop <= {tol['accuracy_drop_points']} points", drop > tol["accuracy_drop_points"] + 1e-9))
    b_f, r_f = baseline.get("fidelity") or {}, report.get("fidelity") or {}
    if "top1_agreement_vs_reference" in b_f and "top1_agreement_vs_reference" in r_f:
        b, r = b_f["top1_agreement_vs_reference"] * 100, r_f["top1_agreement_vs_reference"] * 100
        deltas.append(Delta("top-1 agreement with reference (%)", b, r, f"drop <= {tol['agreement_drop_points']} points",
                            b - r > tol["agreement_drop_points"] + 1e-9))
    if (baseline.get("latency") or {}).get("median_ms") and (report.get("latency") or {}).get("median_ms"):
        b, r = baseline["latency"]["median_ms"], report["latency"]["median_ms"]
        deltas.append(Delta("latency median (ms)", b, r, f"increase <= {tol['latency_increase']:.0%}",
                            r > b * (1 + tol["latency_increase"])))
    for key, b in (baseline.get("cost") or {}).items():
        r = (report.get("cost") or {}).get(key)
        lower_is_better = isinstance(b, (int, float)) and not isinstance(b, bool) and "speedup" not in key
        if lower_is_better and isinstance(r, (int, float)) and b > 0:
            deltas.append(Delta(f"cost {key}", b, r, f"increase <= {tol['cost_increase']:.0%}", r > b * (1 + tol["cost_increase"])))
    return deltas


def format_deltas(deltas: list[Delta]) -> str:
    lines = [f"{'check':<38}{'baseline':>12}{'current':>12}{'change':>10}  limit", "-" * 86]
    for d in deltas:
        change = f"{(d.current - d.baseline) / d.baseline:+.1%}" if d.baseline else "n/a"
        flag = "REGRESSED" if d.regressed else "ok"
        lines.append(f"{d.check:<38}{d.baseline:>12.4g}{d.current:>12.4g}{change:>10}  {d.limit}  {flag}")
    return "\n".join(lines)


def junit_xml(report: dict) -> str:
    """One <testcase> per check (artifact checks and baseline comparisons)."""
    cases = []
    for c in report["checks"]:
        message = f"{c['value']} (expected {c['expected']})"
        body = "" if c["passed"] else f"<failure message={quoteattr(message)}/>"
        cases.append(f'  <testcase classname="edgepack.bench.{escape(report["target"])}" name={quoteattr(c["name"])}>{body}</testcase>')
    for d in report.get("baseline_deltas", []):
        message = f"{d['current']:.4g} vs baseline {d['baseline']:.4g}, limit {d['limit']}"
        body = f"<failure message={quoteattr(message)}/>" if d["regressed"] else ""
        cases.append(f'  <testcase classname="edgepack.baseline.{escape(report["target"])}" name={quoteattr(d["check"])}>{body}</testcase>')
    failures = sum("<failure" in c for c in cases)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="edgepack bench {escape(report["artifact"])}" '
            f'tests="{len(cases)}" failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")
