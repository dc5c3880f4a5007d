"""The one loader and validator of target files: a target is data, adding a board is adding a file.

The built-in targets are the ``*.toml`` files in this package folder. Your own board files live in
folders given by ``--targets DIR`` (``target_dirs`` in the Python API) and ``EDGEPACK_TARGETS``
(os.pathsep-separated); a name is looked up like a command on PATH, first match wins: ``--targets``
folders in order, then ``EDGEPACK_TARGETS`` folders, then the built-in ones. So a file of yours named
``rpi4.toml`` overrides the built-in rpi4 (``edgepack targets`` says so).

Each file is parsed into frozen dataclasses, one per table, with the type of every key and the
backends that read it: an unknown key, a key no code of that backend reads, or a value of the wrong
type is refused with one line naming the file, the table and the key. Files are validated one at a
time, so a broken file of yours never hides the other targets.
"""
from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from edgepack.errors import TargetError
from edgepack.targets.backends import NAMES

BUILTIN_DIR = Path(__file__).resolve().parent
ENV_VAR = "EDGEPACK_TARGETS"
BACKENDS = NAMES  # edgepack.targets.backends: the one backend list, read without importing any backend


def setting(*backends: str, choices: tuple = (), positive: bool = False):
    """A key of a target table, read by ``backends``; None when the file leaves it out (the backend's default)."""
    return field(default=None, metadata={"backends": backends, "choices": choices, "positive": positive})


