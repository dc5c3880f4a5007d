"""artifact.Manifest: the typed view of a checked manifest.json that bench, report, sweep, verify and debug read.

Fast cases build manifests by hand (checked by the same schema as a real one): typed fields, the defaults an
older artifact's missing keys get (in one place, the section classes), and a malformed value refused with the
very message ``check`` gives. The slow case reads a compiled artifact."""
from __future__ import annotations

import copy
import hashlib
import json

import pytest

from edgepack import artifact, manifest_schema
from edgepack.artifact import Manifest, write_manifest
from edgepack.errors import ArtifactError

SHA = "0" * 64
INT8_FILES = ("golden_input.npy", "golden_output.npy", "plan.json", "plan.npz", "model.c", "model")


def int8_manifest() -> dict:
    """A c-host int8 manifest with every section a compile writes today."""
    return {
        "format": "edgepack-artifact", "edgepack_version": "9.9.9",
        "target": {"name": "c-host", "backend": "c", "description": "C on this machine",
                   "compiler": {"kernels": "portable"},
                   "tolerances": {"latency_increase": 0.2, "accuracy_drop_points": 1.0}},
        "backend": "c",
        "backend_info": {"kernels": "portable", "sources": ["model.c"], "binaries": {"native": "model"}},
        "model": {"name": "MobileNetV2", "resolution": 32, "classes": 10, "input_shape": [3, 32, 32], "alpha": 0.35,
                  "weights": "shipped digits weights", "builtin": "mobilenet_v2", "checkpoint": None, "module": None},
        "preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "params": 1234, "macs": 56789,
        "quantization": {"mode": "ptq", "weights": "int8 symmetric [-127, 127], per-channel",
                         "calibration": {"spec": None, "images": 32, "sha256": "c" * 64, "source": "given"}},
        "eval": {"images": 40, "sha256": "e" * 64, "source": "digits:eval[:40]", "file": None, "labelled": False},
        "metrics": {"fp32_accuracy": 0.5, "int8_accuracy": 0.25, "accuracy_note": "unlabelled",
                    "int8_vs_fp32": {"sqnr_db": 33.5}},
        "golden": {"images": 8, "input": "golden_input.npy", "output": "golden_output.npy", "source": "LiteRT"},
        "plan": {"file": "plan.json", "arrays": "plan.npz", "layers": 64,
                 "input": {"scale": 0.0078, "zero_point": 0}, "output": {"scale": 0.025, "zero_point": -41}},
        "files": {name: {"sha256": SHA, "bytes": 7} for name in INT8_FILES},
    }


def older_fp32_manifest() -> dict:
    """An fp32 host artifact as an older edgepack wrote it: no builtin, preprocessing, note, plan or calibration."""
    m = int8_manifest()
    m.update(target={"name": "host", "backend": "onnxruntime", "description": "ONNX Runtime here"}, backend="onnxruntime",
             backend_info={"runtime": "onnxruntime", "model_file": "model.onnx"}, quantization={"mode": "none"},
             metrics={"fp32_accuracy": 0.5}, eval={"images": 40, "sha256": "e" * 64, "source": "digits:eval[:40]"},
             golden={"images": 8, "input": "golden_input.npy", "output": "golden_output.npy"},
             files={name: {"sha256": SHA, "bytes": 7} for name in ("golden_input.npy", "golden_output.npy", "model.onnx")})
    for key in ("builtin", "checkpoint", "module"):
        del m["model"][key]
    del m["preprocessing"], m["plan"]
    return m


def parse(m: dict) -> Manifest:
    return manifest_schema.parse(m, "manifest.json")


def test_typed_fields_of_an_int8_manifest():
    m = parse(int8_manifest())
    assert (m.target.name, m.backend, m.target.backend, m.edgepack_version) == ("c-host", "c", "c", "9.9.9")
    assert m.target.compiler.kernels == "portable"
    assert (m.model.name, m.model.resolution, m.model.classes, m.model.input_shape) == ("MobileNetV2", 32, 10, (3, 32, 32))
    assert (m.model.alpha, m.model.builtin, m.model.module) == (0.35, "mobilenet_v2", None)
    assert (m.params, m.macs) == (1234, 56789)
    assert (m.quantization.mode, m.quantization.imported) == ("ptq", False)
    assert m.quantization.summary == "int8 symmetric [-127, 127], per-channel"
    assert (m.quantization.calibration.spec, m.quantization.calibration.images) == (None, 32)  # in-memory: not "digits"
    assert (m.metrics.fp32_accuracy, m.metrics.int8_accuracy, m.metrics.sqnr_db) == (0.5, 0.25, 33.5)
    assert m.metrics.accuracy_note == "unlabelled"
    assert (m.eval.images, m.eval.source, m.eval.file, m.eval.labelled) == (40, "digits:eval[:40]", None, False)
    assert (m.preprocessing.mean, m.preprocessing.std) == ([0.5] * 3, [0.5] * 3)
    assert (m.golden.images, m.golden.input, m.golden.output, m.golden.source) == (8, "golden_input.npy", "golden_output.npy", "LiteRT")
    assert (m.plan.file, m.plan.arrays, m.plan.layers) == ("plan.json", "plan.npz", 64)
    assert (m.plan.input.scale, m.plan.output.zero_point) == (0.0078, -41)
    assert set(m.files) == set(INT8_FILES) and m.files["model.c"].sha256 == SHA and m.files["model.c"].bytes == 7
    assert (m.backend_info.kernels, m.backend_info.cpu_features, m.backend_info.model_file) == ("portable", None, None)
    assert m.backend_info.raw["binaries"] == {"native": "model"}  # backend runners still read their own keys


