"""Sweeps: the alpha x resolution matrix for one target, built and benched in parallel processes
(bounded by the cores), tabulated (CSV + JSON) and plotted like the paper's Figures 4 and 5.

Every compile of the matrix takes the same model and data options as `edgepack compile` (``compile_options``:
checkpoint, model_spec, calibration, eval_data, mean, std, classes). A user model (``model_spec``) has no
width multiplier: its sweep is over resolutions only (alpha None), and an alpha list is refused. Built-in
models (``models``: any of the built-in MobileNets) are swept over alpha and resolution; with several,
the plots follow the paper's Figure 5: one series per model, points labelled alpha/resolution."""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edgepack import artifact, devices, progress
from edgepack.benchmark import device_report as fmt
from edgepack.compiler import CompileConfig, compile_model
from edgepack.errors import ArtifactError, ConfigError, OutputError
from edgepack.model.builtin import DEFAULT, SWEEP_ALPHAS, check_builtin, shipped_alphas
from edgepack.model.user import load_user_model, parse_model_spec

SWEEP_FORMAT = "edgepack-sweep"
COLUMNS = ("model", "alpha", "resolution", "macs", "params", "fp32_accuracy", "int8_accuracy", "top1_agreement",
           "latency_median_ms", "estimated_ms", "cost", "flash_bytes", "ram_bytes", "model_ram_bytes", "passed", "artifact")


def parse_list(text: str, check, what: str) -> list:
    """The checked values, each once (a point listed twice would be built twice into one folder)."""
    values = list(dict.fromkeys(check(v.strip()) for v in str(text).split(",") if v.strip()))
    if not values:
        raise ConfigError(f"--{what} needs a comma-separated list, e.g. 1,0.75,0.5,0.25")
    return values


# what the tables and plots read from each row, and the types they read
ROW_TYPES = {"alpha": (int, float, type(None)), "resolution": (int,), "macs": (int, float), "params": (int, float),
             "fp32_accuracy": (int, float, type(None)), "int8_accuracy": (int, float, type(None)),
             "latency_median_ms": (int, float, type(None)), "passed": (bool,)}
# figures older sweeps do not have, and backends do not measure (None): checked only when present
OPTIONAL_TYPES = {k: (int, float, type(None)) for k in ("estimated_ms", "flash_bytes", "ram_bytes", "model_ram_bytes")}
INCOMPLETE = "incomplete"  # sweep.json's state while the sweep runs: a stopped sweep is still recognised


def _sweep_problem(data) -> str | None:
    """Why ``data`` is not an edgepack sweep table (None if it is one)."""
    if not isinstance(data, dict) or not (data.get("format") == SWEEP_FORMAT or {"target", "rows"} <= set(data)):
        return "not an edgepack sweep table"
    if not isinstance(data.get("target"), str) or not isinstance(data.get("rows"), list):
        return "its target is not a name or its rows are not a list"
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            return f"row {i} is not an object"
        for key, types in (*ROW_TYPES.items(), *((k, t) for k, t in OPTIONAL_TYPES.items() if k in row)):
            if not isinstance(row.get(key, ...), types) or (isinstance(row.get(key), bool) and bool not in types):
                return f"row {i} has no valid {key!r}"
    return None


def _load_sweep(path: Path) -> tuple[dict | None, str | None]:
    """(the table, None) or (None / the data, why it is not one); never opens what is not a regular file
    (a FIFO would hang the read)."""
    if path.is_symlink() or not path.is_file():
        return None, "it is not a regular file"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable or corrupt: {getattr(e, 'strerror', None) or type(e).__name__}"
    return data, _sweep_problem(data)


def read_sweep(folder: Path) -> dict:
    """The sweep.json of a finished sweep in ``folder``, checked (ArtifactError otherwise)."""
    path = Path(folder) / "sweep.json"
    data, problem = _load_sweep(path)
    if problem:
        raise ArtifactError(f"{path} is not a sweep table edgepack can read ({problem}): pass the folder of a "
                            "finished `edgepack sweep`, or rerun the sweep into a new folder")
    if data.get("state") == INCOMPLETE:
        raise ArtifactError(f"the sweep in {folder} was stopped before it finished: rerun the same `edgepack sweep` "
                            f"command (-o {folder}) to complete it")
    return data


