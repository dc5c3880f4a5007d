"""edgepack compile: model -> int8 artifact folder for a target."""
from __future__ import annotations

from pathlib import Path

from edgepack.benchmark.accuracy_gate import enforce
from edgepack.cli.flags import FlagType, add_targets_flag, positive_int
from edgepack.compiler import compile_locked, preflight
from edgepack.config import CompileConfig, check_max_accuracy_drop, check_min_fp32_agreement
from edgepack.data import npz_map_shape, npz_vector_length
from edgepack.errors import ConfigError
from edgepack.frontends.tflite import compile_config
from edgepack.interop.tflite_import import is_tflite_spec, read_tflite
from edgepack.model.builtin import BUILTIN, DEFAULT, default_alpha, max_alpha
from edgepack.model.user import load_user_model, parse_model_spec
from edgepack.validate import check_model


def alpha_help() -> str:
    """--alpha's help read from the built-in table, whose widths compile and info take, so it cannot drift."""
    wider = "".join(f"; {name}: (0, {max_alpha(name):g}]" for name in BUILTIN if max_alpha(name) != 1.0)
    defaults = {name: f"{default_alpha(name):g}" for name in BUILTIN}
    if len(set(defaults.values())) == 1:
        default = f"{defaults[DEFAULT]} for every built-in model"
    else:
        default = ", ".join(f"{name} {alpha}" for name, alpha in defaults.items())
    return f"width multiplier in (0, 1]{wider} (default {default})"


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="build a verified artifact folder for a target")
    p.add_argument("--target", required=True, help="target name (see `edgepack targets`)")
    p.add_argument("--alpha", help=alpha_help())
    p.add_argument("--resolution", default="224", help="input resolution (default 224); a multiple of 32 for the built-in MobileNets")
    p.add_argument("--classes", help="classes of the model (default 10, the digits; with --model, its last Linear); "
                   "another count needs --checkpoint (or --random-head)")
    p.add_argument("--random-head", action="store_true", help="allow --classes N != 10 without --checkpoint: the "
                   "classifier is randomly initialised (its accuracy is chance)")
    p.add_argument("--model", metavar="NAME|FILE.py:NAME", help="mobilenet_v1 (default), mobilenet_v2, "
                   "mobilenet_v3_small or mobilenet_v3_large, or your own "
                   "nn.Module: a class (built with no arguments) or function in a Python file or module "
                   "(package.module:NAME); weights from --checkpoint")
    p.add_argument("--checkpoint", help="state dict of the built-in model, or of --model FILE.py:NAME "
                   "(default: the shipped digits weights)")
    p.add_argument("--quant", default="ptq", help="ptq (default), qat or none (fp32)")
    p.add_argument("--weight-granularity", help="per-channel (default) or per-tensor")
    p.add_argument("--calibration", help="ImageFolder directory or .npz (default: bundled digits calibration split)")
    p.add_argument("--calib-size", type=positive_int, help="use the first N calibration images")
    p.add_argument("--eval-data", help="ImageFolder directory or .npz (default: bundled digits eval split)")
    p.add_argument("--eval-size", type=positive_int, help="use the first N eval images")
    p.add_argument("--mean", help="how pixels become inputs: (pixel / 255 - mean) / std per channel; one "
                   "value or three comma-separated (R,G,B), e.g. 0.485,0.456,0.406 (default 0.5: pixels to [-1, 1], "
                   "as the shipped weights expect; an imported .tflite without --mean/--std: pixels to the range of "
                   "its input quantization); recorded in the manifest, reused by bench and debug")
    p.add_argument("--std", help="see --mean; one value or three, > 0 (default 0.5), e.g. 0.229,0.224,0.225")
    p.add_argument("--qat-epochs", type=positive_int, default=4, help="QAT fine-tuning epochs (default 4: the recipe freezes BatchNorm after 1, observers after 2)")
    p.add_argument("--calibration-method", metavar="METHOD",
                   help="PTQ activation ranges: histogram (default: the range with the least quantization error), "
                        "minmax, moving-average or percentile (99.99%%: outliers clipped), or auto: try them (and "
                        "per-tensor weights when --weight-granularity is not given) on the calibration set, keep the "
                        "first meeting the accuracy gate, else the best; recorded in the manifest")
    p.add_argument("--no-equalize", action="store_true", help="PTQ: skip cross-layer equalization (on by default: it "
                   "evens out per-channel weight ranges so per-tensor weights keep their accuracy; recorded in the manifest)")
    p.add_argument("--bias-correction", action="store_true", help="PTQ: after equalization, correct each conv / fc "
                   "bias for the mean output shift its int8 weights cause on the calibration set (empirical bias "
                   "correction, Nagel et al. 2019; off by default; recorded in the manifest)")
    p.add_argument("--max-accuracy-drop", metavar="POINTS", type=FlagType(check_max_accuracy_drop),
                   help="accuracy gate: the most int8 accuracy may fall below fp32 on labelled eval data, in points "
                   "(default: the target file's [accuracy_gate], 1.0 for the built-in targets); over it the artifact "
                   "is written and records the failure, and compile exits 1 naming the worst layer (a difference of "
                   "one eval image never fails)")
    p.add_argument("--min-fp32-agreement", metavar="PCT", type=FlagType(check_min_fp32_agreement),
                   help="accuracy gate without labels: the least int8 top-1 agreement with fp32, in percent (default: "
                   "the target file's, 97 for the built-in targets)")
    p.add_argument("-o", "--output", help="artifact folder (default artifacts/<model>_<alpha>_<res>_<target>_<quant>, "
                   "with --model artifacts/<classname>_<res>_<target>_<quant>); "
                   "an existing one is replaced only if it is an unchanged edgepack artifact")
    p.add_argument("--force", action="store_true", help="replace an edgepack artifact folder even if files in it were "
                   "added or changed (a folder that is not an artifact is never replaced)")
    p.add_argument("--sign-key", metavar="KEY", help="Ed25519 private key (from `edgepack keygen`): sign the manifest "
                   "into manifest.sig, checked by `edgepack verify --verify-key`")
    p.add_argument("--keep-softmax", action="store_true", help="--model FILE.tflite or your own PyTorch model: keep "
                   "its trailing softmax as the last layer (outputs: int8 probabilities, scale 1/256, zero point -128, "
                   "TFLite's arithmetic); "
                   "by default it is dropped and the outputs are the logits (same top class)")
    add_targets_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    """Validate every flag, the target and the output folder before torch is imported (compiler.preflight,
    as the Python API does), then load a --model FILE.py and compile."""
    config = _tflite_config(args) if is_tflite_spec(args.model) else _torch_config(args)
    with preflight(config) as target:  # an unwritable or busy output fails here, in milliseconds
        model = None
        if config.model_spec:
            from edgepack.frontends.torch import model_classes
            model = load_user_model(config.model_spec, args.checkpoint)
            check_model(model)  # float32 weights on the CPU, as the Python API checks
            config.classes = model_classes(model, args.classes)
        compile_locked(config, target, model)  # its lines: the edgepack logger, shown by the CLI (not with --quiet)
    enforce(config.output_path(), model)  # over the limit: AccuracyGateError, exit 1, the artifact kept
    return 0


