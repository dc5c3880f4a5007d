"""The .tflite front end: an int8 .tflite is read as its int8 plan (edgepack.interop.tflite_import), with no
torch model and no calibration. Its peer is LiteRT's reference kernels run on the file itself: the
artifact is refused unless edgepack's numpy reference reproduces them bit for bit, and the golden outputs
are LiteRT's."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepack import evaldata
from edgepack.config import CompileConfig
from edgepack.data import Dataset
from edgepack.errors import DataError, VerificationError
from edgepack.frontends import Source, litert_images, load_data, percent, timed
from edgepack.interop import litert
from edgepack.interop.tflite_import import SOFTMAX_DROPPED, SOFTMAX_KEPT, ImportedModel, plan_profile, read_tflite
from edgepack.ops.fc import as_tflm
from edgepack.plan import reference
from edgepack.targets import get_target

TFLM_FC = ("TFLM's FULLY_CONNECTED rounds acc * M twice (gemmlowp; TFLM is built without TFLITE_SINGLE_ROUNDING), "
           "LiteRT's reference kernel once: they differ by 1 on ties")
TFLM_GOLDEN = ("edgepack's int8 reference with TFLM's FULLY_CONNECTED rounding (LiteRT's arithmetic checked bit-exact "
               "on the imported .tflite), checked bit-exact against TFLM's interpreter on model.tflite")
QUANTIZATION = {"mode": "imported", "weights": "as given in the .tflite (int8, per channel or per tensor)",
                "activations": "as given in the .tflite (int8 per-tensor affine)",
                "requantization": "multipliers and shifts recomputed from the float32 scales as TFLite does"}


def compile_config(imported: ImportedModel, target: str, **options) -> CompileConfig:
    """The config of an imported model, for the CLI and the API alike: resolution, classes and name come from
    the file; without ``mean``/``std`` pixels map onto the range of the file's input quantization."""
    if "mean" not in options and "std" not in options:
        options["mean"], options["std"] = evaldata.quantization_mapping(imported.plan.input_q)
    options.setdefault("model_name", imported.path.stem)
    options.update(resolution=imported.resolution, classes=imported.classes)
    shape = tuple(imported.plan.input_shape)
    if len(shape) == 3 and (shape[0] != 3 or shape[1] != shape[2]):  # --eval-data .npz of its own (C, H, W) inputs
        options.setdefault("image_shape", shape)
    return CompileConfig(target=target, tflite_model=str(imported.path), **options)


def imported_eval_set(config: CompileConfig, classes: int, eval_set: Dataset | None, plan=None) -> Dataset:
    """The eval inputs of an imported model: the given ones, else the digits eval split at the model's
    resolution, unlabelled whatever the class count: an imported model's classes are not the digits, so it
    is measured for fidelity only (accuracy needs the user's labelled --eval-data; ``--eval-data digits`` too).
    A ``plan`` that takes no 3-channel square image (a vector, a 49x10 spectrogram, a 1-D signal) gets seeded random
    inputs of its shape instead of the digits."""
    if eval_set is not None:
        return eval_set.take(config.eval_size)
    if config.eval_data is not None:
        return load_data(config.eval_data, "eval", config.eval_size, config)
    if plan is not None and (len(plan.input_shape) != 3 or plan.input_shape[0] != 3
                             or plan.input_shape[1] != plan.input_shape[2]):
        return evaldata.random_inputs(plan.input_shape, config.eval_size, plan.input_q)
    return evaldata.bundled_eval(config.resolution, classes, False, config.eval_size, config.mean, config.std)


def _preprocessing(config: CompileConfig, input_q, in_memory: bool) -> dict:
    """How an imported model's inputs were made, for the manifest: pixels mapped by mean/std, by default
    those of the file's input quantization (evaldata.quantization_mapping), or given by the user."""
    lo, hi = input_q.scale * (-128 - input_q.zero_point), input_q.scale * (127 - input_q.zero_point)
    derived = (tuple(config.mean), tuple(config.std)) == evaldata.quantization_mapping(input_q)
    how = (f"from the .tflite's input quantization (scale {input_q.scale:.6g}, zero point {input_q.zero_point}): "
           f"pixels 0..255 -> [{lo:.6g}, {hi:.6g}], int8 inputs pixel - 128" if derived else "--mean/--std as given")
    record = {**config.preprocessing, "input_mapping": how}
    return {**record, "in_memory": "Python API inputs, used as given"} if in_memory else record


