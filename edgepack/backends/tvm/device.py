"""Run a TVM artifact: on this host (Relax VM), under qemu-aarch64 (the C++ runner, no Python on
the 'device'), or on a board over TVM RPC (direct server or tracker + key, as tvmc did)."""
from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import numpy as np

from edgepack import devices
from edgepack.devices import qemu
from edgepack.backends import runner
from edgepack.backends.tvm import toolchain
from edgepack.errors import ArtifactError, ConfigError, DeviceError, ToolchainError
from edgepack.validate import check_timeout

COST_METHOD = "qemu TCG plugin, (3 images - 1 image) / 2, 1 thread"
IMAGES_PER_RUN = 16  # bench's qemu runs: this many images per run, each run bounded by --timeout


def use_all_cores() -> int:
    """Give TVM's thread pool every core this process may run on, unless TVM_NUM_THREADS is set.

    TVM's runtime starts hardware_concurrency / 2 threads on x86 (it assumes hyper-threading):
    on this 2-core host that is one thread, half the speed, while ONNX Runtime uses both. Must
    run before the first parallel kernel in the process; child processes (RPC servers) inherit it.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    return int(os.environ["TVM_NUM_THREADS"])


def qemu_cpu(target: dict) -> str | None:
    """The board's exact CPU for qemu-user: [run] qemu_cpu of the target file (recorded in the manifest).
    Never qemu's default `max`, which has extensions (SDOT, I8MM, SVE) the board may lack."""
    cpu = (target.get("run") or {}).get("qemu_cpu")
    return cpu if isinstance(cpu, str) and cpu else None


def run_on_qemu(library: Path, arch: str, cpu: str, batch: np.ndarray, outputs: int, *, threads: int | None = None,
                count: bool = False, timeout: float = 120.0, fix: str | None = None) -> tuple[np.ndarray, qemu.UserRun]:
    """The C++ runner on ``batch`` (int8 or float32, NCHW) under qemu-user with the exact ``cpu``: what
    bench, the compile's verification and the cost figure all run; ``outputs`` values per image (the
    artifact's output size, see output_size). ``threads`` sets TVM_NUM_THREADS
    (default: this process's TVM_NUM_THREADS, else TVM's choice). The run may last ``timeout`` seconds
    (``fix``: what the timeout message tells the user to do).

    The guest always sees the same argv strings (runner, library and data linked under fixed names in a
    temporary folder) and no other environment: its initial stack, and so the instruction count, does
    not depend on where the artifact lies or on the caller's variables (they shifted it by ~0.2%)."""
    if arch != "aarch64":
        raise ToolchainError(f"edgepack runs only aarch64 libraries under qemu-user, not {arch}: use an RPC board")
    exe = toolchain.runner(arch)
    threads = threads or os.environ.get("TVM_NUM_THREADS")
    with devices.run_folder() as folder:
        tmp = str(folder)
        np.ascontiguousarray(batch).tofile(folder / "in.bin")
        os.symlink(Path(exe).absolute(), folder / "runner")
        os.symlink(Path(library).absolute(), folder / "model.so")
        n, c, h, w = batch.shape
        r = qemu.run_user(["./runner", "./model.so", "in.bin", "out.bin", n, c, h, w, outputs, batch.dtype.name], cpu=cpu,
                          count=count, timeout=timeout, cwd=tmp, inherit_env=False,
                          env={"TVM_NUM_THREADS": threads} if threads else None,
                          what=f"{Path(library).name} under qemu-{arch} -cpu {cpu} on {n} image{'s' if n != 1 else ''}",
                          fix=fix)
        failure = r.failure(cpu)
        if failure:
            fix = (f"compile for the {cpu} (a target whose tvm_target enables no feature the board lacks, such as +dotprod)"
                   if r.returncode == -signal.SIGILL else "recompile the artifact with this edgepack")
            raise DeviceError(f"{Path(library).name} under qemu-{arch} -cpu {cpu} {failure}; {fix}")
        if not (folder / "out.bin").is_file():
            raise DeviceError(f"{Path(library).name} under qemu-{arch} -cpu {cpu} exited 0 but wrote no out.bin in its "
                              f"run folder {folder}: recompile the artifact with this edgepack")
        return np.fromfile(folder / "out.bin", batch.dtype).reshape(n, outputs), r


