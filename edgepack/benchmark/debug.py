"""Per-layer debugging: the fp32 folded model and the int8 plan side by side.

For each plan layer: the *isolated* error (the layer's fp32 input, quantized with the plan's
input parameters, through that one int8 layer, against the layer's fp32 output) says which
layer loses information; the *cumulative* error (the whole int8 network up to that layer)
says where the damage shows. Depthwise layers also get their per-channel weight range spread
(max/min of per-channel |w|max): a large spread is why per-tensor weights collapse them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch import nn

from edgepack import evaldata, provenance
from edgepack.artifact import verify
from edgepack.data import Dataset
from edgepack.errors import ArtifactError
from edgepack.evaluate import sqnr_db
from edgepack.fold import fold
from edgepack.frontends.module_paths import fp32_layer_io
from edgepack.inputs import check_shape, inputs_of
from edgepack.plan import reference
from edgepack.plan.plan import PLAN_INPUT, Plan
from edgepack.quantize.equalize import equalize, range_spread
from edgepack.validate import check_count, check_model, check_path_argument

# An int8 layer that keeps its fp32 function scores 30-50 dB isolated; under 15 dB (a noise a sixth of the signal)
# its output no longer carries its input's information: the layers a collapse starts from.
BREAKING_SQNR_DB = 15.0


def _derived_io(plan: Plan, io: list, images: np.ndarray, i: int, derived: dict) -> tuple[list, np.ndarray] | None:
    """For a layer no module call makes (an add, a functional pool): its fp32 inputs (what its sources output;
    ``derived`` holds the outputs of earlier such layers, so an add that reads an add has them) and its fp32
    output (what its first reader takes in), when both are known."""
    sources = []
    for j in plan.inputs_of(i):
        if j == PLAN_INPUT:
            sources.append(images)
        elif io[j] is not None or j in derived:
            sources.append(io[j][1] if io[j] is not None else derived[j])
        else:
            return None
    reader = next((k for k in range(i + 1, len(plan.layers)) if plan.inputs_of(k)[0] == i), None)
    if reader is None or io[reader] is None:
        return None
    return sources, io[reader][0]


def weight_spread(layer) -> float:
    w = np.abs(layer.weight.reshape(layer.weight.shape[0], -1).astype(np.float64) * layer.arrays["weight_scale"][:, None])
    per_channel = w.max(1)
    nonzero = per_channel[per_channel > 0]
    return float(nonzero.max() / nonzero.min()) if len(nonzero) else 0.0


def _folded_as_compiled(model: nn.Module, manifest: dict, calibration: Dataset) -> tuple[nn.Module, nn.Module | None]:
    """The fp32 model the plan was quantized from: folded, and equalized as the compile did (on its calibration
    inputs; in-memory ones are not stored, so then on what debug was given, which may differ on ReLU6 channels);
    with the folded model before equalization when the compile equalized (None otherwise)."""
    folded = fold(model.eval())
    if (manifest["quantization"].get("equalization") or {}).get("applied"):
        return equalize(folded, calibration.images)[0], folded
    return folded, None


def _spread_before_equalization(rows: list[dict], unequalized: nn.Module | None) -> None:
    """Each weighted row's per-channel weight range spread in the model before cross-layer equalization, beside
    the plan's (after it): how much equalization evened out what one per-tensor scale must span."""
    modules = dict(unequalized.named_modules()) if unequalized is not None else {}
    for r in rows:
        module = modules.get(r["module"]) if r["module"] else None
        r["weight_range_spread_before_equalization"] = (
            range_spread(module) if isinstance(module, nn.Conv2d) and r["weight_range_spread"] is not None else None)


