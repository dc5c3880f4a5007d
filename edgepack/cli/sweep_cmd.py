"""edgepack sweep: build and bench the alpha x resolution matrix for a target."""
from __future__ import annotations

from edgepack.benchmark.sweep import (check_alphas, check_models, check_shipped, check_sweep_output, parse_list,
                                      parse_models, sweep)
from edgepack.cli import output
from edgepack.cli.flags import add_targets_flag, positive_int
from edgepack.config import CompileConfig
from edgepack.model.builtin import DEFAULT, max_alpha
from edgepack.model.user import parse_model_spec
from edgepack.targets import get_target
from edgepack.validate import check_alpha, check_resolution


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="compile + bench every alpha x resolution; CSV/JSON table and plots")
    p.add_argument("--target", required=True)
    p.add_argument("--alpha", help="comma-separated (default 1,0.75,0.5,0.25; mobilenet_v2 1,0.75,0.5,0.35); refused "
                   "with --model FILE.py:NAME, which has no width multiplier (swept over --resolution only)")
    p.add_argument("--resolution", default="224,192,160,128", help="comma-separated (default 224,192,160,128)")
    p.add_argument("-o", "--output", default="sweeps/sweep", help="output folder (default sweeps/sweep)")
    p.add_argument("--jobs", type=positive_int, help="parallel builds (default: the number of cores)")
    p.add_argument("--eval-size", type=positive_int, help="eval images per point (default: the whole eval split)")
    p.add_argument("--calib-size", type=positive_int, help="calibration images per point (default: all)")
    p.add_argument("--model", metavar="NAME[,NAME]|FILE.py:NAME", help="mobilenet_v1 (default), mobilenet_v2, "
                   "mobilenet_v3_small, mobilenet_v3_large or several (mobilenet_v1,mobilenet_v2: one accuracy-vs-Mult-Adds plot, a series per model), or your own "
                   "nn.Module as for compile (sweeps resolutions only)")
    p.add_argument("--checkpoint", help="state dict of the built-in model (of every alpha swept), or of --model FILE.py:NAME")
    p.add_argument("--classes", help="classes of the built-in model (default 10; another count needs --checkpoint)")
    p.add_argument("--calibration", help="ImageFolder directory or .npz, as for compile (default: bundled digits)")
    p.add_argument("--eval-data", help="ImageFolder directory or .npz, as for compile (default: bundled digits)")
    p.add_argument("--mean", default="0.5", help="how pixels become inputs, as for compile (default 0.5)")
    p.add_argument("--std", default="0.5", help="see --mean (default 0.5)")
    add_targets_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    models = parse_models(args.model)  # None: a user model
    widest = max(map(max_alpha, models or [DEFAULT]))  # each model's own bound is checked by CompileConfig below
    alphas = parse_list(args.alpha, lambda a: check_alpha(a, widest), "alpha") if args.alpha is not None else None
    resolutions = parse_list(args.resolution, check_resolution, "resolution")
    model_name = user_model = None
    if models is None:
        user_model, model_name = args.model, parse_model_spec(args.model)[1]
    check_models(models, args.checkpoint)
    options = {"model_spec": user_model, "checkpoint": args.checkpoint, "calibration": args.calibration,
               "eval_data": args.eval_data, "mean": args.mean, "std": args.std, "classes": args.classes,
               "target_dirs": tuple(args.targets or ())}
    # every flag checked before torch is imported, on the matrix's largest point of each model
    get_target(args.target, args.targets)  # an unknown or broken target file is refused before torch
    for model in models or [None]:
        CompileConfig(target=args.target, alpha=max(a or 1.0 for a in check_alphas(alphas, user_model, model or DEFAULT)),
                      resolution=max(resolutions), model_name=model_name, calib_size=args.calib_size,
                      eval_size=args.eval_size, architecture=model or DEFAULT,
                      **{k: v for k, v in options.items() if v is not None})
        if model and not args.checkpoint:
            check_shipped(model, check_alphas(alphas, None, model))
    check_sweep_output(args.output)
    sweep(args.target, alphas, resolutions, args.output, jobs=args.jobs, eval_size=args.eval_size, calib_size=args.calib_size,
          compile_options=options, models=models, log=output.note)
    return 0
