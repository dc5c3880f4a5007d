"""TVM vs its peers on MobileNetV1 (default 0.75-224), batch 1, this host, one interleaved run.

Rows: TVM int8 with the default kernels (hand-scheduled AVX512-VNNI on CPUs that have it), TVM
int8 through the generic Relax lowering and TVM fp32 (untuned, and tuned with the records in
tuning/x86-tvm if present),
ONNX Runtime fp32 and int8 (QDQ), torch fp32 (eager, folded) and torch int8 (PT2E with
X86InductorQuantizer + torch.compile with freezing, the fast x86 int8 path). Medians and ratio to the fastest.

    python benchmarks/bench_tvm.py [--alpha 0.75] [--resolution 224] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_openvino import torch_int8  # noqa: E402
from common import interleaved, markdown  # noqa: E402

import edgepack  # noqa: E402
from edgepack.interop.onnxruntime import session  # noqa: E402
from edgepack.data import load_digits_split  # noqa: E402
from edgepack.fold import fold  # noqa: E402
from edgepack.model.weights import pretrained  # noqa: E402


def tvm_runner(folder: Path):
    import tvm
    from tvm import relax

    manifest = json.loads((folder / "manifest.json").read_text())
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(folder / "model.so")), tvm.cpu())
    shape = manifest["backend_info"]["input_shape"]
    dtype = manifest["backend_info"]["dtype"]
    x = tvm.runtime.tensor(np.zeros(shape, dtype))
    fn = vm["main"]
    return (lambda: fn(x)), manifest["backend_info"]["schedules"]


def ort_runner(path: Path, image: np.ndarray, threads: int):
    s = session(path, threads)
    feed = {s.get_inputs()[0].name: image[None]}
    return lambda: s.run(None, feed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alpha", type=float, default=0.75)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's default on x86 is half the cores
    common = dict(alpha=args.alpha, resolution=args.resolution, eval_size=16, calib_size=64)
    tmp = Path(tempfile.mkdtemp(prefix="bench_tvm."))
    runners, notes = {}, {}
    image = load_digits_split("eval", args.resolution).images[0]
    calib = load_digits_split("calibration", args.resolution).images[:64]
    host_int8 = edgepack.compile(target="host", output=str(tmp / "ort_int8"), **common)
    host_fp32 = edgepack.compile(target="host", quant="none", output=str(tmp / "ort_fp32"), **common)
    runners["onnxruntime int8 (QDQ)"] = ort_runner(host_int8 / "qdq.onnx", image, args.threads)
    runners["onnxruntime fp32"] = ort_runner(host_fp32 / "model.onnx", image, args.threads)
    from edgepack.backends.tvm.toolchain import CACHE
    tuned_dir = Path(os.environ.get("EDGEPACK_TUNING_DIR", CACHE / "tuning"))  # where `edgepack tune` writes
    builds = [("tvm int8, default kernels", "ptq", "auto", tmp / "no-records")]
    for label, tuning_root in (("untuned", tmp / "no-records"), ("tuned", tuned_dir)):
        if label == "tuned" and not (tuned_dir / "x86-tvm" / "database_tuning_record.json").exists():
            continue
        builds += [(f"tvm int8 generic {label}", "ptq", "generic", tuning_root), (f"tvm fp32 {label}", "none", "auto", tuning_root)]
    for name, quant, kernels, tuning_root in builds:
        os.environ["EDGEPACK_TUNING_DIR"], os.environ["EDGEPACK_TVM_INT8_KERNELS"] = str(tuning_root), kernels
        art = edgepack.compile(target="x86-tvm", quant=quant, output=str(tmp / name.replace(" ", "_").replace(",", "")), **common)
        runners[name], schedules = tvm_runner(art)
        notes[name] = {"schedules": schedules}
    os.environ.pop("EDGEPACK_TVM_INT8_KERNELS")
    folded = fold(pretrained(args.alpha, args.resolution))
    x = torch.from_numpy(image[None])
    runners["torch fp32 (eager)"] = lambda: folded(x)
    runners["torch int8 (x86 inductor)"] = torch_int8(folded, calib, image)[1]
    with torch.no_grad():
        results = interleaved(runners, rounds=args.rounds)
    print(f"MobileNetV1-{args.alpha:g}-{args.resolution}, batch 1, {args.threads} threads, {args.rounds} interleaved rounds")
    print(markdown(results, notes))
    (tmp / "results.json").write_text(json.dumps({"results": results, "notes": notes}, indent=1))
    print(f"(artifacts and results.json in {tmp})")


if __name__ == "__main__":
    main()