def debug_artifact(artifact, images: int = 32, model: nn.Module | str | None = None, calibration=None) -> dict:
    """Per-layer figures on the inputs the artifact was calibrated with (edgepack.provenance): the fp32
    model is rebuilt from what the compile recorded (shipped weights, checkpoint), or is ``model``: an
    nn.Module (required for an in-memory model), or the ``FILE.py:NAME`` the artifact was compiled from
    (required for a --model artifact: debug runs no code a manifest names). ``calibration``: model inputs
    (array, tensor, iterable, as for edgepack.compile) to use instead; in-memory calibration is not stored,
    so without it such an artifact is debugged on its own eval inputs."""
    folder = Path(check_path_argument(artifact, "artifact"))
    images = check_count(images, "--images")  # the CLI's flag and the API's argument: one check, one message
    model_spec = model if isinstance(model, str) else None
    model = None if model_spec else model
    if model is not None:
        check_model(model)
    manifest = verify(folder)
    if not manifest.get("plan"):
        raise ArtifactError(f"{folder} is an fp32 artifact (--quant none): it has no int8 plan to debug; compile with "
                            "--quant ptq or qat")
    if model is None:
        model = provenance.rebuild_model(manifest, folder, model_spec)
    stored = provenance.calibration_inputs(manifest, folder)  # what the compile calibrated (and equalized) on
    if calibration is not None:
        given = inputs_of(calibration, "calibration")
        res = manifest["model"]["resolution"]
        check_shape(given, "calibration", res, f"the artifact is {res}x{res}")
        data = Dataset(given, None, "given calibration inputs")
    else:
        data = stored
        if data is None:
            data = evaldata.load(manifest, folder)
            data = Dataset(data.images, None, f"{data.source} (its in-memory calibration inputs are not stored)")
    folded, unequalized = _folded_as_compiled(model, manifest, stored if stored is not None else data)
    data = data.take(images)
    plan = Plan.load(folder)
    io = fp32_layer_io(folded, plan, data.images, type(model).__name__)
    _, cumulative = reference.run(plan, plan.input_q.quantize(data.images), collect=True)
    rows = _rows(plan, io, data.images, cumulative)
    _spread_before_equalization(rows, unequalized)
    ranked = sorted((r for r in rows if r["isolated_sqnr_db"] is not None), key=lambda r: r["isolated_sqnr_db"])
    worst = ranked[:worst_count(len(ranked))]
    return {"artifact": str(folder), "images": len(data), "inputs": data.source,
            "quantization": manifest["quantization"].get("weights"),
            "calibration_method": manifest["quantization"].get("activation_calibration"),
            "layers": rows, "worst": [r["layer"] for r in worst],
            "breaking": [r["layer"] for r in ranked if r["isolated_sqnr_db"] < BREAKING_SQNR_DB]}


def clipped_percent(y: np.ndarray, q) -> float:
    """Share of the fp32 outputs outside the int8 range calibration chose (by more than half a step): what
    a percentile or histogram range gives up to spend its steps on the rest."""
    low, high = (-128.5 - q.zero_point) * q.scale, (127.5 - q.zero_point) * q.scale
    return float(100 * np.mean((y < low) | (y > high)))


