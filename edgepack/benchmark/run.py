"""bench: verify an artifact, then check golden outputs, eval accuracy, fidelity and latency on its device.

Every backend's ``Runner`` implements edgepack.backends.runner.Runner: bench checks the device options
against the runner's declared OPTIONS, then checks bit-exactness where run_int8 gives integer outputs,
and reports latency() (None on emulators: a note instead), cost() and details() when they are not None.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.artifact import Manifest, load as load_artifact
from edgepack.backends import backend_module
from edgepack.benchmark import compare, device_report
from edgepack import evaldata, progress
from edgepack.evaluate import accuracy, agreement, max_abs_diff, sqnr_db
from edgepack.plan import reference
from edgepack.plan.golden import load_golden
from edgepack.plan.plan import Plan
from edgepack import gate

MIN_AGREEMENT = 0.99


@dataclass
class Check:
    name: str
    passed: bool
    value: object
    expected: str

    def to_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "value": self.value, "expected": self.expected}


def eval_set(manifest: Manifest, eval_size: int | None, folder: Path, eval_data=None):
    """The eval images the compile measured (see edgepack.evaldata), the first ``eval_size`` of them."""
    recorded = manifest.eval.images
    n = recorded if eval_size is None else min(eval_size, recorded)
    return evaldata.load(manifest, folder, eval_data).take(n)


def bench_artifact(artifact, eval_size: int | None = None, count: int = 50, warmup: int = 5, eval_data=None,
                   **device_options) -> dict:
    """``eval_data``: the compile's eval data, needed only when it was too large to copy into the artifact."""
    folder = Path(artifact)
    manifest = load_artifact(folder)
    runner_class = backend_module(manifest.backend).Runner
    runner = runner_class(folder, manifest.raw, **runner_class.check_options(manifest.backend, device_options))
    plan = Plan.load(folder) if manifest.plan is not None else None
    golden_x, golden_y = load_golden(folder, plan)
    data = eval_set(manifest, eval_size, folder, eval_data)
    checks: list[Check] = []
    report: dict = {"artifact": str(folder), "target": manifest.target.name, "backend": manifest.backend,
                    "device": runner.device, "eval_images": len(data), **compare.artifact_identity(manifest),
                    "fp32_accuracy_at_compile": manifest.metrics.fp32_accuracy, "tolerances": manifest.tolerances}

    ref = None
    scope = progress.scope("bench", manifest.target.name, folder.resolve(), len(data), count)
    if plan is not None:
        ref_golden = reference.run(plan, golden_x)
        checks.append(_exact("golden: reference == recorded output", ref_golden, golden_y))
        with scope, progress.stage(f"int8 reference on {len(data):,} eval images"):
            ref_q = reference.run_batched(plan, plan.input_q.quantize(data.images))
        ref = plan.dequantize_outputs(ref_q)
        with scope:
            logits = _device_int8(runner, plan, golden_x, golden_y, data, ref_q, checks)
    else:
        with scope, progress.stage(f"{len(data):,} eval images on {runner.device}"):
            logits = runner.logits(data.images)
        checks.append(Check("golden: fp32 max |diff| to recorded output", max_abs_diff(runner.logits(golden_x), golden_y) < 1e-4,
                            max_abs_diff(runner.logits(golden_x), golden_y), "< 1e-4"))
    several = plan is not None and plan.multi_output()  # labels are one output's classes: fidelity per output only
    report["accuracy"] = None if data.labels is None or several else accuracy(logits, data.labels)
    if several:
        report["outputs"] = len(plan.output_layers)
    if ref is not None:
        per_output = _per_output(plan, logits, ref) if several else None
        agree = min(o["top1_agreement_vs_reference"] for o in per_output) if several else agreement(logits, ref)
        report["fidelity"] = {**_fidelity(manifest, agree, logits, ref), **({"outputs": per_output} if several else {})}
        checks.append(Check(compare.AGREEMENT, agree >= MIN_AGREEMENT, agree, f">= {MIN_AGREEMENT:.0%}"))
        note = _accuracy_note(manifest, report["accuracy"], logits, ref)
        if note:
            report["accuracy_note"] = note
    checks.extend(_gate_check(manifest, report["accuracy"], len(data)))
    with scope, progress.stage(f"latency: {count:,} timed runs on {runner.device}"):
        report["latency"] = runner.latency(data.images[0], warmup, count)
    if report["latency"] is None:
        report["latency_note"] = f"{runner.device} is emulated: its wall-clock times are not device latencies"
    for key, value in (("cost", runner.cost()), ("device_details", runner.details())):
        if value is not None:
            report[key] = value
    names = device_report.recorded_names(manifest)  # compile's, no model rebuilt
    report["device_report"] = device_report.block(manifest, plan, report.get("cost"), report["latency"], names)
    report["checks"] = [c.to_json() for c in checks]
    report["passed"] = all(c.passed for c in checks)
    return report


