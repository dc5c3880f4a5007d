"""The torch front end: model -> fold BatchNorm -> quantize (torchao PT2E, PTQ or QAT) -> int8 plan
(edgepack.frontends.pt2e_plan). Its peers are torch's simulated int8 graph and ONNX Runtime on the QDQ
ONNX file it writes into the artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgepack import provenance
from edgepack.config import CalibrationMethod, CompileConfig, QuantMode
from edgepack.data import Dataset
from edgepack.errors import CheckpointError, ConfigError, UnsupportedModelError
from edgepack.evaluate import accuracy, compare, sqnr_db, torch_logits
from edgepack.fold import fold, folding_error
from edgepack.frontends import Source, load_data, percent, timed
from edgepack.frontends import qat_fallback
from edgepack.frontends.calibration_search import describe as describe_search, search_calibration
from edgepack.frontends.module_paths import module_paths
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.inputs import split_held_out
from edgepack.model import builtin
from edgepack.interop.onnxruntime import run_onnx
from edgepack.model.profile import summary
from edgepack.model.user import probe_forward
from edgepack.model.weights import check_finite, load_checkpoint, pretrained
from edgepack.plan.plan import Plan
from edgepack.quantize.equalize import equalize
from edgepack.quantize.bias_correction import correct_biases
from edgepack.quantize.export import export_qdq_onnx
from edgepack.quantize.layers import SUPPORTED_LAYERS, SUPPORTED_MODULES
from edgepack.quantize.layers import strip_trailing_softmax
from edgepack.quantize.ptq import check_calibration, quantize_ptq
from edgepack.quantize.qat import quantize_qat
from edgepack.validate import WeightedLayer

TORCH_INT8_CHECK_IMAGES = 64  # eval images also run through torch's simulated int8 graph
# the manifest's model.softmax of a model ending in a softmax over the classes (a .tflite's: import.softmax)
SOFTMAX_DROPPED = ("dropped: outputs are the logits (the trailing softmax's input), fp32 figures too; softmax is "
                   "monotonic, so the top class (argmax) is unchanged, but apply a softmax yourself where "
                   "probabilities are needed (or compile with keep_softmax=True / --keep-softmax)")
SOFTMAX_KEPT = ("kept (keep_softmax): outputs are the softmax's int8 probabilities (scale 1/256, zero point -128), "
                "TFLite's int8 SOFTMAX arithmetic, beta 1")


def check_supported(model: nn.Module) -> None:
    """Refuse, by name, any leaf layer outside the operator set the int8 plan lowers."""
    for name, m in model.named_modules():
        if list(m.children()):
            continue  # a container: its leaves are checked
        if not isinstance(m, SUPPORTED_MODULES):
            raise UnsupportedModelError(
                f"layer '{name or type(m).__name__}' ({type(m).__name__}) is not supported: build the model from "
                f"{SUPPORTED_LAYERS}")
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
    """The built-in model of ``config`` with its weights, and where the weights came from."""
    if config.checkpoint:
        return (load_checkpoint(config.checkpoint, config.alpha, config.resolution, config.classes, config.architecture),
                Path(config.checkpoint).name)
    try:
        return pretrained(config.alpha, config.resolution, config.classes, config.architecture), "shipped digits weights"
    except CheckpointError:  # a model the int8 plan cannot hold is refused as such, not sent to train weights
        check_supported(builtin.build(config.architecture, config.alpha, config.resolution, config.classes))
        raise


def _model_entry(config: CompileConfig, model: nn.Module, source: str) -> dict:
    """The manifest's "model": what was compiled, and what debug needs to rebuild it (edgepack.provenance):
    the checkpoint and --model files by absolute path and sha256."""
    record = {}
    if config.checkpoint:
        record["checkpoint"] = provenance.file_record(config.checkpoint)
    if config.model_spec:
        record["module"] = provenance.module_record(config.model_spec)
    return {"name": type(model).__name__, "alpha": config.alpha, "resolution": config.resolution,
            "classes": config.classes, "weights": source, "input_shape": list(config.input_shape),
            **({} if config.model_name else {"builtin": config.architecture}), **record}


def _prepare_model(config: CompileConfig, model: nn.Module | None) -> tuple[nn.Module, str]:
    """The built-in model, or the user's checked (supported layers, a forward that runs, finite weights); in eval mode."""
    if model is None:
        model, source = build_model(config)
    else:
        check_supported(model)
        probe_forward(model, config.input_shape, f"--model {config.model_spec}" if config.model_spec else type(model).__name__)
        source = f"user module {type(model).__name__}"
    check_finite(model.state_dict(), f"model {type(model).__name__}")
    return model.eval(), source


