"""edgepack's Cortex-M4 / M7 / M55 SysTick ticks per inference against the CMSIS-NN and TFLM + CMSIS-NN figures issue
22 measured, with the per-layer table (ticks, share, kernel chosen) of every model: the "done means" tables.

Each model is compiled for each target with the real pipeline (`edgepack.compile`: fast kernels, golden images
bit-exact under `qemu-system-arm -icount shift=0`, where 1 tick = 40 instructions on mps2), and its manifest read:
`cost.ticks_per_inference`, `cost.per_layer_ticks` (SysTick around each layer call, first golden image) and
`backend_info.kernel_choices`. Totals are compared in instructions (ticks x the target's instructions_per_tick:
40 on mps2, 31.25 on mps3-an547's 32 MHz SysTick). Models:

- MobileNetV1 0.25-96 and MobileNetV2 0.35-96, shipped digits weights;
- a ResNet-8-style model (MLPerf Tiny's shape: a 3x3 16 stem, 3 stages of two 3x3 convs with 16/32/64 channels and
  adds, stride-2 1x1 projection shortcuts, 8x8 average pool, dense 10; CIFAR 32x32x3), made by TensorFlow's
  converter with tests/converter_models.py's recipe (seed, representative data) in a child process, because
  tests/converter_models.py has no ResNet-8 (its resnet_maxpool is one block);
- MobileNetV3 Small 0.75-96 (shipped weights; no peer figure: its 5x5 depthwise and squeeze-excite kernels).
cortex-m55 runs only the models with a Helium peer figure (V1 0.25-96).

The CMSIS-NN / TFLM figures are constants: issue 22's measurement (CMSIS-NN v7, DSP, -O2, same plan, same harness,
same qemu), labelled as such. CMSIS-NN cannot be built here (offline), so they are not re-measured.

    python3 benchmarks/bench_cortexm.py [--targets cortex-m4,cortex-m7,cortex-m55] [--models v1,v2,resnet8,v3s] [--json F]
                                        [--work DIR] [--eval-size 20]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# model key -> label, edgepack.compile options (None: the converter-made .tflite)
MODELS = {
    "v1": ("MobileNetV1 0.25-96", {"architecture": "mobilenet_v1", "alpha": 0.25, "resolution": 96}),
    "v2": ("MobileNetV2 0.35-96", {"architecture": "mobilenet_v2", "alpha": 0.35, "resolution": 96}),
    "resnet8": ("ResNet-8-style (converter-made .tflite)", None),
    "v3s": ("MobileNetV3 Small 0.75-96", {"architecture": "mobilenet_v3_small", "alpha": 0.75, "resolution": 96}),
}
# issue 22's measured peers, SysTick ticks per inference (not re-measured here): (model, target) -> (peer, ticks)
ISSUE_PEERS = {
    ("v1", "cortex-m4"): ("CMSIS-NN v7", 602_427),
    ("v1", "cortex-m7"): ("CMSIS-NN v7", 600_514),
    ("v2", "cortex-m4"): ("CMSIS-NN v7", 1_112_579),
    ("resnet8", "cortex-m4"): ("TFLM+CMSIS-NN", 746_500),
    ("v1", "cortex-m55"): ("CMSIS-NN Helium", round(6_550_000 / 31.25)),  # 6.55 M instructions, 31.25 a tick
}
# issue 22's "done means" ratios (edgepack / peer)
DONE_RATIO = {("v1", "cortex-m4"): 0.80, ("v2", "cortex-m4"): 0.85, ("resnet8", "cortex-m4"): 1.0,
              ("v1", "cortex-m55"): 6.5 / 6.55}  # M55: <= 6.5 M instructions
# per-layer CMSIS-NN figures the issue gives (ticks): kind -> {model: ticks summed over the layers of that kind}
ISSUE_LAYER_PEERS = {("v1", "fc"): 139, ("v2", "fc"): 618, ("v2", "add"): 30_742}
# edgepack's own per-layer figure when issue 22 was filed (cortex-m4 ticks), beside the peer's
ISSUE_LAYER_THEN = {("v1", "fc"): 412, ("v2", "fc"): 1_949, ("v2", "add"): 62_927}
# small-plane depthwise (cortex-m4, MobileNetV1 0.25-96): the issue gives only edgepack's speed relative to CMSIS-NN,
# 0.61-0.69x; edgepack's ticks then (ep_depthwise_fast, measured when ep_depthwise_small_fast came, codegen.py) per
# input plane: 6x6 -> 3x3 (128 channels) 6,447, 3x3 -> 3x3 (256 channels) 5,137
DW_SMALL_THEN = {(6, 3): 6_447, (3, 3): 5_137}
DW_SMALL_RATIO = (0.61, 0.69)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resnet8_keras(keras, layers):
    """MLPerf Tiny's ResNet-8 (resnet_v1_eembc) shape; runs in the child process only."""
    sys.path.insert(0, str(REPO))
    from tests.converter_models import _conv_bn

    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _conv_bn(layers, inp, 16, 3)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _conv_bn(layers, x, filters, 3, strides=stride)
        y = _conv_bn(layers, y, filters, 3, activation=None)
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = layers.Activation("relu")(layers.Add()([x, y]))
    x = layers.AveragePooling2D(pool_size=8)(x)
    return keras.Model(inp, layers.Dense(10)(layers.Flatten()(x)))


