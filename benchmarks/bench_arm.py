"""edgepack's ARM artifacts vs ONNX Runtime and LiteRT, as instructions per inference under qemu-aarch64.

One run, same model (MobileNetV1, default 0.75-224 int8), same input image, one thread, every engine
under `qemu-aarch64 -cpu C` with the board's exact CPU C (cortex-a72: Raspberry Pi 4, cortex-a76:
Pi 5, cortex-a53: Pi 3 / generic A53):

- edgepack rpi4 (default int8 kernels), rpi4 with EDGEPACK_TVM_INT8_KERNELS=generic at compile, rpi5
  and arm64-a53: the artifact's C++ runner, TVM_NUM_THREADS=1;
- ONNX Runtime (the artifact's qdq.onnx, intra_op_num_threads=1) and LiteRT (the int8 plan written as
  .tflite by edgepack.interop.tflite_export, XNNPACK, num_threads=1), each in an aarch64 CPython that
  this script assembles once under ~/.cache/edgepack/arm-sysroot from Debian arm64 packages
  (`dpkg --add-architecture arm64`, `apt-get download`, `dpkg -x`) and PyPI's aarch64 wheels
  (`pip install --platform ... --target`), run as `qemu-aarch64 -cpu C -L VIEW VIEW/usr/bin/python3.11`.
  qemu 7.2 shows the host's x86 /proc/cpuinfo, on which ORT's cpuinfo parser crashes, and XNNPACK / MLAS
  pick kernels by the core's MIDR: each CPU gets a view of the sysroot with its own proc/cpuinfo and
  sys/devices/system/cpu/{possible,present,online} (`-L` redirects those paths).

Instructions per inference = (count with 3 inferences - count with 1) / 2, counted by edgepack's QEMU
TCG plugin (edgepack.devices.qemu), so start-up, imports and first-run work cancel out. Outputs are checked
against edgepack's numpy reference: edgepack bit-exact, peers by top-1 and max |diff| in int8 steps.

    python benchmarks/bench_arm.py [--alpha 0.75] [--resolution 224] [--json F] [--cpus cortex-a72,...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgepack.devices import qemu
from edgepack.errors import DeviceError, ToolchainError

HERE = Path(__file__).resolve().parent
GUEST_SCRIPT = HERE / "bench_arm_guest.py"
SYSROOT = qemu.cache_dir() / "arm-sysroot"
PYTHON = "python3.11"  # Debian bookworm's, the CPython the cp311 aarch64 wheels are built for
DEBIAN_PACKAGES = [  # python3.11 and the shared libraries its stdlib extensions and the wheels load
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6",
    "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libuuid1", "libcrypt1",
]
# bookworm's glibc is 2.36: every manylinux tag up to it (pip 23 matches --platform tags literally)
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]
# /proc/cpuinfo of each board (4 cores); MIDR fields as the Linux kernel prints them
CPUS = {
    "cortex-a72": ("0x0", "0xd08", 3, "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": ("0x4", "0xd0b", 1, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                                      "asimdrdm lrcpc dcpop asimddp"),
    "cortex-a53": ("0x0", "0xd03", 4, "fp asimd evtstrm crc32 cpuid"),
}
CORES = 4
# edgepack rows: (row name, target, EDGEPACK_TVM_INT8_KERNELS at compile or None)
EDGEPACK_ROWS = [
    ("edgepack rpi4", "rpi4", None),
    ("edgepack rpi4 generic", "rpi4", "generic"),
    ("edgepack rpi5", "rpi5", None),
    ("edgepack arm64-a53", "arm64-a53", None),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- the aarch64 Python sysroot ------------------------------------------------------------------------

def peer_versions() -> dict[str, str]:
    """The wheels to install: the versions this host runs, so host and emulated peers are the same code."""
    return {name: metadata.version(name) for name in ("numpy", "onnxruntime", "ai-edge-litert")}


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolchainError(f"{what} failed ({' '.join(cmd[:4])} ...: {tail[0][:300]}): see the command and retry")
    return r


def _arm64_apt() -> None:
    """Make `apt-get download PKG:arm64` work: the arm64 architecture and its package lists."""
    if "arm64" not in subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split():
        if os.geteuid() != 0:
            raise ToolchainError("the aarch64 sysroot needs Debian's arm64 packages: run once as root "
                                 "`dpkg --add-architecture arm64 && apt-get update`")
        _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    if subprocess.run(["apt-cache", "show", f"{DEBIAN_PACKAGES[0]}:arm64"], capture_output=True).returncode:
        if os.geteuid() != 0:
            raise ToolchainError("apt has no arm64 package lists: run `apt-get update` as root")
        _run(["apt-get", "update"], "apt-get update")


def _cpuinfo(cpu: str) -> str:
    variant, part, revision, features = CPUS[cpu]
    block = (f"BogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             f"CPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(CORES))


def _make_view(base: Path, view: Path, cpu: str) -> None:
    """VIEW/{usr,lib,etc,...} -> base, plus this CPU's proc/cpuinfo and sys/devices/system/cpu files."""
    view.mkdir(parents=True)
    for entry in sorted(base.iterdir()):
        if entry.name not in ("proc", "sys"):
            (view / entry.name).symlink_to(os.path.relpath(entry, view))
    (view / "proc").mkdir()
    (view / "proc" / "cpuinfo").write_text(_cpuinfo(cpu))
    cpu_dir = view / "sys" / "devices" / "system" / "cpu"
    cpu_dir.mkdir(parents=True)
    for name in ("possible", "present", "online"):
        (cpu_dir / name).write_text(f"0-{CORES - 1}\n")


