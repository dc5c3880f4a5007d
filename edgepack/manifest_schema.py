"""What a manifest.json may say, checked before anything reads it (verify, bench, debug, report).

An artifact is input from outside: a manifest edited by hand (and re-hashed, so ``verify`` passes)
must not make bench open, load or execute anything but the artifact's own listed files. So the
manifest is parsed against a JSON Schema (unknown top-level keys, missing or mistyped ones: one
ArtifactError line), every file it names must be a relative path listed in ``files`` (no absolute
path, no ``..``: the tree walk in ``artifact.verify`` refuses symlinks), and its target is re-validated
as strictly as a target file, including the programs and emulator options a device run may use.

``parse`` returns the checked manifest as a ``Manifest``: typed, frozen sections with the defaults older
artifacts need written once here, so bench, report, sweep and debug read fields, not string keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgepack.errors import ArtifactError, TargetError
from edgepack.ops.base import QParams  # the plan's own: what [plan] input/output record
from edgepack.targets import BACKENDS, Target, target_from_json

_INT = {"type": "integer", "minimum": 0}
_QPARAMS = {"type": "object", "required": ["scale", "zero_point"],
            "properties": {"scale": {"type": "number", "exclusiveMinimum": 0}, "zero_point": {"type": "integer"}}}
_OBJECT, _NAME = {"type": "object"}, {"type": "string", "minLength": 1}

SCHEMA = {
    "type": "object",
    "required": ["format", "edgepack_version", "target", "backend", "backend_info", "model", "eval", "metrics",
                 "golden", "files"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "edgepack-artifact"},
        "edgepack_version": {"type": "string"},
        "target": _OBJECT,  # checked by edgepack.targets.target_from_json
        "backend": {"type": "string"},
        "backend_info": _OBJECT,
        "model": {"type": "object", "required": ["name", "resolution", "classes", "input_shape"], "properties": {
            "name": {"type": "string"}, "resolution": {"type": "integer", "minimum": 1},
            "classes": {"type": "integer", "minimum": 1}, "alpha": {"type": ["number", "null"]},
            "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
            "weights": {"type": "string"}, "builtin": {"type": "string"},
            "checkpoint": {"type": ["object", "null"]}, "module": {"type": ["object", "null"]},
            "softmax": {"type": "string"}}},  # a user model's trailing softmax, dropped or kept (frontends.torch)
        "import": _OBJECT, "preprocessing": _OBJECT, "quantization": _OBJECT, "folding": {"type": ["object", "null"]},
        "params": _INT, "macs": _INT,
        "eval": {"type": "object", "required": ["images", "sha256"], "properties": {
            "images": {"type": "integer", "minimum": 1}, "sha256": {"type": "string"}, "source": {"type": "string"},
            "file": {"type": ["string", "null"]}, "labelled": {"type": "boolean"}}},
        "metrics": _OBJECT,
        "golden": {"type": "object", "required": ["images", "input", "output"], "properties": {
            "images": {"type": "integer", "minimum": 1}, "input": _NAME, "output": _NAME}},
        "plan": {"type": ["object", "null"], "required": ["file", "arrays", "layers", "input", "output"], "properties": {
            "file": _NAME, "arrays": _NAME, "layers": {"type": "integer", "minimum": 1},
            "input": _QPARAMS, "output": _QPARAMS,
            "module_paths": {"type": "array", "items": {"type": "string"}}}},  # optional: older artifacts lack it
        "tflite": {"type": ["object", "null"], "properties": {"file": _NAME}},
        "memory_plan": _OBJECT, "footprint": _OBJECT, "cost": _OBJECT,
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["sha256", "bytes"], "additionalProperties": False,
            "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "bytes": _INT}}},
    },
}

# Where a manifest names files of the artifact: (section, key); "*" = every value of a table or list.
FILE_FIELDS = (("golden", "input"), ("golden", "output"), ("plan", "file"), ("plan", "arrays"), ("eval", "file"),
               ("tflite", "file"), ("backend_info", "model_file"), ("backend_info", "weights_file"),
               ("backend_info", "source_model"), ("backend_info", "npu_blob"), ("backend_info", "library"),
               ("backend_info", "binaries"), ("backend_info", "sources"), ("backend_info", "c_array"))


def check(manifest, where: str) -> dict:
    """``manifest`` (parsed manifest.json) if it has the artifact schema and names only its own files,
    else an ArtifactError naming the first problem; ``where`` is the manifest's path, for messages."""
    _checked_target(manifest, where)
    return manifest


