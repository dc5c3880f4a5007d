"""OpenVINO vs its peers on MobileNetV1 (default 0.75-224), batch 1, this host, one interleaved run.

Rows: OpenVINO int8 (the edgepack intel-cpu artifact: our PT2E QDQ model as IR; also with the
CPU's default bf16 hint), OpenVINO f32 (INFERENCE_PRECISION_HINT=f32 forced), OpenVINO int8 by
NNCF (``nncf.quantize`` on the float IR with the same calibration images, presets performance
and mixed), ONNX Runtime int8 (QDQ) and fp32, torch fp32 (eager, folded) and torch int8
(X86InductorQuantizer + torch.compile: edgepack's signed-int8 activations are refused by
inductor's oneDNN qconv, and the converted PT2E graph in eager mode runs reference kernels
~100x slower). For each: accuracy on the eval images, top-1 agreement and SQNR against the
float model, int8 layer count (OpenVINO), median latency and ratio to the fastest.

    python benchmarks/bench_openvino.py [--alpha 0.75] [--resolution 224] [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, markdown  # noqa: E402

import edgepack  # noqa: E402
from edgepack.artifact import verify  # noqa: E402
from edgepack.backends import openvino as ovb  # noqa: E402
from edgepack.interop.onnxruntime import run_onnx, session  # noqa: E402
from edgepack.config import CompileConfig  # noqa: E402
from edgepack.frontends.torch import build_model  # noqa: E402
from edgepack.data import load_digits_split  # noqa: E402
from edgepack.evaluate import accuracy, agreement, sqnr_db, torch_logits  # noqa: E402
from edgepack.fold import fold  # noqa: E402


def ov_executor(core, model, config: dict, image: np.ndarray):
    """(logits(images), one batch-1 inference, int8 layer summary) for an ov.Model on the CPU."""
    import openvino as ov

    compiled, _ = ovb.load(core, model, "CPU", config)
    request = compiled.create_infer_request()
    tensor = ov.Tensor(np.ascontiguousarray(image[None]))
    request.set_input_tensor(tensor)
    layers = ovb.layer_precisions(core, model, "CPU", config, image)

    def run():
        return request.infer()
    run.input = tensor  # keep the shared input alive
    return (lambda images: ovb.infer_all(compiled, images)), run, ovb.describe_layers(layers)


def ort_executor(path: Path, image: np.ndarray, threads: int):
    s = session(path, threads)
    feed = {s.get_inputs()[0].name: image[None]}
    return (lambda images: run_onnx(path, images, threads)), (lambda: s.run(None, feed))


def torch_int8(folded, calib: np.ndarray, image: np.ndarray):
    """X86InductorQuantizer (u8 activations, per-channel weights) + torch.compile with freezing: oneDNN int8."""
    import torch._inductor.config as inductor_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    inductor_config.freezing = True
    q = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    ep = torch.export.export(folded, (torch.from_numpy(image[None]),))  # static batch 1, as benchmarked
    prepared = prepare_pt2e(ep.module(), q)
    with torch.no_grad():
        for one in calib:
            prepared(torch.from_numpy(one[None]))
        compiled = torch.compile(convert_pt2e(prepared))
        x = torch.from_numpy(image[None])
        compiled(x)

    def logits(images):
        with torch.no_grad():
            return np.concatenate([compiled(torch.from_numpy(one[None])).numpy() for one in images])
    return logits, (lambda: compiled(x))


def nncf_ir(core, float_xml: Path, calib: np.ndarray, preset: str):
    import nncf

    dataset = nncf.Dataset(list(calib), lambda one: one[None])
    start = time.perf_counter()
    model = nncf.quantize(core.read_model(float_xml), dataset, preset=nncf.QuantizationPreset(preset),
                          subset_size=len(calib))
    return model, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alpha", type=float, default=0.75)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--checkpoint", help="MobileNetV1 state dict (default: the shipped digits weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--eval-size", type=int, default=100, help="eval images for accuracy (and the compile's verification)")
    ap.add_argument("--calib-size", type=int, default=64, help="calibration images, the same for every quantizer")
    args = ap.parse_args()
    import openvino as ov

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_openvino."))
    common = dict(alpha=args.alpha, resolution=args.resolution, checkpoint=args.checkpoint,
                  eval_size=args.eval_size, calib_size=args.calib_size)
    evalset = load_digits_split("eval", args.resolution).take(args.eval_size)
    calib = load_digits_split("calibration", args.resolution).images[:args.calib_size]
    image = evalset.images[0]
    times: dict[str, float] = {}

    t = time.perf_counter()
    int8_dir = edgepack.compile(target="intel-cpu", output=str(tmp / "int8"), **common)
    times["edgepack compile int8 (s)"] = time.perf_counter() - t
    fp32_dir = edgepack.compile(target="intel-cpu", quant="none", output=str(tmp / "fp32"), **common)
    ours = verify(int8_dir)["backend_info"]
    cpu_config = ours["device_config"]["CPU"]
    default_config = {k: v for k, v in cpu_config.items() if k != "INFERENCE_PRECISION_HINT"}
    core = ov.Core()

    executors, notes = {}, {}
    ours_ir = core.read_model(int8_dir / "model.xml")
    executors["openvino int8 (edgepack IR, f32 hint)"] = ov_executor(core, ours_ir, cpu_config, image)
    executors["openvino int8 (edgepack IR, default bf16 hint)"] = ov_executor(core, ours_ir, default_config, image)
    executors["openvino f32 (forced)"] = ov_executor(core, core.read_model(fp32_dir / "model.xml"), cpu_config, image)
    for preset in ("performance", "mixed"):
        model, seconds = nncf_ir(core, fp32_dir / "model.xml", calib, preset)
        times[f"nncf.quantize {preset} (s)"] = seconds
        executors[f"openvino int8 (nncf {preset})"] = ov_executor(core, model, cpu_config, image)
    for name, (_, _, layers) in executors.items():
        notes[name] = {"int8 layers": layers}
    executors = {name: (logits, timer) for name, (logits, timer, _) in executors.items()}
    executors["onnxruntime int8 (QDQ)"] = ort_executor(int8_dir / "qdq.onnx", image, args.threads)
    executors["onnxruntime fp32"] = ort_executor(fp32_dir / "model.onnx", image, args.threads)
    model, _ = build_model(CompileConfig(alpha=args.alpha, resolution=args.resolution, checkpoint=args.checkpoint))
    folded = fold(model.eval())
    x = torch.from_numpy(image[None])
    executors["torch fp32 (eager)"] = ((lambda images: torch_logits(folded, images)), (lambda: folded(x)))
    t = time.perf_counter()
    executors["torch int8 (x86 inductor)"] = torch_int8(folded, calib, image)
    times["torch int8 quantize + inductor compile (s)"] = time.perf_counter() - t

    float_logits = torch_logits(folded, evalset.images)
    for name, (logits, _) in executors.items():
        out = logits(evalset.images)
        notes.setdefault(name, {}).update({
            "accuracy": f"{accuracy(out, evalset.labels):.1%}", "agree fp32": f"{agreement(out, float_logits):.1%}",
            "SQNR dB": f"{sqnr_db(float_logits, out):.1f}"})
    with torch.no_grad():
        results = interleaved({name: timer for name, (_, timer) in executors.items()}, rounds=args.rounds)

    v = ours["cpu_verification"]
    print(f"MobileNetV1-{args.alpha:g}-{args.resolution}, batch 1, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"{len(evalset)} eval images, {len(calib)} calibration images for every quantizer")
    print(f"edgepack intel-cpu artifact vs the numpy int8 reference: top-1 agreement {v['top1_agreement']:.2%}, "
          f"max |logit diff| {v['max_abs_logit_diff']:.4g}; {ovb.describe_layers(v['layers'])}")
    print(markdown(results, notes))
    best_int8 = min((r["median_ms"], n) for n, r in results.items() if n.startswith("openvino int8"))
    ours_ms = results["openvino int8 (edgepack IR, f32 hint)"]["median_ms"]
    print(f"\nedgepack int8 / best OpenVINO int8 ({best_int8[1]}): {ours_ms / best_int8[0]:.2f}x")
    print("setup times: " + ", ".join(f"{k} {s:.0f}" for k, s in times.items()))
    (tmp / "results.json").write_text(json.dumps({"results": results, "notes": notes, "times": times}, indent=1))
    print(f"(artifacts and results.json in {tmp})")


if __name__ == "__main__":
    main()