def _torch_config(args):
    """The config of the built-in model or of --model FILE.py:NAME."""
    architecture = args.model if args.model in BUILTIN else DEFAULT
    user_model = args.model if args.model and args.model not in BUILTIN else None
    model_name = features = image_shape = None
    resolution = args.resolution
    if user_model:
        model_name = parse_model_spec(user_model)[1]
        features = npz_vector_length(args.calibration)  # (N, F) vectors: a model of nn.Linear layers
        image_shape = npz_map_shape(args.calibration)  # (N, C, H, W) other than (3, R, R): taken as they are
        resolution = image_shape[1] if image_shape else resolution
    return CompileConfig(input_features=features, image_shape=image_shape,
        target=args.target, alpha=args.alpha, resolution=resolution,
        classes=args.classes if args.classes is not None else 10, model_name=model_name,
        checkpoint=args.checkpoint, quant=args.quant, weight_granularity=args.weight_granularity,
        calibration_method=args.calibration_method,
        calibration=args.calibration, calib_size=args.calib_size, eval_data=args.eval_data,
        eval_size=args.eval_size, qat_epochs=args.qat_epochs, output=_output(args), force=args.force,
        sign_key=args.sign_key, mean=_pixels(args.mean), std=_pixels(args.std), random_head=args.random_head, model_spec=user_model,
        target_dirs=tuple(args.targets or ()), architecture=architecture, equalize=not args.no_equalize,
        max_accuracy_drop=args.max_accuracy_drop, min_fp32_agreement=args.min_fp32_agreement,
        keep_softmax=args.keep_softmax, bias_correction=args.bias_correction,
    )


# Flags that shape a torch model's quantization: an imported .tflite is already int8.
_NOT_FOR_TFLITE = {"checkpoint": "--checkpoint", "calibration": "--calibration", "calib_size": "--calib-size",
                   "random_head": "--random-head", "no_equalize": "--no-equalize",
                   "max_accuracy_drop": "--max-accuracy-drop", "min_fp32_agreement": "--min-fp32-agreement",
                   "calibration_method": "--calibration-method", "bias_correction": "--bias-correction"}


def _tflite_config(args):
    """--model FILE.tflite: read the file (unsupported ops are refused here, before torch is imported); the
    resolution and class count come from it (edgepack.frontends.tflite.compile_config, as for the API)."""
    given = [flag for attr, flag in _NOT_FOR_TFLITE.items() if getattr(args, attr, None)]
    if args.quant != "ptq":
        given.append(f"--quant {args.quant}")
    if given:
        raise ConfigError(f"{', '.join(given)} cannot apply to --model {args.model}: an imported .tflite is already "
                          "quantized to int8; drop the flag")
    imported = read_tflite(args.model, keep_softmax=args.keep_softmax)
    if args.classes is not None and str(args.classes) != str(imported.classes):
        raise ConfigError(f"--classes {args.classes} but {args.model} has {imported.classes} outputs: drop --classes")
    pixels = {name: value for name, value in (("mean", args.mean), ("std", args.std)) if value is not None}
    return compile_config(imported, args.target, eval_data=args.eval_data, eval_size=args.eval_size,
                          output=_output(args), force=args.force, sign_key=args.sign_key,
                          target_dirs=tuple(getattr(args, "targets", None) or ()), keep_softmax=args.keep_softmax, **pixels)


def _pixels(value):
    """--mean/--std as given, else 0.5 (pixels to [-1, 1]: the shipped weights' mapping)."""
    return "0.5" if value is None else value


def _output(args):
    """Absolute at the CLI edge: the manifest and messages never depend on where compile ran; None (no -o)
    leaves the default folder to CompileConfig (str(None) made a folder named "None")."""
    return str(Path(args.output).absolute()) if args.output else None