def parse(manifest, where: str) -> "Manifest":
    """``manifest`` checked as by ``check``, as a typed Manifest (its target parsed once, by the check)."""
    return Manifest.from_json(manifest, _checked_target(manifest, where))


def _checked_target(manifest, where: str) -> Target:
    """The check of ``check``; returns the manifest's target, already parsed by it."""
    import jsonschema

    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} is not an edgepack manifest (a JSON {type(manifest).__name__}, not an object): "
                            "recompile the artifact")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(manifest))
    if error is not None:
        raise ArtifactError(f"{where} does not have the artifact format: {_describe(error)}: recompile the artifact")
    for name in manifest["files"]:
        problem = name_problem(name)
        if problem:
            raise ArtifactError(f"{where} lists {name!r}, which {problem}: an artifact holds only its own files; "
                                "recompile it, do not edit artifacts")
    for section, key, value in _named_files(manifest):
        if not isinstance(value, str) or value not in manifest["files"]:
            raise ArtifactError(f"{where}: {section}.{key} names {value!r}, which is not a file listed in the artifact: "
                                "recompile it, do not edit artifacts")

    paths = (manifest.get("plan") or {}).get("module_paths")
    if paths is not None and len(paths) != manifest["plan"]["layers"]:
        raise ArtifactError(f"{where}: plan.module_paths names {len(paths)} layers, the plan has "
                            f"{manifest['plan']['layers']}: recompile the artifact")
    if manifest["backend"] not in BACKENDS:
        raise ArtifactError(f"{where}: backend {manifest['backend']!r} is unknown (edgepack has {', '.join(BACKENDS)}): "
                            "recompile the artifact")
    try:
        target = target_from_json(manifest["target"], f"{where}: target")
    except TargetError as e:
        raise ArtifactError(f"{e}: recompile the artifact") from None
    if target.backend != manifest["backend"]:
        raise ArtifactError(f"{where}: backend {manifest['backend']!r} is not its target's ({target.backend!r}): "
                            "recompile the artifact")
    return target


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file of an artifact (None if it can): a plain relative path inside it."""
    if not name or "\\" in name or "\0" in name:
        return "is not a plain relative path"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "leaves the artifact folder or is not normalised (.., ., //)"
    return None


def _named_files(manifest: dict):
    for section, key in FILE_FIELDS:
        table = manifest.get(section)
        if not isinstance(table, dict) or table.get(key) is None:
            continue
        value = table[key]
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for v in values:
            yield section, key, v


def _describe(error) -> str:
    """A jsonschema error as a short phrase: where in the manifest, and what is wrong there."""
    path = ".".join(str(p) for p in error.absolute_path) or "the top level"
    if error.validator == "additionalProperties":
        return f"{path} has a key it does not know ({error.message.split('(')[-1].rstrip(')')})"
    if error.validator == "required":
        return f"{path} lacks {error.message.split(' is a required')[0]}"
    value = repr(error.instance)
    return f"{path} is {value[:60]}{'...' if len(value) > 60 else ''} ({error.message.split(' is ')[-1][:80]})"


# ---------------------------------------------------------------- the typed view of a checked manifest

LEGACY_BUILTIN = "mobilenet_v1"  # artifacts from before MobileNetV2 record no builtin: MobileNetV1 was the only one


@dataclass(frozen=True)
class ModelInfo:
    """[model]: what was compiled (a built-in, a --model module, or an imported .tflite)."""
    name: str
    resolution: int
    classes: int
    input_shape: tuple[int, ...]
    alpha: float | None = None  # the width multiplier compile was given; None for an imported model
    weights: str | None = None  # where the weights came from, as a phrase (SHIPPED_WEIGHTS, a checkpoint, ...)
    builtin: str = LEGACY_BUILTIN
    checkpoint: dict | None = None  # provenance.file_record of --checkpoint
    module: dict | None = None  # provenance.module_record of --model: set only for a user model

    @classmethod
    def from_json(cls, m: dict) -> "ModelInfo":
        return cls(m["name"], m["resolution"], m["classes"], tuple(m["input_shape"]), m.get("alpha"), m.get("weights"),
                   m.get("builtin", LEGACY_BUILTIN), m.get("checkpoint"), m.get("module"))


@dataclass(frozen=True)
class Calibration:
    """quantization.calibration: the inputs a compile calibrated with (provenance.calibration_record)."""
    spec: str | None = "digits"  # None: in-memory inputs (not stored); older artifacts knew only the bundled digits
    images: int | None = None
    sha256: str | None = None

    @classmethod
    def from_json(cls, c: dict | None) -> "Calibration":
        c = c or {}
        return cls(c["spec"], c.get("images"), c.get("sha256")) if "spec" in c else cls(images=c.get("images"))


@dataclass(frozen=True)
class Quantization:
    mode: str | None = None  # "ptq", "qat", "none" (fp32) or "imported"
    weights: str | None = None  # how weights were quantized, as a phrase
    calibration: Calibration = field(default_factory=Calibration)

    @property
    def imported(self) -> bool:
        return self.mode == "imported"

    @property
    def summary(self) -> str | None:
        """What a report shows: how weights were quantized, else the mode."""
        return self.mode if self.weights is None else self.weights

    @classmethod
    def from_json(cls, q: dict | None) -> "Quantization":
        q = q or {}
        return cls(q.get("mode"), q.get("weights"), Calibration.from_json(q.get("calibration")))


@dataclass(frozen=True)
class Metrics:
    """The compile's accuracy figures (None where there is no fp32 model or no labelled eval data)."""
    fp32_accuracy: float | None = None
    int8_accuracy: float | None = None
    sqnr_db: float | None = None  # int8 reference vs fp32; None for fp32 and imported artifacts
    accuracy_note: str = "no labelled eval data"  # why there is no accuracy figure (older artifacts did not say)
    accuracy_gate: dict | None = None  # int8 vs fp32 judged at compile (edgepack.gate); older artifacts: None

    @classmethod
    def from_json(cls, m: dict) -> "Metrics":
        sqnr = (m.get("int8_vs_fp32") or {}).get("sqnr_db")
        gate = m.get("accuracy_gate")
        return cls(m.get("fp32_accuracy"), m.get("int8_accuracy"), sqnr, m.get("accuracy_note", cls.accuracy_note),
                   gate if isinstance(gate, dict) else None)


