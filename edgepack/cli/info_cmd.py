"""edgepack info: the model report (per-layer shapes, params, Mult-Adds; paper Table 2 shares)."""
from __future__ import annotations

import json

from edgepack.cli import output
from edgepack.model.builtin import build, check_builtin, max_alpha
from edgepack.validate import check_alpha, check_classes, check_memory, check_resolution


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a built-in model's report (params, Mult-Adds per layer)")
    p.add_argument("--model", default="mobilenet_v1", help="mobilenet_v1 (default), mobilenet_v2, mobilenet_v3_small or mobilenet_v3_large")
    p.add_argument("--alpha", default="1.0", help="width multiplier in (0, 1] (mobilenet_v2: (0, 1.4]; default 1.0)")
    p.add_argument("--resolution", default="224", help="input resolution, a multiple of 32 (default 224)")
    p.add_argument("--classes", default="1000", help="number of classes (default 1000, as in the paper)")
    output.add_json_flag(p, "the report")
    p.set_defaults(run=run)


def run(args) -> int:
    alpha = check_alpha(args.alpha, max_alpha(args.model))  # every flag before torch loads
    resolution, _ = check_resolution(args.resolution), check_classes(args.classes)
    output.check_json_file(args.json)
    check_memory(alpha, resolution, images=1, architecture=check_builtin(args.model), batch=1)  # one forward pass
    from edgepack.model.profile import format_summary, summary  # imports torch

    model = build(args.model, alpha, args.resolution, args.classes)
    name = type(model).__name__
    s = summary(model, (3, model.resolution, model.resolution))
    s = {"model": name, "alpha": model.alpha, "resolution": model.resolution, "classes": model.num_classes, **s}
    if args.json:
        output.write_json(args.json, json.dumps(s, indent=1))
    if args.json != output.STDOUT:
        print(format_summary(s, f"{name} alpha={model.alpha:g} resolution={model.resolution} classes={model.num_classes}"))
    return 0
