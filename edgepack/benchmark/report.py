"""Self-contained HTML report (tables + PNG plots inlined as data URIs) for an artifact, a sweep, or several
sweeps on one page (e.g. MobileNetV1 and MobileNetV2 on one accuracy-vs-Mult-Adds plot)."""
from __future__ import annotations

import base64
import html
import logging
import os
import tempfile
from pathlib import Path

import jinja2
from markupsafe import Markup

from edgepack import artifact
from edgepack.benchmark import device_report, saved
from edgepack.benchmark.sweep import read_sweep, sweep_page
from edgepack.errors import ArtifactError, ConfigError, OutputError

log = logging.getLogger("edgepack.benchmark")

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}h1,h2{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
th{background:#eee}td:first-child{text-align:left}table.kv th{text-align:left}table.kv td{text-align:left}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-weight:bold;color:#fff}.badge.pass{background:#1a7f37}
.badge.fail{background:#c62828}.note{color:#555;font-size:13px}td.barcell{width:160px;text-align:left}
table.layers td:nth-child(2),table.layers td:nth-child(3){text-align:left}
.bar{height:10px;background:#4a7bd0;min-width:1px}img{max-width:100%;border:1px solid #ddd}"""
# After load, the page records how many images decoded, so a headless browser can check them.
SCRIPT = """window.addEventListener('load',()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;
document.body.setAttribute('data-images-loaded',ok);document.body.setAttribute('data-tables',document.querySelectorAll('table').length);});"""
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                               autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
PAGE = "report.html.j2"
# column names as people read them; others: "_" -> " ", a unit suffix in brackets (see _header)
HEADERS = {"macs": "Mult-Adds", "params": "Parameters", "passed": "Result", "fp32_accuracy": "fp32 accuracy",
           "int8_accuracy": "int8 accuracy", "top1_agreement": "Top-1 agreement", "latency_median_ms": "Latency median (ms)",
           "sha256": "SHA-256", "name": "Check", "isolated_sqnr_db": "Isolated SQNR (dB)", "throughput_fps": "Throughput (fps)",
           "cumulative_sqnr_db": "Cumulative SQNR (dB)", "first_inference_ms": "First inference (ms)"}
UNITS = (("_ms", " (ms)"), ("_db", " (dB)"), ("_bytes", " (B)"), ("_fps", " (fps)"), ("_s", " (s)"))
FRACTIONS = ("accuracy", "agreement")  # columns holding a fraction: shown as a percent


def _header(column: str) -> str:
    if column in HEADERS:
        return HEADERS[column]
    for suffix, unit in UNITS:
        if column.endswith(suffix):
            column = column[:-len(suffix)] + unit
    text = column.replace("_", " ")
    return text[:1].upper() + text[1:]


def _cell(column: str, value):
    """A value as the page shows it: PASS/FAIL badges, fractions as percent, separators, nothing for None."""
    if isinstance(value, (dict, Markup)):  # already formatted
        return value
    if isinstance(value, bool):
        return {"badge": "pass" if value else "fail", "text": "PASS" if value else "FAIL"}
    if value is None:
        return ""
    if isinstance(value, float) and any(w in column for w in FRACTIONS):
        return device_report.percent(value)
    if isinstance(value, (int, float)):
        return device_report.count(value) if column != "alpha" else f"{value:g}"
    return str(value)


def _macros():
    return TEMPLATES.get_template(PAGE).module


def _table(rows: list[dict], columns: list[str] | None = None) -> Markup:
    if not rows:
        return Markup("<p>(none)</p>")
    columns = columns or list(rows[0])
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    return Markup(_macros().table([_header(c) for c in columns], cells))


def _device(block: dict) -> Markup:
    """The device report block (flash, RAM, arena, stack, instructions, estimated time, per-layer table)."""
    headers, layers = device_report.layer_rows(block)
    rows = block.get("layers") or []
    ticked = any(r["ticks_share"] is not None for r in rows)
    shares = [(r["ticks_share"] if ticked else r["macs_share"]) or 0 for r in rows]
    bars = [x / max(shares) if max(shares, default=0) > 0 else 0 for x in shares]  # the largest layer: a full bar
    return Markup(_macros().device(device_report.summary_rows(block), headers, layers, block.get("layer_bytes", ""),
                                   "Tick share" if ticked else "Mult-Adds share", bars))


def _img(path: Path, alt: str) -> Markup:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return Markup(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')


def _page(title: str, sections: list[str]) -> str:
    """``sections``: HTML this module built (headings escaped here, tables and images by their builders)."""
    return _macros().page(title, [Markup(s) for s in sections], Markup(STYLE), Markup(SCRIPT)) + "\n"


def _summary(manifest, bench: dict) -> list[dict]:
    """The Summary table's rows, each value already as the page shows it."""
    m, metrics = manifest.model, manifest.metrics
    fidelity = bench.get("fidelity") or {}
    sqnr = fidelity.get("sqnr_db_vs_fp32_at_compile")
    if bench["accuracy"] is None:  # unlabelled eval inputs: fidelity figures instead of accuracy
        quality = [("accuracy", f"none ({metrics.accuracy_note})"),
                   ("top-1 agreement with int8 reference (bench)", fidelity.get("top1_agreement_vs_reference")),
                   ("int8 vs fp32 SQNR (compile)", None if sqnr is None else f"{sqnr:.1f} dB")]
    else:
        quality = [("fp32 accuracy", metrics.fp32_accuracy), ("int8 accuracy (reference)", metrics.int8_accuracy),
                   ("device accuracy (bench)", bench["accuracy"])]
    # a user model's alpha is not a width multiplier of anything: name the model instead
    shape = [("alpha", m.alpha)] if m.name == "MobileNetV1" else [("model", f"{m.name} ({m.weights})")]
    return [{"item": _label(k), "value": _cell(k, v)} for k, v in (
        ("target", manifest.target.name), ("backend", manifest.backend), *shape,
        ("resolution", m.resolution), ("classes", m.classes), ("parameters", manifest.params),
        ("Mult-Adds", manifest.macs), ("quantization", manifest.quantization.summary),
        *quality, ("bench result", bench["passed"]))]


def _label(key: str) -> str:
    """A Summary row's label as a sentence starts ("Device accuracy"), keeping the names fp32 and int8 as written."""
    return key if key.startswith(("fp32", "int8")) else key[:1].upper() + key[1:]


def bench_for(folder: Path, bench=None, eval_size=None, eval_data=None, rebench: bool = False) -> dict:
    """The bench result the page shows: ``bench`` (a report dict, or the path of a `bench --json` file), else
    the one bench kept beside the artifact (edgepack.benchmark.saved) when it matches; bench runs again only
    with ``rebench`` or when none matches (saying so in one line), and its result is kept in turn."""
    if bench is not None and rebench:
        raise ConfigError("--bench and --rebench contradict each other: pass one of them")
    if isinstance(bench, dict):
        return bench
    if bench is not None:
        return saved.load(bench, folder)
    manifest = artifact.read(folder)  # a corrupt manifest is one line (ArtifactError), as in bench and verify
    wanted = None if eval_size is None else min(eval_size, manifest.eval.images)
    found, where = (None, "--rebench") if rebench else saved.find(folder, wanted)
    if found is not None:
        log.info("bench result from %s (pass --rebench to measure again)", where)
        return found
    log.info("%s: running bench (20 timed runs)", where)
    from edgepack.benchmark.run import bench_artifact

    sha = saved.manifest_sha256(folder)
    result = bench_artifact(folder, eval_size=eval_size, count=20, eval_data=eval_data)
    saved.keep(result, folder, sha)
    return result


def artifact_report(folder: Path, eval_data=None, model=None, bench=None, eval_size=None, images: int = 32,
                    rebench: bool = False) -> str:
    from edgepack.benchmark.debug import debug_artifact, plot_debug

    manifest = artifact.read(folder)  # a corrupt manifest is one line (ArtifactError), as in bench and verify
    bench = bench_for(folder, bench, eval_size, eval_data, rebench)
    checks = [{**c, "value": _cell(c["name"], c["value"])} for c in bench["checks"]]  # an agreement as a percent
    sections = ["<h2>Summary</h2>", _table(_summary(manifest, bench)), "<h2>Bench checks</h2>",
                _table(checks, ["name", "passed", "value", "expected"])]
    if bench.get("device_report"):
        sections.append(_device(bench["device_report"]))
    if bench.get("latency"):
        sections += ["<h2>Latency</h2>", _table([bench["latency"]])]
    if manifest.plan is not None:
        try:
            d = debug_artifact(folder, images=images, model=model)
        except (ConfigError, ArtifactError) as e:  # an in-memory model (Python API), or its files are gone or changed
            sections += ["<h2>Per-layer error (int8 vs fp32)</h2>", f"<p>not computed: {html.escape(str(e))}</p>"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                png = plot_debug(d, Path(tmp) / "debug.png")
                sections += [f"<h2>Per-layer error (int8 vs fp32, {d['images']} inputs from {html.escape(d['inputs'])})</h2>",
                             _img(png, "per-layer SQNR"),
                             _table([{**r, "layer": r.get("module") or r["layer"]} for r in d["layers"]],  # debug's names
                                    ["layer", "kind", "isolated_sqnr_db", "cumulative_sqnr_db", "weight_range_spread"])]
    sections += ["<h2>Files</h2>", _table([{"file": f, "bytes": v.bytes, "sha256": v.sha256} for f, v in manifest.files.items()])]
    return _page(f"edgepack report: {folder.name}", sections)


def sweep_report(folder: Path) -> str:
    """The page `edgepack sweep` writes (sweep.html: flash, RAM and time columns, the Pareto fronts marked)."""
    return sweep_page(read_sweep(folder), folder)


def sweeps_report(folders: list[Path]) -> str:
    """Several sweep folders: their points in one table (the "sweep" column names the folder) and the plots
    redrawn from all of them, one series per model when they hold different models (the paper's Figure 5)."""
    rows, targets = [], []
    for folder in folders:
        data = read_sweep(folder)
        targets.append(data["target"])
        for r in data["rows"]:  # sweeps before --model named MobileNetV1 points with model null
            rows.append({"sweep": folder.name, **r, "model": r.get("model") or ("mobilenet_v1" if r.get("alpha") else None)})
    return sweep_page({"target": " + ".join(dict.fromkeys(targets)), "rows": rows})


def write_report(path, out=None, eval_data=None, model=None, **artifact_options) -> Path:
    """Write the page to ``out`` (default beside the artifact / inside the sweep; for several sweep
    folders, beside the first as <first>+<second>.report.html), creating missing parent folders;
    ``eval_data`` as for bench_artifact; ``model`` as for debug_artifact (the per-layer section);
    ``artifact_options``: bench, eval_size, images, rebench of artifact_report."""
    paths = [Path(p).resolve() for p in (path if isinstance(path, (list, tuple)) else [path])]
    folder = paths[0]  # "." and ".." have no name to derive the default file from
    if len(paths) > 1:
        not_sweeps = [p for p in paths if not os.path.lexists(p / "sweep.json")]
        if not_sweeps:
            raise ConfigError(f"{not_sweeps[0]} is not a sweep folder: several folders are plotted together only when "
                              "each is what `edgepack sweep` wrote")
        make_page = lambda: sweeps_report(paths)  # noqa: E731
        default = folder.with_name("+".join(p.name for p in paths) + ".report.html")
    elif os.path.lexists(folder / "sweep.json"):  # read_sweep refuses what is no regular file
        make_page, default = (lambda: sweep_report(folder)), folder / "report.html"
    elif os.path.lexists(folder / "manifest.json"):
        make_page, default = (lambda: artifact_report(folder, eval_data, model, **artifact_options)), folder.with_name(folder.name + ".report.html")
    else:
        raise ConfigError(f"{folder} is neither an artifact nor a sweep folder: pass what `edgepack compile` or `edgepack sweep` wrote")
    target = Path(out) if out else default
    if target.is_dir():  # checked before the bench the page needs
        raise OutputError(f"report output {target} is a folder: pass -o with a file path such as {target / 'report.html'}")
    page = make_page()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page)
    except OSError as e:
        raise OutputError(f"cannot write the report to {target} ({e.strerror or e}): pass -o with a writable file path")
    return target
