"""What a manifest.json may say, checked before anything reads it (verify, bench, debug, report).

An artifact is input from outside: a manifest edited by hand (and re-hashed, so ``verify`` passes)
must not make bench open, load or execute anything but the artifact's own listed files. So the
manifest is parsed against a JSON Schema (unknown top-level keys, missing or mistyped ones: one
ArtifactError line), every file it names must be a relative path listed in ``files`` (no absolute
path, no ``..``: the tree walk in ``artifact.verify`` refuses symlinks), and its target is re-validated
as strictly as a target file, including the programs and emulator options a device run may use.
"""
from __future__ import annotations

import re

from edgepack.errors import ArtifactError, TargetError
from edgepack.targets import BACKENDS, target_from_json

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
            "checkpoint": {"type": ["object", "null"]}, "module": {"type": ["object", "null"]}}},
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
            "input": _QPARAMS, "output": _QPARAMS}},
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
    return manifest


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
