"""Baselines: compare a bench report with a stored one under tolerances; JUnit output for CI.

Tolerances come from the target file's [tolerances] table, overridden by flags:
  latency_increase (fraction, 0.10 = +10%), accuracy_drop_points, agreement_drop_points,
  cost_increase (fraction). A regression beyond a tolerance fails the bench (exit code 1).

A baseline (format version 2) also records what it was measured on: target, backend, device (without
the RPC tracker's address), kernel choice, eval images and model config. A bench against a baseline that
differs in one of these is refused (exit 2): its figures say nothing about this run. The CPU features
and the edgepack version are recorded and a difference is reported, not refused.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from edgepack.artifact import Manifest
from edgepack.artifact import read as read_manifest
from edgepack.benchmark.device_report import count, percent
from edgepack.errors import ConfigError, OutputError
from edgepack.validate import file_kind

DEFAULT_TOLERANCES = {"latency_increase": 0.10, "accuracy_drop_points": 0.5, "agreement_drop_points": 0.5, "cost_increase": 0.02}
BASELINE_FORMAT, BASELINE_VERSION = "edgepack-bench-baseline", 2
MATCH_KEYS = ("target", "backend", "device", "kernels", "eval_images", "model")  # a difference refuses the baseline
BEFORE_BENCH_KEYS = tuple(k for k in MATCH_KEYS if k != "device")  # known from the manifest: checked before running
MODEL_KEYS = ("alpha", "resolution", "classes", "quant")
NOTE_KEYS = ("cpu_features", "edgepack_version")  # a difference is reported
FIGURE_KEYS = ("accuracy", "fidelity", "latency", "cost")
AGREEMENT = "top-1 agreement with reference"  # bench's check of it; its value is a fraction, shown as a percent
POINTS, MS, COUNT = "points", "ms", "count"  # a Delta's unit: percent figures whose change is in points, ...


@dataclass
class Delta:
    check: str
    baseline: float
    current: float
    limit: str
    regressed: bool
    unit: str = COUNT  # how the table shows it (POINTS, MS, COUNT); not in the JSON, whose keys machines read

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "unit"}

    def cells(self) -> tuple[str, str, str]:
        """Baseline, current and change as text, the change in the unit of its limit: points for a
        percent figure (accuracy, agreement), percent of the baseline for latency and costs."""
        if self.unit == POINTS:
            return f"{self.baseline:.2f}%", f"{self.current:.2f}%", f"{self.current - self.baseline:+.2f} points"
        change = f"{(self.current - self.baseline) / self.baseline:+.1%}" if self.baseline else "n/a"
        if self.unit == MS:
            return f"{self.baseline:,.3f} ms", f"{self.current:,.3f} ms", change
        return count(self.baseline), count(self.current), change


def artifact_identity(manifest: Manifest) -> dict:
    """What a bench report takes from the manifest so that a baseline records what it measured."""
    info, model = manifest.backend_info, manifest.model
    return {"kernels": info.kernels, "cpu_features": info.cpu_features,
            "model": {"alpha": model.alpha, "resolution": model.resolution, "classes": model.classes,
                      "quant": manifest.quantization.mode},
            "edgepack_version": manifest.edgepack_version}


def device_identity(device: str) -> str:
    """"rpc 127.0.0.1:48207 key x86" -> "rpc key x86": with a key the tracker's address (a random port on
    loopback) is not the device; without one the server's host is, its port is not."""
    rpc = re.fullmatch(r"rpc (\S+?)(?::\d+)?( key .+)?", device)
    if rpc is None:
        return device
    return "rpc" + rpc.group(2) if rpc.group(2) else f"rpc {rpc.group(1)}"


def baseline_from(report: dict) -> dict:
    fields = {k: report.get(k) for k in (*MATCH_KEYS, *NOTE_KEYS, *FIGURE_KEYS)}
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, **fields, "device": device_identity(report["device"])}


