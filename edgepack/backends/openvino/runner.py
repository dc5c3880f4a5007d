"""bench's Runner for OpenVINO artifacts: the IR on the target's device, or the one bench --device names."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.backends.openvino.inference import describe_layers, infer_all, layer_precisions, load, one_line
from edgepack.backends.openvino.spec import DEVICES, NPU_BLOB, OpenVinoSpec
from edgepack.errors import ToolchainError


class Runner(runner.Runner):
    """Runs the IR on an OpenVINO device: the target's own, or ``device="cpu"|"npu"`` (bench --device)."""

    OPTIONS = {"device": runner.Option("cpu or npu", lambda v: str(v).lower(), choices=tuple(DEVICES))}

    def __init__(self, folder: Path, manifest: dict, device: str | None = None):
        import openvino as ov

        super().__init__(folder, manifest)
        info, spec = manifest["backend_info"], OpenVinoSpec.from_json(manifest["target"])
        built_for = info["device"]
        self.core = ov.Core()
        name = DEVICES[device.lower()] if device else built_for
        if name == "NPU" and "NPU" not in self.core.available_devices:
            why = f"at compile: {one_line(info['npu_error'])}" if info.get("npu_error") else "no NPU in Core().available_devices"
            raise ToolchainError(f"{spec.name} artifact {Path(folder).name}: npu {info.get('npu', 'not compiled')}, "
                                 f"and OpenVINO finds no NPU here ({why}): pass --device cpu to bench the same IR on the CPU")
        self.config = spec.device_config(name)
        self.model = self.core.read_model(Path(folder) / info["model_file"])
        blob = Path(folder) / info.get("npu_blob", NPU_BLOB)
        if name == "NPU" and info.get("npu") == "compiled" and blob.is_file():
            start = time.perf_counter()
            self.compiled = self.core.import_model(blob.read_bytes(), "NPU", self.config)
            self.load_ms = (time.perf_counter() - start) * 1e3
        else:
            self.compiled, self.load_ms = load(self.core, self.model, name, self.config)
        self.name = name
        self.device = f"OpenVINO {name}" + (" (--device cpu: the artifact targets the NPU, which did not run)"
                                            if name == "CPU" and built_for == "NPU" else "")
        self.request = self.compiled.create_infer_request()

    def logits(self, images: np.ndarray) -> np.ndarray:
        return infer_all(self.compiled, images)

    def time_one(self, image: np.ndarray):
        import openvino as ov

        self.input = ov.Tensor(np.ascontiguousarray(image[None], np.float32))  # kept alive: the tensor shares its memory
        self.request.set_input_tensor(self.input)
        return self.request.infer

    def details(self) -> dict:
        """Compile (load) time and the layers that executed in int8, as benchmark_app reports them."""
        layers = layer_precisions(self.core, self.model, self.name, self.config,
                                  np.zeros(tuple(self.compiled.inputs[0].shape)[1:], np.float32))
        return {"compile_load_ms": round(self.load_ms, 2), "layers": layers, "summary": describe_layers(layers)}