class Table:
    """A target-file table: the keys the file sets (None = not set) and how to write them back as TOML data."""

    def to_json(self) -> dict:
        """Only the keys the file set, as plain TOML values: what the manifest records."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class Compiler(Table):
    """[compiler]: how the backend lowers the int8 plan."""
    tvm_target: str | dict | None = setting("tvm")  # a TVM tag or a table of TVM target attributes
    arch: str | None = setting("tvm", choices=("aarch64", "x86_64"))
    cross_compiler: str | None = setting("tvm")
    int8_kernels: str | None = setting("tvm", choices=("auto", "generic", "vnni", "neon"))
    batch: int | None = setting("openvino", positive=True)
    compress_to_fp16: bool | None = setting("openvino")
    kernels: str | None = setting("c", choices=("portable", "fast", "helium"))
    compare_kernels: bool | None = setting("c")
    cflags: tuple[str, ...] | None = setting("c")


@dataclass(frozen=True)
class Toolchain(Table):
    """[toolchain]: the C compiler, its flags and the Cortex-M memory map (c backend)."""
    kind: str | None = setting("c", choices=("cortex-m", "host"))
    cc: str | None = setting("c")
    size: str | None = setting("c")
    debian_packages: str | None = setting("c")
    arch_flags: tuple[str, ...] | None = setting("c")
    ldflags: tuple[str, ...] | None = setting("c")
    flash_origin: int | None = setting("c")
    flash_length: int | None = setting("c", positive=True)
    ram_origin: int | None = setting("c")
    ram_length: int | None = setting("c", positive=True)
    rodata_origin: int | None = setting("c")  # optional: constants (.rodata) in a region of their own
    rodata_length: int | None = setting("c", positive=True)
    cross_cc: str | None = setting("c")
    cross_debian_packages: str | None = setting("c")
    cross_arch_flags: tuple[str, ...] | None = setting("c")
    cross_ldflags: tuple[str, ...] | None = setting("c")


@dataclass(frozen=True)
class Run(Table):
    """[run]: how the artifact runs here (emulator, device, timeouts)."""
    device: str | None = setting("openvino", "c")
    threads: int | None = setting("openvino", positive=True)
    cpu: dict | None = setting("openvino")  # OpenVINO properties for the CPU device
    npu: dict | None = setting("openvino")  # OpenVINO properties for the NPU device
    qemu_cpu: str | None = setting("tvm")
    emulator: str | None = setting("c")
    machine: str | None = setting("c")
    debian_package: str | None = setting("c")
    emulator_args: tuple[str, ...] | None = setting("c")
    systick_hz: int | None = setting("c", positive=True)
    instructions_per_tick: float | None = setting("c", positive=True)  # mps3-an547: 31.25 (32 MHz SysTick)
    timeout_s: float | None = setting("c", positive=True)
    image_timeout_s: float | None = setting("c", positive=True)
    cross_emulator: str | None = setting("c")
    cross_debian_package: str | None = setting("c")


@dataclass(frozen=True)
class Rpc(Table):
    """[rpc]: the device key boards of this target register with at a TVM RPC tracker."""
    key: str | None = setting("tvm")


@dataclass(frozen=True)
class Budget(Table):
    """[budget]: memory the compiled model may use (microcontrollers)."""
    flash_bytes: int | None = setting("c", positive=True)
    ram_bytes: int | None = setting("c", positive=True)


@dataclass(frozen=True)
class Tolerances(Table):
    """[tolerances]: how far a bench may fall behind its baseline (edgepack.benchmark.compare)."""
    latency_increase: float | None = setting(*BACKENDS)
    accuracy_drop_points: float | None = setting(*BACKENDS)
    agreement_drop_points: float | None = setting(*BACKENDS)
    cost_increase: float | None = setting(*BACKENDS)


@dataclass(frozen=True)
class AccuracyGate(Table):
    """[accuracy_gate]: how far compile's int8 model may fall from the fp32 model it was quantized from
    (edgepack.gate; the --max-accuracy-drop / --min-fp32-agreement flags override it)."""
    max_accuracy_drop_points: float | None = setting(*BACKENDS)  # labelled eval data: fp32 - int8 accuracy
    min_fp32_agreement_percent: float | None = setting(*BACKENDS)  # unlabelled: int8 top-1 agreement with fp32


def _check_accuracy_gate(gate: AccuracyGate, where: str) -> None:
    """Both limits are in [0, 100]; an agreement in (0, 1] is a fraction given where a percentage belongs."""
    for key, value in gate.to_json().items():
        if not 0 <= value <= 100 or (key == "min_fp32_agreement_percent" and 0 < value <= 1):
            raise TargetError(f"{where}: [accuracy_gate] {key} must be a percentage from 0 to 100 (e.g. "
                              f"{'97' if 'agreement' in key else '1.0'}), got {value!r}")


MAX_CLOCK_MHZ = 10_000  # above this a clock is surely in Hz or kHz, not MHz
MAX_CYCLES_PER_INSTRUCTION = 100.0


@dataclass(frozen=True)
class Board(Table):
    """[board]: the real board the emulated device stands for, so bench can turn its exact instruction count
    into an estimated time there (instructions x cycles_per_instruction / clock): an estimate, never a
    measurement, and the report says so with the assumption beside it. Optional in a user's own file."""
    name: str | None = setting("c", "tvm")  # e.g. "STM32F4 (STM32F407 / F446)"
    clock_mhz: float | None = setting("c", "tvm", positive=True)
    cycles_per_instruction: float | None = setting("c", "tvm", positive=True)
    cpi_basis: str | None = setting("c", "tvm")  # why that cycles-per-instruction figure: where it comes from
    mca_cpu: str | None = setting("tvm")  # llvm-mca -mcpu for bench's hot-block cycle estimate (edgepack.devices.mca)

    def estimate(self, instructions: int | float) -> dict:
        """The estimated cycles and milliseconds for ``instructions`` on this board, with the assumption."""
        cycles = instructions * self.cycles_per_instruction
        return {"board": self.name, "clock_mhz": self.clock_mhz, "cycles_per_instruction": self.cycles_per_instruction,
                "instructions": int(instructions), "cycles": round(cycles), "ms": cycles / (self.clock_mhz * 1e3),
                "is_estimate": True, "assumption": self.assumption()}

    def assumption(self) -> str:
        basis = f" ({self.cpi_basis})" if self.cpi_basis else ""
        return (f"estimate, not a measurement: instructions x {self.cycles_per_instruction:g} cycles/instruction"
                f"{basis} / {self.clock_mhz:g} MHz")


def _check_board(board: Board, where: str) -> None:
    """A [board] table names the board, its clock and the cycles-per-instruction assumption, in sane units."""
    if board == Board():
        return
    for key in ("name", "clock_mhz", "cycles_per_instruction"):
        if getattr(board, key) is None:
            raise TargetError(f"{where}: [board] lacks '{key}': a board gives name, clock_mhz and "
                              "cycles_per_instruction (or remove the [board] table)")
    if board.clock_mhz > MAX_CLOCK_MHZ:
        raise TargetError(f"{where}: [board] clock_mhz {board.clock_mhz:g} is above {MAX_CLOCK_MHZ:,} MHz: give the "
                          "clock in MHz (e.g. 168 for 168 MHz)")
    if board.cycles_per_instruction > MAX_CYCLES_PER_INSTRUCTION:
        raise TargetError(f"{where}: [board] cycles_per_instruction {board.cycles_per_instruction:g} is above "
                          f"{MAX_CYCLES_PER_INSTRUCTION:g}: give cycles per instruction (about 0.3 to 2 on Arm cores)")


