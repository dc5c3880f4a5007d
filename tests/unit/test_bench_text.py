"""bench's text says one thing: a single closing verdict that agrees with the exit code (a regression against
the baseline fails it), changes in the unit of their limit, integers with separators in every place they
appear, no Python None / True, fractions as percent, and a reason when bench's accuracy is not the compile's.
Reports are built by hand: nothing is compiled or run."""
from __future__ import annotations

import json
import re
import sys
from types import SimpleNamespace

import numpy as np

from edgepack.benchmark import compare
from edgepack.benchmark.run import _accuracy_note, format_report, verdict
from edgepack.evaluate import accuracy, agreement

TICKS = 1652349


def report(**changes) -> dict:
    """A cortex-m4 bench report as bench_artifact returns it (JSON form)."""
    r = {"artifact": "/tmp/m4", "target": "cortex-m4", "backend": "c", "device": "qemu-system-arm",
         "eval_images": 360, "fp32_accuracy_at_compile": 0.975, "accuracy": 0.9694,
         "fidelity": {"top1_agreement_vs_reference": 1.0, "max_abs_logit_diff_vs_reference": 0.0,
                      "sqnr_db_vs_reference": None, "sqnr_db_vs_fp32_at_compile": 21.3},
         "latency": None, "latency_note": "qemu-system-arm is emulated",
         "cost": {"kernels": "fast", "systick_ticks_per_inference": TICKS, "same_as_compile": True,
                  "stack_bytes": None, "ram_bytes": 282436, "vector_share": 0.4321},
         "checks": [{"name": compare.AGREEMENT, "passed": True, "value": 1.0, "expected": ">= 99%"},
                    {"name": "golden: reference == recorded output", "passed": True, "value": 0,
                     "expected": "0 differing values"}],
         "passed": True}
    return {**r, **changes}


def against(r: dict, baseline: dict, path: str = "B.json") -> str:
    """What bench_cmd does with --baseline: compare, record, and format with the section before the verdict."""
    deltas = compare.compare(r, baseline, {})
    r["baseline_deltas"] = [d.to_json() for d in deltas]
    r["passed"] = r["passed"] and not any(d.regressed for d in deltas)
    return format_report(r, (path, compare.format_section(path, deltas, [])))


REGRESSED = {"accuracy": 0.9956, "fidelity": {"top1_agreement_vs_reference": 1.0}, "latency": None,
             "cost": {"systick_ticks_per_inference": 1_600_000}}


def test_a_regression_against_the_baseline_ends_in_one_fail_verdict_after_the_table():
    r = report()
    text = against(r, REGRESSED)
    assert "result: PASS" not in text and r["passed"] is False  # the exit code bench_cmd returns is 1
    assert text.splitlines()[-1] == "result: FAIL (regressed against B.json)"
    assert text.index("REGRESSED") < text.index("result: FAIL") and text.count("result:") == 1


def test_a_matching_baseline_passes_and_says_so():
    text = against(report(), {**REGRESSED, "accuracy": 0.9694, "cost": {"systick_ticks_per_inference": TICKS}})
    assert "no regression\nresult: PASS (no regression against B.json)" in text


def test_failed_checks_are_counted_in_the_verdict_with_or_without_a_baseline():
    failed = {"name": "eval: qemu == reference (bit-exact)", "passed": False, "value": 12,
              "expected": "0 differing values"}
    r = report(checks=[*report()["checks"], failed], passed=False)
    assert format_report(r).splitlines()[-1] == "result: FAIL (1 check failed)"
    assert verdict({**r, "baseline_deltas": [{"check": "x", "regressed": True}]}, "B.json") == \
        "result: FAIL (1 check failed; regressed against B.json)"
    assert format_report(report()).splitlines()[-1] == "result: PASS"