def _device_int8(runner, plan: Plan, golden_x, golden_y, data, ref_q: np.ndarray, checks: list) -> np.ndarray:
    """The device's logits on the eval images, checked bit for bit against the reference where it computes in
    integers; its run on the golden inputs gives the eval run's progress line a first estimate."""
    start = time.monotonic()
    with progress.stage(f"golden inputs on {runner.device}"):
        dev_golden = runner.run_int8(golden_x)
    if dev_golden is None:  # the device computes in floats
        with progress.stage(f"{len(data):,} eval images on {runner.device}"):
            return runner.logits(data.images)
    per_input = (time.monotonic() - start) / max(len(golden_x), 1)
    checks.append(_exact(f"golden: {runner.device} == reference (bit-exact)", dev_golden, golden_y))
    with progress.stage(f"{len(data):,} eval images on {runner.device}", per_input * len(data)):
        dev_q = runner.run_int8(plan.input_q.quantize(data.images))
    checks.append(_exact(f"eval: {runner.device} == reference (bit-exact)", dev_q, ref_q))
    return plan.dequantize_outputs(dev_q)


def _per_output(plan: Plan, logits: np.ndarray, ref: np.ndarray) -> list[dict]:
    """A plan with several outputs: the device's fidelity to the reference on each output's segment."""
    rows = []
    for i, (a, b) in zip(plan.output_layers, plan.output_segments()):
        got, want = logits[:, a:b], ref[:, a:b]
        rows.append({"layer": i, "name": plan.layers[i].name, "values": b - a,
                     "top1_agreement_vs_reference": agreement(got, want), "max_abs_diff_vs_reference": max_abs_diff(got, want),
                     "sqnr_db_vs_reference": _sqnr_or_none(want, got)})
    return rows


def _gate_check(manifest: Manifest, device_accuracy: float | None, images: int) -> list[Check]:
    """The compile's accuracy gate (edgepack.gate: int8 vs the fp32 model) as a check; the drop is judged
    again with this device's accuracy when it ran all the compile's labelled eval images. None for artifacts
    the gate does not judge (fp32, imported int8) or that predate it."""
    record = manifest.metrics.accuracy_gate
    if not record or not record.get("applies"):
        return []
    if device_accuracy is not None:
        record = gate.with_device_accuracy(record, device_accuracy, images)
    drop = record["measure"] == "accuracy_drop_points"
    value = (f"drop {record['value']:.2f} points" if drop else f"agreement {record['value']:.2f}%") + \
        f" on {record['images']:,} images ({record['images_apart']:,} image{'s' * (record['images_apart'] != 1)} apart)"
    unit = (" point" + "s" * (record["limit"] != 1)) if drop else "%"
    expected = (f"{'<=' if drop else '>='} {record['limit']:g}{unit} ({record['limit_origin']}; "
                f"{gate.TOLERANCE_NOTE})")
    return [Check("accuracy gate: int8 vs fp32", record["passed"], value, expected)]


def _fidelity(manifest: Manifest, agree: float, logits: np.ndarray, ref: np.ndarray) -> dict:
    """How close the device is to the int8 reference (and, for an imported .tflite, how many eval inputs the
    reference matched LiteRT's reference kernels on at compile): the figures for outputs without labels or
    that are not class logits at all (an autoencoder's 640 values)."""
    litert = manifest.raw.get("metrics", {}).get("reference_vs_litert_import") or {}
    return {"top1_agreement_vs_reference": agree, "max_abs_logit_diff_vs_reference": max_abs_diff(logits, ref),
            "sqnr_db_vs_reference": _sqnr_or_none(ref, logits), "sqnr_db_vs_fp32_at_compile": manifest.metrics.sqnr_db,
            "litert_bit_exact_inputs_at_compile": litert.get("images") if litert.get("bit_exact") else None}