TABLES = {"compiler": Compiler, "toolchain": Toolchain, "run": Run, "rpc": Rpc, "budget": Budget,
          "tolerances": Tolerances, "board": Board, "accuracy_gate": AccuracyGate}
REQUIRED = ("name", "description", "backend")
OPTIONAL = ("aliases",)  # top-level keys a file may set beside REQUIRED and TABLES
ALIAS = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # a board name typed after --target: no folder, no option


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str
    path: Path
    compiler: Compiler = field(default_factory=Compiler)
    toolchain: Toolchain = field(default_factory=Toolchain)
    run: Run = field(default_factory=Run)
    rpc: Rpc = field(default_factory=Rpc)
    budget: Budget = field(default_factory=Budget)
    tolerances: Tolerances = field(default_factory=Tolerances)
    board: Board = field(default_factory=Board)
    accuracy_gate: AccuracyGate = field(default_factory=AccuracyGate)
    aliases: tuple[str, ...] = ()  # board names that mean this target (the file's ``aliases``)
    alias: str | None = None  # the alias this target was asked for by (None: by its name)

    @property
    def builtin(self) -> bool:
        return self.path.parent == BUILTIN_DIR

    def to_json(self) -> dict:
        """The target as plain data (what the file set): recorded in the manifest, read back by bench."""
        tables = {name: getattr(self, name).to_json() for name in TABLES}
        named = {"aliases": list(self.aliases)} if self.aliases else {}
        asked = {"alias": self.alias} if self.alias else {}
        return {"name": self.name, "backend": self.backend, "description": self.description, **named,
                **{name: table for name, table in tables.items() if table}, **asked}


# ---------------------------------------------------------------- parsing one file

def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _matches(value, hint) -> bool:
    """Whether a TOML value has the type a table field declares (an int is a float; a bool is not an int)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, list) and all(_matches(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return False  # TOML has no null: None only means "not in the file"
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])[2:]}s"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}[hint]


def _parse_table(cls, data, table: str, backend: str, where: str):
    """``where`` names the source in messages: "target file PATH", or an artifact's manifest."""
    if not isinstance(data, dict):
        raise TargetError(f"{where}: '{table}' must be a table ([{table}])")
    schema, hints = {f.name: f for f in fields(cls)}, typing.get_type_hints(cls)
    readable = [name for name, f in schema.items() if backend in f.metadata["backends"]]
    values = {}
    for name, value in data.items():
        if name not in schema:
            valid = (f"valid keys for the {backend} backend are {', '.join(readable)}" if readable
                     else f"the {backend} backend reads no [{table}] table: remove it")
            raise TargetError(f"{where}: [{table}] has no key '{name}'"
                              f"{_did_you_mean(name, readable or schema)}: {valid}")
        meta = schema[name].metadata
        if backend not in meta["backends"]:
            raise TargetError(f"{where}: [{table}] {name} is not read by the {backend} backend "
                              f"(only by {', '.join(meta['backends'])}): remove it")
        if not _matches(value, hints[name]):
            raise TargetError(f"{where}: [{table}] {name} must be {_describe(hints[name])}, got {value!r}")
        if meta["choices"] and value not in meta["choices"]:
            raise TargetError(f"{where}: [{table}] {name} must be one of {', '.join(meta['choices'])}, "
                              f"got {value!r}{_did_you_mean(str(value), meta['choices'])}")
        if meta["positive"] and value <= 0:
            raise TargetError(f"{where}: [{table}] {name} must be positive, got {value!r}")
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def parse_target(path: Path) -> Target:
    """One target file -> Target, or a TargetError naming the file and what is wrong in it."""
    if path.exists() and not path.is_file():  # a FIFO would block the read below
        raise TargetError(f"target file {path} is not a regular file: pass a folder of .toml files")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"target file {path} is not valid TOML ({e}): fix its syntax")
    where = f"target file {path}"
    if isinstance(data.get("name"), str) and data["name"] != path.stem:
        raise TargetError(f"{where} names itself '{data['name']}': name must equal the file name '{path.stem}'")
    return _target_from_data(data, path, where)


def target_from_json(data, where: str) -> Target:
    """The target an artifact's manifest records (Target.to_json()), checked as strictly as a target file:
    bench runs what it names, so a tampered manifest must not name any other program or option."""
    if not isinstance(data, dict):
        raise TargetError(f"{where} must be a table of the target's settings, got {type(data).__name__}")
    data = dict(data)
    alias = data.pop("alias", None)
    target = _target_from_data(data, Path(f"{data.get('name')}.toml"), where)
    if alias is not None and alias not in target.aliases:
        raise TargetError(f"{where}: alias {alias!r} is not one of the target's aliases: recompile the artifact")
    return replace(target, alias=alias)