def _write_json(path: Path, data: dict) -> None:
    """Written under a temporary name and renamed: a stopped sweep never leaves half a sweep.json."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _worker_init(sink=None) -> None:
    """In each build worker: Ctrl-C (sent to the whole terminal group) is left to the main process, which
    then stops the workers with SIGTERM; on SIGTERM a worker removes its partial artifact and device runs
    and exits at once, quietly (the main process prints the one line). Its progress goes to ``sink``, the
    main process's one display (edgepack.progress.SharedDisplay), never to the terminal itself."""
    progress.use_sink(sink)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)


def _worker_stop(signum, frame) -> None:
    if artifact.defer_signal(signum):
        return  # an artifact is being renamed into place: the signal comes again when it is done
    artifact.abandon()
    devices.abandon()
    os._exit(128 + signum)


def _build(job: dict) -> str:
    """Compile one point (runs in a worker process; one torch and one BLAS thread each, or the
    workers' thread pools oversubscribe the cores)."""
    import torch
    from threadpoolctl import threadpool_limits

    from edgepack.frontends.torch import model_classes  # imports torch

    torch.set_num_threads(1)
    threadpool_limits(1)
    options, model = dict(job.get("compile") or {}), None
    if options.get("model_spec"):
        model = load_user_model(options["model_spec"], options.get("checkpoint"))
        options.update(model_name=parse_model_spec(options["model_spec"])[1], classes=model_classes(model, options.get("classes")))
    if job["alpha"] is not None:
        options["alpha"] = job["alpha"]
    if job["architecture"] is not None:
        options["architecture"] = job["architecture"]
    config = CompileConfig(target=job["target"], resolution=job["resolution"], eval_size=job["eval_size"],
                           calib_size=job["calib_size"], output=job["output"], **options)
    with progress.task(Path(job["output"]).name):
        return str(compile_model(config, model, log=lambda *_: None))


def _bench(job: dict, folder: str) -> dict:
    """Bench one built point, alone on the machine so its latency is not contended."""
    from edgepack.benchmark.run import bench_artifact

    report = bench_artifact(Path(folder), count=job["count"])
    manifest = artifact.read(Path(folder))
    cost = report.get("cost") or {}
    model = manifest.model
    device = report.get("device_report") or {}
    memory = device.get("memory") or {}
    return {
        "model": model.name if model.module is not None else model.builtin, "alpha": job["alpha"],
        "resolution": job["resolution"], "macs": manifest.macs,
        "params": manifest.params, "fp32_accuracy": manifest.metrics.fp32_accuracy,
        "int8_accuracy": report["accuracy"],
        "top1_agreement": (report.get("fidelity") or {}).get("top1_agreement_vs_reference"),
        "latency_median_ms": (report.get("latency") or {}).get("median_ms"),
        "cost": next((v for v in cost.values() if isinstance(v, (int, float)) and not isinstance(v, bool)), None),
        "estimated_ms": ((device.get("compute") or {}).get("estimate") or {}).get("ms"),
        "flash_bytes": memory.get("flash_bytes"), "ram_bytes": memory.get("ram_bytes"),
        "model_ram_bytes": memory.get("model_ram_bytes", memory.get("arena_bytes")),
        "passed": report["passed"], "artifact": folder,
    }