def write_baseline(path, report: dict) -> None:
    """Missing folders are created (docs/ci.md records benchmarks/baselines/X.json in a checkout that may lack them)."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(baseline_from(report), indent=1) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write baseline {path} ({e.strerror or type(e).__name__}): pass a file path in a writable folder")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers_or_null(v) -> bool:
    return isinstance(v, dict) and all(_number(x) or x is None for x in v.values())


# field -> (valid?, what it must be)
BASELINE_FIELDS = {
    "target": (lambda v: isinstance(v, str), "a target name"),
    "backend": (lambda v: isinstance(v, str), "a backend name"),
    "device": (lambda v: isinstance(v, str), "a device name"),
    "kernels": (lambda v: v is None or isinstance(v, str), "a kernel set name or null"),
    "eval_images": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "model": (lambda v: isinstance(v, dict) and set(MODEL_KEYS) <= set(v) and _number(v["alpha"]) and isinstance(v["quant"], str)
              and all(isinstance(v[k], int) and not isinstance(v[k], bool) for k in ("resolution", "classes")),
              "an object with alpha, resolution, classes and quant"),
    "cpu_features": (lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of strings or null"),
    "edgepack_version": (lambda v: v is None or isinstance(v, str), "a version string or null"),
    "accuracy": (lambda v: v is None or (_number(v) and 0 <= v <= 1), "a number in [0, 1] or null"),
    "fidelity": (lambda v: v is None or _numbers_or_null(v), "an object of numbers or null"),
    "latency": (lambda v: v is None or (_numbers_or_null(v) and (v.get("median_ms") is None or v["median_ms"] > 0)),
                "an object of numbers (median_ms > 0) or null"),
    "cost": (lambda v: v is None or (isinstance(v, dict) and all(isinstance(x, (str, int, float, bool)) or x is None for x in v.values())),
             "an object of numbers or strings, or null"),
}


def load_baseline(path) -> dict:
    """A version-2 baseline with every field of the right type, or a one-line ConfigError naming the fix."""
    regenerate = f"regenerate it with `edgepack bench ARTIFACT --update-baseline {path}`"
    if file_kind(path) not in (None, "a folder"):  # by stat: reading a FIFO would wait forever
        raise ConfigError(f"baseline {path} is {file_kind(path)}, not a regular file: pass the baseline's .json file")
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} does not exist: create it with `edgepack bench ARTIFACT --update-baseline {path}`")
    except IsADirectoryError:
        raise ConfigError(f"baseline {path} is a directory: pass the baseline's .json file")
    except OSError as e:
        raise ConfigError(f"baseline {path} cannot be read ({e.strerror or type(e).__name__}): check its permissions or {regenerate}")
    except UnicodeDecodeError:
        raise ConfigError(f"baseline {path} is not UTF-8 text: {regenerate}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"baseline {path} is not valid JSON ({e}): {regenerate}")
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        what = f"a JSON {type(data).__name__}" if not isinstance(data, dict) else "JSON without format \"edgepack-bench-baseline\""
        raise ConfigError(f"baseline {path} holds {what}, not an edgepack bench baseline: {regenerate}")
    if data.get("version") != BASELINE_VERSION:
        raise ConfigError(f"baseline {path} is format version {data.get('version')!r}, this edgepack reads version {BASELINE_VERSION} "
                          f"(which records the device, kernels and model measured): {regenerate}")
    for key, (valid, must_be) in BASELINE_FIELDS.items():
        if key not in data:
            raise ConfigError(f"baseline {path} has no \"{key}\" field: {regenerate}")
        if not valid(data[key]):
            raise ConfigError(f"baseline {path}: \"{key}\" is {json.dumps(data[key])[:60]} but must be {must_be}: {regenerate}")
    return data


def _first_mismatch(baseline: dict, report: dict, keys=MATCH_KEYS) -> tuple[str, object, object] | None:
    """(field, baseline value, this run's value) of the first identity field in ``keys`` that differs, else None."""
    current = {k: report.get(k) for k in keys}
    if "device" in keys:
        current["device"] = device_identity(report["device"])
    for key in keys:
        if key == "model":
            for sub in MODEL_KEYS:
                if baseline["model"][sub] != (current["model"] or {}).get(sub):
                    return f"model.{sub}", baseline["model"][sub], (current["model"] or {}).get(sub)
        elif baseline[key] != current[key]:
            return key, baseline[key], current[key]
    return None


def _matching_sibling(path: Path, report: dict, keys=MATCH_KEYS) -> Path | None:
    """Another baseline next to ``path`` measured on what this run measures (e.g. the -generic twin of a -vnni file)."""
    for other in sorted(path.parent.glob("*.json")):
        if other.resolve() == path.resolve():
            continue
        try:
            if _first_mismatch(load_baseline(other), report, keys) is None:
                return other
        except ConfigError:
            continue
    return None


def _refuse_mismatch(baseline: dict, report: dict, path, keys=MATCH_KEYS) -> None:
    """ConfigError naming the first field in ``keys`` where the baseline differs from this run, and the fix."""
    mismatch = _first_mismatch(baseline, report, keys)
    if mismatch is not None:
        key, was, now = mismatch
        sibling = _matching_sibling(Path(path), report, keys)
        fix = (f"use {sibling}, which matches this run, or" if sibling else "pass a baseline measured on this configuration or")
        raise ConfigError(f"baseline {path} was measured with {key} {json.dumps(was)}, this run has {json.dumps(now)}: "
                          f"{fix} record one with `edgepack bench ARTIFACT --update-baseline FILE`")


def identity_before_bench(manifest: Manifest, eval_size: int | None) -> dict:
    """What a bench of this artifact will report it measured, the device aside (the runner chooses it):
    bench_artifact's target, backend and eval image count (``eval_size`` capped at the compile's), and artifact_identity."""
    recorded = manifest.eval.images
    return {"target": manifest.target.name, "backend": manifest.backend,
            "eval_images": recorded if eval_size is None else min(eval_size, recorded), **artifact_identity(manifest)}


def check_before_bench(baseline: dict, path, artifact, eval_size: int | None = None) -> None:
    """Refuse a baseline of another target, backend, kernel set, model or eval size in milliseconds, from the
    manifest, instead of after a bench that can take minutes; check_matches still checks the device afterwards."""
    _refuse_mismatch(baseline, identity_before_bench(read_manifest(Path(artifact)), eval_size), path, BEFORE_BENCH_KEYS)


def check_matches(baseline: dict, report: dict, path) -> list[str]:
    """Refuse a baseline measured on something else (ConfigError); return notes on recorded differences that do not refuse it."""
    _refuse_mismatch(baseline, report, path)
    return [f"note: baseline {key} {json.dumps(baseline[key])}, this run {json.dumps(report.get(key))} (reported, not refused)"
            for key in NOTE_KEYS if baseline[key] != report.get(key)]


def compare(report: dict, baseline: dict, tolerances: dict) -> list[Delta]:
    tol = {**DEFAULT_TOLERANCES, **tolerances}
    deltas = []
    if baseline.get("accuracy") is not None:
        drop = (baseline["accuracy"] - report["accuracy"]) * 100
        deltas.append(Delta("accuracy", baseline["accuracy"] * 100, report["accuracy"] * 100,
                            f"drop <= {tol['accuracy_drop_points']:g} points", drop > tol["accuracy_drop_points"] + 1e-9,
                            POINTS))
    b_f, r_f = baseline.get("fidelity") or {}, report.get("fidelity") or {}
    if "top1_agreement_vs_reference" in b_f and "top1_agreement_vs_reference" in r_f:
        b, r = b_f["top1_agreement_vs_reference"] * 100, r_f["top1_agreement_vs_reference"] * 100
        deltas.append(Delta(AGREEMENT, b, r, f"drop <= {tol['agreement_drop_points']:g} points",
                            b - r > tol["agreement_drop_points"] + 1e-9, POINTS))
    if (baseline.get("latency") or {}).get("median_ms") and (report.get("latency") or {}).get("median_ms"):
        b, r = baseline["latency"]["median_ms"], report["latency"]["median_ms"]
        deltas.append(Delta("latency median", b, r, f"increase <= {tol['latency_increase'] * 100:g}%",
                            r > b * (1 + tol["latency_increase"]), MS))
    for key, b in (baseline.get("cost") or {}).items():
        r = (report.get("cost") or {}).get(key)
        # a speed-up or a share (vector instructions / all) rising is no regression: only costs are held
        lower_is_better = isinstance(b, (int, float)) and not isinstance(b, bool) and not any(w in key for w in ("speedup", "share"))
        if lower_is_better and isinstance(r, (int, float)) and b > 0:
            deltas.append(Delta(f"cost {key}", b, r, f"increase <= {tol['cost_increase'] * 100:g}%", r > b * (1 + tol["cost_increase"])))
    return deltas


def format_deltas(deltas: list[Delta]) -> str:
    """The comparison as an aligned table: check, baseline, current, change (in its limit's unit), limit, verdict."""
    rows = [("check", "baseline", "current", "change", "limit", "")]
    rows += [(d.check, *d.cells(), d.limit, "REGRESSED" if d.regressed else "ok") for d in deltas]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  "
             f"{r[4]:<{widths[4]}}  {r[5]}".rstrip() for r in rows]
    return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])


