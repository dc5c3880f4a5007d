"""compile: model -> fold -> quantize -> QDQ ONNX + int8 plan -> lower(backend) -> artifact folder."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgepack import evaldata, provenance
from edgepack.config import CompileConfig, QuantMode  # noqa: F401 (CompileConfig re-exported)
from edgepack.artifact import atomic_folder, check_output_dir, output_lock, write_manifest
from edgepack.backends import backend_module
from edgepack.data import Dataset, load_dataset
from edgepack.errors import ConfigError, DataError, UnsupportedModelError, VerificationError
from edgepack.evaluate import accuracy, compare, sqnr_db, torch_logits
from edgepack.fold import fold, folding_error
from edgepack.model.profile import summary
from edgepack.plan import reference
from edgepack.plan.build import build_plan
from edgepack.plan.plan import Plan
from edgepack.targets import Target, get_target
from edgepack.version import __version__

GOLDEN_IMAGES = 8
TORCH_INT8_CHECK_IMAGES = 64  # eval images also run through torch's simulated int8 graph
# model.tflite is checked under LiteRT's reference kernels (~85 ms per image at 0.75-224 here) on the
# golden images and this many eval images, or as many as fit in the multiply-add budget (all for small
# models): a count fixed by the model, so the manifest (which records it) stays byte-identical.
LITERT_MIN_EVAL_IMAGES = 32
LITERT_MAC_BUDGET = 8e9
SUPPORTED_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2d, nn.AvgPool2d,
                     nn.Flatten, nn.Linear, nn.Sequential, nn.Identity)


@dataclass
class Build:
    """What the stages produce; backends read it to lower."""

    config: CompileConfig
    target: Target
    folded: nn.Module
    plan: Plan | None
    onnx_file: str
    golden_input: np.ndarray
    golden_output: np.ndarray
    eval_images: np.ndarray  # the eval split the compile measured, and what it computed on it:
    fp32_logits: np.ndarray  # the folded fp32 model's logits
    reference_logits: np.ndarray | None  # the int8 reference's dequantized logits (None for --quant none)
    manifest: dict = field(default_factory=dict)


def check_supported(model: nn.Module) -> None:
    """Refuse, by name, any leaf layer outside the operator set the int8 plan lowers."""
    for name, m in model.named_modules():
        if list(m.children()):
            continue  # a container: its leaves are checked
        if not isinstance(m, SUPPORTED_MODULES):
            raise UnsupportedModelError(
                f"layer '{name or type(m).__name__}' ({type(m).__name__}) is not supported: build the model from "
                "Conv2d, BatchNorm2d, ReLU/ReLU6, AdaptiveAvgPool2d/AvgPool2d, Flatten and Linear")
        if isinstance(m, nn.Conv2d) and m.groups not in (1, m.in_channels):
            raise UnsupportedModelError(f"layer '{name}' is a grouped conv (groups={m.groups}): use groups 1 or = in_channels")


def model_classes(model: nn.Module, given: int | None = None) -> int:
    """The class count of a user model: its last Linear's out_features (a ``classes`` given must agree)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnsupportedModelError(f"model {type(model).__name__} has no Linear layer: end it with "
                                    "AdaptiveAvgPool2d(1), Flatten and Linear(features, classes)")
    classes = linears[-1].out_features
    if given is not None and int(given) != classes:
        raise ConfigError(f"classes={given} but model {type(model).__name__} ends in Linear(..., {classes}): "
                          "drop classes (it comes from the model) or change the model")
    return classes


def build_model(config: CompileConfig) -> tuple[nn.Module, str]:
    from edgepack.model.weights import load_checkpoint, pretrained

    if config.checkpoint:
        return (load_checkpoint(config.checkpoint, config.alpha, config.resolution, config.classes, config.architecture),
                Path(config.checkpoint).name)
    return pretrained(config.alpha, config.resolution, config.classes, config.architecture), "shipped digits weights"


def _model_provenance(config: CompileConfig) -> dict:
    """The checkpoint and --model files by absolute path and sha256, so debug can rebuild the fp32 model."""
    record = {}
    if config.checkpoint:
        record["checkpoint"] = provenance.file_record(config.checkpoint)
    if config.model_spec:
        record["module"] = provenance.module_record(config.model_spec)
    return record


