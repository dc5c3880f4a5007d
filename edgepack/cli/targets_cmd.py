"""edgepack targets: list the built-in target files and your own (--targets DIR, EDGEPACK_TARGETS) as a table:
name, board aliases, backend, core, flash/RAM budgets, whether the toolchain is installed here.

Every good target is listed; a broken file gets one stderr line naming it and the exit code is 2, so
a CI job that checks its board files fails, while the other targets stay usable."""
from __future__ import annotations

import json
import sys

from edgepack.cli import output
from edgepack.cli.colour import paint
from edgepack.cli.flags import add_targets_flag
from edgepack.cli.toolcheck import missing_tools
from edgepack.targets import BUILTIN_DIR, Target, catalogue

HEADER = ("name", "aliases", "backend", "core", "flash", "RAM", "toolchain installed", "description")


def add_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the compile targets (built-in and your own board files)")
    output.add_json_flag(p, "the targets (with their files and toolchain state)")
    add_targets_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    output.check_json_file(args.json)
    found = catalogue(args.targets)
    targets = found.targets
    missing = {name: missing_tools(t) for name, t in targets.items()}
    if args.json:
        output.write_json(args.json, json.dumps({n: {**t.to_json(), "file": str(t.path), "toolchain": {
            "installed": not missing[n], "missing": missing[n]}} for n, t in targets.items()}, indent=1))
    if targets and args.json != output.STDOUT:
        rows = [_row(t, missing[n], _where(t, found.overrides.get(n, ()))) for n, t in targets.items()]
        print(_table(rows))
    for message in found.broken.values():
        print(f"edgepack targets: error: {message}", file=sys.stderr)
    return 2 if found.broken else 0


def _row(target: Target, missing: list[str], where: str) -> tuple[str, ...]:
    budget = target.budget
    tools = "yes" if not missing else f"no ({', '.join(missing)})"
    return (target.name, ",".join(target.aliases) or "-", target.backend, core(target), _bytes(budget.flash_bytes),
            _bytes(budget.ram_bytes), tools, target.description + where)


def _where(target: Target, hidden) -> str:
    """A user's file: where it is and which files of the same name it overrides."""
    if target.builtin:
        return ""
    names = ["the built-in one" if p.parent == BUILTIN_DIR else str(p) for p in hidden]
    return f"  [{target.path}" + (f", overrides {' and '.join(names)}" if names else "") + "]"


def core(target: Target) -> str:
    """The processor the target's code is built for, read from the file (the CPU qemu runs it on, the -mcpu flag,
    TVM's mcpu, OpenVINO's device)."""
    flags = [f.split("=", 1)[1] for f in target.toolchain.arch_flags or () if f.startswith("-mcpu=")]
    tvm = target.compiler.tvm_target
    mcpu = tvm.get("mcpu") if isinstance(tvm, dict) else None
    if target.backend == "openvino":
        return f"Intel {target.run.device or 'CPU'}"
    if target.backend == "tflm":
        return "your MCU firmware"
    choice = target.run.qemu_cpu or (flags[0] if flags else None) or (mcpu if mcpu != "host" else None)
    return choice or "this host's CPU"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:g} MiB" if n % 2**20 == 0 else f"{n / 2**10:g} KiB" if n % 2**10 == 0 else f"{n:,} B"


def _table(rows: list[tuple[str, ...]]) -> str:
    """Aligned columns under a header (the last column, the description, is not padded)."""
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]

    def line(cells):
        return "  ".join([*(c.ljust(w) for c, w in zip(cells, widths)), cells[-1]]).rstrip()

    return "\n".join([paint(line(HEADER), "bold", sys.stdout), *map(line, rows)])