def _build_resnet8_here(path: Path) -> None:
    """The child process: the Keras model from converter_models' seed, converted as converter_models does."""
    sys.path.insert(0, str(REPO))
    import keras
    from keras import layers

    from tests.converter_models import SEED, _convert
    keras.utils.set_random_seed(SEED)
    path.write_bytes(_convert(resnet8_keras(keras, layers)))


def resnet8_tflite(folder: Path) -> Path:
    path = folder / "resnet8.tflite"
    if not path.exists():
        env = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        r = subprocess.run([sys.executable, __file__, "--build-resnet8", str(path)], capture_output=True, text=True,
                           timeout=900, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
        if r.returncode:
            raise SystemExit(f"converting the ResNet-8-style model failed:\n{r.stderr[-3000:]}")
    return path


def compile_model(key: str, target: str, work: Path, eval_size: int) -> Path:
    """The artifact of model ``key`` for ``target`` (the real compile; its golden runs give the ticks)."""
    import edgepack

    out = work / f"{key}-{target}"
    options = MODELS[key][1]
    if options is not None:
        return Path(edgepack.compile(None, target, eval_size=eval_size, output=str(out), **options))
    model = resnet8_tflite(work)
    images = np.random.default_rng(8).integers(0, 256, (eval_size, 3, 32, 32)).astype(np.uint8)
    np.savez(work / "resnet8-eval.npz", images=images, labels=np.arange(eval_size) % 10)
    return Path(edgepack.compile(str(model), target, eval_data=str(work / "resnet8-eval.npz"), output=str(out)))


def _hw(shape) -> int | None:
    """A square (C, H, W) tensor's H, else None."""
    return int(shape[1]) if len(shape) == 3 and shape[1] == shape[2] else None


def measure(key: str, target: str, artifact: Path) -> dict:
    """Totals and per-layer rows from the artifact's manifest and plan."""
    from edgepack.plan.plan import Plan
    from edgepack.targets import get_target

    manifest = json.loads((artifact / "manifest.json").read_text())
    plan, cost = Plan.load(artifact), manifest["cost"]
    ticks, choices = cost["per_layer_ticks"], manifest["backend_info"]["kernel_choices"]
    total = sum(ticks)
    layers = [{"layer": i, "name": layer.name, "kind": layer.kind, "in_hw": _hw(layer.input_shape),
               "out_hw": _hw(layer.output_shape),
               "shape": f"{tuple(int(d) for d in layer.input_shape)} -> {tuple(int(d) for d in layer.output_shape)}",
               "ticks": t, "share": t / total, "kernel": choice["kernel"]}
              for i, (layer, t, choice) in enumerate(zip(plan.layers, ticks, choices))]
    peer = ISSUE_PEERS.get((key, target))
    ipt = get_target(target).run.instructions_per_tick
    return {"model": MODELS[key][0], "key": key, "target": target, "ticks": cost["ticks_per_inference"],
            "instructions_per_tick": ipt, "instructions": round(cost["ticks_per_inference"] * ipt),
            "portable_ticks": (cost.get("portable") or {}).get("ticks_per_inference"),
            "fast_layers": manifest["backend_info"]["fast_layers"], "layers": layers,
            "peer": peer[0] if peer else None, "peer_ticks": peer[1] if peer else None,
            "ratio": cost["ticks_per_inference"] / peer[1] if peer else None, "done_ratio": DONE_RATIO.get((key, target))}


def model_table(results: list[dict]) -> str:
    lines = ["| model | target | edgepack ticks | instructions | peer (issue 22's measurement) | peer instructions "
             "| ratio | done means |", "|---|---|---:|---:|---|---:|---:|---|"]
    for r in results:
        peer = f"{round(r['peer_ticks'] * r['instructions_per_tick']):,}" if r["peer_ticks"] else "not measured"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        done = (f"<= {r['done_ratio']:.2f}x: {'met' if r['ratio'] <= r['done_ratio'] else 'NOT met'}"
                if r["done_ratio"] and r["ratio"] else "")
        lines.append(f"| {r['model']} | {r['target']} | {r['ticks']:,} | {r['instructions']:,} | {r['peer'] or ''} | "
                     f"{peer} | {ratio} | {done} |")
    return "\n".join(lines)


def issue_layer_lines(r: dict) -> list[str]:
    """The per-layer comparisons issue 22 gives (cortex-m4): fc and add totals (edgepack then, CMSIS-NN, edgepack
    now) and the small-plane depthwise layers of V1 (edgepack then and the CMSIS-NN range its 0.61-0.69x implies)."""
    if r["target"] != "cortex-m4":
        return []
    lines = []
    for (key, kind), peer in ISSUE_LAYER_PEERS.items():
        if key == r["key"]:
            mine = sum(row["ticks"] for row in r["layers"] if row["kind"] == kind)
            lines.append(f"{kind} layers: now {mine:,} ticks; CMSIS-NN {peer:,}; edgepack when the issue was filed "
                         f"{ISSUE_LAYER_THEN[(key, kind)]:,} (issue 22's measurements): now {mine / peer:.2f}x CMSIS-NN")
    if r["key"] != "v1":
        return lines
    for (h, oh), then in DW_SMALL_THEN.items():
        rows = [row for row in r["layers"] if row["kind"] == "depthwise" and row["in_hw"] == h and row["out_hw"] == oh]
        lo, hi = then * DW_SMALL_RATIO[0], then * DW_SMALL_RATIO[1]  # CMSIS-NN's ticks if edgepack ran at 0.61-0.69x
        for row in rows:
            lines.append(f"depthwise {h}x{h} -> {oh}x{oh} ({row['name']}): now {row['ticks']:,} ticks; then {then:,} "
                         f"at 0.61-0.69x CMSIS-NN's speed (issue 22), implying CMSIS-NN {lo:,.0f}-{hi:,.0f}: now "
                         f"{row['ticks'] / hi:.2f}-{row['ticks'] / lo:.2f}x that")
    return lines


def layer_table(r: dict) -> str:
    lines = [f"{r['model']} on {r['target']}: {r['ticks']:,} ticks; {r['fast_layers']}",
             "| layer | name | kind | shape (C, H, W) | ticks | share | kernel |", "|---:|---|---|---|---:|---:|---|"]
    for row in r["layers"]:
        lines.append(f"| {row['layer']} | {row['name']} | {row['kind']} | {row['shape']} | {row['ticks']:,} | "
                     f"{row['share']:.1%} | {row['kernel']} |")
    extra = issue_layer_lines(r)
    return "\n".join(lines + ([""] + extra if extra else []))


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--build-resnet8"]:
        _build_resnet8_here(Path(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="cortex-m4,cortex-m7,cortex-m55")
    p.add_argument("--models", default=",".join(MODELS), help=f"any of {', '.join(MODELS)}")
    p.add_argument("--eval-size", type=int, default=20, help="eval images per compile (accuracy is not the point)")
    p.add_argument("--work", help="keep the artifacts here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    keys = args.models.split(",")
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}: choose from {list(MODELS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cortexm-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for key in keys:
            for target in args.targets.split(","):
                if target == "cortex-m55" and (key, target) not in ISSUE_PEERS:
                    continue  # M55: only the models with a Helium figure
                t0 = time.time()
                artifact = compile_model(key, target, work, args.eval_size)
                results.append(measure(key, target, artifact))
                log(f"{key} {target}: {results[-1]['ticks']:,} ticks ({time.time() - t0:.0f} s)")
    print(model_table(results))
    for r in results:
        print("\n" + layer_table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