def _load_data(spec, split: str, size: int | None, config: CompileConfig) -> Dataset:
    if spec is not None and str(spec) != "digits":
        spec = Path(spec).resolve()  # the manifest records the source: never relative to where compile ran
    return load_dataset(spec, split, config.resolution, config.classes, config.mean, config.std).take(size)


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """None without labels: unlabelled eval inputs give fidelity figures, never an accuracy."""
    return None if labels is None else accuracy(logits, labels)


def _percent(value: float | None) -> str:
    return "n/a (no labelled eval data)" if value is None else f"{value:.2%}"


def _hold_out(calibration: Dataset) -> tuple[Dataset, Dataset]:
    """A user model's calibration file without eval data: its last 20% measure fidelity (unlabelled,
    no accuracy figure) and are not used to calibrate (edgepack.inputs.split_held_out)."""
    from edgepack.inputs import split_held_out

    kept, held = split_held_out(calibration.images)
    labels = None if calibration.labels is None else calibration.labels[:len(kept)]
    return (Dataset(kept, labels, calibration.source),
            Dataset(held, None, f"{calibration.source}, last {len(held)} inputs held out (unlabelled)"))


def _timed(times: dict, stage: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            times[stage] = round(time.perf_counter() - self.t, 3)
    return _T()


def _litert_images(available: int, macs: int) -> int:
    """How many eval images LiteRT's reference kernels run (see LITERT_MIN_EVAL_IMAGES)."""
    return min(available, max(LITERT_MIN_EVAL_IMAGES, int(LITERT_MAC_BUDGET // max(macs, 1))))


def _export_tflite(plan: Plan, folder: Path, eval_q: np.ndarray, eval_y: np.ndarray, golden: int, macs: int) -> dict:
    """Write model.tflite and refuse it unless LiteRT's reference kernels reproduce the int8 reference
    on the first eval images (see LITERT_MIN_EVAL_IMAGES), which include the ``golden`` ones; the
    manifest entry."""
    from edgepack.interop import litert, tflite_export

    path = tflite_export.write_tflite(plan, folder / "model.tflite")
    count = _litert_images(len(eval_q), macs)
    xnnpack = litert.verify(path, eval_q[:count], eval_y[:count])  # raises VerificationError unless bit-exact
    return {"file": path.name, "input": "int8 NHWC (1, H, W, C)", "output": "int8 logits (1, classes)",
            "litert_version": litert.version(),
            "reference_kernels": {"bit_exact": True, "golden_images": golden, "eval_images": count,
                                  "eval_images_total": len(eval_q)},
            "xnnpack_vs_reference": xnnpack}


def compile_model(config: CompileConfig, model: nn.Module | None = None, log=print,
                  calibration_data: Dataset | None = None, eval_set: Dataset | None = None) -> Path:
    """Build the artifact folder for ``config`` (``model`` overrides the MobileNetV1 builder;
    ``calibration_data``/``eval_set``, in-memory inputs from edgepack.inputs, override the config's paths).

    The output is checked before any work and locked for the whole compile (a second compile to
    the same folder fails at once); the artifact is renamed into place only when complete."""
    target = get_target(config.target, config.target_dirs)
    if config.sign_key:
        from edgepack.signing import load_private_key
        load_private_key(config.sign_key)  # a bad key fails now, not after the compile work
    out = config.output_path()
    check_output_dir(out, config.force, config.inputs)
    with output_lock(out):
        if config.tflite_model:
            return _compile_imported(config, log, target, out, eval_set)
        return _compile_locked(config, model, log, target, out, calibration_data, eval_set)



def _imported_eval_set(config: CompileConfig, classes: int, eval_set: Dataset | None) -> Dataset:
    """The eval inputs of an imported model: the given ones, else the digits eval split at the model's
    resolution, unlabelled whatever the class count: an imported model's classes are not the digits, so it
    is measured for fidelity only (accuracy needs the user's labelled --eval-data; ``--eval-data digits`` too)."""
    if eval_set is not None:
        return eval_set.take(config.eval_size)
    if config.eval_data is not None:
        return _load_data(config.eval_data, "eval", config.eval_size, config)
    return evaldata.bundled_eval(config.resolution, classes, False, config.eval_size, config.mean, config.std)


def _imported_preprocessing(config: CompileConfig, input_q, in_memory: bool) -> dict:
    """How an imported model's inputs were made, for the manifest: pixels mapped by mean/std, by default
    those of the file's input quantization (evaldata.quantization_mapping), or given by the user."""
    lo, hi = input_q.scale * (-128 - input_q.zero_point), input_q.scale * (127 - input_q.zero_point)
    derived = (tuple(config.mean), tuple(config.std)) == evaldata.quantization_mapping(input_q)
    how = (f"from the .tflite's input quantization (scale {input_q.scale:.6g}, zero point {input_q.zero_point}): "
           f"pixels 0..255 -> [{lo:.6g}, {hi:.6g}], int8 inputs pixel - 128" if derived else "--mean/--std as given")
    record = {**config.preprocessing, "input_mapping": how}
    return {**record, "in_memory": "Python API inputs, used as given"} if in_memory else record


def _compile_imported(config: CompileConfig, log, target: Target, out: Path, eval_set: Dataset | None = None) -> Path:
    """An int8 .tflite (edgepack.interop.tflite_import): the plan comes from the file, with no torch model and
    no calibration. The golden outputs are LiteRT's reference kernels run on the file itself, and the
    artifact is refused unless edgepack's numpy reference reproduces them bit for bit on the golden and
    eval images; model.tflite is then re-exported from the plan and verified as for any artifact."""
    from edgepack.interop import litert
    from edgepack.interop.tflite_import import check_backend, plan_profile, read_tflite

    check_backend(target)
    backend = backend_module(target.backend)
    times: dict[str, float] = {}
    imported = read_tflite(config.tflite_model)
    plan = imported.plan
    evalset = _imported_eval_set(config, imported.classes, eval_set)
    if tuple(evalset.images.shape[1:]) != tuple(plan.input_shape):
        raise DataError(f"eval images have shape {tuple(evalset.images.shape[1:])}, {imported.path.name} takes "
                        f"{tuple(plan.input_shape)}: pass --eval-data with {plan.input_shape[0]}-channel images")
    profile = plan_profile(plan)
    with atomic_folder(out, config.force) as folder:
        plan.save(folder)
        with _timed(times, "reference"):
            q_in = plan.input_q.quantize(evalset.images)
            ref_q = reference.run_batched(plan, q_in)
            ref = plan.output_q.dequantize(ref_q)
        count = _litert_images(len(q_in), profile["macs"])
        with _timed(times, "litert_import_check"):
            lite_q = litert.run_reference_tensor(imported.path, q_in[:count], imported.logits_tensor, imported.litert_input())
        if not np.array_equal(lite_q, ref_q[:count]):
            differ = np.flatnonzero((lite_q != ref_q[:count]).reshape(count, -1).any(axis=1))
            raise VerificationError(
                f"{imported.path.name}: edgepack's int8 reference differs from LiteRT's reference kernels on "
                f"{int((lite_q != ref_q[:count]).sum())} of {lite_q.size} logits ({len(differ)} of {count} images): this "
                "model uses arithmetic the int8 plan does not reproduce (e.g. MEAN's double rounding); please report it")
        golden_x, golden_y = q_in[:GOLDEN_IMAGES], lite_q[:GOLDEN_IMAGES]  # LiteRT's outputs, equal to the reference's
        metrics = {"fp32_accuracy": None, "int8_accuracy": _accuracy(ref, evalset.labels),
                   "int8_vs_fp32": {"sqnr_db": None, "note": "imported int8 model: there is no fp32 model"},
                   "reference_vs_litert_import": {"bit_exact": True, "images": count, "eval_images_total": len(q_in),
                                                  "litert_version": litert.version()}}
        if not evalset.labelled:
            metrics["accuracy_note"] = "no labelled eval data: no accuracy figure; fidelity measured on " + evalset.source
        with _timed(times, "litert_verify"):
            tflite = _export_tflite(plan, folder, q_in, ref_q, len(golden_x), profile["macs"])
        log(f"{imported.path.name}: edgepack's int8 reference is bit-exact with LiteRT's reference kernels on {count} "
            f"images; int8 accuracy {_percent(metrics['int8_accuracy'])} (reference)"
            + ("; its trailing SOFTMAX is dropped: the outputs are the logits" if imported.softmax else ""))
        np.save(folder / "golden_input.npy", golden_x)
        np.save(folder / "golden_output.npy", golden_y)
        build = Build(config, target, None, plan, None, golden_x, golden_y, evalset.images, None, ref)
        with _timed(times, "lower"):
            backend_info = backend.lower(build, folder)
        name = imported.path.stem
        manifest = {
            "edgepack_version": __version__,
            "target": target.to_json(),
            "backend": target.backend,
            "backend_info": backend_info,
            "model": {"name": name, "alpha": None, "resolution": config.resolution, "classes": imported.classes,
                      "weights": f"imported int8 .tflite {imported.path.name}", "input_shape": list(config.input_shape)},
            "import": imported.record(),
            "preprocessing": _imported_preprocessing(config, plan.input_q, eval_set is not None),
            "params": profile["params"], "macs": profile["macs"],
            "quantization": {"mode": "imported", "weights": "as given in the .tflite (int8, per channel or per tensor)",
                             "activations": "as given in the .tflite (int8 per-tensor affine)",
                             "requantization": "multipliers and shifts recomputed from the float32 scales as TFLite does"},
            "folding": None,
            "eval": evaldata.record(evalset, folder, imported.classes),
            "metrics": metrics,
            "golden": {"images": int(len(golden_x)), "input": "golden_input.npy", "output": "golden_output.npy",
                       "source": "LiteRT reference kernels on the imported .tflite"},
            "plan": {"file": "plan.json", "arrays": "plan.npz", "layers": len(plan.layers),
                     "input": asdict(plan.input_q), "output": asdict(plan.output_q)},
            "tflite": tflite,
            **build.manifest,
        }
        write_manifest(folder, manifest)
        if config.sign_key:
            from edgepack.signing import sign_folder
            sign_folder(folder, config.sign_key)
    log("stage times (s): " + json.dumps(times))
    log(f"artifact written to {out}")
    return out


def _compile_locked(config: CompileConfig, model: nn.Module | None, log, target: Target, out: Path,
                    calibration_data: Dataset | None = None, eval_set: Dataset | None = None) -> Path:
    """The torch front end: model -> fold -> quantize -> plan, then the checks, the lowering and the manifest."""
    from edgepack.quantize.export import export_qdq_onnx

    backend = backend_module(target.backend)
    times: dict[str, float] = {}
    model, source = _prepare_model(config, model)
    calibration, evalset = _torch_inputs(config, calibration_data, eval_set)
    profile = summary(model, config.input_shape)

    with _timed(times, "fold"):
        folded = fold(model)
        fold_err = folding_error(model, folded, torch.from_numpy(evalset.images[:64]))
    with _timed(times, "fp32_eval"):
        fp32 = torch_logits(folded, evalset.images)
    log(f"folded BatchNorm: max |logit diff| {fold_err:.2e}; fp32 accuracy {_percent(_accuracy(fp32, evalset.labels))}")
    converted, plan, quantization = _quantize(config, model, folded, calibration, calibration_data is not None, times)

    with atomic_folder(out, config.force) as folder:
        onnx_file = "qdq.onnx" if plan else "model.onnx"
        with _timed(times, "export"):
            export_qdq_onnx(converted if plan else folded, torch.from_numpy(evalset.images[:2]), folder / onnx_file)
        metrics = {"fp32_accuracy": _accuracy(fp32, evalset.labels)}
        if not evalset.labelled:
            metrics["accuracy_note"] = "no labelled eval data: no accuracy figure; fidelity measured on " + evalset.source
        if plan:
            golden_x, golden_y, ref, tflite = _int8_checks(plan, converted, folder / onnx_file, evalset, fp32, metrics,
                                                            profile["macs"], times, log)
        else:
            golden_x, golden_y, ref, tflite = evalset.images[:GOLDEN_IMAGES], fp32[:GOLDEN_IMAGES].astype(np.float32), None, None
        np.save(folder / "golden_input.npy", golden_x)
        np.save(folder / "golden_output.npy", golden_y)
        build = Build(config, target, folded, plan, onnx_file, golden_x, golden_y, evalset.images, fp32, ref)
        with _timed(times, "lower"):
            backend_info = backend.lower(build, folder)
        manifest = {
            "edgepack_version": __version__,
            "target": target.to_json(),
            "backend": target.backend,
            "backend_info": backend_info,
            "model": _model_entry(config, model, source),
            "preprocessing": {**config.preprocessing, **({"in_memory": "Python API inputs, used as given"}
                                                         if calibration_data is not None or eval_set is not None else {})},
            "params": profile["params"], "macs": profile["macs"],
            "quantization": quantization,
            "folding": {"max_abs_logit_diff": fold_err},
            "eval": evaldata.record(evalset, folder, config.classes),
            "metrics": metrics,
            "golden": {"images": int(len(golden_x)), "input": "golden_input.npy", "output": "golden_output.npy"},
            "plan": {"file": "plan.json", "arrays": "plan.npz", "layers": len(plan.layers),
                     "input": asdict(plan.input_q), "output": asdict(plan.output_q)} if plan else None,
            "tflite": tflite,
            **build.manifest,
        }
        write_manifest(folder, manifest)
        if config.sign_key:  # inside the temporary folder: the artifact appears already signed
            from edgepack.signing import sign_folder
            sign_folder(folder, config.sign_key)
    log("stage times (s): " + json.dumps(times))
    log(f"artifact written to {out}")
    return out


def _model_entry(config: CompileConfig, model: nn.Module, source: str) -> dict:
    """The manifest's "model": what was compiled, and what debug needs to rebuild it (edgepack.provenance)."""
    return {"name": type(model).__name__, "alpha": config.alpha, "resolution": config.resolution,
            "classes": config.classes, "weights": source, "input_shape": list(config.input_shape),
            **({} if config.model_name else {"builtin": config.architecture}), **_model_provenance(config)}


def _prepare_model(config: CompileConfig, model: nn.Module | None) -> tuple[nn.Module, str]:
    """The built-in model, or the user's checked (supported layers, a forward that runs, finite weights); in eval mode."""
    if model is None:
        model, source = build_model(config)
    else:
        check_supported(model)
        from edgepack.model.user import probe_forward
        probe_forward(model, config.input_shape, f"--model {config.model_spec}" if config.model_spec else type(model).__name__)
        source = f"user module {type(model).__name__}"
    from edgepack.model.weights import check_finite
    check_finite(model.state_dict(), f"model {type(model).__name__}")
    return model.eval(), source


def _torch_inputs(config: CompileConfig, calibration_data: Dataset | None, eval_set: Dataset | None):
    """(calibration, eval) datasets: the Python API's in-memory inputs as given, else the config's paths."""
    calibration = (calibration_data.take(config.calib_size) if calibration_data is not None
                   else _load_data(config.calibration, "calibration", config.calib_size, config))
    if eval_set is None and config.eval_data is None and config.model_name and config.calibration is not None:
        calibration, eval_set = _hold_out(calibration)  # a user model is never "evaluated" on the digits
    evalset = (eval_set.take(config.eval_size) if eval_set is not None
               else _load_data(config.eval_data, "eval", config.eval_size, config))
    if config.quant == QuantMode.QAT and not calibration.labelled:
        raise ConfigError("quant='qat' needs labelled training data, and in-memory calibration inputs have no labels: "
                          "use quant='ptq', or a labelled .npz/ImageFolder calibration path")
    from edgepack.quantize.ptq import check_calibration
    check_calibration(calibration, config.input_shape)
    check_calibration(evalset, config.input_shape)
    return calibration, evalset


def _quantize(config: CompileConfig, model: nn.Module, folded: nn.Module, calibration: Dataset, in_memory: bool,
              times: dict):
    """(converted PT2E graph, int8 plan, the manifest's quantization entry); None, None for --quant none."""
    from edgepack.quantize.ptq import quantize_ptq

    quantization: dict = {"mode": config.quant.value}
    plan = converted = None
    with _timed(times, "quantize"):
        if config.quant == QuantMode.PTQ:
            converted = quantize_ptq(folded, calibration, config.input_shape, config.weight_granularity)
        elif config.quant == QuantMode.QAT:
            from edgepack.quantize.qat import quantize_qat
            train = _load_data(config.calibration, "train", None, config) if config.calibration is None else calibration
            converted, guarded = quantize_qat(model, train, calibration, config.input_shape, config.qat_epochs,
                                              config.weight_granularity)
            quantization.update(qat_epochs=config.qat_epochs, qat_train_images=len(train), guarded_zero_batchnorm_weights=guarded)
    if converted is not None:
        quantization.update(
            weights=f"int8 symmetric [-127, 127], {config.weight_granularity.value}",
            activations="int8 per-tensor affine [-128, 127]",
            calibration=provenance.calibration_record(
                None if in_memory else (config.calibration or "digits"), calibration, config.classes),
            framework="torchao PT2E",
        )
        with _timed(times, "plan"):
            plan = build_plan(converted, config.input_shape)
    return converted, plan, quantization


def _int8_checks(plan: Plan, converted, onnx_path: Path, evalset: Dataset, fp32: np.ndarray, metrics: dict, macs: int,
                 times: dict, log):
    """The plan saved beside ``onnx_path``, its reference run on the eval images and cross-checked against torch's
    simulated int8, ONNX Runtime and LiteRT (model.tflite); fills ``metrics``. Returns (golden input, golden
    output, reference logits, the manifest's tflite entry)."""
    folder = onnx_path.parent
    plan.save(folder)
    with _timed(times, "reference"):
        q_in = plan.input_q.quantize(evalset.images)
        ref_q = reference.run_batched(plan, q_in)
        ref = plan.output_q.dequantize(ref_q)
    with _timed(times, "torch_int8_eval"):  # a cross-check: PT2E's simulated int8 is slow at 224
        torch_int8 = torch_logits(converted, evalset.images[:TORCH_INT8_CHECK_IMAGES])
    from edgepack.backends.onnxruntime import run_onnx
    with _timed(times, "onnxruntime_eval"):
        ort_int8 = run_onnx(onnx_path, evalset.images)
    metrics.update(
        int8_accuracy=_accuracy(ref, evalset.labels),
        int8_torch_accuracy=_accuracy(torch_int8, evalset.take(TORCH_INT8_CHECK_IMAGES).labels),
        int8_onnxruntime_accuracy=_accuracy(ort_int8, evalset.labels),
        reference_vs_torch_int8={**compare("reference", ref[:TORCH_INT8_CHECK_IMAGES], "torch PT2E", torch_int8),
                                 "images": len(torch_int8)},
        reference_vs_onnxruntime=compare("reference", ref, "onnxruntime QDQ", ort_int8),
        int8_vs_fp32={**compare("reference", ref, "fp32 folded", fp32), "sqnr_db": sqnr_db(fp32, ref)},
    )
    golden_x, golden_y = q_in[:GOLDEN_IMAGES], ref_q[:GOLDEN_IMAGES]  # the first eval images
    with _timed(times, "litert_verify"):
        tflite = _export_tflite(plan, folder, q_in, ref_q, len(golden_x), macs)
    xnn = tflite["xnnpack_vs_reference"]
    log(f"model.tflite bit-exact under LiteRT's reference kernels on {xnn['images']} images; LiteRT's XNNPACK "
        f"path differs on {xnn['values_differing']} of {xnn['values']} values (at most {xnn['max_abs_diff']})")
    log(f"int8 accuracy {_percent(metrics['int8_accuracy'])} (reference), agreement with ONNX Runtime "
        f"{metrics['reference_vs_onnxruntime']['top1_agreement']:.2%}")
    return golden_x, golden_y, ref, tflite
