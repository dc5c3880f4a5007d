"""edgepack targets: list the target files (targets/*.toml)."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the compile targets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgepack.targets import load_targets

    targets = load_targets()
    if args.json:
        print(json.dumps({n: t.to_json() for n, t in targets.items()}, indent=1))
    else:
        width = max(map(len, targets))
        for name, t in targets.items():
            print(f"{name:<{width}}  {t.backend:<12} {t.description}")
    return 0
