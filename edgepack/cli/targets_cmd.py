"""edgepack targets: list the built-in target files and your own (--targets DIR, EDGEPACK_TARGETS).

Every good target is listed; a broken file gets one stderr line naming it and the exit code is 2, so
a CI job that checks its board files fails, while the other targets stay usable."""
from __future__ import annotations

import json
import sys

from edgepack.cli.flags import add_targets_flag
from edgepack.targets import BUILTIN_DIR, catalogue


def add_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the compile targets (built-in and your own board files)")
    p.add_argument("--json", action="store_true")
    add_targets_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    found = catalogue(args.targets)
    targets = found.targets
    if args.json:
        print(json.dumps({n: {**t.to_json(), "file": str(t.path)} for n, t in targets.items()}, indent=1))
    elif targets:
        width = max(map(len, targets))
        for name, t in targets.items():
            hidden = ["the built-in one" if p.parent == BUILTIN_DIR else str(p) for p in found.overrides.get(name, ())]
            where = "" if t.builtin else f"  [{t.path}" + (f", overrides {' and '.join(hidden)}" if hidden else "") + "]"
            print(f"{name:<{width}}  {t.backend:<12} {t.description}{where}")
    for message in found.broken.values():
        print(f"edgepack targets: error: {message}", file=sys.stderr)
    return 2 if found.broken else 0
