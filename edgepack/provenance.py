"""What an artifact was built from, recorded in its manifest so `debug` (and `report`) can rebuild the
fp32 model and reload the calibration inputs of the very same quantization.

Compile records the checkpoint file and the ``--model`` file by absolute path and sha256
(``model.checkpoint`` / ``model.module``), and the calibration source by absolute path ("digits" for
the bundled split, None for the Python API's in-memory inputs) with the sha256 of the inputs used
(``quantization.calibration``). Reloading refuses, in one line, a file that is gone or changed.
An in-memory model (Python API) cannot be rebuilt: the caller passes it again.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from edgepack.data import load_dataset
from edgepack.errors import ArtifactError, ConfigError
from edgepack.evaldata import bundled_sha256, content_sha256
from edgepack.manifest_schema import Manifest
from edgepack.model.user import load_user_model, parse_model_spec

SHIPPED_WEIGHTS = "shipped digits weights"


def file_sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "sha256": file_sha256(path)}


def module_record(spec: str) -> dict:
    """A --model spec with its file made absolute, and that file's sha256 (a package.module spec:
    the module's source file)."""
    where, name = parse_model_spec(spec)
    if where.endswith(".py"):
        file = Path(where).resolve()
        spec = f"{file}:{name}"
    else:
        found = importlib.util.find_spec(where)
        file = Path(found.origin) if found is not None and found.origin else None
    return {"spec": spec, **({"file": str(file), "sha256": file_sha256(file)} if file and file.is_file() else {})}


def checked_file(record: dict, what: str, folder) -> Path:
    """The recorded file, unchanged since the compile, or a one-line ArtifactError."""
    path = Path(record["path"])
    if not path.is_file():
        raise ArtifactError(f"{what} {path} that {folder} was compiled from is gone: restore it, or recompile the artifact")
    if file_sha256(path) != record["sha256"]:
        raise ArtifactError(f"{what} {path} changed since {folder} was compiled (sha256 differs): restore it, "
                            "or recompile the artifact")
    return path


def rebuild_model(manifest: Manifest | dict, folder, model_spec: str | None = None):
    """The fp32 model the artifact was compiled from: shipped weights, its checkpoint, or its --model.

    A --model is code: it is run only when the caller names it again (``model_spec``, debug's --model)
    and it is the file the artifact records, never because a manifest (which anyone can edit) names it."""
    manifest = Manifest.of(manifest)
    m = manifest.model
    if manifest.quantization.imported:
        raise ConfigError(f"{folder} was imported from an int8 .tflite ({m.weights}): there is no fp32 model to compare "
                          "its layers with; debug the model it was quantized from instead")
    checkpoint = checked_file(m.checkpoint, "checkpoint", folder) if m.checkpoint else None
    if m.module:  # the CLI's --model (weights from its --checkpoint, or its seeded constructor)
        return load_user_model(_consented_module(m.module, model_spec, folder), checkpoint)
    if m.weights == SHIPPED_WEIGHTS:
        from edgepack.model.weights import pretrained

        return pretrained(m.alpha, m.resolution, m.classes, m.builtin)
    if checkpoint is not None and not m.weights.startswith("user module"):  # a built-in model's state dict
        from edgepack.model.weights import load_checkpoint

        return load_checkpoint(checkpoint, m.alpha, m.resolution, m.classes, m.builtin)
    raise ConfigError(f"{folder} was compiled from {m.weights}, which it cannot rebuild (an in-memory model, or an "
                      "artifact from an older edgepack): pass the same model, edgepack.debug(artifact, model=...) or "
                      "edgepack.report(artifact, model=...), or recompile")


def _consented_module(module: dict, model_spec: str | None, folder) -> str:
    """``model_spec`` when it names the very code the artifact recorded; a one-line ConfigError otherwise."""
    recorded = module.get("spec", "?")
    if model_spec is None:
        raise ConfigError(f"{folder} was compiled from the model code {recorded}; edgepack does not run code an artifact "
                          f"names: pass --model {recorded} (Python: model=...) to debug it with that code")
    given = module_record(model_spec)
    same_name = str(recorded).rpartition(":")[2] == str(model_spec).rpartition(":")[2]
    if not same_name or module.get("sha256") is None or given.get("sha256") != module["sha256"]:
        raise ConfigError(f"--model {model_spec} is not the code {folder} was compiled from ({recorded}, sha256 "
                          f"{str(module.get('sha256'))[:16]}): pass that file, or recompile the artifact")
    return given["spec"]


def calibration_record(spec, data, classes: int) -> dict:
    """The manifest's record of the calibration inputs a compile used: ``spec`` "digits", a path, or
    None for in-memory inputs; the bundled digits by their source pixels (see evaldata.bundled_sha256)."""
    where = None if spec is None else ("digits" if str(spec) == "digits" else str(Path(spec).resolve()))
    sha = bundled_sha256("calibration", classes, len(data)) if where == "digits" else content_sha256(data)
    return {"source": data.source, "images": len(data), "spec": where, "sha256": sha}


def calibration_inputs(manifest: Manifest | dict, folder):
    """The calibration inputs the artifact was quantized with (Dataset), or None when they were in-memory
    (Python API) and so are not stored. Bundled digits are reloaded by split (their resize may round
    differently on other CPUs, as evaldata notes); files are checked against the recorded sha256."""
    manifest = Manifest.of(manifest)
    m, mapping, record = manifest.model, manifest.preprocessing, manifest.quantization.calibration
    spec, n = record.spec, record.images
    if spec is None:
        return None
    if spec != "digits" and not Path(spec).exists():
        raise ArtifactError(f"calibration data {spec} that {folder} was compiled with is gone: restore it, or recompile the artifact")
    size = m.input_shape[0] if len(m.input_shape) == 1 else m.resolution  # F for a model of vectors
    data = load_dataset(None if spec == "digits" else Path(spec), "calibration", size, m.classes,
                        mapping.mean, mapping.std).take(n)
    if spec != "digits" and (len(data) != n or content_sha256(data) != record.sha256):
        raise ArtifactError(f"calibration data {spec} changed since {folder} was compiled (sha256 differs): restore it, "
                            "or recompile the artifact")
    return data