def format_section(path, deltas: list[Delta], notes: list[str]) -> str:
    """bench's baseline section: the table, the notes on recorded differences, and what regressed."""
    regressed = [d.check for d in deltas if d.regressed]
    last = f"{len(regressed)} regression(s): {', '.join(regressed)}" if regressed else "no regression"
    return "\n".join([f"against baseline {path}:", format_deltas(deltas), *notes, last])


def value_text(value) -> str:
    """A check's or cost's value as bench prints it: yes/no, integers with separators, others as they are."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return count(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def check_text(c: dict) -> str:
    """``value (expected ...)`` of a bench check (its JSON form); the top-1 agreement, a fraction, as a percent."""
    value = percent(c["value"]) if c["name"] == AGREEMENT and isinstance(c["value"], float) else value_text(c["value"])
    return f"{value} (expected {c['expected']})"


def junit_xml(report: dict) -> str:
    """One <testcase> per check (artifact checks and baseline comparisons)."""
    cases = []
    for c in report["checks"]:
        message = check_text(c)
        body = "" if c["passed"] else f"<failure message={quoteattr(message)}/>"
        cases.append(f'  <testcase classname="edgepack.bench.{escape(report["target"])}" name={quoteattr(c["name"])}>{body}</testcase>')
    for d in report.get("baseline_deltas", []):
        message = f"{value_text(d['current'])} vs baseline {value_text(d['baseline'])}, limit {d['limit']}"
        body = f"<failure message={quoteattr(message)}/>" if d["regressed"] else ""
        cases.append(f'  <testcase classname="edgepack.baseline.{escape(report["target"])}" name={quoteattr(d["check"])}>{body}</testcase>')
    failures = sum("<failure" in c for c in cases)
    # the cost figure (e.g. instructions per inference under qemu) as suite properties, for CI dashboards
    props = [f'    <property name={quoteattr("cost." + k)} value={quoteattr(str(v))}/>'
             for k, v in (report.get("cost") or {}).items() if isinstance(v, (str, int, float))]
    properties = "  <properties>\n" + "\n".join(props) + "\n  </properties>\n" if props else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="edgepack bench {escape(report["artifact"])}" '
            f'tests="{len(cases)}" failures="{failures}">\n' + properties + "\n".join(cases) + "\n</testsuite>\n")