def output_size(folder: Path, manifest: dict) -> int:
    """Values per output row, from what the artifact itself records (its golden output, whose
    shape the plan or fp32 model produced), never from the config's class count."""
    golden = Path(folder) / "golden_output.npy"
    if golden.exists():
        from edgepack.plan.golden import load_npy  # a damaged file: one line, exit 2
        return int(load_npy(golden, mmap=True).shape[-1])
    return int(manifest["model"]["classes"])  # an artifact without golden files (never written by compile)


def _rpc_address(text: str) -> str:
    from edgepack.validate import check_rpc_address

    check_rpc_address(text)
    return text


class Runner(runner.Runner):
    """Host (Relax VM, host timer), qemu-aarch64 (the C++ runner; a cost figure, no latency) or a board
    over RPC (its own clock)."""

    OPTIONS = {
        "rpc": runner.Option("HOST:PORT of a TVM RPC server, or of the tracker with --key", _rpc_address),
        "key": runner.Option("the device key to request from the RPC tracker (e.g. rpi4)"),
        "timeout": runner.Option("seconds any one device program run or wait on the board may last, > 0", check_timeout),
    }

    def __init__(self, folder: Path, manifest: dict, rpc: str | None = None, key: str | None = None,
                 timeout: float = 120.0):
        super().__init__(folder, manifest)
        if key and not rpc:
            raise ConfigError(f"--key {key} names a board at an RPC tracker: pass --rpc TRACKER_HOST:PORT with it, "
                              "or drop --key")
        self.folder, self.info = Path(folder), manifest["backend_info"]
        self.manifest, self.timeout = manifest, check_timeout(timeout)
        self.plan_q = manifest["plan"] is not None
        self.library = self.folder / self.info["library"]
        self.outputs = output_size(self.folder, manifest)
        if rpc:
            self.device = f"rpc {rpc}" + (f" key {key}" if key else "")
            self.mode, self.vm, self.dev = "rpc", *self._connect(rpc, key)
        elif self.info["arch"] == toolchain.HOST_ARCH:
            import tvm
            from tvm import relax

            use_all_cores()
            self.mode, self.dev = "host", tvm.cpu()
            self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library)), self.dev)
            self.device = "host"
        else:
            self.mode, self.device = "qemu", f"qemu-{self.info['arch']}"
            self.qemu = devices.require(f"qemu-{self.info['arch']}", "qemu-user", devices.SETUP)
            self.qemu_cpu = qemu_cpu(manifest["target"])
            if self.qemu_cpu is None:
                raise ArtifactError(f"artifact {self.folder} records no qemu CPU for its {self.info['arch']} target "
                                    f"{manifest['target']['name']}: recompile it with this edgepack (the target file names "
                                    "the board's CPU in [run] qemu_cpu)")
            self.exe = toolchain.runner(self.info["arch"])

    # -- RPC -------------------------------------------------------------------------------
    def _connect(self, address: str, key: str | None):
        """Open the session (through the tracker when there is a key) and load the library on the
        board; each step waits at most ``self.timeout`` seconds (rpc_client says how)."""
        from edgepack.backends.tvm import rpc_client
        from edgepack.validate import check_rpc_address, check_timeout

        host, port = check_rpc_address(address)
        self.timeout = check_timeout(self.timeout)
        server = rpc_client.request_server(host, port, key, self.timeout) if key else (host, port, "")
        from tvm import relax  # after the tracker: a wrong address fails without this 2 s import

        self.session = rpc_client.Session(*server, timeout=self.timeout, device=self.device)
        remote, call = self.session.remote, self.session.call
        try:
            call("uploading the library", remote.upload, str(self.library))
            rlib = call("loading the library", remote.load_module, self.library.name)
            dev = remote.cpu()
            return call("starting the VM", relax.VirtualMachine, rlib, dev), dev
        except DeviceError:
            raise
        except Exception as e:  # the board refused the library (wrong architecture, missing runtime, ...)
            raise DeviceError(f"{self.device} could not load {self.library.name} ({rpc_client.first_line(e)}): "
                              "check that the artifact's target matches the board")

    # -- execution -------------------------------------------------------------------------
    def _run_vm(self, batch: np.ndarray) -> np.ndarray:
        import tvm

        def infer(x):
            return self.vm["main"](tvm.runtime.tensor(x[None], device=self.dev)).numpy()

        if self.mode == "rpc":
            infer = functools.partial(self.session.call, "running the model", infer)
        try:
            return np.concatenate([infer(x) for x in batch])
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"{self.device} failed while running ({type(e).__name__}): check the device and retry")

    def _run_qemu(self, batch: np.ndarray) -> np.ndarray:
        """In runs of IMAGES_PER_RUN images, each bounded by the timeout (--timeout)."""
        dtype = np.int8 if self.plan_q else np.float32
        batch = batch.astype(dtype, copy=False)
        return np.concatenate([run_on_qemu(self.library, self.info["arch"], self.qemu_cpu, batch[i:i + IMAGES_PER_RUN],
                                           self.outputs, timeout=self.timeout, fix="pass a larger --timeout")[0]
                               for i in range(0, len(batch), IMAGES_PER_RUN)])

    def cost(self) -> dict | None:
        """qemu: guest instructions per inference on the board's exact CPU, one thread, counted by edgepack's
        TCG plugin on the first golden image: (run of 3 images - run of 1 image) / 2, so process start-up,
        library loading and the first call's memory-pool set-up cancel out. Deterministic: a baseline can
        hold it to a tight tolerance. None elsewhere (host and RPC runs have latencies)."""
        if self.mode != "qemu":
            return None
        image = np.load(self.folder / "golden_input.npy")[:1].astype(np.int8 if self.plan_q else np.float32)
        one, three = (run_on_qemu(self.library, self.info["arch"], self.qemu_cpu, np.repeat(image, n, axis=0), self.outputs,
                                  threads=1, count=True, timeout=self.timeout, fix="pass a larger --timeout")[1]
                      for n in (1, 3))
        if one.instructions is None or three.instructions is None:
            raise DeviceError(f"the QEMU plugin wrote no instruction counts for {self.library.name}: "
                              "rebuild it with `python3 -m edgepack.devices.qemu build`")
        per = (three.instructions - one.instructions) / 2
        vector = (three.vector_instructions - one.vector_instructions) / 2
        return {"instructions_per_inference": round(per),
                "vector_share": round(vector / per, 4) if per > 0 else None,
                "qemu_cpu": self.qemu_cpu, "method": COST_METHOD}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._run_qemu(batch) if self.mode == "qemu" else self._run_vm(batch)

    def run_int8(self, x: np.ndarray) -> np.ndarray | None:
        """int8 in -> int8 out for integer artifacts (bench then checks bit-exactness); None for fp32 ones."""
        return self._run(x.astype(np.int8)) if self.plan_q else None

    def logits(self, images: np.ndarray) -> np.ndarray:
        return super().logits(images) if self.plan_q else self._run(images.astype(np.float32))

    def time_one(self, image: np.ndarray):
        """Host: a callable for latency_stats. qemu: None (emulated wall-clock is no latency). RPC: see latency()."""
        if self.mode != "host":
            return None
        import tvm

        x = tvm.runtime.tensor(self._quantize(image[None]), device=self.dev)
        fn = self.vm["main"]
        return lambda: fn(x)

    def _quantize(self, images):
        if not self.plan_q:
            return images.astype(np.float32)
        from edgepack.plan.plan import QParams

        return QParams(**self.manifest["plan"]["input"]).quantize(images)

    def latency(self, image: np.ndarray, warmup: int, count: int) -> dict | None:
        """On RPC devices time with the device's own clock (time_evaluator), as tvmc did; on this host
        the host timer over time_one; None under qemu."""
        if self.mode != "rpc":
            return super().latency(image, warmup, count)
        import tvm

        def measure():
            x = tvm.runtime.tensor(self._quantize(image[None]), device=self.dev)
            return self.vm.time_evaluator("main", self.dev, number=1, repeat=count, min_repeat_ms=0)(x).results

        try:
            ms = np.array(self.session.call("timing the model", measure)) * 1e3
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"{self.device} failed while timing ({type(e).__name__}): check the device and retry")
        return {"count": len(ms), "duration_s": float(ms.sum() / 1e3), "median_ms": float(np.median(ms)),
                "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
                "p90_ms": float(np.percentile(ms, 90)), "throughput_fps": float(1e3 / ms.mean()), "first_inference_ms": None}
