"""edgepack info: the model report (per-layer shapes, params, Mult-Adds; paper Table 2 shares), of a built-in
MobileNet or of the user's own --model FILE.py:NAME (its input shape as compile takes it)."""
from __future__ import annotations

import json

from edgepack.cli import output
from edgepack.errors import ConfigError
from edgepack.model.builtin import BUILTIN, build, check_builtin, default_alpha, max_alpha
from edgepack.model.user import call_user_code, load_user_model, parse_model_spec
from edgepack.validate import check_alpha, check_classes, check_count, check_memory, check_resolution


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a built-in model's report (params, Mult-Adds per layer)")
    p.add_argument("--model", default="mobilenet_v1", metavar="NAME|FILE.py:NAME", help="mobilenet_v1 (default), "
                   "mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, or your own model as for compile")
    p.add_argument("--alpha", help="width multiplier in (0, 1] (mobilenet_v2: (0, 1.4]; default compile's, 0.75: "
                   "the shipped weights' width; the papers' tables: --alpha 1.0)")
    p.add_argument("--resolution", help="input resolution: a multiple of 32 for the built-in models (default 224); "
                   "your own model's 3xRxR input")
    p.add_argument("--classes", help="number of classes of a built-in model (default 10, as compile: the digits; "
                   "the paper's figures: --classes 1000)")
    p.add_argument("--input-shape", metavar="C,H,W|F", help="your own model's input: C,H,W maps (e.g. 1,49,10) or F "
                   "values (e.g. 640); default 3,R,R with R = --resolution")
    output.add_json_flag(p, "the report")
    p.set_defaults(run=run)


def run(args) -> int:
    own = args.model not in BUILTIN  # the user's --model FILE.py:NAME
    model, shape = _user_model(args) if own else _builtin_model(args)
    from edgepack.model.profile import format_summary, summary  # imports torch

    name = type(model).__name__
    size = "x".join(map(str, shape))
    s = call_user_code(lambda: summary(model, shape), f"{name} on a {size} input", "pass the input it takes with "
                       "--input-shape C,H,W or F", ConfigError) if own else summary(model, shape)
    alpha, resolution, classes = (getattr(model, k, None) for k in ("alpha", "resolution", "num_classes"))
    s = {"model": name, "alpha": alpha, "resolution": resolution, "classes": classes, **s}
    if args.json:
        output.write_json(args.json, json.dumps(s, indent=1))
    if args.json != output.STDOUT:
        title = (f"{name} ({args.model}) input {size}" if own
                 else f"{name} alpha={alpha:g} resolution={resolution} classes={classes}")
        print(format_summary(s, title))
    return 0


def _builtin_model(args):
    """A built-in MobileNet at the flags' width, resolution and classes (every flag checked before torch loads)."""
    if args.input_shape:
        raise ConfigError("--input-shape is for your own --model FILE.py:NAME: a built-in model's input is "
                          "3 x --resolution x --resolution")
    architecture = check_builtin(args.model)
    alpha = check_alpha(args.alpha or default_alpha(architecture), max_alpha(architecture))  # compile's default
    resolution, classes = check_resolution(args.resolution or "224"), check_classes(args.classes or "10")
    output.check_json_file(args.json)
    check_memory(alpha, resolution, images=1, architecture=architecture, batch=1)  # one forward pass
    model = build(args.model, alpha, resolution, classes)
    return model, (3, model.resolution, model.resolution)


def _user_model(args):
    """--model FILE.py:NAME built as compile builds it, its input from --input-shape (else 3xRxR)."""
    parse_model_spec(args.model)  # a malformed spec: one line, before torch loads
    for flag, value in (("--alpha", args.alpha), ("--classes", args.classes)):
        if value is not None:
            raise ConfigError(f"{flag} applies to the built-in MobileNets: your own --model {args.model} has its own "
                              f"width and classes; drop {flag}")
    if args.input_shape and args.resolution:
        raise ConfigError("--resolution and --input-shape both set the input: pass one")
    output.check_json_file(args.json)
    side = check_count(args.resolution or "224", "--resolution")
    shape = _input_shape(args.input_shape) if args.input_shape else (3, side, side)
    return load_user_model(args.model), shape


def _input_shape(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if len(parts) not in (1, 3) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--input-shape {text!r} is not C,H,W or F: pass positive integers, e.g. 1,49,10 or 640")
    return tuple(int(p) for p in parts)
