"""lower(): the artifact's ONNX file -> a static-shape IR (model.xml / model.bin), verified on the CPU.

lower: ``ov.convert_model`` reads the QDQ ONNX file (its int8 weights stay i8 constants, its
quantize/dequantize pairs become FakeQuantize that the CPU plugin turns into u8/i8 kernels),
reshapes the input to batch 1 and saves ``model.xml`` / ``model.bin``. The IR is then verified
on the CPU device: top-1 agreement with the numpy int8 reference (the golden model) on the eval
split, max |logit difference|, and which layers really executed in u8/i8 and which in float,
read from the runtime model of a profiled inference. For the NPU target the IR is also compiled
for the NPU; where there is no NPU device or compiler the manifest says so with OpenVINO's own
error, and bench refuses to run it unless told ``--device cpu``.

Float layers left in a model run in the CPU's default inference precision, bf16 on this machine;
the targets force ``INFERENCE_PRECISION_HINT=f32`` so results stay comparable with the reference.

What lower verified is logged (logger edgepack.backends.openvino, INFO), not printed: the CLI shows it on
stdout, a Python caller decides with the logging module.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from edgepack.backends.lowered import Lowered
from edgepack.backends.openvino.inference import describe_layers, infer_all, layer_precisions, load, one_line
from edgepack.backends.openvino.spec import DEVICES, MODEL_BIN, MODEL_XML, NPU_BLOB, OpenVinoSpec
from edgepack.errors import ConfigError, RegressionError

NPU_NOT_COMPILED = "not compiled (no NPU device or compiler)"
LOG = logging.getLogger(__package__)  # edgepack.backends.openvino: what the CLI shows
MIN_AGREEMENT = 0.99


def convert(onnx_path: Path, input_shape: tuple[int, ...], batch: int = 1):
    """ONNX file -> ov.Model with a static input shape (batch, C, H, W)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if len(model.inputs) != 1:
        raise ConfigError(f"{onnx_path.name} has {len(model.inputs)} inputs: the OpenVINO backend expects one image input")
    model.reshape({model.inputs[0]: [batch, *input_shape]})
    stable_names(model)
    return model


def stable_names(model) -> None:
    """Nodes OpenVINO names itself are ``<Kind>_<process-wide counter>``: renumber them in graph order,
    so that converting the same ONNX file twice in one process gives the same IR bytes."""
    seen: Counter = Counter()
    for op in model.get_ordered_ops():
        auto = re.fullmatch(r"([A-Za-z]+)_\d+", op.get_friendly_name())
        if auto and op.get_type_name() not in ("Parameter", "Result"):
            op.set_friendly_name(f"{auto[1]}_{seen[auto[1]]}")
            seen[auto[1]] += 1


def constant_bytes(model) -> dict:
    """Bytes of the IR's constants by element type: shows that the weights are stored as int8."""
    sizes: Counter = Counter()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            t = op.get_output_element_type(0)
            sizes[t.get_type_name()] += int(np.prod(op.get_output_shape(0), dtype=np.int64)) * t.size
    return dict(sorted(sizes.items()))


def compile_npu(core, model, config: dict, folder: Path) -> dict:
    """Compile for the NPU and export the blob, or record exactly why it was not compiled."""
    try:
        compiled, _ = load(core, model, "NPU", config)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses; any failure means "not compiled", recorded verbatim
        return {"npu": NPU_NOT_COMPILED, "npu_error": str(e), "available_devices": list(core.available_devices)}
    (folder / NPU_BLOB).write_bytes(compiled.export_model())
    return {"npu": "compiled", "npu_blob": NPU_BLOB, "available_devices": list(core.available_devices)}


def disagreements(logits: np.ndarray, ref: np.ndarray, step: float) -> dict:
    """Where the top-1 differs: how far the reference's own logits put the device's pick below its top-1,
    in output quantization steps (0 = an exact tie in the int8 output, broken the other way)."""
    picked, wanted = logits.argmax(1), ref.argmax(1)
    rows = np.nonzero(picked != wanted)[0]
    gaps = np.rint((ref[rows, wanted[rows]] - ref[rows, picked[rows]]) / step)
    return {"images": int(len(rows)), "reference_ties": int((gaps == 0).sum()),
            "max_reference_gap_steps": float(gaps.max()) if len(rows) else 0.0,
            "max_abs_diff_steps": float(np.rint(np.abs(logits - ref).max() / step))}


