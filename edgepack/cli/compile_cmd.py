"""edgepack compile: model -> int8 artifact folder for a target."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="build a verified artifact folder for a target")
    p.add_argument("--target", required=True, help="target name (see `edgepack targets`)")
    p.add_argument("--alpha", default="0.75", help="width multiplier in (0, 1] (default 0.75)")
    p.add_argument("--resolution", default="224", help="input resolution, a multiple of 32 (default 224)")
    p.add_argument("--classes", default="10", help="classes of the model (default 10, the digits)")
    p.add_argument("--checkpoint", help="state dict of MobileNetV1 (default: the shipped digits weights)")
    p.add_argument("--quant", default="ptq", help="ptq (default), qat or none (fp32)")
    p.add_argument("--weight-granularity", default="per-channel", help="per-channel (default) or per-tensor")
    p.add_argument("--calibration", help="ImageFolder directory or .npz (default: bundled digits calibration split)")
    p.add_argument("--calib-size", type=_positive, help="use the first N calibration images")
    p.add_argument("--eval-data", help="ImageFolder directory or .npz (default: bundled digits eval split)")
    p.add_argument("--eval-size", type=_positive, help="use the first N eval images")
    p.add_argument("--qat-epochs", type=_positive, default=1, help="QAT fine-tuning epochs (default 1)")
    p.add_argument("-o", "--output", help="artifact folder (default artifacts/mobilenet_v1_<alpha>_<res>_<target>_<quant>)")
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def run(args) -> int:
    from edgepack.compiler import CompileConfig, compile_model

    config = CompileConfig(
        target=args.target, alpha=args.alpha, resolution=args.resolution, classes=args.classes,
        checkpoint=args.checkpoint, quant=args.quant, weight_granularity=args.weight_granularity,
        calibration=args.calibration, calib_size=args.calib_size, eval_data=args.eval_data,
        eval_size=args.eval_size, qat_epochs=args.qat_epochs, output=args.output,
    )
    compile_model(config)
    return 0