def sysroot(root: Path = SYSROOT) -> dict:
    """The aarch64 Python sysroot, assembled once (10 s here, plus an `apt-get update` the first time;
    250 MB) and reused while its recipe (Debian packages, wheel versions, CPU files) is unchanged.
    Returns its description."""
    recipe = {"debian": DEBIAN_PACKAGES, "wheels": peer_versions(), "platforms": WHEEL_PLATFORMS,
              "cpus": {cpu: _cpuinfo(cpu) for cpu in CPUS}}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    done = root / key / "recipe.json"
    if done.exists():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    log(f"assembling the aarch64 Python sysroot in {root / key} (once) ...")
    _arm64_apt()
    root.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        debs, base = build / "debs", build / "base"
        debs.mkdir()
        _run(["apt-get", "download", *[f"{p}:arm64" for p in DEBIAN_PACKAGES]], "apt-get download", cwd=debs)
        versions = {}
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(base)], f"dpkg -x {deb.name}")
            name, version = deb.name.split("_")[:2]
            versions[name] = version.replace("%3a", ":")  # the epoch, URL-encoded in file names
        t1 = time.perf_counter()
        wheels = [f"{name}=={version}" for name, version in recipe["wheels"].items()]
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
              *[f"--platform={p}" for p in WHEEL_PLATFORMS], "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
              "--abi", "cp311", "--target", str(base / "site"), *wheels], "pip install of the aarch64 wheels")
        # byte-compile now (host CPython 3.11 writes the same .pyc format) so no measured run compiles
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(base / "usr" / "lib" / PYTHON),
                        str(base / "site")], capture_output=True)
        for cpu in CPUS:
            _make_view(base, build / cpu, cpu)
        info = {"key": key, "path": str(root / key), "debian": versions, "wheels": recipe["wheels"],
                "assembly_s": {"debian": round(t1 - t0, 1), "wheels": round(time.perf_counter() - t1, 1)}}
        shutil.rmtree(debs)
        (build / "recipe.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        os.replace(build, root / key)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log(f"sysroot ready in {time.perf_counter() - t0:.0f} s")
    _smoke_test(root / key)
    return json.loads(done.read_text())


def guest_env(base: Path) -> dict:
    """The emulated Python's environment: our wheels only, no host library paths, reproducible hashing,
    one thread everywhere (numpy's OpenBLAS would start one per core)."""
    return {"PYTHONPATH": str(base / "site"), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "LD_LIBRARY_PATH": None, "LD_PRELOAD": None,
            "PYTHONHOME": None, "PYTHONSTARTUP": None}


def guest_python(root: Path, cpu: str, args: list, *, count: bool, timeout: float = 3600) -> qemu.UserRun:
    """`qemu-aarch64 -cpu CPU -L VIEW VIEW/usr/bin/python3.11 -S ARGS`; -S: no site module, so none of
    the host's /usr/lib/python3/dist-packages (x86) joins sys.path."""
    view = root / cpu
    return qemu.run_user([view / "usr" / "bin" / PYTHON, "-S", *args], cpu=cpu, sysroot=str(view), count=count,
                         env=guest_env(root / "base"), timeout=timeout)


def _smoke_test(root: Path) -> None:
    t0 = time.perf_counter()
    r = guest_python(root, "cortex-a72", ["-c", "import numpy, onnxruntime, ai_edge_litert.interpreter; "
                                                "print(numpy.__version__, onnxruntime.__version__)"], count=False)
    if r.returncode:
        raise ToolchainError(f"the aarch64 Python in {root} cannot import its wheels ({r.failure('cortex-a72')}): "
                             f"delete {root} and rerun")
    log(f"aarch64 Python imports numpy {r.stdout.split()[0]}, onnxruntime {r.stdout.split()[1]} "
        f"and LiteRT under qemu in {time.perf_counter() - t0:.0f} s")


# ---- artifacts, the .tflite and the input -------------------------------------------------------------

def compile_artifacts(work: Path, alpha: float, resolution: int, eval_size: int, cpus: list[str], reuse: bool,
                      timeout: float) -> dict[str, dict]:
    """edgepack compile of each edgepack row whose board CPU is benchmarked: {row: {folder, seconds} or {error}}."""
    from edgepack.targets import get_target

    out = {}
    for row, target, kernels in EDGEPACK_ROWS:
        cpu = get_target(target).run.qemu_cpu
        if cpu not in cpus:
            continue
        folder = work / row.replace("edgepack ", "").replace(" ", "-")
        if reuse and (folder / "manifest.json").exists():
            out[row] = {"folder": folder, "cpu": cpu, "seconds": None}
            continue
        env = {**os.environ, "EDGEPACK_PROGRESS": "off"}
        env.pop("EDGEPACK_TVM_INT8_KERNELS", None)
        if kernels:
            env["EDGEPACK_TVM_INT8_KERNELS"] = kernels
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "edgepack.cli.main", "compile", "--target", target, "--alpha", str(alpha),
               "--resolution", str(resolution), "--eval-size", str(eval_size), "-o", str(folder)]
        log(f"compiling {row}: {' '.join(cmd[2:])}" + (f" (EDGEPACK_TVM_INT8_KERNELS={kernels})" if kernels else ""))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            failed = r.returncode != 0
        except subprocess.TimeoutExpired:
            r, failed = None, True
        if failed:  # edgepack's one-line error, not a TVM warning printed before it
            lines = [line for line in (r.stderr.strip().splitlines() if r else []) if "Warning" not in line]
            reason = next((line for line in reversed(lines) if line.startswith("edgepack")), lines[-1] if lines else
                          f"timed out after {timeout:g} s" if r is None else f"exit code {r.returncode}")
            out[row] = {"error": f"compile failed: {reason[:300]}", "cpu": cpu}
            log(f"  {out[row]['error']}")
            continue
        out[row] = {"folder": folder, "cpu": cpu, "seconds": round(time.perf_counter() - t0, 1)}
    return out