def trailing_softmax(config: CompileConfig, model: nn.Module) -> tuple[nn.Module, dict]:
    """The model the plan is made of, and the manifest's model entry for its softmax: a softmax over the classes at
    the model's end is kept with ``keep_softmax`` (the plan's softmax layer), else dropped (the fp32 figures, too,
    are then of the logits, consistent with int8). A softmax anywhere else is refused by the graph check."""
    stripped = strip_trailing_softmax(model)
    if stripped is None:
        return model, {}
    if config.keep_softmax:
        return model, {"softmax": SOFTMAX_KEPT}
    return stripped.eval(), {"softmax": SOFTMAX_DROPPED}


def _hold_out(calibration: Dataset) -> tuple[Dataset, Dataset]:
    """A user model's calibration file without eval data: its last 20% measure fidelity (unlabelled,
    no accuracy figure) and are not used to calibrate (edgepack.inputs.split_held_out)."""
    kept, held = split_held_out(calibration.images)
    labels = None if calibration.labels is None else calibration.labels[:len(kept)]
    return (Dataset(kept, labels, calibration.source),
            Dataset(held, None, f"{calibration.source}, last {len(held)} inputs held out (unlabelled)"))


def _inputs(config: CompileConfig, calibration_data: Dataset | None, eval_set: Dataset | None):
    """(calibration, eval) datasets: the Python API's in-memory inputs as given, else the config's paths."""
    calibration = (calibration_data.take(config.calib_size) if calibration_data is not None
                   else load_data(config.calibration, "calibration", config.calib_size, config))
    if eval_set is None and config.eval_data is None and config.model_name and config.calibration is not None:
        calibration, eval_set = _hold_out(calibration)  # a user model is never "evaluated" on the digits
    evalset = (eval_set.take(config.eval_size) if eval_set is not None
               else load_data(config.eval_data, "eval", config.eval_size, config))
    if config.quant == QuantMode.QAT and not calibration.labelled:
        raise ConfigError("quant='qat' needs labelled training data, and in-memory calibration inputs have no labels: "
                          "use quant='ptq', or a labelled .npz/ImageFolder calibration path")
    check_calibration(calibration, config.input_shape)
    check_calibration(evalset, config.input_shape)
    return calibration, evalset


def _ptq(config: CompileConfig, folded: nn.Module, calibration: Dataset, quantization: dict, times: dict,
         gate_limits: tuple | None):
    """(converted graph, weight granularity): equalize, correct biases, calibrate as the config says, filling
    ``quantization`` with what was done."""
    searching = config.calibration_method == CalibrationMethod.AUTO
    with timed(times, "equalize"):
        folded, quantization["equalization"] = (equalize(folded, calibration.images) if config.equalize
                                                else (folded, {"applied": False}))
    quantization["bias_correction"] = {"applied": False}
    if config.bias_correction and not searching:  # the search corrects for each granularity it tries
        with timed(times, "bias_correction"):
            folded, quantization["bias_correction"] = correct_biases(folded, calibration.images,
                                                                     config.weight_granularity)
    with timed(times, "quantize"):
        if searching:
            return search_calibration(config, folded, calibration, quantization, gate_limits)
        method = config.calibration_method or CalibrationMethod.HISTOGRAM  # None: QAT's PTQ fallback
        quantization["activation_calibration"] = method.value
        return quantize_ptq(folded, calibration, config.input_shape, config.weight_granularity,
                            calibration_method=method), config.weight_granularity