@dataclass(frozen=True)
class EvalRecord:
    """[eval]: the eval images a compile measured, by content (edgepack.evaldata.record)."""
    images: int
    sha256: str
    source: str = ""  # "digits:eval..." for the bundled split, else where the images came from
    file: str | None = None  # the artifact's copy; None when too large to copy
    labelled: bool = True

    @classmethod
    def from_json(cls, e: dict) -> "EvalRecord":
        return cls(e["images"], e["sha256"], e.get("source", ""), e.get("file"), e.get("labelled", True))


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become inputs; mean and std are absent in older artifacts (the default mapping)."""
    mean: list[float] | None = None
    std: list[float] | None = None

    @classmethod
    def from_json(cls, p: dict | None) -> "Preprocessing":
        p = p or {}
        return cls(p.get("mean"), p.get("std"))


@dataclass(frozen=True)
class Golden:
    images: int
    input: str
    output: str
    source: str | None = None  # who computed the outputs when not the int8 reference (an imported model)

    @classmethod
    def from_json(cls, g: dict) -> "Golden":
        return cls(g["images"], g["input"], g["output"], g.get("source"))


@dataclass(frozen=True)
class PlanRecord:
    """[plan]: the int8 plan's files and its input/output quantization (absent for an fp32 artifact)."""
    file: str
    arrays: str
    layers: int
    input: QParams
    output: QParams
    # each layer's fp32 module path as compile recorded it ("" where no module makes the layer); None for an
    # imported .tflite and for artifacts from before compile recorded them: the plan's layer names stand instead
    module_paths: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, p: dict) -> "PlanRecord":
        q_in, q_out = p["input"], p["output"]
        paths = p.get("module_paths")
        return cls(p["file"], p["arrays"], p["layers"], QParams(q_in["scale"], q_in["zero_point"]),
                   QParams(q_out["scale"], q_out["zero_point"]), tuple(paths) if paths is not None else None)


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class BackendInfo:
    """backend_info, what the backend's lower() recorded: typed for the keys read outside the backend;
    ``raw`` for the backend's own runner (its own typed spec reads the rest)."""
    raw: dict = field(repr=False)
    kernels: str | None = None  # the kernel set (C, TVM); OpenVINO records a per-primitive count, not a set
    cpu_features: list[str] | None = None  # the CPU features TVM compiled for
    model_file: str | None = None  # the model file the runtime loads (ONNX Runtime, OpenVINO, TFLM)

    @classmethod
    def from_json(cls, b: dict) -> "BackendInfo":
        kernels = b.get("kernels")
        return cls(b, kernels if isinstance(kernels, str) else None, b.get("cpu_features"), b.get("model_file"))


