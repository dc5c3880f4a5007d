"""What a target file says about the OpenVINO backend, read once into typed values with their defaults
(``OpenVinoSpec.from_target(target)`` at compile, ``OpenVinoSpec.from_json(manifest["target"])`` at bench).

  [compiler]  batch (default 1: a static input shape), compress_to_fp16 (default false)
  [run]       device = "CPU" (default) | "NPU", threads (CPU inference threads),
              [run.cpu] / [run.npu]: OpenVINO properties for that device
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.targets import Target

MODEL_XML, MODEL_BIN, NPU_BLOB = "model.xml", "model.bin", "model.npu.blob"  # what lower writes
DEVICES = {"cpu": "CPU", "npu": "NPU"}  # bench --device -> the OpenVINO device; [run] device is one of the values

@dataclass(frozen=True)
class OpenVinoSpec:
    name: str
    device: str = "CPU"  # the device the artifact is built for (the IR is always verified on the CPU)
    batch: int = 1
    compress_to_fp16: bool = False
    threads: int | None = None
    properties: dict = field(default_factory=dict)  # "cpu" / "npu" -> that device's OpenVINO properties

    @classmethod
    def from_target(cls, target: Target) -> "OpenVinoSpec":
        run = target.run
        return cls(name=target.name, device=run.device or "CPU", batch=target.compiler.batch or 1,
                   compress_to_fp16=bool(target.compiler.compress_to_fp16), threads=run.threads,
                   properties={k: dict(v) for k, v in (("cpu", run.cpu), ("npu", run.npu)) if v is not None})

    @classmethod
    def from_json(cls, data: dict) -> "OpenVinoSpec":
        """The spec of the target a manifest records, reading only the keys a run needs (bench has already
        checked the whole target, manifest_schema)."""
        compiler, run = data.get("compiler") or {}, data.get("run") or {}
        return cls(name=str(data.get("name")), device=run.get("device") or "CPU", batch=compiler.get("batch") or 1,
                   compress_to_fp16=bool(compiler.get("compress_to_fp16")), threads=run.get("threads"),
                   properties={k: dict(run[k]) for k in ("cpu", "npu") if isinstance(run.get(k), dict)})

    def device_config(self, device: str) -> dict:
        """OpenVINO properties for ``device`` ("CPU" or "NPU"): its [run.cpu] / [run.npu] table, and on the
        CPU [run] threads as INFERENCE_NUM_THREADS unless the table sets it."""
        config = dict(self.properties.get(device.lower(), {}))
        if device == "CPU" and self.threads is not None:
            config.setdefault("INFERENCE_NUM_THREADS", int(self.threads))
        return config