def to_source(config: CompileConfig, eval_set: Dataset | None = None) -> TfliteSource:
    """Read ``config.tflite_model`` (unsupported ops are refused by name) and choose its eval images."""
    imported = read_tflite(config.tflite_model, keep_softmax=config.keep_softmax)
    plan = imported.plan
    evalset = imported_eval_set(config, imported.classes, eval_set, plan)
    if tuple(evalset.images.shape[1:]) != tuple(plan.input_shape):
        raise DataError(f"eval images have shape {tuple(evalset.images.shape[1:])}, {imported.path.name} takes "
                        f"{tuple(plan.input_shape)}: pass --eval-data with {plan.input_shape[0]}-channel images")
    litert_plan = None
    if get_target(config.target, config.target_dirs).backend == "tflm":  # TFLM's arithmetic where it is LiteRT's not
        litert_plan, plan = plan, replace(plan, layers=[as_tflm(layer) for layer in plan.layers])
    profile = plan_profile(plan)
    model = {"name": imported.path.stem, "alpha": None, "resolution": config.resolution, "classes": imported.classes,
             "weights": f"imported int8 .tflite {imported.path.name}", "input_shape": list(plan.input_shape)}
    return TfliteSource(plan, evalset, imported.classes, profile, model,
                        _preprocessing(config, plan.input_q, eval_set is not None), QUANTIZATION, None,
                        origin={"import": imported.record()},
                        golden_source="LiteRT reference kernels on the imported .tflite" if litert_plan is None else
                        TFLM_GOLDEN, imported=imported, litert_plan=litert_plan)


class TfliteSource(Source):
    """An imported .tflite's plan; its peer check is LiteRT's reference kernels on the file."""

    def __init__(self, *args, imported: ImportedModel, litert_plan=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.imported = imported
        self.litert_plan = litert_plan  # for a tflm target: the plan in LiteRT's arithmetic (self.plan is TFLM's)

    def peer_checks(self, folder: Path, q_in, ref_q, ref, metrics: dict, times: dict) -> np.ndarray:
        imported = self.imported
        count = litert_images(len(q_in), self.profile["macs"])
        with timed(times, "litert_import_check"):
            lite_q = litert.run_reference_tensor(imported.path, q_in[:count], imported.litert_tensors(),
                                                 imported.litert_input(), imported.channels_first)
        litert_ref = ref_q[:count] if self.litert_plan is None else reference.run_batched(self.litert_plan, q_in[:count])
        if not np.array_equal(lite_q, litert_ref):
            differ = np.flatnonzero((lite_q != litert_ref).reshape(count, -1).any(axis=1))
            raise VerificationError(
                f"{imported.path.name}: edgepack's int8 reference differs from LiteRT's reference kernels on "
                f"{int((lite_q != litert_ref).sum())} of {lite_q.size} logits ({len(differ)} of {count} images): this "
                "model uses arithmetic the int8 plan does not reproduce (e.g. MEAN's double rounding); please report it")
        self.checked_images = count
        record = {"bit_exact": True, "images": count, "eval_images_total": len(q_in), "litert_version": litert.version(),
                  **litert.reference_resolver(imported.path)}  # what ran the file (an int8 TILE: module litert)
        if self.litert_plan is not None:  # the golden outputs are TFLM's arithmetic, checked at the export
            differing = int((lite_q != ref_q[:count]).sum())
            record.update(bit_exact=differing == 0, import_bit_exact_in_litert_arithmetic=True,
                          tflm_arithmetic={"values_differing_from_litert": differing, "values": int(lite_q.size),
                                           "why": TFLM_FC})
        metrics.update(int8_vs_fp32={"sqnr_db": None, "note": "imported int8 model: there is no fp32 model"},
                       reference_vs_litert_import=record)
        return lite_q if self.litert_plan is None else ref_q  # LiteRT's outputs (equal to the reference's), or TFLM's

    def report(self, metrics: dict, tflite: dict, log) -> None:
        log(f"{self.imported.path.name}: edgepack's int8 reference is bit-exact with LiteRT's reference kernels on "
            f"{self.checked_images} images; int8 accuracy {percent(metrics['int8_accuracy'])} (reference)"
            + ("; its trailing SOFTMAX is dropped: the outputs are the logits (same top class)"
               if self.imported.softmax == SOFTMAX_DROPPED else "")
            + ("; its trailing SOFTMAX is kept (--keep-softmax): the outputs are its int8 probabilities"
               if self.imported.softmax == SOFTMAX_KEPT else "")
            + ("; the file's float32 interface is absorbed: the artifact takes and gives int8 (scales in the "
               "manifest's import record)" if self.imported.float_input or self.imported.float_output else "")
            + (f"; tflm: its FULLY_CONNECTED rounds as TFLM's (twice): model.tflite bit-exact under TFLM's interpreter "
               f"on {tflite['tflm_interpreter']['images']} images, LiteRT's reference kernels differ on "
               f"{tflite['tflm_interpreter']['litert_reference_values_differing']} values" if "tflm_interpreter" in tflite else ""))
