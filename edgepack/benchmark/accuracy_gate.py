"""The accuracy gate after a compile (edgepack.gate judged it and the manifest records the verdict):
over the limit, the artifact stays written (verified, signed, complete) and the compile fails with one line
naming the limit, the figure and the worst layer, found by the per-layer debugger (edgepack.benchmark.debug).

``edgepack compile`` and ``edgepack.compile`` both call ``enforce``: the CLI exits 1 (AccuracyGateError is a
CheckFailed), the API raises it with the artifact folder and the gate record on the exception."""
from __future__ import annotations

import logging
from pathlib import Path

from edgepack.artifact import load as load_artifact
from edgepack.errors import AccuracyGateError, EdgepackError
from edgepack.gate import describe

LOG = logging.getLogger(__name__)


def enforce(folder, model=None, calibration=None) -> None:
    """Raise AccuracyGateError when the artifact at ``folder`` failed its accuracy gate. ``model`` and
    ``calibration`` are what debug needs to rebuild the fp32 model (the nn.Module of an in-memory compile, or the
    CLI's --model FILE.py:NAME; in-memory calibration inputs), as for edgepack.debug."""
    folder = Path(folder)
    record = load_artifact(folder).metrics.accuracy_gate or {}
    if record.get("passed") is not False:
        return
    flag = "--max-accuracy-drop" if record["measure"] == "accuracy_drop_points" else "--min-fp32-agreement"
    error = AccuracyGateError(f"accuracy gate failed: {describe(record)}; worst layer "
                              f"{worst_layer(folder, model, calibration)}; the artifact {folder} is written and "
                              "records the failure: fix the quantization (--weight-granularity per-channel, "
                              "equalization on, --bias-correction, --calibration-method auto, --quant qat) or raise "
                              f"the limit with {flag}")
    error.artifact, error.gate = folder, record
    raise error


def worst_layer(folder: Path, model=None, calibration=None) -> str:
    """The layer of lowest isolated SQNR (int8 layer vs its fp32 counterpart on the same input), as debug finds
    it; when debug cannot rebuild the fp32 model, why not (the gate's verdict stands without it)."""
    from edgepack.benchmark.debug import debug_artifact  # imports torch

    try:
        found = debug_artifact(folder, model=model, calibration=calibration)
    except EdgepackError as e:
        LOG.debug("debug could not run on %s: %s", folder, e)
        return f"unknown (edgepack debug: {' '.join(str(e).split())[:160]})"
    rows = [r for r in found["layers"] if found["worst"] and r["layer"] == found["worst"][0]]
    if not rows or rows[0].get("isolated_sqnr_db") is None:
        return "unknown (no layer of the plan has an fp32 counterpart debug can measure)"
    row = rows[0]
    module = f"{row['module']}, " if row.get("module") else ""
    return (f"{row['layer']} ({module}{row['kind']}, isolated SQNR {row['isolated_sqnr_db']:.1f} dB; "
            "see `edgepack debug`)")
