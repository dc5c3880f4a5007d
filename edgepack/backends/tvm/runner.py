"""Run a TVM artifact on the device the Runner chooses once: the library in a Relax VM loaded through a
session, of this process or of a board over TVM RPC (direct server or tracker + key) - one code path, as
tvmc's runner - or the C++ runner under qemu-aarch64 (no Python on the 'device': a cost figure)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from edgepack import devices
from edgepack.backends import runner
from edgepack.backends.tvm import rpc_client, toolchain
from edgepack.backends.tvm.spec import TvmSpec
from edgepack.devices import mca, qemu
from edgepack.errors import ArtifactError, ConfigError, DeviceError, ToolchainError
from edgepack.plan.golden import load_npy
from edgepack.plan.plan import QParams
from edgepack.validate import check_rpc_address, check_timeout

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
    return TvmSpec.from_json(target).qemu_cpu


def run_on_qemu(library: Path, arch: str, cpu: str, batch: np.ndarray, outputs: int, *, threads: int | None = None,
                count: bool = False, timeout: float = 120.0, fix: str | None = None,
                blocks: bool = False) -> tuple[np.ndarray, qemu.UserRun]:
    """The C++ runner on ``batch`` (int8 or float32, NCHW, or (N, F) vectors) under qemu-user with the exact ``cpu``: what
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
        n, c, h, w = (*batch.shape, 0, 0)[:4]  # a batch of vectors (N, F): the runner's H = W = 0
        r = qemu.run_user(["./runner", "./model.so", "in.bin", "out.bin", n, c, h, w, outputs, batch.dtype.name], cpu=cpu,
                          count=count, blocks=blocks, timeout=timeout, cwd=tmp, inherit_env=False,
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
    if golden.exists():  # load_npy: a damaged file is one line, exit 2
        return int(load_npy(golden, mmap=True).shape[-1])
    return int(manifest["model"]["classes"])  # an artifact without golden files (never written by compile)


def _rpc_address(text: str) -> str:
    check_rpc_address(text)
    return text


class LocalSession:
    """This process as the board (tvmc's LocalSession): the library is loaded in place, calls run directly.
    Host-clock latency (Runner.time_one) is a latency here."""

    remote_clock = False

    def __init__(self):
        import tvm

        use_all_cores()
        self.dev = tvm.cpu()

    def call(self, what: str, fn, *args):
        return fn(*args)

    def load(self, library: Path):
        import tvm

        return tvm.runtime.load_module(str(library))


class RemoteSession:
    """A board over TVM RPC (edgepack's rpc_client.Session: every wait bounded by the timeout); it times
    the model with its own clock (time_evaluator)."""

    remote_clock = True

    def __init__(self, address: str, key: str | None, timeout: float, device: str):
        host, port = check_rpc_address(address)
        server = rpc_client.request_server(host, port, key, timeout) if key else (host, port, "")
        # tvm is imported only now (by Session): a wrong tracker address fails without this 2 s import
        self.session = rpc_client.Session(*server, timeout=timeout, device=device)
        self.call, self.dev = self.session.call, self.session.remote.cpu()

    def load(self, library: Path):
        self.call("uploading the library", self.session.remote.upload, str(library))
        return self.call("loading the library", self.session.remote.load_module, library.name)


class VM:
    """The artifact's library in a Relax VM on ``session``'s device: the same steps wherever it runs."""

    def __init__(self, session, library: Path, name: str):
        from tvm import relax

        self.session, self.name, self.dev = session, name, session.dev
        try:
            self.vm = session.call("starting the VM", relax.VirtualMachine, session.load(library), self.dev)
        except DeviceError:
            raise
        except Exception as e:  # the board refused the library (wrong architecture, missing runtime, ...)
            raise DeviceError(f"{name} could not load {library.name} ({rpc_client.first_line(e)}): "
                              "check that the artifact's target matches the board")

    def run(self, batch: np.ndarray) -> np.ndarray:
        import tvm

        def infer(x):
            return self.vm["main"](tvm.runtime.tensor(x[None], device=self.dev)).numpy()

        try:
            return np.concatenate([self.session.call("running the model", infer, x) for x in batch])
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"{self.name} failed while running ({type(e).__name__}): check the device and retry")

    def time_one(self, x: np.ndarray):
        """A callable for the host timer, when the host clock is the device's (a local session)."""
        if self.session.remote_clock:
            return None
        import tvm

        tensor, fn = tvm.runtime.tensor(x, device=self.dev), self.vm["main"]
        return lambda: fn(tensor)

    def device_latency(self, x: np.ndarray, count: int) -> dict:
        """Timed on the board with its own clock (time_evaluator), as tvmc did."""
        import tvm

        def measure():
            tensor = tvm.runtime.tensor(x, device=self.dev)
            return self.vm.time_evaluator("main", self.dev, number=1, repeat=count, min_repeat_ms=0)(tensor).results

        try:
            ms = np.array(self.session.call("timing the model", measure)) * 1e3
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"{self.name} failed while timing ({type(e).__name__}): check the device and retry")
        return {"count": len(ms), "duration_s": float(ms.sum() / 1e3), "median_ms": float(np.median(ms)),
                "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
                "p90_ms": float(np.percentile(ms, 90)), "throughput_fps": float(1e3 / ms.mean()), "first_inference_ms": None}

    def cost(self, folder: Path, plan_q: bool, timeout: float) -> dict | None:
        return None


