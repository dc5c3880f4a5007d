"""The device report block: what the artifact costs on its device, from the manifest and bench's cost figure.

Flash, RAM (the model's own and the whole firmware's), arena, stack, instructions or SysTick ticks, the
estimated time on the target's named board ([board] in the target file: instructions x cycles per
instruction / clock, always labelled an estimate with its assumption) and a per-layer table (kind, output
shape, Mult-Adds, tick share where the C backend measured per-layer ticks, flash per layer). ``block`` is
plain data (bench's JSON); ``format_text`` is bench's text; report.py renders the same block as HTML.
Figures a backend does not measure are left out with a reason, never printed as None.
"""
from __future__ import annotations

import numpy as np

from edgepack.artifact import Manifest
from edgepack.plan.plan import Plan

NOT_MEASURED = "not measured for this backend"


# ---------------------------------------------------------------- formatting (shared with report.py)

def count(n) -> str:
    """An integer with thousands separators; a float to 4 significant figures ("n/a" for None)."""
    if n is None:
        return "n/a"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.4g}" if abs(n) < 1000 else f"{n:,.0f}"
    return f"{int(n):,}"


def size(n) -> str:
    """Bytes with separators and the KiB / MiB figure beside them: ``282,436 B (275.8 KiB)``."""
    if n is None:
        return "n/a"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{int(n):,} B ({n / scale:,.1f} {unit})"
    return f"{int(n):,} B"


def percent(fraction, digits: int = 2) -> str:
    """A fraction as a percent: 0.97777 -> ``97.78%``, 1 -> ``100.00%``."""
    return "n/a" if fraction is None else f"{fraction * 100:.{digits}f}%"


def millis(ms) -> str:
    if ms is None:
        return "n/a"
    return f"{ms:,.2f} ms" if ms >= 1 else f"{ms:.3f} ms"


def shape(dims) -> str:
    return "x".join(str(d) for d in dims)


# ---------------------------------------------------------------- the block