def _qat(config: CompileConfig, model: nn.Module, folded: nn.Module, calibration: Dataset, quantization: dict,
         times: dict):
    """(converted graph, its plan): QAT's, or PTQ's unless QAT's wins on the calibration split by
    qat_fallback.MIN_GAIN_IMAGES; ``quantization`` records the recipe and the choice."""
    train = load_data(config.calibration, "train", None, config) if config.calibration is None else calibration
    recipe: dict = {}  # what the QAT recipe did: epochs, schedule, freezes, calibration accuracy per epoch
    with timed(times, "qat"):
        converted, guarded = quantize_qat(model, train, calibration, config.input_shape, config.qat_epochs,
                                          config.weight_granularity, equalize_first=config.equalize, record=recipe)
    quantization.update(qat_epochs=config.qat_epochs, qat_train_images=len(train), guarded_zero_batchnorm_weights=guarded,
                        qat_recipe=recipe)
    ptq_record: dict = {}
    ptq_converted, _ = _ptq(config, folded, calibration, ptq_record, times, None)
    with timed(times, "plan"):
        plans = build_plan(converted, config.input_shape), build_plan(ptq_converted, config.input_shape)
    with timed(times, "qat_fallback"):
        keep_qat, quantization["qat_fallback"] = qat_fallback.choose(*plans, calibration)
    if keep_qat:
        return converted, plans[0]
    quantization.update(ptq_record)
    return ptq_converted, plans[1]


def _quantize(config: CompileConfig, model: nn.Module, folded: nn.Module, calibration: Dataset, in_memory: bool,
              times: dict, gate_limits: tuple | None = None):
    """(converted PT2E graph, int8 plan, the manifest's quantization entry); None, None for --quant none.
    ``gate_limits``: the target's accuracy gate, which --calibration-method auto's search must meet."""
    quantization: dict = {"mode": config.quant.value}
    plan = converted = None
    granularity = config.weight_granularity
    if config.quant == QuantMode.PTQ:
        converted, granularity = _ptq(config, folded, calibration, quantization, times, gate_limits)
    elif config.quant == QuantMode.QAT:  # QAT equalizes the unfolded model itself (quantize_qat)
        converted, plan = _qat(config, model, folded, calibration, quantization, times)
    if converted is not None:
        quantization.update(
            weights=f"int8 symmetric [-127, 127], {granularity.value}",
            activations="int8 per-tensor affine [-128, 127]",
            calibration=provenance.calibration_record(
                None if in_memory else (config.calibration or "digits"), calibration, config.classes),
            framework="torchao PT2E",
        )
        if plan is None:
            with timed(times, "plan"):
                plan = build_plan(converted, config.input_shape)
    return converted, plan, quantization


def to_plan(model: nn.Module, calibration: Dataset, config: CompileConfig) -> Plan | None:
    """The int8 plan of a torch ``model`` calibrated on ``calibration`` (fold, quantize, plan), as a compile
    makes it; None for ``quant="none"``."""
    model = trailing_softmax(config, model.eval())[0]
    return _quantize(config, model, fold(model), calibration, True, {})[1]