def check_sweep_output(out: Path) -> None:
    """A sweep writes sweep.csv/json, plots and one artifact per point into ``out``: only into a new or
    empty folder, or over an earlier sweep (its artifacts are then replaced under compile's own rules)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"sweep output {out} is not a folder: pass -o with a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not os.path.lexists(out / "sweep.json"):
        raise OutputError(f"sweep output {out} is not empty and not an edgepack sweep: nothing was changed; "
                          "pass -o with a new or empty folder")
    problem = _load_sweep(out / "sweep.json")[1]
    if problem:
        raise OutputError(f"sweep output {out} has a sweep.json that is not a sweep table edgepack can read ({problem}): "
                          "nothing was changed; pass -o with a new or empty folder")


# the default alpha axis of each built-in model: the widths its digits weights are trained for
DEFAULT_ALPHAS = SWEEP_ALPHAS


def parse_models(text: str | None) -> list[str] | None:
    """--model: built-in names, comma-separated (mobilenet_v1,mobilenet_v2), or None for a user model's
    FILE.py:NAME (or no --model: MobileNetV1)."""
    if text is None:
        return [DEFAULT]
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if ":" in str(text) or str(text).endswith(".py"):
        return None
    return list(dict.fromkeys(check_builtin(n) for n in names))


def check_alphas(alphas: list[float] | None, model_spec: str | None, model: str = DEFAULT) -> list:
    """The alpha axis of ``model``: the given one, else its default; [None] for a user model (which has no
    width multiplier; an alpha list is refused)."""
    if model_spec is None:
        return alphas or DEFAULT_ALPHAS[model]
    if alphas:
        raise ConfigError(f"--alpha is MobileNetV1's width multiplier and --model {model_spec} has none: drop --alpha "
                          "(a user model is swept over --resolution only)")
    return [None]


def check_models(models: list[str] | None, checkpoint: str | None) -> None:
    """One checkpoint holds one architecture: a sweep of several built-in models takes their shipped weights."""
    if models and len(models) > 1 and checkpoint:
        raise ConfigError(f"--checkpoint {checkpoint} cannot hold both {' and '.join(models)}: sweep each model into its own "
                          "folder (--model NAME --checkpoint PATH -o DIR) and plot them together with `edgepack report DIR1 DIR2 -o F.html`")


def check_shipped(model: str, alphas: list[float]) -> None:
    """Without --checkpoint every point needs shipped weights: refused before any build, not in a worker."""
    missing = [a for a in alphas if a not in shipped_alphas(model)]
    if missing:
        shipped = ", ".join(f"{a:g}" for a in shipped_alphas(model)) or "none yet"
        raise ConfigError(f"no shipped {model} weights for alpha {', '.join(f'{a:g}' for a in missing)} (shipped: "
                          f"{shipped}): pass --alpha with shipped widths, or --model {model} --checkpoint PATH")


def _point_folder(model: str | None, several: bool, alpha: float | None, resolution: int) -> str:
    if alpha is None:
        return f"r{resolution}"
    return (f"{model}_" if several or model != DEFAULT else "") + f"a{alpha:g}_r{resolution}"


def sweep(target: str, alphas: list[float] | None, resolutions: list[int], out: Path, jobs: int | None = None,
          eval_size: int | None = None, calib_size: int | None = None, count: int = 30, log=print,
          compile_options: dict | None = None, models: list[str] | None = None) -> Path:
    """``compile_options``: CompileConfig fields given to every compile (see the module docstring); ``models``:
    the built-in architectures to sweep (default MobileNetV1; ignored for a user model)."""
    compile_options = {k: v for k, v in (compile_options or {}).items() if v is not None}
    user_model = compile_options.get("model_spec")
    models = [None] if user_model else (models or [DEFAULT])
    check_models(models, compile_options.get("checkpoint"))
    axes = {m: check_alphas(alphas, user_model, m or DEFAULT) for m in models}
    if not user_model and not compile_options.get("checkpoint"):
        for model, model_alphas in axes.items():
            check_shipped(model, model_alphas)
    out = Path(out).absolute()
    check_sweep_output(out)
    out.mkdir(parents=True, exist_ok=True)
    points = [{"target": target, "architecture": m, "alpha": a, "resolution": r, "eval_size": eval_size,
               "calib_size": calib_size, "count": count, "compile": compile_options,
               "output": str(out / _point_folder(m, len(models) > 1, a, r))}
              for m in models for a in axes[m] for r in resolutions]
    points = list({p["output"]: p for p in points}.values())  # a point listed twice is built once
    # marks the folder as an edgepack sweep from the start: a stopped sweep is rerun over it, not refused
    _write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "target": target, "state": INCOMPLETE, "rows": []})
    workers = max(1, min(jobs or os.cpu_count() or 1, os.cpu_count() or 1, len(points)))
    log(f"sweep: {len(points)} builds for {target} on {workers} processes")
    rows = []
    # build in parallel, the workers' progress on one display ...
    with progress.SharedDisplay(len(points), workers, f"sweep: {len(points)} builds") as display, \
            ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(display.sink,)) as pool:
        results = pool.map(_build, points)
        display.start()  # after pool.map has forked the workers
        pids = [child.pid for child in multiprocessing.active_children()]
        for pid in pids:  # a stop signal ends them (edgepack.devices.abandon)
            devices.adopt(pid)
        try:
            folders = list(results)
        finally:
            devices.release(pids)
    for job, folder in zip(points, folders):  # ... then bench one at a time, on an otherwise idle machine
        row = _bench(job, folder)
        point = f"res {row['resolution']}" if row["alpha"] is None else f"alpha {row['alpha']:g} res {row['resolution']}"
        point = f"{row['model']} {point}" if len(models) > 1 else point
        quality = (f"int8 {row['int8_accuracy']:.2%}" if row["int8_accuracy"] is not None
                   else f"top-1 agreement with reference {row['top1_agreement']:.2%} (no labelled eval data)")
        log(f"  {point}: {quality} ({'pass' if row['passed'] else 'FAIL'})")
        rows.append(row)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    plot_sweep(rows, out, target)
    (out / "sweep.html").write_text(sweep_page({"target": target, "rows": rows}, out))
    _write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "target": target, "rows": rows})  # last: the sweep is done
    log(f"sweep table, plots and page (sweep.html) in {out}")
    return out


# the figures a sweep trades accuracy against, in order of preference for the time axis
TIME_KEYS = {"latency_median_ms": "latency median (ms)", "estimated_ms": "estimated time on the board (ms)",
             "cost": "cost per inference (instructions or ticks)"}
PLOTS = {"accuracy_vs_macs.png": "accuracy vs Mult-Adds", "accuracy_vs_latency.png": "accuracy vs time",
         "accuracy_vs_flash.png": "accuracy vs flash"}


def quality_key(rows: list[dict]) -> tuple[str, str]:
    """Accuracy, or for unlabelled eval inputs the top-1 agreement with the int8 reference."""
    if all(r.get("int8_accuracy") is not None for r in rows):
        return "int8_accuracy", "int8 accuracy (%)"
    return "top1_agreement", "top-1 agreement with the int8 reference (%)"


def time_key(rows: list[dict]) -> str | None:
    """The measured latency when every point has one, else the board estimate, else the raw cost."""
    return next((k for k in TIME_KEYS if rows and all(r.get(k) for r in rows)), None)


def pareto_front(rows: list[dict], x_key: str, y_key: str) -> set[int]:
    """Indices of the points no other point beats: none is at most as costly (x) and at least as good (y)
    while better in one of them. Points missing either figure are on no front."""
    pts = [(i, r.get(x_key), r.get(y_key)) for i, r in enumerate(rows)]
    pts = [(i, x, y) for i, x, y in pts if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    return {i for i, x, y in pts
            if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for _, x2, y2 in pts)}


LOG_TICK_STEPS = ((1,), (1, 2, 5), (1, 2, 3, 5))


def log_ticks(lo: float, hi: float) -> list[float]:
    """At least three labelled values within [lo, hi] for a log axis: whole decades, 1-2-5 or 1-2-3-5 when the
    points span a decade or more, evenly spaced values (0.08, 0.10, ... 0.16) when they span less. Matplotlib's
    own log ticks label a single value when the points sit inside one decade (0.07-0.17 ms: just 0.1)."""
    import math

    from matplotlib.ticker import MaxNLocator

    lo, hi = min(lo, hi), max(lo, hi)
    if lo > 0 and hi / lo >= 10:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for steps in LOG_TICK_STEPS:
            ticks = [float(f"{m}e{d}") for d in decades for m in steps if lo * 0.999 <= m * 10.0 ** d <= hi * 1.001]
            if len(ticks) >= 3:
                return ticks
    inside = [v for v in MaxNLocator(5).tick_values(lo, hi) if lo * 0.999 <= v <= hi * 1.001 and v > 0]
    return sorted({round(float(v), 12) for v in inside}) or [lo]


def _axis_plain(axis, values: list[float]) -> None:
    """Log-axis ticks as plain numbers (3, 10, 30), never 3x10^0, and at least three of them (log_ticks)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    def plain(v) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.4g}"

    axis.set_major_locator(FixedLocator(log_ticks(min(values), max(values))))
    axis.set_major_formatter(FuncFormatter(lambda v, _: plain(v)))
    axis.set_minor_formatter(NullFormatter())  # the unlabelled minor ticks stay as grid lines


