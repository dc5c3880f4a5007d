"""Self-contained HTML report (tables + PNG plots inlined as data URIs) for an artifact, a sweep, or several
sweeps on one page (e.g. MobileNetV1 and MobileNetV2 on one accuracy-vs-Mult-Adds plot)."""
from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path

from edgepack import artifact
from edgepack.benchmark.sweep import plot_sweep, read_sweep
from edgepack.errors import ArtifactError, ConfigError, OutputError

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#eee}td:first-child{text-align:left}
.fail{color:#b00;font-weight:bold}.pass{color:#070}img{max-width:100%;border:1px solid #ddd}"""
# After load, the page records how many images decoded, so a headless browser can check them.
SCRIPT = """window.addEventListener('load',()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;
document.body.setAttribute('data-images-loaded',ok);document.body.setAttribute('data-tables',document.querySelectorAll('table').length);});"""


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cls = ' class="pass"' if v is True else (' class="fail"' if v is False else "")
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _page(title: str, sections: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n")


def artifact_report(folder: Path, eval_data=None, model=None) -> str:
    from edgepack.benchmark.debug import debug_artifact, plot_debug
    from edgepack.benchmark.run import bench_artifact

    manifest = artifact.read(folder)  # a corrupt manifest is one line (ArtifactError), as in bench and verify
    bench = bench_artifact(folder, count=20, eval_data=eval_data)
    m, metrics = manifest.model, manifest.metrics
    fidelity = bench.get("fidelity") or {}
    if bench["accuracy"] is None:  # unlabelled eval inputs: fidelity figures instead of accuracy
        quality = [("accuracy", f"none ({metrics.accuracy_note})"),
                   ("top-1 agreement with int8 reference (bench)", fidelity.get("top1_agreement_vs_reference")),
                   ("int8 vs fp32 SQNR dB (compile)", fidelity.get("sqnr_db_vs_fp32_at_compile"))]
    else:
        quality = [("fp32 accuracy", metrics.fp32_accuracy), ("int8 accuracy (reference)", metrics.int8_accuracy),
                   ("device accuracy (bench)", bench["accuracy"])]
    # a user model's alpha is not a width multiplier of anything: name the model instead
    shape = [("alpha", m.alpha)] if m.name == "MobileNetV1" else [("model", f"{m.name} ({m.weights})")]
    summary = [{"field": k, "value": v} for k, v in (
        ("target", manifest.target.name), ("backend", manifest.backend), *shape,
        ("resolution", m.resolution), ("classes", m.classes), ("params", manifest.params),
        ("Mult-Adds", manifest.macs), ("quantization", manifest.quantization.summary),
        *quality, ("bench result", bench["passed"]))]
    sections = ["<h2>Summary</h2>", _table(summary), "<h2>Bench checks</h2>", _table(bench["checks"])]
    if bench.get("latency"):
        sections += ["<h2>Latency</h2>", _table([bench["latency"]])]
    if manifest.plan is not None:
        try:
            d = debug_artifact(folder, images=16, model=model)
        except (ConfigError, ArtifactError) as e:  # an in-memory model (Python API), or its files are gone or changed
            sections += ["<h2>Per-layer error (int8 vs fp32)</h2>", f"<p>not computed: {html.escape(str(e))}</p>"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                png = plot_debug(d, Path(tmp) / "debug.png")
                sections += [f"<h2>Per-layer error (int8 vs fp32, {d['images']} inputs from {html.escape(d['inputs'])})</h2>",
                             _img(png, "per-layer SQNR"),
                             _table(d["layers"], ["layer", "kind", "isolated_sqnr_db", "cumulative_sqnr_db", "weight_range_spread"])]
    sections += ["<h2>Files</h2>", _table([{"file": f, "bytes": v.bytes, "sha256": v.sha256} for f, v in manifest.files.items()])]
    return _page(f"edgepack report: {folder.name}", sections)


def _sweep_columns(rows: list[dict]) -> list[str]:
    """The leading columns: the model when named, the alpha when any point has one (a user model has none)."""
    return ([c for c in ("sweep", "model") if any(r.get(c) for r in rows)]
            + (["alpha"] if any(r.get("alpha") is not None for r in rows) else []))


def sweep_report(folder: Path) -> str:
    data = read_sweep(folder)
    rows = data["rows"]
    first = _sweep_columns(rows)
    quality = (["fp32_accuracy", "int8_accuracy"] if any(r.get("int8_accuracy") is not None for r in rows)
               else ["top1_agreement"])  # unlabelled eval inputs: fidelity instead of accuracy
    sections = ["<h2>Sweep</h2>", _table(rows, [*first, "resolution", "macs", "params", *quality,
                                                "latency_median_ms", "cost", "passed"])]
    for name, alt in (("accuracy_vs_macs.png", "accuracy vs Mult-Adds"), ("accuracy_vs_latency.png", "accuracy vs latency")):
        if (folder / name).exists():
            sections += [f"<h2>{alt}</h2>", _img(folder / name, alt)]
    return _page(f"edgepack sweep report: target {data['target']}", sections)


def sweeps_report(folders: list[Path]) -> str:
    """Several sweep folders: their points in one table (the "sweep" column names the folder) and the plots
    redrawn from all of them, one series per model when they hold different models (the paper's Figure 5)."""
    rows, targets = [], []
    for folder in folders:
        data = read_sweep(folder)
        targets.append(data["target"])
        for r in data["rows"]:  # sweeps before --model named MobileNetV1 points with model null
            rows.append({"sweep": folder.name, **r, "model": r.get("model") or ("mobilenet_v1" if r.get("alpha") else None)})
    quality = (["fp32_accuracy", "int8_accuracy"] if all(r.get("int8_accuracy") is not None for r in rows)
               else ["top1_agreement"])
    target = " + ".join(dict.fromkeys(targets))
    sections = ["<h2>Sweeps</h2>", _table(rows, [*_sweep_columns(rows), "resolution", "macs", "params", *quality,
                                                 "latency_median_ms", "cost", "passed"])]
    with tempfile.TemporaryDirectory() as tmp:
        for png in plot_sweep(rows, Path(tmp), target):
            alt = "accuracy vs Mult-Adds" if png.name == "accuracy_vs_macs.png" else "accuracy vs latency"
            sections += [f"<h2>{alt}</h2>", _img(png, alt)]
    return _page(f"edgepack sweeps report: {', '.join(f.name for f in folders)} (target {target})", sections)


def write_report(path, out=None, eval_data=None, model=None) -> Path:
    """Write the page to ``out`` (default beside the artifact / inside the sweep; for several sweep
    folders, beside the first as <first>+<second>.report.html), creating missing parent folders;
    ``eval_data`` as for bench_artifact; ``model`` as for debug_artifact (the per-layer section)."""
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
        make_page, default = (lambda: artifact_report(folder, eval_data, model)), folder.with_name(folder.name + ".report.html")
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