def verify_on_cpu(build, core, model, config: dict) -> tuple[dict, float]:
    """The IR on the CPU against the numpy int8 reference (or torch fp32 for --quant none); raise below 99%."""
    from edgepack.evaluate import agreement, max_abs_diff

    images = build.eval_images  # the compile already ran the reference / fp32 model on them
    if build.plan is not None:
        ref, ref_name = build.reference_logits, "numpy int8 reference"
    else:
        ref, ref_name = build.fp32_logits, "torch fp32 (folded)"
    compiled, load_ms = load(core, model, "CPU", config)
    logits = infer_all(compiled, images)
    layers = layer_precisions(core, model, "CPU", config, images[0])
    agree = agreement(logits, ref)
    result = {"device": "CPU", "config": config, "against": ref_name, "eval_images": len(images),
              "top1_agreement": agree, "max_abs_logit_diff": max_abs_diff(logits, ref), "layers": layers}
    if build.plan is not None:
        result["disagreements"] = disagreements(logits, ref, build.plan.output_q.scale)
    if agree < MIN_AGREEMENT:
        why = ""
        if "disagreements" in result:
            d = result["disagreements"]
            why = (f"; of the {d['images']} disagreements {d['reference_ties']} are exact ties in the reference's int8 output "
                   f"and the largest reference gap is {d['max_reference_gap_steps']:g} output steps (max |logit diff| "
                   f"{d['max_abs_diff_steps']:g} steps): OpenVINO requantizes in float, the reference in fixed point, so "
                   "low-margin models flip near-ties; calibrate with more images (--calib-size) or use better-trained weights")
        raise RegressionError(f"OpenVINO on the CPU agrees with the {ref_name} on only {agree:.2%} of {len(images)} eval images "
                              f"(need >= {MIN_AGREEMENT:.0%}){why or '; max |logit diff| %.4g' % result['max_abs_logit_diff']}")
    convs = layers["convolutions"]
    if build.plan is not None and convs["int8"] < convs["total"]:
        raise RegressionError(f"OpenVINO runs {convs['total'] - convs['int8']} of {convs['total']} convolutions in float on this "
                              f"CPU ({layers['by_type']['Convolution']}): the int8 model would not run as int8")
    return result, load_ms


def lower(build, folder: Path) -> Lowered:
    """qdq.onnx (or fp32 model.onnx) -> model.xml / model.bin, verified on the CPU; NPU blob when possible."""
    import openvino as ov

    spec = OpenVinoSpec.from_target(build.target)
    device, batch = spec.device, spec.batch
    if device not in DEVICES.values():
        raise ConfigError(f"target {build.target.name}: [run] device '{device}' is not one of {', '.join(DEVICES.values())}")
    model = convert(folder / build.onnx_file, build.config.input_shape, batch)
    # f32 constants (scales, FakeQuantize ranges) stay f32: compressing them to f16 would move the int8 grid
    ov.save_model(model, folder / MODEL_XML, compress_to_fp16=spec.compress_to_fp16)
    core = ov.Core()
    model = core.read_model(folder / MODEL_XML)  # verify exactly what ships
    verification, load_ms = verify_on_cpu(build, core, model, spec.device_config("CPU"))
    LOG.info(f"OpenVINO CPU: IR loads in {load_ms:.0f} ms; top-1 agreement with the {verification['against']} "
             f"{verification['top1_agreement']:.2%}, max |logit diff| {verification['max_abs_logit_diff']:.4g}; "
             f"{describe_layers(verification['layers'])}")
    info = {
        "runtime": "openvino", "openvino_version": ov.get_version(), "source_model": build.onnx_file,
        "model_file": MODEL_XML, "weights_file": MODEL_BIN, "input_shape": [batch, *build.config.input_shape],
        "constant_bytes_by_type": constant_bytes(model), "device": device,
        "device_config": {d: spec.device_config(d) for d in DEVICES.values() if d == "CPU" or d == device},
        "cpu_verification": verification,
    }
    if device == "NPU":
        info.update(compile_npu(core, model, info["device_config"]["NPU"], folder))
        LOG.info(f"OpenVINO NPU: {info['npu']}" + (f" ({one_line(info['npu_error'])})" if "npu_error" in info else ""))
    return Lowered(info, files=(MODEL_XML, MODEL_BIN, *([NPU_BLOB] if info.get("npu") == "compiled" else [])))