def _series(rows: list[dict]) -> tuple[list, bool]:
    """Several models: the paper's Figure 5, a series per model; one model: Figure 4, a series per alpha."""
    models = list(dict.fromkeys(r["model"] for r in rows if r.get("model")))
    if len(models) > 1:
        return models, True
    return sorted({r["alpha"] for r in rows if r["alpha"] is not None}, reverse=True) or [None], False


def _plot_one(rows: list[dict], key: str, xlabel: str, y: tuple[str, str], title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    y_key, y_label = y
    scale = 1e6 if key == "macs" else (1024 if key == "flash_bytes" else 1)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    series, by_model = _series(rows)
    model = next((r["model"] for r in rows if r.get("model")), None)
    for s in series:
        pts = sorted((r for r in rows if (r.get("model") if by_model else r["alpha"]) == s), key=lambda r: r[key])
        xs = [r[key] / scale for r in pts]
        label = s if by_model else (model if s is None else f"alpha {s:g}")
        ax.plot(xs, [r[y_key] * 100 for r in pts], "o-", label=label)
        for x, r in zip(xs, pts):
            text = f"{r['alpha']:g}/{r['resolution']}" if by_model and r["alpha"] is not None else str(r["resolution"])
            ax.annotate(text, (x, r[y_key] * 100), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((rows[i] for i in pareto_front(rows, key, y_key)), key=lambda r: r[key])
    ax.step([r[key] / scale for r in front], [r[y_key] * 100 for r in front], "k--", where="post", linewidth=1,
            label="Pareto front")
    ax.scatter([r[key] / scale for r in front], [r[y_key] * 100 for r in front], s=110, facecolors="none",
               edgecolors="k", linewidths=1)
    ax.set_xscale("log")
    _axis_plain(ax.xaxis, [r[key] / scale for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_sweep(rows: list[dict], out: Path, target: str) -> list[Path]:
    """The plots of PLOTS each point has the figures for, the Pareto front marked on each."""
    import matplotlib

    matplotlib.use("Agg")
    y = quality_key(rows)
    models = list(dict.fromkeys(r["model"] for r in rows if r.get("model")))
    who = f"{' vs '.join(models) or 'MobileNetV1'}, target {target}"
    speed = time_key(rows)
    axes = [("macs", "Mult-Adds (millions, log)", "accuracy_vs_macs.png")]
    if speed:
        axes.append((speed, f"{TIME_KEYS[speed]}, log", "accuracy_vs_latency.png"))
    if rows and all(r.get("flash_bytes") for r in rows):
        axes.append(("flash_bytes", "flash (KiB, log)", "accuracy_vs_flash.png"))
    what = {"macs": "Mult-Adds", "flash_bytes": "flash", **{k: v.split(" (")[0] for k, v in TIME_KEYS.items()}}
    return [_plot_one(rows, key, xlabel, y, f"{y[1].split(' (')[0]} vs {what[key]}: {who}", out / name)
            for key, xlabel, name in axes if all(r.get(key) for r in rows)]


# ---------------------------------------------------------------- the sweep page

def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if key.endswith("_bytes"):  # the exact bytes are in sweep.csv / sweep.json
        return f"{value / 1024:,.1f} KiB"
    if key.endswith("accuracy") or key.endswith("agreement"):
        return fmt.percent(value)
    if key.endswith("_ms"):
        return fmt.millis(value)
    return f"{value:g}" if key == "alpha" else (fmt.count(value) if isinstance(value, (int, float)) else str(value))


PAGE_HEADERS = {"sweep": "Sweep", "model": "Model", "alpha": "Alpha", "resolution": "Resolution", "macs": "Mult-Adds", "params": "Parameters",
                "fp32_accuracy": "fp32 accuracy", "int8_accuracy": "int8 accuracy", "top1_agreement": "Top-1 agreement",
                "latency_median_ms": "Latency median", "estimated_ms": "Estimated time (board)", "cost": "Cost / inference",
                "flash_bytes": "Flash", "ram_bytes": "RAM (total)", "model_ram_bytes": "RAM (model)"}


def sweep_page(data: dict, folder: Path | None = None) -> str:
    """The sweep as one self-contained HTML page (templates/sweep.html.j2): a row per point with flash, RAM
    and time columns, the Pareto front (accuracy vs time, accuracy vs flash) marked, and the plots inlined."""
    import base64
    import tempfile

    import jinja2

    rows = data["rows"]
    y_key = quality_key(rows)[0]
    speed = time_key(rows)
    keys = [k for k in PAGE_HEADERS if k in ("resolution", "macs", "params", y_key)
            or (k == "fp32_accuracy" and y_key == "int8_accuracy")
            or (k not in ("int8_accuracy", "top1_agreement") and any(r.get(k) is not None for r in rows))]
    fronts = {name: pareto_front(rows, key, y_key) for name, key in (("time", speed), ("flash", "flash_bytes")) if key}
    table = [{"cells": [_cell(k, r.get(k)) for k in keys], "passed": r["passed"],
              "fronts": [name for name, front in fronts.items() if i in front]} for i, r in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        plots = [(PLOTS[p.name], base64.b64encode(p.read_bytes()).decode()) for p in plot_sweep(rows, Path(tmp), data["target"])]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template("sweep.html.j2").render(
        target=data["target"], headers=[PAGE_HEADERS[k] for k in keys], rows=table, plots=plots,
        fronts={"time": TIME_KEYS[speed].split(" (")[0] if speed else None, "flash": "flash" if "flash" in fronts else None},
        quality=quality_key(rows)[1].split(" (")[0], folder=Path(folder).resolve().name if folder else None) + "\n"