def check_tflite(plan, model: bytes, x: np.ndarray, want: np.ndarray) -> dict:
    """On this host: LiteRT's reference kernels must give the reference's int8 logits bit for bit;
    the default XNNPACK path requantizes in fp32: how many logits differ, by how much."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    found = {}
    for name, resolver in (("reference_kernels", OpResolverType.BUILTIN_REF), ("xnnpack", OpResolverType.AUTO)):
        interpreter = Interpreter(model_content=model, experimental_op_resolver_type=resolver, num_threads=1)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        logits = []
        for image in x:
            interpreter.set_tensor(inp, np.ascontiguousarray(image.transpose(1, 2, 0)[None]))
            interpreter.invoke()
            logits.append(interpreter.get_tensor(out)[0].copy())
        diff = np.abs(np.array(logits).astype(int) - want)
        found[name] = {"images": len(x), "logits": int(diff.size), "differ": int((diff != 0).sum()),
                       "max_abs_diff": int(diff.max()),
                       "top1_agree": int((np.array(logits).argmax(1) == want.argmax(1)).sum())}
    if found["reference_kernels"]["differ"]:
        raise DeviceError(f"the .tflite is not bit-exact under LiteRT's reference kernels "
                          f"({found['reference_kernels']['differ']} logits differ): a tflite_export bug")
    return found


# ---- the runs ----------------------------------------------------------------------------------------

@dataclass
class Row:
    engine: str
    cpu: str
    instructions: float | None = None  # per inference
    vector_share: float | None = None
    check: str = ""
    counts: dict = field(default_factory=dict)  # {1: [instructions, vector], 3: [...]}
    error: str | None = None


def _peer_check(engine: str, y: np.ndarray, want: np.ndarray, out_q) -> str:
    q = y.astype(int) if engine == "litert" else np.clip(np.round(y / out_q.scale) + out_q.zero_point, -128, 127).astype(int)
    top1 = "top-1 = reference" if int(np.argmax(y)) == int(np.argmax(want)) else "top-1 DIFFERS"
    steps = int(np.abs(q.reshape(-1) - want.reshape(-1)).max())
    return f"{top1}, logits within {steps} int8 step{'' if steps == 1 else 's'}"


def run_rows(rows: list[Row], tasks: dict, jobs: int, repeats: int) -> dict:
    """tasks[(engine, cpu)] = fn(n) -> (UserRun, output). Runs n=1 and n=3 of every row ``repeats`` times,
    interleaved, ``jobs`` at a time; per inference = (median count of n=3 - median of n=1) / 2, the
    spread of the per-run-pair figures beside it. Returns the n=3 outputs by (engine, cpu).

    Why medians: a Python process's count is not fully reproducible. ONNX Runtime's import alone
    varied by up to 10 M instructions between identical runs (two modes, 450 and 460 M, more under
    host load), which the difference of two runs does not cancel; LiteRT's and edgepack's runs repeat
    to the instruction on a quiet host."""
    def one(row: Row, n: int):
        try:
            return row, n, *tasks[(row.engine, row.cpu)](n), None
        except (DeviceError, ToolchainError) as e:
            return row, n, None, None, str(e)

    outputs, counts = {}, {(r.engine, r.cpu): {1: [], 3: []} for r in rows}
    work = [(r, n) for _ in range(repeats) for r in rows for n in (1, 3)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for row, n, run, y, error in pool.map(lambda a: one(*a), work):
            if row.error:
                continue
            if error or run.failure(row.cpu) or run.instructions is None:
                row.error = error or f"{row.engine} -cpu {row.cpu}: {run.failure(row.cpu) or 'no count'}"
                continue
            counts[(row.engine, row.cpu)][n].append([run.instructions, run.vector_instructions])
            outputs[(row.engine, row.cpu, n)] = y
            log(f"  {row.engine:<24} {row.cpu:<11} x{n}: {run.instructions / 1e6:,.3f} M instructions")
    for row in rows:
        if row.error is None:
            c = counts[(row.engine, row.cpu)]
            (i1, v1), (i3, v3) = (np.median(np.array(c[n]), axis=0) for n in (1, 3))
            row.instructions, row.vector_share = float(i3 - i1) / 2, float(v3 - v1) / max(float(i3 - i1), 1.0)
            pairs = [(b[0] - a[0]) / 2 for a, b in zip(c[1], c[3])]
            row.counts = {"1": c[1], "3": c[3], "per_inference_min_max": [min(pairs), max(pairs)]}
    return {(row.engine, row.cpu): outputs[(row.engine, row.cpu, 3)] for row in rows if row.error is None}


def markdown(rows: list[Row]) -> str:
    lines = ["| engine | CPU | M instructions / inference | x LiteRT | vector share | output check |",
             "|---|---|---:|---:|---:|---|"]
    for row in rows:
        litert = next((r.instructions for r in rows if r.cpu == row.cpu and r.engine.startswith("LiteRT")), None)
        if row.error:
            lines.append(f"| {row.engine} | {row.cpu} | - | - | - | {row.error} |")
            continue
        ratio = f"{row.instructions / litert:.2f}" if litert else "-"
        lines.append(f"| {row.engine} | {row.cpu} | {row.instructions / 1e6:,.1f} | {ratio} | "
                     f"{row.vector_share:.0%} | {row.check} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alpha", type=float, default=0.75)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--eval-size", type=int, default=16, help="eval images of each compile (accuracy is not the point here)")
    ap.add_argument("--cpus", default=",".join(CPUS), help=f"comma-separated, of {', '.join(CPUS)}")
    ap.add_argument("--jobs", type=int, default=1, help="qemu runs at a time (2 makes ONNX Runtime's counts noisier)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each count (the median is taken)")
    ap.add_argument("--work", type=Path, help="artifacts, .tflite and outputs (default /tmp/edgepack-bench-arm/A-R)")
    ap.add_argument("--reuse", action="store_true", help="reuse artifacts already compiled in --work")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per compile or qemu run")
    ap.add_argument("--json", type=Path, help="results file (default WORK/bench_arm.json)")
    ap.add_argument("--sysroot-only", action="store_true", help="assemble the aarch64 Python sysroot and stop")
    args = ap.parse_args()
    cpus = [c for c in args.cpus.split(",") if c]
    if any(c not in CPUS for c in cpus):
        ap.error(f"--cpus: choose from {', '.join(CPUS)}")
    t_start = time.perf_counter()
    root_info = sysroot()
    root = Path(root_info["path"])
    if args.sysroot_only:
        print(json.dumps(root_info, indent=1))
        return
    from edgepack.interop.tflite_export import write_tflite
    from edgepack.plan import reference
    from edgepack.plan.plan import Plan

    work = args.work or Path(tempfile.gettempdir()) / "edgepack-bench-arm" / f"{args.alpha:g}-{args.resolution}"
    work.mkdir(parents=True, exist_ok=True)
    t_compile = time.perf_counter()
    artifacts = compile_artifacts(work, args.alpha, args.resolution, args.eval_size, cpus, args.reuse, args.timeout)
    t_runs = time.perf_counter()
    built = {row: a for row, a in artifacts.items() if "folder" in a}
    if not built:
        raise SystemExit("no edgepack artifact compiled: " + "; ".join(a["error"] for a in artifacts.values()))
    source = Path(next(iter(built.values()))["folder"])  # every artifact holds the same plan and qdq.onnx
    plan_sha = {row: hashlib.sha256((Path(a["folder"]) / "plan.npz").read_bytes()).hexdigest() for row, a in built.items()}
    plan = Plan.load(source)
    golden = np.load(source / "golden_input.npy")
    want_golden = reference.run(plan, golden)
    tflite = write_tflite(plan, work / "model.tflite")
    host_litert = check_tflite(plan, tflite.read_bytes(), golden, want_golden)
    x, want = golden[:1], want_golden[:1]
    np.save(work / "input_nhwc_int8.npy", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.save(work / "input_nchw_float32.npy", plan.input_q.dequantize(x))

    tasks, rows = {}, []

    def edgepack_task(folder: Path, cpu: str):
        from edgepack.backends.tvm.runner import run_on_qemu

        manifest = json.loads((folder / "manifest.json").read_text())
        library = folder / manifest["backend_info"]["library"]

        def run(n: int):
            y, r = run_on_qemu(library, "aarch64", cpu, np.repeat(x, n, 0), manifest["model"]["classes"], threads=1,
                               count=True, timeout=args.timeout)
            return r, y
        return run

    def peer_task(engine: str, cpu: str):
        model = source / "qdq.onnx" if engine == "onnxruntime" else tflite
        inp = work / ("input_nchw_float32.npy" if engine == "onnxruntime" else "input_nhwc_int8.npy")

        def run(n: int):
            out = work / f"out-{engine}-{cpu}-{n}.npy"
            out.unlink(missing_ok=True)
            r = guest_python(root, cpu, [GUEST_SCRIPT, engine, model, inp, n, out], count=True, timeout=args.timeout)
            return r, (np.load(out) if out.exists() and r.returncode == 0 else None)
        return run

    ort_name, litert_name = f"ONNX Runtime {root_info['wheels']['onnxruntime']}", f"LiteRT {root_info['wheels']['ai-edge-litert']} (XNNPACK)"
    for cpu in cpus:
        for row, a in artifacts.items():
            if a["cpu"] == cpu:
                rows.append(Row(row, cpu, error=a.get("error")))
                if "folder" in a:
                    tasks[(row, cpu)] = edgepack_task(Path(a["folder"]), cpu)
        for name, engine in ((ort_name, "onnxruntime"), (litert_name, "litert")):
            rows.append(Row(name, cpu))
            tasks[(name, cpu)] = peer_task(engine, cpu)
    log(f"counting instructions: {len(tasks)} engine/CPU pairs x (1 and 3 inferences) x {args.repeats}, {args.jobs} at a time")
    outputs = run_rows([r for r in rows if r.error is None], tasks, args.jobs, args.repeats)
    for row in rows:
        if row.error is None:
            y = outputs[(row.engine, row.cpu)]
            if row.engine.startswith("edgepack"):
                row.check = "bit-exact" if np.array_equal(y, np.repeat(want, 3, 0)) else \
                    f"NOT bit-exact ({int((y != np.repeat(want, 3, 0)).sum())} logits differ)"
            else:
                row.check = _peer_check("onnxruntime" if row.engine == ort_name else "litert", y, want, plan.output_q)
    t_end = time.perf_counter()
    table = markdown(rows)
    print(f"MobileNetV1 {args.alpha:g}-{args.resolution} int8, qemu-aarch64 -cpu C, 1 thread, 1 image, "
          "(3 inferences - 1) / 2:\n")
    print(table)
    print(f"\n.tflite on this host, {len(golden)} golden images: LiteRT reference kernels bit-exact; XNNPACK "
          f"{host_litert['xnnpack']['differ']} of {host_litert['xnnpack']['logits']} logits differ "
          f"(by at most {host_litert['xnnpack']['max_abs_diff']} int8 step(s))")
    times = {"total_s": round(t_end - t_start, 1), "compile_s": round(t_runs - t_compile, 1),
             "qemu_runs_s": round(t_end - t_runs, 1)}
    print(f"time: {times}")
    result = {"model": {"alpha": args.alpha, "resolution": args.resolution}, "command": " ".join(sys.argv),
              "method": "instructions per inference = (median qemu TCG plugin count with 3 inferences - with 1) / 2 "
                        f"over {args.repeats} runs each, one thread",
              "rows": [asdict(r) for r in rows], "tflite_host_check": host_litert, "sysroot": root_info,
              "artifacts": {row: {k: str(v) for k, v in a.items()} for row, a in artifacts.items()},
              "plan_sha256": plan_sha, "same_plan": len(set(plan_sha.values())) == 1, "times": times, "table": table}
    path = args.json or work / "bench_arm.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    log(f"results in {path}")


if __name__ == "__main__":
    main()
