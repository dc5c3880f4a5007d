"""Flash and RAM of built objects and firmware, from ``size -A``: what the manifest's footprint and the
target's [budget] check count."""
from __future__ import annotations

from pathlib import Path

from edgepack import devices
from edgepack.errors import BuildError

_IGNORED = (".comment", ".ARM.attributes", ".note", ".debug", ".group", ".symtab", ".strtab", ".shstrtab",
            ".rel", ".stack", ".heap")


def section_sizes(size_tool: str, path: Path) -> dict[str, int]:
    """``size -A`` (System V format): section name -> bytes."""
    proc = devices.run_tool([size_tool, "-A", str(path)])
    if proc.returncode != 0:
        raise BuildError(f"{size_tool} -A {path} failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}")
    sections: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = sections.get(parts[0], 0) + int(parts[1])
    return sections


def classify(sections: dict[str, int]) -> dict[str, int]:
    """text / rodata / data / bss bytes of allocated sections."""
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for name, size in sections.items():
        if name.startswith(_IGNORED):
            continue
        if name.startswith((".text", ".isr_vector", ".init", ".fini", ".plt")) and not name.startswith((".init_array", ".fini_array")):
            out["text"] += size
        elif name.startswith((".rodata", ".data.rel.ro", ".ARM.ex", ".eh_frame", ".init_array", ".fini_array",
                              ".preinit_array", ".gcc_except_table")):
            out["rodata"] += size
        elif name.startswith((".data", ".got", ".tdata")):
            out["data"] += size
        elif name.startswith((".bss", ".tbss", "COMMON")):
            out["bss"] += size
    return out


def _with_totals(parts: dict[str, int]) -> dict:
    return {**parts, "flash": parts["text"] + parts["rodata"] + parts["data"], "ram": parts["data"] + parts["bss"]}


def footprint(size_tool: str, elf: Path | None, objects: dict[str, Path]) -> dict:
    """The model library (sum of ``objects``, and each) and, given the firmware ``elf``, the whole firmware."""
    model = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    per_object = {}
    for src, obj in sorted(objects.items()):
        parts = classify(section_sizes(size_tool, obj))
        per_object[src] = _with_totals(parts)
        for k in model:
            model[k] += parts[k]
    result = {"tool": Path(size_tool).name, "model_library": {**_with_totals(model), "objects": per_object}}
    if elf is not None:
        result["firmware"] = _with_totals(classify(section_sizes(size_tool, elf)))
    return result