def test_accuracy_and_agreement_change_in_points_latency_and_cost_in_percent():
    r = report(latency={"count": 50, "median_ms": 2.2, "mean_ms": 2.3, "min_ms": 2.1, "max_ms": 2.9, "p90_ms": 2.5,
                        "throughput_fps": 454.5})
    base = {**REGRESSED, "fidelity": {"top1_agreement_vs_reference": 0.995}, "latency": {"median_ms": 2.0}}
    rows = {line.split("  ")[0]: line for line in against(r, base).splitlines()}
    assert "99.56%" in rows["accuracy"] and "96.94%" in rows["accuracy"]
    assert "-2.62 points  drop <= 0.5 points  REGRESSED" in rows["accuracy"]  # not the relative -2.6%
    assert "+0.50 points  drop <= 0.5 points" in rows[compare.AGREEMENT]
    assert "2.000 ms" in rows["latency median"] and "+10.0%  increase <= 10%" in rows["latency median"]
    assert "+3.3%  increase <= 2%" in rows["cost systick_ticks_per_inference"]


def test_a_cost_reads_the_same_with_separators_in_the_cost_line_table_and_junit():
    r = report()
    text = against(r, REGRESSED)
    assert f"cost: SysTick ticks / inference = {TICKS:,}\n" in text
    table_row = next(line for line in text.splitlines() if line.startswith("cost systick_ticks_per_inference"))
    assert "1,600,000" in table_row and f"{TICKS:,}" in table_row
    assert not re.search(r"\d\.\d+e[+-]\d", text) and str(TICKS) not in text
    assert f'message="{TICKS:,} vs baseline 1,600,000, limit increase &lt;= 2%"' in compare.junit_xml(r)


def test_no_python_none_or_booleans_and_fractions_as_percent():
    text = format_report(report())
    assert not re.search(r"\b(None|True|False)\b", text)
    assert "cost: Same as compile = yes" in text and "cost: Stack" not in text  # not measured: left out
    assert "cost: RAM = 282,436 B (275.8 KiB)" in text and "cost: Vector share = 43.21%" in text
    assert "top-1 agreement with int8 reference 100.00%" in text  # fidelity line and check agree
    assert f"[PASS] {compare.AGREEMENT}: 100.00% (expected >= 99%)" in text


def manifest(int8_accuracy: float, images: int):
    return SimpleNamespace(metrics=SimpleNamespace(int8_accuracy=int8_accuracy), eval=SimpleNamespace(images=images))


def test_accuracy_below_compiles_at_full_agreement_is_explained_by_its_tied_logits():
    ref = np.array([[3.0, 3.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    device = ref.copy()
    device[0, 1] += 1e-6  # the tie between classes 0 and 1 broken the other way (a float backend)
    labels = np.array([0, 1, 2, 0])
    assert agreement(device, ref) == 1.0 and accuracy(device, labels) < accuracy(ref, labels)
    note = _accuracy_note(manifest(accuracy(ref, labels), 4), accuracy(device, labels), device, ref)
    assert note == ("compile's int8 reference scored 100.00% on the same 4 images; the device picks another "
                    "top-1 class on 1 of them, 1 of those a tie between equal top logits (which top-1 "
                    "agreement counts as agreeing)")
    r = report(accuracy=accuracy(device, labels), eval_images=4, accuracy_note=note)
    assert f"accuracy 75.00% on 4 eval images (fp32 at compile 97.50%)\n  note: {note}" in format_report(r)
    assert _accuracy_note(manifest(accuracy(ref, labels), 4), accuracy(ref, labels), ref, ref) is None


def test_fewer_eval_images_than_compile_are_named_as_the_reason():
    logits = np.eye(3)
    note = _accuracy_note(manifest(0.9722, 360), 1.0, logits, logits)
    assert note == ("compile's int8 reference scored 97.22% on all 360 eval images; "
                    "bench measured the first 3 (--eval-size)")


def test_the_badge_colours_only_the_verdict_word(monkeypatch):
    from edgepack.cli.bench_cmd import _with_badge

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", Tty())
    assert _with_badge("x\nresult: FAIL (regressed against B.json)") == \
        "x\nresult: \033[31mFAIL\033[0m (regressed against B.json)"
    assert _with_badge("x\nresult: PASS") == "x\nresult: \033[32mPASS\033[0m"


def test_update_baseline_creates_the_folders_it_names(tmp_path):
    """docs/ci.md records `--update-baseline benchmarks/baselines/X.json` in a checkout that may lack that folder:
    bench accepted the path before the bench, then refused to write it after."""
    path = tmp_path / "benchmarks" / "baselines" / "cortex-m4.json"
    compare.write_baseline(path, report())
    assert json.loads(path.read_text())["target"] == "cortex-m4"