@torch.no_grad()
def weighted_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[WeightedLayer]:
    """Every conv / fc call of one forward pass at int8 sizes, for a budget estimate before calibration (a module
    called twice holds its weights once; the model's own input and output are the caller's buffers)."""
    calls = []
    handles = [m.register_forward_hook(lambda m, args, out: calls.append((m, args[0], out)))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    x = torch.zeros(1, *input_shape)
    try:
        y = model(x)
    finally:
        for h in handles:
            h.remove()
    ends = (x.data_ptr(), y.data_ptr() if isinstance(y, torch.Tensor) else None)
    layers, seen = [], set()
    for m, inp, out in calls:
        first = m not in seen
        seen.add(m)
        channels = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        layers.append(WeightedLayer(m.weight.numel() if first else 0, channels if first else 0,
                                    0 if inp.data_ptr() == ends[0] else inp.numel(),
                                    0 if out.data_ptr() == ends[1] else out.numel()))
    return layers


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else accuracy(logits, labels)


def to_source(config: CompileConfig, model: nn.Module | None, calibration_data: Dataset | None,
              eval_set: Dataset | None, times: dict, log, check_fits=None, gate_limits=None) -> TorchSource:
    """The built-in or given model folded and quantized, with the fp32 figures the manifest records.
    ``check_fits(weighted_layers)`` refuses, before data loading and calibration, a model over the target's budget."""
    model, weights = _prepare_model(config, model)
    named, (model, softmax) = model, trailing_softmax(config, model)
    if softmax:
        log(f"the model ends in a softmax: {softmax['softmax']}")
    if check_fits is not None:
        check_fits(weighted_layers(model, config.input_shape))
    calibration, evalset = _inputs(config, calibration_data, eval_set)
    profile = summary(model, config.input_shape)
    with timed(times, "fold"):
        folded = fold(model)
        fold_err = folding_error(model, folded, torch.from_numpy(evalset.images[:64]))
    with timed(times, "fp32_eval"):
        fp32 = torch_logits(folded, evalset.images)
    fp32_accuracy = _accuracy(fp32, evalset.labels)
    log(f"folded BatchNorm: max |logit diff| {fold_err:.2e}; fp32 accuracy {percent(fp32_accuracy)}")
    in_memory = calibration_data is not None or eval_set is not None
    converted, plan, quantization = _quantize(config, model, folded, calibration, calibration_data is not None, times,
                                              gate_limits)
    if "calibration_search" in quantization:
        log(describe_search(quantization["calibration_search"]))
    if "qat_fallback" in quantization:
        log(qat_fallback.describe(quantization["qat_fallback"]))
    source = TorchSource(plan, evalset, config.classes, profile, {**_model_entry(config, named, weights), **softmax},
                         {**config.preprocessing, **({"in_memory": "Python API inputs, used as given"} if in_memory else {})},
                         quantization, {"max_abs_logit_diff": fold_err}, fp32_accuracy, folded=folded, fp32_logits=fp32,
                         module_paths=module_paths(folded, plan) if plan is not None else None)
    source.converted = converted
    return source


class TorchSource(Source):
    """A torch model's plan; its peers are torch's simulated int8 graph and ONNX Runtime on the QDQ ONNX."""

    converted: torch.fx.GraphModule | None = None
    onnx_file: str | None = None

    def write_model(self, folder: Path, times: dict) -> str:
        """qdq.onnx (model.onnx for an fp32 compile): ONNX Runtime's input, shipped in the artifact."""
        self.onnx_file = "qdq.onnx" if self.plan else "model.onnx"
        with timed(times, "export"):
            export_qdq_onnx(self.converted if self.plan else self.folded, torch.from_numpy(self.evalset.images[:2]),
                            folder / self.onnx_file)
        return self.onnx_file

    def peer_checks(self, folder: Path, q_in, ref_q, ref, metrics: dict, times: dict) -> np.ndarray:
        evalset, fp32 = self.evalset, self.fp32_logits
        with timed(times, "torch_int8_eval"):  # a cross-check: PT2E's simulated int8 is slow at 224
            torch_int8 = torch_logits(self.converted, evalset.images[:TORCH_INT8_CHECK_IMAGES])
        with timed(times, "onnxruntime_eval"):
            ort_int8 = run_onnx(folder / self.onnx_file, evalset.images)
        metrics.update(
            int8_torch_accuracy=_accuracy(torch_int8, evalset.take(TORCH_INT8_CHECK_IMAGES).labels),
            int8_onnxruntime_accuracy=_accuracy(ort_int8, evalset.labels),
            reference_vs_torch_int8={**compare("reference", ref[:TORCH_INT8_CHECK_IMAGES], "torch PT2E", torch_int8),
                                     "images": len(torch_int8)},
            reference_vs_onnxruntime=compare("reference", ref, "onnxruntime QDQ", ort_int8),
            int8_vs_fp32={**compare("reference", ref, "fp32 folded", fp32), "sqnr_db": sqnr_db(fp32, ref)},
        )
        return ref_q

    def report(self, metrics: dict, tflite: dict, log) -> None:
        xnn = tflite["xnnpack_vs_reference"]
        log(f"model.tflite bit-exact under LiteRT's reference kernels on {xnn['images']} images; LiteRT's XNNPACK "
            f"path differs on {xnn['values_differing']} of {xnn['values']} values (at most {xnn['max_abs_diff']})")
        log(f"int8 accuracy {percent(metrics['int8_accuracy'])} (reference), agreement with ONNX Runtime "
            f"{metrics['reference_vs_onnxruntime']['top1_agreement']:.2%}")