def _target_from_data(data: dict, path: Path, where: str) -> Target:
    for name in REQUIRED:
        if not isinstance(data.get(name), str):
            raise TargetError(f"{where} lacks the string field '{name}': add it")
    backend = data["backend"]
    if backend not in BACKENDS:
        raise TargetError(f"{where}: backend '{backend}' is unknown{_did_you_mean(backend, BACKENDS)}: "
                          f"use one of {', '.join(BACKENDS)}")
    for name in data:
        if name not in REQUIRED and name not in OPTIONAL and name not in TABLES:
            raise TargetError(f"{where}: unknown field '{name}'{_did_you_mean(name, [*REQUIRED, *OPTIONAL, *TABLES])}: "
                              f"a target file has {', '.join(REQUIRED)}, optionally {', '.join(OPTIONAL)}, and the "
                              f"tables {', '.join(TABLES)}")
    tables = {name: _parse_table(cls, data.get(name, {}), name, backend, where) for name, cls in TABLES.items()}
    check_run_commands(tables["run"], where)
    _check_helium(tables["compiler"], tables["toolchain"], where)
    _check_board(tables["board"], where)
    _check_accuracy_gate(tables["accuracy_gate"], where)
    aliases = _parse_aliases(data.get("aliases", []), data["name"], where)
    return Target(name=data["name"], description=data["description"], backend=backend, path=path, aliases=aliases,
                  **tables)


MVE_CORES = ("-mcpu=cortex-m55", "-mcpu=cortex-m85")  # Armv8.1-M cores with Helium (or -march=...+mve)


def _check_helium(compiler: "Compiler", toolchain: "Toolchain", where: str) -> None:
    """The helium kernel set is MVE code: on a core without it the build would quietly run the fast twins while
    the manifest named Helium kernels."""
    flags = toolchain.arch_flags or ()
    if compiler.kernels == "helium" and not any(f in MVE_CORES or f.endswith("+mve") for f in flags):
        raise TargetError(f"{where}: kernels = \"helium\" needs a Helium (MVE) core in [toolchain] arch_flags "
                          "(-mcpu=cortex-m55 or -mcpu=cortex-m85): use kernels = \"fast\" for this core")


def _parse_aliases(value, name: str, where: str) -> tuple[str, ...]:
    """A file's ``aliases``: distinct board names, none its own name (the others are checked by catalogue())."""
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise TargetError(f"{where}: aliases must be a list of strings, got {value!r}")
    for alias in value:
        if not ALIAS.fullmatch(alias):
            raise TargetError(f"{where}: alias {alias!r} must be a lower-case board name (letters, digits, '.', '_', "
                              "'-'), e.g. \"rpi3\"")
        if alias == name or value.count(alias) > 1:
            raise TargetError(f"{where}: alias {alias!r} is " + ("the target's own name" if alias == name else
                              "listed twice") + ": remove it")
    return tuple(value)


# ---------------------------------------------------------------- what a device run may execute

PROGRAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a command looked up on PATH: no folder, no option
TOKEN = re.compile(r"[A-Za-z0-9_.,=:+-]*")  # an option value: no path, no space
# QEMU options an emulator run may carry, with how many values follow each. Nothing that loads or writes
# a file (-plugin, -L, -D, -kernel, -drive, -chardev ...): bench runs the artifact's own program only.
EMULATOR_OPTIONS = {"-nographic": 0, "-semihosting": 0, "-semihosting-config": 1, "-icount": 1, "-cpu": 1, "-m": 1,
                    "-smp": 1, "-accel": 1, "-rtc": 1}


def check_run_commands(run: "Run", where: str) -> None:
    """Refuse a [run] table naming a program by path or an emulator option outside EMULATOR_OPTIONS."""
    for key in ("emulator", "cross_emulator"):
        value = getattr(run, key)
        if value is not None and not PROGRAM.fullmatch(value):
            raise TargetError(f"{where}: [run] {key} {value!r} must be a program name found on PATH (no folder): "
                              "install the emulator or put its folder on PATH")
    for key in ("machine", "qemu_cpu"):
        value = getattr(run, key)
        if value is not None and not (value and TOKEN.fullmatch(value)):
            raise TargetError(f"{where}: [run] {key} {value!r} must be a QEMU machine or CPU name")
    args = list(run.emulator_args or ())
    while args:
        option = args.pop(0)
        if option not in EMULATOR_OPTIONS:
            raise TargetError(f"{where}: [run] emulator_args option {option!r} is not allowed: use only "
                              f"{', '.join(EMULATOR_OPTIONS)}")
        for _ in range(EMULATOR_OPTIONS[option]):
            value = args.pop(0) if args else None
            if value is None or not TOKEN.fullmatch(value):
                raise TargetError(f"{where}: [run] emulator_args {option} needs a plain value (no path or space), "
                                  f"got {value!r}")


