"""The one loader and validator of targets/*.toml: a target is data, adding a board is adding a file."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.errors import TargetError

TARGETS_DIR = Path(__file__).resolve().parents[1] / "targets"
BACKENDS = ("onnxruntime", "tvm", "openvino", "c", "tflm")
REQUIRED = {"name": str, "description": str, "backend": str}
OPTIONAL_TABLES = ("compiler", "toolchain", "run", "rpc", "budget", "tolerances")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str
    path: Path
    compiler: dict = field(default_factory=dict)
    toolchain: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    rpc: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend, "description": self.description,
                **{t: getattr(self, t) for t in OPTIONAL_TABLES if getattr(self, t)}}


def parse_target(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"target file {path} is not valid TOML ({e}): fix its syntax")
    for key, kind in REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise TargetError(f"target file {path} lacks the string field '{key}': add it")
    if data["name"] != path.stem:
        raise TargetError(f"target file {path} names itself '{data['name']}': name must equal the file name '{path.stem}'")
    if data["backend"] not in BACKENDS:
        raise TargetError(f"target file {path}: backend '{data['backend']}' is unknown: use one of {', '.join(BACKENDS)}")
    unknown = set(data) - set(REQUIRED) - set(OPTIONAL_TABLES)
    if unknown:
        raise TargetError(f"target file {path}: unknown field(s) {', '.join(sorted(unknown))}: allowed tables are {', '.join(OPTIONAL_TABLES)}")
    for table in OPTIONAL_TABLES:
        if not isinstance(data.get(table, {}), dict):
            raise TargetError(f"target file {path}: '{table}' must be a table ([{table}])")
    return Target(path=path, **data)


def load_targets(folder: Path = TARGETS_DIR) -> dict[str, Target]:
    files = sorted(Path(folder).glob("*.toml"))
    if not files:
        raise TargetError(f"no target files in {folder}: reinstall edgepack or restore targets/")
    return {t.name: t for t in map(parse_target, files)}


def get_target(name: str, folder: Path = TARGETS_DIR) -> Target:
    targets = load_targets(folder)
    if name not in targets:
        raise TargetError(f"unknown target '{name}': choose one of {', '.join(targets)} (see `edgepack targets`)")
    return targets[name]