def layer_macs(layer) -> int:
    """Mult-Adds of a conv or fc layer as the paper counts them (output elements x weights per output
    channel); 0 for pools, adds and the other weightless layers."""
    weight = layer.arrays.get("weight")
    if weight is None or weight.ndim < 2:
        return 0
    return int(np.prod(layer.output_shape)) * (weight.size // weight.shape[0])


def _plan_bytes(layer) -> int:
    """The int8 plan's constants of a layer (weights, biases, requantization): its flash share off the C backend."""
    return int(sum(a.nbytes for k, a in layer.arrays.items() if k != "weight_scale"))


def recorded_names(manifest: Manifest) -> list[str] | None:
    """Each plan layer's module path as compile recorded it (manifest plan.module_paths, the names debug shows);
    None for an imported .tflite or an artifact from before the record: its plan names stand (no model rebuilt).
    Its length was checked against the plan's when the manifest was read (manifest_schema)."""
    paths = manifest.plan.module_paths if manifest.plan is not None else None
    return list(paths) if paths is not None else None


def layers(manifest: Manifest, plan: Plan, names: list[str] | None = None) -> tuple[list[dict], str]:
    """One row per plan layer, and what its byte column counts; a layer is named by its module path where
    ``names`` gives one (recorded_names), by its plan name otherwise."""
    raw = manifest.raw
    ticks = (raw.get("cost") or {}).get("per_layer_ticks")
    if not (isinstance(ticks, list) and len(ticks) == len(plan.layers)):
        ticks = None
    per_layer = (raw.get("footprint") or {}).get("per_layer")
    flash = ({r["layer"]: r["total_bytes"] for r in per_layer} if isinstance(per_layer, list) else None)
    macs = [layer_macs(layer) for layer in plan.layers]
    total_macs, total_ticks = sum(macs), sum(ticks) if ticks else 0
    rows = []
    for i, layer in enumerate(plan.layers):
        rows.append({"index": i, "name": (names[i] if names and names[i] else layer.name), "plan_name": layer.name,
                     "kind": layer.kind, "output_shape": list(layer.output_shape),
                     "macs": macs[i], "macs_share": macs[i] / total_macs if total_macs else None,
                     "ticks": ticks[i] if ticks else None,
                     "ticks_share": ticks[i] / total_ticks if ticks and total_ticks else None,
                     "bytes": flash.get(i) if flash is not None else _plan_bytes(layer)})
    return rows, ("Flash (B): the layer's constants in the C model" if flash is not None
                  else "Constants (B): the layer's int8 weights, biases and requantization in the plan")


def memory(manifest: Manifest, cost: dict) -> dict:
    """Flash and RAM figures the compile measured (the C backend), or the TFLM arena estimate; {} elsewhere."""
    raw = manifest.raw
    fp, plan = raw.get("footprint") or {}, raw.get("memory_plan") or {}
    if fp:
        model_ram = fp.get("model_ram") or {}
        out = {"flash_bytes": fp.get("flash_bytes"), "ram_bytes": fp.get("ram_bytes"),
               "model_ram_bytes": fp.get("model_ram_bytes"), "arena_bytes": plan.get("arena_bytes", fp.get("arena_bytes")),
               "unplanned_arena_bytes": plan.get("naive_bytes", fp.get("naive_arena_bytes")),
               "planner": plan.get("planner"), "state_bytes": model_ram.get("state_bytes"),
               "stack_bytes": cost.get("stack_bytes", fp.get("stack_bytes")), "measured_on": fp.get("measured_on"),
               "flash_budget_bytes": (fp.get("budget") or {}).get("flash_bytes"),
               "ram_budget_bytes": (fp.get("budget") or {}).get("ram_bytes")}
        return {k: v for k, v in out.items() if v is not None}
    info = raw.get("backend_info") or {}
    arena = info.get("arena") if isinstance(info.get("arena"), dict) else {}
    out = {"flash_bytes": info.get("model_bytes"), "arena_bytes": arena.get("arena_bytes"),
           "measured_on": "flash: the .tflite as a C array; arena: TFLM's planner, estimated" if arena else None}
    return {k: v for k, v in out.items() if v is not None}


def compute(manifest: Manifest, cost: dict) -> dict:
    """The exact work per inference (bench's figure, else the compile's) and the estimated time on the board."""
    compiled = manifest.raw.get("cost") or {}
    out: dict = {}
    ticks = cost.get("systick_ticks_per_inference", compiled.get("ticks_per_inference"))
    if ticks is not None:
        ipt = manifest.target.run.instructions_per_tick
        out.update(metric="SysTick ticks", ticks_per_inference=ticks, instructions_per_tick=ipt,
                   instructions_per_inference=round(ticks * ipt) if ipt else None)
    else:
        instr = next((cost[k] for k in ("instructions_per_inference", "callgrind_instructions_per_inference")
                      if cost.get(k) is not None), compiled.get("instructions_per_inference"))
        if instr is not None:  # how it was counted: qemu's plugin on one thread, or callgrind
            out.update(metric="instructions", instructions_per_inference=instr,
                       method=cost.get("method") or compiled.get("source"))
    board = manifest.target.board
    if out.get("instructions_per_inference") and board.clock_mhz is not None:
        out["estimate"] = mca_estimate(cost, board) or board.estimate(out["instructions_per_inference"])
    if cost.get("mca_note"):
        out["mca_note"] = cost["mca_note"]
    return out


def mca_estimate(cost: dict, board) -> dict | None:
    """The llvm-mca estimate bench measured (edgepack.devices.mca: cycles of the hot blocks qemu executed,
    scaled to all instructions) at the board's clock, in the fixed-CPI estimate's shape; None without one."""
    cycles = cost.get("estimated_cycles_per_inference")
    if cycles is None or board.clock_mhz is None:
        return None
    cpu, share = cost.get("mca_cpu"), cost.get("mca_covered_share")
    instructions = cost.get("instructions_per_inference")
    return {"board": board.name, "clock_mhz": board.clock_mhz, "method": "llvm-mca", "mca_cpu": cpu,
            "instructions": instructions, "cycles": round(cycles), "ms": cycles / (board.clock_mhz * 1e3),
            "cycles_per_instruction": round(cycles / instructions, 3) if instructions else None,
            "is_estimate": True,
            "assumption": f"estimate, not a measurement: llvm-mca -mcpu={cpu} over the blocks qemu executed: "
                          f"{cost.get('mca_basis') or percent(share, 1) + ' of the instructions'}; L1-resident (no cache "
                          f"misses, no branch mispredictions) / {board.clock_mhz:g} MHz"}


def mca_line(comp: dict) -> str | None:
    """bench's one line beside the instruction count: the llvm-mca estimate, or how to get one."""
    est = comp.get("estimate") or {}
    if est.get("method") == "llvm-mca":
        cycles = f"{est['cycles'] / 1e6:,.1f} M" if est["cycles"] >= 1e6 else count(est["cycles"])
        return (f"estimated cycles per inference (llvm-mca {est['mca_cpu']}, L1-resident): {cycles}, "
                f"{millis(est['ms'])} at {est['clock_mhz']:g} MHz")
    return comp.get("mca_note")


def block(manifest: Manifest, plan: Plan | None, cost: dict | None, latency: dict | None = None,
          names: list[str] | None = None) -> dict:
    """The device report of one artifact as plain data (bench's JSON ``device_report``); ``names``: each plan
    layer's module path (recorded_names), where the model has one."""
    cost = cost or {}
    board = manifest.target.board.to_json()
    out = {"target": manifest.target.name, "board": board or None, "memory": memory(manifest, cost),
           "compute": compute(manifest, cost), "macs": manifest.macs, "params": manifest.params,
           "latency_median_ms": (latency or {}).get("median_ms")}
    if plan is not None:
        out["layers"], out["layer_bytes"] = layers(manifest, plan, names)
    return out


# ---------------------------------------------------------------- the block as text rows (bench text, HTML)

def _budget(used, budget) -> str:
    return f" of {size(budget)} budget ({used / budget:.1%})" if used is not None and budget else ""


def memory_rows(mem: dict) -> list[tuple[str, str]]:
    if not mem:
        return [("Flash / RAM", NOT_MEASURED)]
    rows = []
    if "flash_bytes" in mem:
        rows.append(("Flash", size(mem["flash_bytes"]) + _budget(mem["flash_bytes"], mem.get("flash_budget_bytes"))))
    if "ram_bytes" in mem:
        rows.append(("RAM (total)", size(mem["ram_bytes"]) + _budget(mem["ram_bytes"], mem.get("ram_budget_bytes"))))
    if "model_ram_bytes" in mem:
        parts = [f"{name} {count(mem[key])} B" for name, key in (("arena", "arena_bytes"), ("state", "state_bytes"),
                                                                    ("stack", "stack_bytes")) if key in mem]
        rows.append(("RAM (model's own)", f"{size(mem['model_ram_bytes'])} = {' + '.join(parts)}"))
    if "arena_bytes" in mem:
        how = [f"{mem['planner']} plan" if mem.get("planner") else None,
               f"{count(mem['unplanned_arena_bytes'])} B without planning" if mem.get("unplanned_arena_bytes") else None]
        note = "; ".join(h for h in how if h)
        rows.append(("Arena", size(mem["arena_bytes"]) + (f", {note}" if note else "")))
    if "stack_bytes" in mem:
        rows.append(("Stack", f"{size(mem['stack_bytes'])} (bound: high-water mark + interrupt margin)"))
    if mem.get("measured_on"):
        rows.append(("Measured on", mem["measured_on"]))
    return rows


def compute_rows(comp: dict, board: dict | None) -> list[tuple[str, str]]:
    rows = []
    if "ticks_per_inference" in comp:
        per = f" (x {comp['instructions_per_tick']} = {count(comp['instructions_per_inference'])} instructions)" \
            if comp.get("instructions_per_inference") else ""
        rows.append(("SysTick ticks / inference", f"{count(comp['ticks_per_inference'])}{per}, exact under QEMU -icount"))
    elif "instructions_per_inference" in comp:
        how = f" ({comp['method']})" if comp.get("method") else ""
        rows.append(("Instructions / inference", f"{count(comp['instructions_per_inference'])}, exact count{how}"))
    else:
        rows.append(("Instructions / inference", NOT_MEASURED))
    est = comp.get("estimate")
    if est and est.get("method") == "llvm-mca":
        cpi = f" ({est['cycles_per_instruction']:g} cycles/instruction)" if est.get("cycles_per_instruction") else ""
        rows.append((f"Estimated cycles (llvm-mca {est['mca_cpu']}, L1-resident)", f"{count(est['cycles'])} "
                     f"({est['cycles'] / 1e6:,.1f} M) = {millis(est['ms'])} at {count(est['clock_mhz'])} MHz{cpi}, an estimate"))
        rows.append(("Estimate basis", est["assumption"]))
    elif est:
        if comp.get("mca_note"):
            rows.append(("llvm-mca estimate", comp["mca_note"]))
        rows.append(("Estimated time (board)", f"{millis(est['ms'])} = {count(est['cycles'])} cycles at "
                     f"{count(est['clock_mhz'])} MHz, an estimate"))
        rows.append(("Estimate basis", est["assumption"]))
    return rows


def summary_rows(b: dict) -> list[tuple[str, str]]:
    """Label -> value text, in display order: what bench prints and the HTML report tabulates."""
    rows = [("Target", b["target"] + (f" (board: {b['board']['name']})" if b.get("board") else ""))]
    rows += memory_rows(b["memory"]) + compute_rows(b["compute"], b.get("board"))
    if b.get("latency_median_ms") is not None:
        rows.append(("Measured latency (median)", millis(b["latency_median_ms"])))
    rows.append(("Mult-Adds", count(b.get("macs"))))
    rows.append(("Parameters", count(b.get("params"))))
    return rows


LAYER_HEADERS = ("#", "Layer", "Kind", "Output shape", "Mult-Adds", "Mult-Adds share", "Ticks", "Tick share")


def layer_rows(b: dict) -> tuple[list[str], list[list[str]]]:
    """The per-layer table as headers and text cells (the tick columns only where ticks were measured)."""
    rows = b.get("layers") or []
    ticked = any(r["ticks"] is not None for r in rows)
    headers = [h for h in LAYER_HEADERS if ticked or "Tick" not in h]
    headers.append(b["layer_bytes"].partition(":")[0])
    table = []
    for r in rows:
        cells = [str(r["index"]), r["name"], r["kind"], shape(r["output_shape"]), count(r["macs"]),
                 percent(r["macs_share"], 1)]
        if ticked:
            cells += [count(r["ticks"]), percent(r["ticks_share"], 1)]
        table.append(cells + [count(r["bytes"])])
    return headers, table


def format_text(b: dict) -> str:
    """bench's text: the summary rows aligned, then the per-layer table."""
    rows = summary_rows(b)
    width = max(len(label) for label, _ in rows)
    lines = ["device report:"] + [f"  {label:<{width}}  {value}" for label, value in rows]
    headers, table = layer_rows(b)
    if table:
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
        left = {1, 2}  # name and kind read left-aligned; numbers right-aligned
        fmt = lambda cells: "  " + "  ".join(c.ljust(w) if i in left else c.rjust(w)  # noqa: E731
                                              for i, (c, w) in enumerate(zip(cells, widths)))
        lines += [f"  per layer ({b['layer_bytes']}):", fmt(headers), *map(fmt, table)]
    return "\n".join(lines)