# ---------------------------------------------------------------- the search path

def search_folders(target_dirs=()) -> list[Path]:
    """Where target files are looked up, first match wins: ``target_dirs`` (--targets), EDGEPACK_TARGETS, built-in."""
    folders = []
    for origin, paths in (("--targets", target_dirs or ()),
                          (ENV_VAR, [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p])):
        for p in paths:
            folder = Path(p).expanduser().absolute()
            if not folder.is_dir():
                raise TargetError(f"{origin} {p}: no such folder: pass a folder that holds your target .toml files")
            folders.append(folder)
    folders.append(BUILTIN_DIR)
    return list(dict.fromkeys(f.resolve() for f in folders))  # the same folder twice is searched once


def target_files(target_dirs=()) -> dict[str, list[Path]]:
    """Every target name -> its files in search order (the first one is the target; the others it overrides)."""
    found: dict[str, list[Path]] = {}
    for folder in search_folders(target_dirs):
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, []).append(path)
    return dict(sorted(found.items()))


def get_target(name: str, target_dirs=()) -> Target:
    """The target ``name`` (a target name or an alias in a target file). A broken file of another target does
    not stop it; its own broken file, or an alias of it that shadows another name, is its one-line error."""
    found = catalogue(target_dirs)
    key = found.aliases.get(name, name)
    files = target_files(target_dirs)
    if key not in files:
        choices = [*files, *found.aliases]
        aliases = ", ".join(f"{a} = {t}" for a, t in found.aliases.items())
        raise TargetError(f"unknown target '{name}'{_did_you_mean(name, choices)}: choose one of {', '.join(files)} "
                          + (f"(board aliases: {aliases}) " if aliases else "")
                          + "(see `edgepack targets`; your own board files: --targets DIR or EDGEPACK_TARGETS)")
    if files[key][0] in found.broken:
        raise TargetError(found.broken[files[key][0]])
    target = found.targets[key]
    return replace(target, alias=name) if name != key else target


@dataclass(frozen=True)
class Catalogue:
    """Every target file on the search path, each validated on its own."""
    targets: dict[str, Target]  # the good ones, by name
    broken: dict[Path, str]  # a file that does not parse -> its one-line error
    overrides: dict[str, tuple[Path, ...]]  # name -> the files (built-in or further down the path) it hides
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> the name of the good target it means


def catalogue(target_dirs=()) -> Catalogue:
    targets, broken, overrides = {}, {}, {}
    files = target_files(target_dirs)
    for name, paths in files.items():
        try:
            targets[name] = parse_target(paths[0])
        except TargetError as e:
            broken[paths[0]] = str(e)
        if len(paths) > 1:
            overrides[name] = tuple(paths[1:])
    aliases: dict[str, str] = {}
    for name, target in sorted(targets.items(), key=lambda item: item[1].builtin):  # your files' aliases first
        if target.builtin:  # a built-in alias yields to a name or alias of yours, as a built-in file does
            mine = {n for n, paths in files.items() if paths[0].parent != BUILTIN_DIR}
            mine |= {a for a, owner in aliases.items() if not targets[owner].builtin}
            target = targets[name] = replace(target, aliases=tuple(a for a in target.aliases if a not in mine))
        clash = _alias_clash(target, files, aliases)
        if clash:
            broken[target.path] = clash
            del targets[name]
        else:
            aliases.update(dict.fromkeys(target.aliases, name))
    return Catalogue(targets, broken, overrides, dict(sorted(aliases.items())))


def _alias_clash(target: Target, files: dict, aliases: dict) -> str | None:
    """Why one of ``target``'s aliases may not stand (a target's name, or an alias an earlier target holds)."""
    for alias in target.aliases:
        if alias in files:
            return (f"target file {target.path}: alias '{alias}' is the name of the target file {files[alias][0]}: "
                    "remove the alias or rename that file")
        if alias in aliases:
            return (f"target file {target.path}: alias '{alias}' is already an alias of target {aliases[alias]}: "
                    "remove it from one of the two files")
    return None


def load_targets(target_dirs=()) -> dict[str, Target]:
    """Every good target, by name (see catalogue() for the broken files)."""
    return catalogue(target_dirs).targets