def test_tolerances_are_the_recorded_keys_in_manifest_order():
    """bench's report keeps the target's tolerances as manifest.json records them (sorted keys, only those set)."""
    assert list(parse(int8_manifest()).tolerances.items()) == [("accuracy_drop_points", 1.0), ("latency_increase", 0.2)]
    assert parse(older_fp32_manifest()).tolerances == {}


def test_an_older_fp32_manifest_gets_the_defaults():
    m = parse(older_fp32_manifest())
    assert m.plan is None and m.quantization.mode == "none" and m.quantization.weights is None
    assert m.quantization.summary == "none"  # no weight quantization to describe: the mode
    assert m.model.builtin == "mobilenet_v1"  # before MobileNetV2, MobileNetV1 was the only built-in
    assert (m.model.checkpoint, m.model.module) == (None, None)
    assert m.quantization.calibration.spec == "digits"  # older artifacts: the bundled digits were the only calibration
    assert (m.metrics.int8_accuracy, m.metrics.sqnr_db) == (None, None)
    assert m.metrics.accuracy_note == "no labelled eval data"
    assert m.eval.labelled is True and m.eval.file is None
    assert (m.preprocessing.mean, m.preprocessing.std) == (None, None)  # the default mapping
    assert m.golden.source is None
    assert m.backend_info.model_file == "model.onnx" and m.backend_info.kernels is None


def test_a_kernel_count_table_is_not_a_kernel_set():
    """OpenVINO records how many primitives of each kind ran, not a kernel set: baselines must not match on it."""
    m = int8_manifest()
    m["backend_info"]["kernels"] = {"jit_avx512_I8": 12}
    assert parse(m).backend_info.kernels is None


def test_manifest_is_frozen_and_raw_is_the_checked_dict():
    raw = int8_manifest()
    m = parse(raw)
    assert m.raw is raw and Manifest.of(m) is m and Manifest.of(raw) == m
    with pytest.raises(AttributeError):
        m.backend = "tvm"


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["model"].update(resolution="32"), "model.resolution is '32'"),
    (lambda m: m.pop("metrics"), "lacks 'metrics'"),
    (lambda m: m.update(backend="tvm"), "is not its target's"),
    (lambda m: m["plan"].update(file="/etc/passwd"), "plan.file names '/etc/passwd'"),
])
def test_a_malformed_manifest_is_refused_as_by_check(edit, words):
    m = int8_manifest()
    edit(m)
    with pytest.raises(ArtifactError) as checked:
        manifest_schema.check(copy.deepcopy(m), "manifest.json")
    with pytest.raises(ArtifactError) as parsed:
        parse(m)
    assert str(parsed.value) == str(checked.value) and words in str(parsed.value)


def _folder(tmp_path):
    """An artifact folder holding the fp32 manifest's files, hashed as compile hashes them."""
    folder = tmp_path / "art"
    folder.mkdir()
    m = older_fp32_manifest()
    for name in m["files"]:
        (folder / name).write_bytes(name.encode())
    del m["files"], m["format"]
    write_manifest(folder, m)
    return folder


def test_load_reads_a_verified_folder(tmp_path):
    folder = _folder(tmp_path)
    m = artifact.load(folder)
    assert m.raw == artifact.verify(folder) == json.loads((folder / "manifest.json").read_text())
    assert m.files["model.onnx"].sha256 == hashlib.sha256(b"model.onnx").hexdigest()
    assert artifact.read(folder) == m


def test_load_refuses_a_modified_file_but_read_does_not_check_files(tmp_path):
    folder = _folder(tmp_path)
    (folder / "model.onnx").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="model.onnx was modified"):
        artifact.load(folder)
    assert artifact.read(folder).backend == "onnxruntime"


@pytest.mark.slow
def test_manifest_of_a_compiled_artifact(small_artifacts):
    folder = small_artifacts("c-host")
    m = artifact.load(folder)
    raw = json.loads((folder / "manifest.json").read_text())
    assert m.raw == raw and m.target.to_json() == raw["target"]
    assert (m.target.name, m.backend, m.model.resolution, m.model.classes) == (
        "c-host", "c", raw["model"]["resolution"], raw["model"]["classes"])
    assert m.plan.layers == raw["plan"]["layers"] and m.metrics.sqnr_db == raw["metrics"]["int8_vs_fp32"]["sqnr_db"]
    assert m.backend_info.kernels == raw["backend_info"]["kernels"] and m.quantization.mode == raw["quantization"]["mode"]
    assert {name: (e.sha256, e.bytes) for name, e in m.files.items()} == {
        name: (e["sha256"], e["bytes"]) for name, e in raw["files"].items()}