class QemuUser:
    """The C++ runner under qemu-user with the board's exact CPU: outputs and an instruction count, no latency."""

    mca_cpu: str | None = None  # llvm-mca's -mcpu for the cycle estimate ([board] mca_cpu), else the qemu CPU

    def __init__(self, library: Path, arch: str, cpu: str | None, outputs: int, timeout: float, folder: Path,
                 target: str):
        devices.require(f"qemu-{arch}", "qemu-user", devices.SETUP)
        if cpu is None:
            raise ArtifactError(f"artifact {folder} records no qemu CPU for its {arch} target "
                                f"{target}: recompile it with this edgepack (the target file names "
                                "the board's CPU in [run] qemu_cpu)")
        toolchain.runner(arch)  # built (or found) now: a missing cross toolchain fails before any run
        self.library, self.arch, self.cpu, self.outputs, self.timeout = library, arch, cpu, outputs, timeout
        self.name, self.dev = f"qemu-{arch}", None

    def _run(self, batch: np.ndarray, **kw):
        return run_on_qemu(self.library, self.arch, self.cpu, batch, self.outputs, timeout=self.timeout,
                           fix="pass a larger --timeout", **kw)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """In runs of IMAGES_PER_RUN images, each bounded by the timeout (--timeout)."""
        return np.concatenate([self._run(batch[i:i + IMAGES_PER_RUN])[0] for i in range(0, len(batch), IMAGES_PER_RUN)])

    def time_one(self, x: np.ndarray):
        return None  # emulated wall-clock is no latency

    def cost(self, folder: Path, plan_q: bool, timeout: float) -> dict:
        """Guest instructions per inference on the board's exact CPU, one thread, counted by edgepack's TCG
        plugin on the first golden image: (run of 3 images - run of 1 image) / 2, so process start-up, library
        loading and the first call's memory-pool set-up cancel out. Deterministic: a baseline can hold it to a
        tight tolerance."""
        image = np.load(folder / "golden_input.npy")[:1].astype(np.int8 if plan_q else np.float32)
        one, three = (self._run(np.repeat(image, n, axis=0), threads=1, count=True, blocks=True)[1] for n in (1, 3))
        if one.instructions is None or three.instructions is None:
            raise DeviceError(f"the QEMU plugin wrote no instruction counts for {self.library.name}: "
                              "rebuild it with `python3 -m edgepack.devices.qemu build`")
        per = (three.instructions - one.instructions) / 2
        vector = (three.vector_instructions - one.vector_instructions) / 2
        return {"instructions_per_inference": round(per),
                "vector_share": round(vector / per, 4) if per > 0 else None,
                "qemu_cpu": self.cpu, "method": COST_METHOD,
                **mca.cost_figures(one.blocks, three.blocks, 2, self.mca_cpu or self.cpu, per)}


class Runner(runner.Runner):
    """Host (Relax VM, host timer), qemu-aarch64 (the C++ runner; a cost figure, no latency) or a board
    over RPC (its own clock): the device is chosen once, here; every run then goes through it."""

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
        self.on = self._choose(rpc, key)
        self.device = self.on.name

    def _choose(self, rpc: str | None, key: str | None):
        if rpc:
            name = f"rpc {rpc}" + (f" key {key}" if key else "")
            return VM(RemoteSession(rpc, key, self.timeout, name), self.library, name)
        if self.info["arch"] == toolchain.HOST_ARCH:
            return VM(LocalSession(), self.library, "host")
        spec = TvmSpec.from_json(self.manifest["target"])
        on = QemuUser(self.library, self.info["arch"], spec.qemu_cpu, self.outputs, self.timeout, self.folder, spec.name)
        on.mca_cpu = (self.manifest["target"].get("board") or {}).get("mca_cpu") or spec.qemu_cpu  # llvm-mca's -mcpu
        return on

    def cost(self) -> dict | None:
        """qemu: the instruction count (QemuUser.cost). None elsewhere (host and RPC runs have latencies)."""
        return self.on.cost(self.folder, self.plan_q, self.timeout)

    def details(self) -> dict | None:
        """The kernel set and how many plan layers it ran ("kernels neon: 5 of 7 layers hand-scheduled; generic:
        maxpool x2"), as lower.layer_routes recorded them; None for artifacts without that record."""
        routes = self.info.get("layer_routes")
        if not routes:
            return None
        generic = [r["kind"] for r in routes if r["route"] != "scheduled"]
        kinds = ", ".join(f"{k} x{generic.count(k)}" if generic.count(k) > 1 else k for k in dict.fromkeys(generic))
        mixed = generic and len(generic) < len(routes)  # a generic-route artifact: every layer, nothing to list
        return {"summary": f"kernels {self.info.get('kernels')}: {self.info.get('hand_scheduled')}"
                           + (f"; generic: {kinds}" if mixed else ""), "layer_routes": routes}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.on.run(batch.astype(np.int8 if self.plan_q else np.float32, copy=False))

    def run_int8(self, x: np.ndarray) -> np.ndarray | None:
        """int8 in -> int8 out for integer artifacts (bench then checks bit-exactness); None for fp32 ones."""
        return self._run(x.astype(np.int8)) if self.plan_q else None

    def logits(self, images: np.ndarray) -> np.ndarray:
        return super().logits(images) if self.plan_q else self._run(images.astype(np.float32))

    def time_one(self, image: np.ndarray):
        """Host: a callable for latency_stats. qemu: None (emulated wall-clock is no latency). RPC: see latency()."""
        return self.on.time_one(self._quantize(image[None]))

    def _quantize(self, images):
        if not self.plan_q:
            return images.astype(np.float32)
        return QParams(**self.manifest["plan"]["input"]).quantize(images)

    def latency(self, image: np.ndarray, warmup: int, count: int) -> dict | None:
        """On RPC devices time with the device's own clock (time_evaluator), as tvmc did; on this host
        the host timer over time_one; None under qemu."""
        if isinstance(self.on, VM) and self.on.session.remote_clock:
            return self.on.device_latency(self._quantize(image[None]), count)
        return super().latency(image, warmup, count)