def _accuracy_note(manifest: Manifest, device_accuracy: float | None, logits: np.ndarray,
                   ref: np.ndarray) -> str | None:
    """Why bench's accuracy differs from the compile's (the int8 reference's on all its eval images), when it
    does: fewer images, or images on which the device's top-1 is another class than the reference's, often
    one tied with it (top-1 agreement counts a tie as agreement). None when they are the same."""
    at_compile, images = manifest.metrics.int8_accuracy, manifest.eval.images
    if device_accuracy is None or at_compile is None or abs(device_accuracy - at_compile) < 1e-12:
        return None
    said = f"compile's int8 reference scored {at_compile:.2%} on"
    if len(logits) != images:
        return f"{said} all {images:,} eval images; bench measured the first {len(logits):,} (--eval-size)"
    rows = np.arange(len(logits))
    device_top, ref_top = logits.argmax(1), ref.argmax(1)
    other = device_top != ref_top
    tied = other & ((ref[rows, device_top] == ref.max(1)) | (logits[rows, ref_top] == logits.max(1)))
    return (f"{said} the same {images:,} images; the device picks another top-1 class on {int(other.sum()):,} of them"
            + (f", {int(tied.sum()):,} of those a tie between equal top logits (which top-1 agreement counts as "
               "agreeing)" if tied.any() else ""))


def _sqnr_or_none(ref: np.ndarray, got: np.ndarray) -> float | None:
    """The device outputs' SQNR against the int8 reference, the figure for outputs that are not class logits
    (an autoencoder's 640 values); None when they are identical (infinite, which JSON cannot hold)."""
    same = ref.shape == got.shape and np.array_equal(ref, got)
    return None if same else sqnr_db(ref, got)


def _exact(name: str, got: np.ndarray, want: np.ndarray) -> Check:
    same = got.shape == want.shape and bool(np.array_equal(got, want))
    diff = int(np.count_nonzero(got != want)) if got.shape == want.shape else f"shape {got.shape} != {want.shape}"
    return Check(name, same, diff, "0 differing values")


def _fp32(accuracy: float | None) -> str:
    """An imported int8 model (.tflite) has no fp32 model, so no fp32 figure."""
    return "n/a: imported int8 model" if accuracy is None else f"{accuracy:.2%}"


def _cost_text(key: str, value) -> str:
    """A cost figure as text: bytes with separators and KiB, shares as percent, yes/no, counts with separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and key.endswith("_bytes"):
        return device_report.size(value)
    if isinstance(value, float) and "share" in key:
        return device_report.percent(value)
    if isinstance(value, (int, float)) and "speedup" in key:
        return f"{value:.2f}x"
    return compare.value_text(value)


COST_WORDS = {"systick": "SysTick", "ram": "RAM", "cpu": "CPU", "qemu": "QEMU", "mca": "llvm-mca", "approx": "approx."}


def cost_label(key: str) -> str:
    """A cost key as bench's text names it ('systick_ticks_per_inference' -> 'SysTick ticks / inference',
    'model_ram_bytes' -> 'Model RAM': the value carries the B); bench's JSON keeps the key."""
    words = key.replace("_per_", "_/_").split("_")
    if len(words) > 1 and words[-1] == "bytes":
        words = words[:-1]
    text = " ".join(COST_WORDS.get(w, w) for w in words)
    return text if text.startswith("llvm-mca") else text[:1].upper() + text[1:]