@dataclass(frozen=True)
class Manifest:
    """A checked manifest.json as typed fields (built by ``parse``, after ``check``); ``raw`` is the dict, for
    backend runners that still take it. Defaults for keys older artifacts lack are in the section classes."""
    raw: dict = field(repr=False)
    edgepack_version: str
    target: Target
    backend: str
    backend_info: BackendInfo
    model: ModelInfo
    eval: EvalRecord
    metrics: Metrics
    golden: Golden
    files: dict[str, FileEntry]
    quantization: Quantization = field(default_factory=Quantization)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    plan: PlanRecord | None = None  # None: an fp32 artifact
    params: int | None = None
    macs: int | None = None

    @property
    def tolerances(self) -> dict:
        """The target's [tolerances] as the manifest records them (only the keys its file set)."""
        return dict(sorted(self.target.tolerances.to_json().items()))

    @classmethod
    def from_json(cls, m: dict, target: Target | None = None) -> "Manifest":
        """``m`` must already have passed ``check`` (``target``: its parsed target, when the caller has it)."""
        plan = m.get("plan")
        return cls(m, m["edgepack_version"], target or target_from_json(m["target"], "manifest target"), m["backend"],
                   BackendInfo.from_json(m["backend_info"]), ModelInfo.from_json(m["model"]),
                   EvalRecord.from_json(m["eval"]), Metrics.from_json(m["metrics"]), Golden.from_json(m["golden"]),
                   {name: FileEntry(e["sha256"], e["bytes"]) for name, e in m["files"].items()}, Quantization.from_json(m.get("quantization")),
                   Preprocessing.from_json(m.get("preprocessing")), PlanRecord.from_json(plan) if plan else None,
                   m.get("params"), m.get("macs"))

    @classmethod
    def of(cls, manifest: "Manifest | dict") -> "Manifest":
        """A Manifest as is, or one from a checked manifest dict (what artifact.verify returns)."""
        return manifest if isinstance(manifest, Manifest) else cls.from_json(manifest)