def worst_count(layers: int) -> int:
    """How many layers "worst" names: five in a MobileNet, fewer in a short plan (one in four, at least one),
    so that the mark singles layers out."""
    return max(1, min(5, layers // 4)) if layers else 0


def _rows(plan: Plan, io: list, images: np.ndarray, cumulative: list) -> list[dict]:
    """One row per plan layer: isolated and cumulative SQNR against its fp32 counterpart (None where the model
    has none to compare with), its module path, the weight spread of weighted layers."""
    rows, outputs = [], {}  # outputs: the fp32 outputs of the layers no module call makes
    for i, (layer, q_out) in enumerate(zip(plan.layers, cumulative)):
        if io[i] is not None:
            x, y, module = io[i]
            sources = [layer.input_q.quantize(x)]
        else:
            derived, module = _derived_io(plan, io, images, i, outputs), ""
            sources = y = None
            if derived is not None:
                outputs[i] = derived[1]
                sources = [q.quantize(t.reshape((-1, *shape))) for q, t, shape in zip(
                    layer.inputs_q(), derived[0], (plan.input_shape if j == PLAN_INPUT else plan.layers[j].output_shape
                                                   for j in plan.inputs_of(i)))]
                y = derived[1]
        row = {"layer": layer.name, "module": module, "kind": layer.kind, "isolated_sqnr_db": None,
               "isolated_max_abs_error": None, "cumulative_sqnr_db": None, "clipped_percent": None,
               "weight_range_spread": weight_spread(layer) if "weight" in layer.arrays else None,
               "per_tensor_weights": bool("weight_scale" in layer.arrays and len(np.unique(layer.arrays["weight_scale"])) == 1)}
        if sources is not None:
            isolated = layer.output_q.dequantize(reference.kernel(layer, *sources))
            y = y.reshape(isolated.shape)
            row.update(isolated_sqnr_db=sqnr_db(y, isolated), isolated_max_abs_error=float(np.abs(y - isolated).max()),
                       cumulative_sqnr_db=sqnr_db(y, layer.output_q.dequantize(q_out).reshape(y.shape)),
                       clipped_percent=clipped_percent(y, layer.output_q))
        rows.append(row)
    return rows


def _figure(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _spread_text(r: dict) -> str:
    before = r.get("weight_range_spread_before_equalization")
    after = f"weight range spread {r['weight_range_spread']:.0f}x" if r["weight_range_spread"] else ""
    return after + (f", {before:.0f}x before equalization" if before else "")


def format_debug(d: dict) -> str:
    rows = d["layers"]
    width = max([22] + [len(r.get("module") or r["layer"]) + 2 for r in rows])
    before = any(r.get("weight_range_spread_before_equalization") for r in rows)
    method = f", {d['calibration_method']} activation ranges" if d.get("calibration_method") else ""
    lines = [f"per-layer int8 vs fp32 on {d['images']} calibration images ({d['quantization']}{method}; {d['inputs']})",
             f"{'layer':<{width}}{'kind':<11}{'isolated SQNR dB':>17}{'max |err|':>11}{'cumulative dB':>15}{'clipped %':>10}"
             f"{'w spread':>10}" + (f"{'before CLE':>12}" if before else "")]
    for r in rows:
        spread = f"{r['weight_range_spread']:.0f}x" if r["weight_range_spread"] else ""
        was = r.get("weight_range_spread_before_equalization")
        mark = "  <- worst" if r["layer"] in d["worst"] else ""
        lines.append(f"{r.get('module') or r['layer']:<{width}}{r['kind']:<11}{_figure(r['isolated_sqnr_db'], '.1f'):>17}"
                     f"{_figure(r['isolated_max_abs_error'], '.4f'):>11}{_figure(r['cumulative_sqnr_db'], '.1f'):>15}"
                     f"{_figure(r.get('clipped_percent'), '.2f'):>10}{spread:>10}" + (f"{f'{was:.0f}x' if was else '':>12}" if before else "") + mark)
    name = {r["layer"]: r for r in rows}
    lines.append("worst layers (isolated SQNR): " + ", ".join(
        f"{name[n].get('module') or n} ({name[n]['kind']})" for n in d["worst"]))
    breaking = d.get("breaking") or []
    lines.append(f"layers that break the int8 model (isolated SQNR < {BREAKING_SQNR_DB:.0f} dB): " + (
        "; ".join(f"{name[n].get('module') or n} ({name[n]['kind']}, {name[n]['isolated_sqnr_db']:.1f} dB"
                  + (f", {_spread_text(name[n])}" if name[n]["weight_range_spread"] else "") + ")" for n in breaking)
        or "none"))
    if any(r["isolated_sqnr_db"] is None for r in rows):
        lines.append("- : the model has no fp32 tensor to compare that layer with")
    return "\n".join(lines)


def _kind_colours(rows: list[dict]) -> dict[str, str]:
    """A colour per kind present in the plan, in first-seen order (the legend lists only these)."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    return {k: f"C{i % 10}" for i, k in enumerate(kinds)}


def plot_debug(d: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = d["layers"]
    colours = _kind_colours(rows)
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(11, 0.22 * len(rows)), 7.5), sharex=True)
    xs = np.arange(len(rows))
    bar_colours = [colours[r["kind"]] for r in rows]
    a.bar(xs, [min(r["isolated_sqnr_db"] or 0, 80) for r in rows], color=bar_colours)
    a.plot(xs, [np.nan if r["cumulative_sqnr_db"] is None else min(r["cumulative_sqnr_db"], 80) for r in rows],
           "k.-", label="cumulative")
    a.set_ylabel("SQNR (dB), isolated bars")
    a.legend()
    b.bar(xs, [r["weight_range_spread"] or 0 for r in rows], color=bar_colours)
    if any(r.get("weight_range_spread_before_equalization") for r in rows):
        b.bar(xs, [r.get("weight_range_spread_before_equalization") or 0 for r in rows], fill=False,
              edgecolor="black", linewidth=0.6, label="before equalization")
    if any(r["weight_range_spread"] for r in rows):
        b.set_yscale("log")  # ticks as ratios (20x), not 2x10^1; no labelled minor ticks
        b.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        b.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        b.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    b.set_ylabel("per-channel weight range spread")
    b.set_xticks(xs, [f"{i} {r.get('module') or r['layer']}" for i, r in enumerate(rows)], rotation=90, fontsize=7)
    for i, r in enumerate(rows):
        if r["layer"] in (d.get("breaking") or []):
            a.annotate("breaks", (i, 0), ha="center", va="bottom", fontsize=7, rotation=90, color="red")
    b.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], colours.keys(), fontsize=7,
             ncol=min(len(colours), 6))
    fig.suptitle(f"edgepack debug: {Path(d['artifact']).name} ({d['quantization']})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")  # the rotated layer names in full
    plt.close(fig)
    return path


def write_json(d: dict, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(d, indent=1) + "\n")