def _figure_lines(r: dict) -> list[str]:
    """Header, accuracy (and why it differs from the compile's), fidelity and latency."""
    lines = [f"artifact {r['artifact']}  target {r['target']}  backend {r['backend']}  device {r['device']}",
             f"accuracy {r['accuracy']:.2%} on {r['eval_images']:,} eval images "
             f"(fp32 at compile {_fp32(r['fp32_accuracy_at_compile'])})"
             if r["accuracy"] is not None else
             f"accuracy: none (the model has {r['outputs']} outputs: fidelity per output below)" if r.get("outputs") else
             f"accuracy: none (the artifact's {r['eval_images']:,} eval inputs have no labels; fidelity below)"]
    if r.get("accuracy_note"):
        lines.append(f"  note: {r['accuracy_note']}")
    if "fidelity" in r:
        f = r["fidelity"]
        lines.append(f"fidelity: top-1 agreement with int8 reference {f['top1_agreement_vs_reference']:.2%}, "
                     f"max |logit diff| {f['max_abs_logit_diff_vs_reference']:.4g}, SQNR vs reference "
                     + ("inf (identical)" if f.get("sqnr_db_vs_reference") is None else f"{f['sqnr_db_vs_reference']:.1f} dB")
                     + ("" if f["sqnr_db_vs_fp32_at_compile"] is None else f", int8 vs fp32 SQNR {f['sqnr_db_vs_fp32_at_compile']:.1f} dB")
                     + ("" if not f.get("litert_bit_exact_inputs_at_compile") else
                        f", reference bit-exact with LiteRT on {f['litert_bit_exact_inputs_at_compile']:,} inputs at compile"))
        for k, o in enumerate(f.get("outputs") or ()):
            lines.append(f"  output {k} ({o['name']}, {o['values']:,} values): top-1 agreement {o['top1_agreement_vs_reference']:.2%}, "
                         f"max |diff| {o['max_abs_diff_vs_reference']:.4g}, SQNR vs reference "
                         + ("inf (identical)" if o["sqnr_db_vs_reference"] is None else f"{o['sqnr_db_vs_reference']:.1f} dB"))
    lat = r["latency"]
    if lat:
        first = f"  first {lat['first_inference_ms']:.2f} ms" if lat.get("first_inference_ms") is not None else ""
        lines.append(f"latency (batch 1, {lat['count']:,} runs): median {lat['median_ms']:.3f} ms  mean {lat['mean_ms']:.3f}  "
                     f"min {lat['min_ms']:.3f}  max {lat['max_ms']:.3f}  p90 {lat['p90_ms']:.3f}  "
                     f"throughput {lat['throughput_fps']:,.1f} fps{first}")
    else:
        lines.append(f"latency: not measured ({r['latency_note']})")
    return lines


def verdict(r: dict, baseline=None) -> str:
    """The one closing line, from the same figures as bench's exit code: PASS only when every check passed
    and nothing regressed against ``baseline`` (its path, when bench compared with one)."""
    failed = sum(not c["passed"] for c in r["checks"])
    regressed = any(d["regressed"] for d in r.get("baseline_deltas", []))
    why = ([f"{failed} check{'s' * (failed != 1)} failed"] if failed else []) + \
        ([f"regressed against {baseline}"] if regressed else [])
    if why or not r["passed"]:
        return "result: FAIL" + (f" ({'; '.join(why)})" if why else "")
    return "result: PASS" + (f" (no regression against {baseline})" if baseline is not None else "")


def format_report(r: dict, baseline: tuple[str, str] | None = None) -> str:
    """bench's text, closed by one verdict line. ``baseline``: (its path, compare.format_section's text) when
    bench compared with one: the section comes before the verdict, which accounts for it."""
    lines = _figure_lines(r)
    for key, value in (r.get("cost") or {}).items():
        if value is not None:  # a figure this device does not have (no stack bound off Cortex-M) is left out
            lines.append(f"cost: {cost_label(key)} = {_cost_text(key, value)}")
    mca = device_report.mca_line((r.get("device_report") or {}).get("compute") or {})
    if mca:  # beside the instruction count: the llvm-mca cycle estimate, or how to install llvm-mca
        lines.append(mca)
    if r.get("device_details"):
        d = r["device_details"]
        lines.append(f"device: {d['summary']}"
                     + (f"; compile (load) time {d['compile_load_ms']:,.1f} ms" if "compile_load_ms" in d else ""))
    if r.get("device_report"):
        lines.append(device_report.format_text(r["device_report"]))
    for c in r["checks"]:
        lines.append(f"  [{'PASS' if c['passed'] else 'FAIL'}] {c['name']}: {compare.check_text(c)}")
    if baseline is not None:
        lines += ["", baseline[1]]
    lines.append(verdict(r, baseline[0] if baseline is not None else None))
    return "\n".join(lines)
