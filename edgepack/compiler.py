"""compile: one pipeline for every front end. A front end (edgepack.frontends: a torch model, an int8 .tflite)
gives the int8 plan; then reference -> golden -> peer checks -> model.tflite -> lower(backend) -> manifest,
written into a temporary folder renamed into place only when complete.

Light at import (no torch): the CLI runs ``preflight`` before any heavy import."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepack import evaldata, gate, progress
from edgepack.artifact import atomic_folder, check_output_dir, output_lock, write_manifest
from edgepack.backends import backend_module
from edgepack.backends.tflm import interpreter as tflm_interpreter
from edgepack.config import CompileConfig
from edgepack.data import Dataset
from edgepack.errors import UnsupportedModelError
from edgepack.evaluate import accuracy
from edgepack.frontends import GOLDEN_IMAGES, Source, litert_images, timed
from edgepack.frontends import tflite as tflite_front
from edgepack.interop import litert, tflite_export
from edgepack.interop.tflite_import import check_backend
from edgepack.plan import reference
from edgepack.plan.plan import PLAN_INPUT, Plan
from edgepack.signing import load_private_key, sign_folder
from edgepack.targets import Target, get_target, load_targets
from edgepack.targets.backends import PLAN_BACKENDS
from edgepack.validate import (FootprintEstimate, WeightedLayer, budget_file_fix, check_budget_estimate,
                               estimate_footprint)
from edgepack.version import __version__

LOG = logging.getLogger(__name__)


@dataclass
class Build:
    """What the stages produce; backends read it to lower."""

    config: CompileConfig
    target: Target
    folded: object  # the folded fp32 torch model (None for an imported .tflite)
    plan: Plan | None
    onnx_file: str | None
    golden_input: np.ndarray
    golden_output: np.ndarray
    eval_images: np.ndarray  # the eval split the compile measured, and what it computed on it:
    fp32_logits: np.ndarray | None  # the folded fp32 model's logits
    reference_logits: np.ndarray | None  # the int8 reference's dequantized logits (None for --quant none)


@contextmanager
def preflight(config: CompileConfig):
    """Everything that refuses a compile in milliseconds, before torch or any work, for the CLI and the API
    alike: the target (and that its backend runs an imported .tflite), the signing key, the output folder;
    then the output lock, held for the whole compile (a second compile to the same folder fails at once).
    Yields the target."""
    target = get_target(config.target, config.target_dirs)
    if config.sign_key:
        load_private_key(config.sign_key)  # a bad key fails now, not after the compile work
    if config.tflite_model:
        check_backend(target)
    out = config.output_path()
    check_output_dir(out, config.force, config.inputs)
    with output_lock(out):
        yield target


def compile_model(config: CompileConfig, model=None, log=None, calibration_data: Dataset | None = None,
                  eval_set: Dataset | None = None) -> Path:
    """Build the artifact folder for ``config`` (``model``, an nn.Module, overrides the built-in model;
    ``calibration_data``/``eval_set``, in-memory inputs from edgepack.inputs, override the config's paths).
    ``log`` takes each progress line; by default they go to the "edgepack.compiler" logger at INFO (a Python
    caller shows or silences them with the logging module; the CLI prints them)."""
    with preflight(config) as target:
        return compile_locked(config, target, model, log, calibration_data, eval_set)


def compile_locked(config: CompileConfig, target: Target, model=None, log=None,
                   calibration_data: Dataset | None = None, eval_set: Dataset | None = None) -> Path:
    """compile_model inside ``preflight(config)`` (the CLI holds it while it loads a --model FILE.py)."""
    log = log or LOG.info
    times: dict[str, float] = {}
    # each stage's progress line estimates what is left from the same stage of the last compile of this size;
    # the "compile" line above them covers the work between stages and estimates the whole
    with progress.scope(target.name, config.architecture, config.alpha, config.resolution, config.calib_size,
                        config.eval_size, config.model_spec or config.model_name or config.tflite_model), \
            progress.stage("compile"):
        source = front_end(config, target, model, calibration_data, eval_set, times, log)
        if source.plan is not None and source.plan.multi_output():
            check_multi_output(target, source.plan)
        check = budget_check(config, target)
        if config.tflite_model and source.plan is not None and check is not None:
            check(plan_layers(source.plan))  # an imported plan: before the reference and LiteRT runs
        return run_pipeline(config, target, source, times, log)


def check_multi_output(target: Target, plan: Plan) -> None:
    """A plan with several outputs runs on every backend that lowers the plan itself (PLAN_BACKENDS, each hands
    over every output: Plan.output_row_shape); the others run qdq.onnx, which only a PyTorch model gives, with one
    output, so such a target is refused before any work."""
    if target.backend not in PLAN_BACKENDS:
        plan_targets = ", ".join(name for name, entry in load_targets().items() if entry.backend in PLAN_BACKENDS)
        raise UnsupportedModelError(
            f"target {target.name}: the {target.backend} backend runs models with one output, this one has "
            f"{len(plan.output_layers)}: use a target of the {', '.join(PLAN_BACKENDS[:-1])} or {PLAN_BACKENDS[-1]} "
            f"backend ({plan_targets})")


def front_end(config: CompileConfig, target: Target, model, calibration_data: Dataset | None, eval_set: Dataset | None,
              times: dict, log) -> Source:
    """The Source of ``config``: its .tflite read as a plan, else its torch model folded and quantized."""
    if config.tflite_model:
        return tflite_front.to_source(config, eval_set)
    with progress.stage("import_torch"):
        from edgepack.frontends import torch as torch_front  # torch is imported only now
    limits = gate.limits(config.max_accuracy_drop, config.min_fp32_agreement, target.accuracy_gate, target.name)
    return torch_front.to_source(config, model, calibration_data, eval_set, times, log, budget_check(config, target),
                                 gate_limits=limits)  # --calibration-method auto searches to meet them


def budget_check(config: CompileConfig, target: Target):
    """The torch front end's check_fits: the C backend's [budget] against a lower-bound estimate from the fp32
    model, before data loading and calibration (the compile's own check comes only after the build); None when
    the target sets no budget."""
    budget = target.budget
    if target.backend != "c" or (budget.flash_bytes is None and budget.ram_bytes is None):
        return None

    def check(layers) -> None:
        estimate = estimate_footprint(layers)
        check_budget_estimate(estimate, budget.flash_bytes, budget.ram_bytes, target.name,
                              lambda flash_over, ram_over: _budget_fix(config, target, estimate, ram_over),
                              "the int8 plan" if config.tflite_model else "the fp32 model before calibration")
    return check


def plan_layers(plan: Plan) -> list[WeightedLayer]:
    """An int8 plan's layers at the sizes the budget estimate reads: each layer's arena inputs (read once) and
    output, the plan input and output being the caller's buffers; weights and biases where it has them."""
    def size(j: int) -> int:
        return 0 if j == PLAN_INPUT else int(np.prod(plan.layers[j].output_shape))
    outputs = plan.output_layers
    return [WeightedLayer(int(layer.arrays["weight"].size) if "weight" in layer.arrays else 0,
                          int(layer.arrays["bias"].size) if "bias" in layer.arrays else 0,
                          sum(size(j) for j in set(plan.inputs_of(i)) if j not in outputs), 0 if i in outputs else size(i))
            for i, layer in enumerate(plan.layers)]


def _budget_fix(config: CompileConfig, target: Target, estimate: FootprintEstimate, ram_over: bool) -> str:
    """What to change: the model's size (the resolution moves RAM only), a target of the same kind whose
    budget the estimate fits, or a raised [budget] in a target file of one's own."""
    builtin = not (config.tflite_model or config.model_name or config.model_spec)
    shrink = ("a smaller --alpha" if builtin else "a smaller model") + (
        " or --resolution" if ram_over and not config.tflite_model else "")
    fitting = [t.name for t in load_targets(config.target_dirs).values()
               if t.name != target.name and t.backend == "c" and t.toolchain.kind == target.toolchain.kind
               and estimate.flash_bytes <= (t.budget.flash_bytes or float("inf"))
               and estimate.ram_bytes <= (t.budget.ram_bytes or float("inf"))]
    other = f", or target {' or '.join(fitting)}" if fitting else ""
    return f"use {shrink}{other}, or {budget_file_fix(target.path, target.builtin)}"


def run_pipeline(config: CompileConfig, target: Target, source: Source, times: dict, log) -> Path:
    """Plan -> reference -> golden -> peer checks -> model.tflite -> lower -> manifest, in a temporary folder
    renamed to the output when complete (signed inside it, so the artifact appears already signed)."""
    out = config.output_path()
    with atomic_folder(out, config.force) as folder:
        onnx_file = source.write_model(folder, times)
        metrics = {"fp32_accuracy": source.fp32_accuracy}
        if not source.evalset.labelled:
            metrics["accuracy_note"] = "no labelled eval data: no accuracy figure; fidelity measured on " + source.evalset.source
        if source.plan is not None:
            golden_x, golden_y, ref, tflite = _int8_checks(source, folder, metrics, times, log)
        else:
            golden_x, golden_y = source.evalset.images[:GOLDEN_IMAGES], source.fp32_logits[:GOLDEN_IMAGES].astype(np.float32)
            ref = tflite = None
        metrics["accuracy_gate"] = accuracy_gate(config, target, source, ref, metrics, log)
        np.save(folder / "golden_input.npy", golden_x)
        np.save(folder / "golden_output.npy", golden_y)
        build = Build(config, target, source.folded, source.plan, onnx_file, golden_x, golden_y, source.evalset.images,
                      source.fp32_logits, ref)
        with timed(times, "lower"):
            lowered = backend_module(target.backend).lower(build, folder)
        write_manifest(folder, {**_manifest(config, target, source, folder, metrics, golden_x, tflite),
                                **lowered.manifest_entries()})
        if config.sign_key:
            sign_folder(folder, config.sign_key)
    LOG.debug("stage times (s): " + json.dumps(times))  # also in the manifest; the CLI shows it with --verbose
    log(f"artifact written to {out}")
    return out


def accuracy_gate(config: CompileConfig, target: Target, source: Source, ref: np.ndarray | None, metrics: dict,
                  log) -> dict:
    """The manifest's metrics.accuracy_gate (edgepack.gate): the int8 reference's logits against the fp32
    model's on the eval images, judged against the given limits, else the target's, else the defaults. Over the
    limit the artifact is still written, recording the failure; the API and the CLI then refuse it (exit 1)."""
    if ref is None:
        record = gate.not_applicable("an fp32 compile (--quant none): no int8 model")
    elif source.fp32_logits is None:
        record = gate.not_applicable("an imported int8 model: no fp32 model to compare with")
    else:
        drop, agreement = gate.limits(config.max_accuracy_drop, config.min_fp32_agreement, target.accuracy_gate,
                                      target.name)
        record = gate.judge(source.fp32_logits, ref, source.evalset.labels, drop, agreement,
                            (metrics.get("int8_vs_fp32") or {}).get("sqnr_db"))
    log(f"accuracy gate: {'FAIL' if record.get('passed') is False else 'pass'}: {gate.describe(record)}")
    return record


def _int8_checks(source: Source, folder: Path, metrics: dict, times: dict, log):
    """The plan saved, its reference run on the eval images and checked against the front end's peers and
    LiteRT (model.tflite); fills ``metrics``. Returns (golden input, golden output, reference logits, the
    manifest's tflite entry)."""
    plan, evalset = source.plan, source.evalset
    plan.save(folder)
    with timed(times, "reference"):
        q_in = plan.input_q.quantize(evalset.images)
        ref_q = reference.run_batched(plan, q_in)
        ref = plan.dequantize_outputs(ref_q)
    labelled = evalset.labels is not None and not plan.multi_output()  # labels are one output's classes
    metrics["int8_accuracy"] = accuracy(ref, evalset.labels) if labelled else None
    golden_x, golden_y = q_in[:GOLDEN_IMAGES], source.peer_checks(folder, q_in, ref_q, ref, metrics, times)[:GOLDEN_IMAGES]
    with timed(times, "litert_verify"):
        tflite = _export_tflite(plan, folder, q_in, ref_q, len(golden_x), source.profile["macs"])
    source.report(metrics, tflite, log)
    return golden_x, golden_y, ref, tflite


def _export_tflite(plan: Plan, folder: Path, eval_q: np.ndarray, eval_y: np.ndarray, golden: int, macs: int) -> dict:
    """Write model.tflite and refuse it unless LiteRT's reference kernels reproduce the int8 reference
    on the first eval images (see frontends.LITERT_MIN_EVAL_IMAGES), which include the ``golden`` ones; the
    manifest entry."""
    path = tflite_export.write_tflite(plan, folder / "model.tflite")
    count = litert_images(len(eval_q), macs)
    if any(getattr(layer.params, "rounding", None) == "tflm" for layer in plan.layers):
        return _tflm_verified(path, eval_q[:count], eval_y[:count], golden, len(eval_q))
    xnnpack = litert.verify(path, eval_q[:count], eval_y[:count])  # raises VerificationError unless bit-exact
    return {"file": path.name, "input": "int8 NHWC (1, H, W, C)", "output": "int8 logits (1, classes)",
            "litert_version": litert.version(),
            "reference_kernels": {"bit_exact": True, "golden_images": golden, "eval_images": count,
                                  "eval_images_total": len(eval_q)},
            "xnnpack_vs_reference": xnnpack}


def _tflm_verified(path: Path, images: np.ndarray, want: np.ndarray, golden: int, total: int) -> dict:
    """A tflm artifact in TFLM's arithmetic (an imported FULLY_CONNECTED rounds twice there, once in LiteRT):
    model.tflite is refused unless TFLM's own interpreter reproduces the reference; LiteRT's distance is recorded."""
    tflm = tflm_interpreter.verify(path, images, want)
    return {"file": path.name, "input": "int8 NHWC (1, H, W, C)", "output": "int8 logits (1, classes)",
            "litert_version": litert.version(), "arithmetic": "TFLM (FULLY_CONNECTED rounds twice)",
            "tflm_interpreter": {**tflm, "golden_images": golden, "eval_images_total": total},
            "reference_kernels": {"bit_exact": tflm["litert_reference_values_differing"] == 0,
                                  "values_differing": tflm["litert_reference_values_differing"], "eval_images": len(images)},
            "xnnpack_vs_reference": None}


def _manifest(config: CompileConfig, target: Target, source: Source, folder: Path, metrics: dict,
              golden_x: np.ndarray, tflite: dict | None) -> dict:
    """The manifest's entries on what was compiled and how it was checked (the backend adds its own)."""
    plan = source.plan
    golden = {"images": int(len(golden_x)), "input": "golden_input.npy", "output": "golden_output.npy"}
    return {
        "edgepack_version": __version__,
        "target": target.to_json(),
        "backend": target.backend,
        "model": source.model,
        **source.origin,
        "preprocessing": source.preprocessing,
        "params": source.profile["params"], "macs": source.profile["macs"],
        "quantization": source.quantization,
        "folding": source.folding,
        "eval": evaldata.record(source.evalset, folder, source.classes),
        "metrics": metrics,
        "golden": {**golden, "source": source.golden_source} if source.golden_source else golden,
        "plan": {"file": "plan.json", "arrays": "plan.npz", "layers": len(plan.layers),
                 "input": asdict(plan.input_q), "output": asdict(plan.output_q),
                 **({"outputs": [{"layer": i, "shape": list(shape), **asdict(q)} for i, shape, q in
                                 zip(plan.output_layers, plan.output_shapes, plan.output_qs)]} if plan.multi_output() else {}),
                 **({"module_paths": source.module_paths} if source.module_paths else {})} if plan else None,
        "tflite": tflite,
    }

