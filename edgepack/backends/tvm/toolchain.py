"""What the TVM backend needs outside Python: cross compiler, qemu-aarch64, the aarch64 TVM runtime
libraries (from the aarch64 PyPI wheels of the installed apache-tvm / apache-tvm-ffi versions,
downloaded at setup time into the cache, never committed) and the C++ runner built per arch.

    python3 -c "from edgepack.backends.tvm.toolchain import main; main(['fetch'])"    # what scripts/setup.sh runs

(not ``python -m edgepack.backends.tvm.toolchain``: the package imports this module first, so runpy would
run a second copy of it as __main__ and warn.)
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
import zipfile
from pathlib import Path

from edgepack import devices
from edgepack.devices.tools import copy_atomically
from edgepack.errors import ToolchainError

CACHE = devices.cache_dir()  # read at import: tvm/lower.py and benchmarks/bench_tvm.py take tuning records from here
RUNNER_SOURCE = Path(__file__).with_name("runtime") / "runner.cc"
HOST_ARCH = platform.machine()
PACKAGES = {"aarch64": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user", "g++": "g++"}
WHEEL_PLATFORMS = {"aarch64": ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_24_aarch64",
                               "manylinux_2_17_aarch64", "manylinux2014_aarch64")}


def require(tool: str, package: str) -> str:
    """devices.require with the setup-script hint: every tool here is one scripts/setup.sh installs."""
    return devices.require(tool, package, devices.SETUP)


def versions() -> tuple[str, str]:
    import tvm
    import tvm_ffi

    return tvm.__version__, tvm_ffi.__version__


def ffi_dirs() -> tuple[Path, Path]:
    """tvm-ffi C++ headers and dlpack headers from the installed apache-tvm-ffi package."""
    import tvm_ffi

    root = Path(tvm_ffi.__file__).parent
    return root / "include", root / "3rdparty" / "dlpack" / "include"


def runtime_dir(arch: str) -> Path:
    """Folder holding libtvm_runtime.so and libtvm_ffi.so for ``arch``."""
    if arch == HOST_ARCH:
        folder = CACHE / "tvm-runtime" / f"{arch}-host"
        if not ((folder / "libtvm_runtime.so").exists() and (folder / "libtvm_ffi.so").exists()):
            import tvm
            import tvm_ffi

            for lib in (Path(tvm.__file__).parent / "lib" / "libtvm_runtime.so", Path(tvm_ffi.__file__).parent / "lib" / "libtvm_ffi.so"):
                copy_atomically(lib, folder / lib.name)  # a concurrent compile never loads half a library
        return folder
    tvm_v, ffi_v = versions()
    folder = CACHE / "tvm-runtime" / f"{arch}-{tvm_v}-{ffi_v}"
    if not ((folder / "libtvm_runtime.so").exists() and (folder / "libtvm_ffi.so").exists()):
        raise ToolchainError(
            f"the {arch} TVM runtime libraries are not in {folder}: "
            "run scripts/setup.sh, which fetches them (its line: python3 -c \"from edgepack.backends.tvm.toolchain "
            "import main; main(['fetch'])\")")
    return folder


def fetch(arch: str = "aarch64") -> Path:
    """pip download the aarch64 wheels of the installed versions and keep only the two runtime libraries."""
    tvm_v, ffi_v = versions()
    folder = CACHE / "tvm-runtime" / f"{arch}-{tvm_v}-{ffi_v}"
    if (folder / "libtvm_runtime.so").exists() and (folder / "libtvm_ffi.so").exists():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", "-d", tmp]
        for plat in WHEEL_PLATFORMS[arch]:
            cmd += ["--platform", plat]
        done = devices.run_tool(cmd + [f"apache-tvm=={tvm_v}", f"apache-tvm-ffi=={ffi_v}"])
        if done.returncode:
            raise ToolchainError(f"pip could not download the {arch} wheels of apache-tvm {tvm_v} / apache-tvm-ffi "
                                 f"{ffi_v}: {(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}")
        staging = Path(tempfile.mkdtemp(dir=tmp))
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for name in z.namelist():
                    if name.endswith(("/libtvm_runtime.so", "/libtvm_ffi.so")):
                        (staging / Path(name).name).write_bytes(z.read(name))
        if not ((staging / "libtvm_runtime.so").exists() and (staging / "libtvm_ffi.so").exists()):
            raise ToolchainError(f"the {arch} wheels of apache-tvm {tvm_v} / apache-tvm-ffi {ffi_v} lack the runtime libraries")
        for lib in staging.glob("*.so"):  # renamed into place one by one: a bench running meanwhile keeps its copy
            copy_atomically(lib, folder / lib.name)
    return folder


def runner(arch: str) -> Path:
    """The C++ runner for ``arch`` (built once per source/version, next to its runtime libraries)."""
    libs = runtime_dir(arch)
    key = hashlib.sha256(RUNNER_SOURCE.read_bytes() + "".join(versions()).encode()).hexdigest()[:12]
    out = CACHE / "tvm-runner" / f"{arch}-{key}"
    exe = out / "runner"
    if exe.exists():
        return exe
    cxx = require("g++", "g++") if arch == HOST_ARCH else require(f"{arch}-linux-gnu-g++", PACKAGES[arch])
    include, dlpack = ffi_dirs()
    out.mkdir(parents=True, exist_ok=True)
    for lib in libs.glob("*.so"):  # not rewritten in place: another process's runner may have them loaded
        copy_atomically(lib, out / lib.name)
    tmp = out / f"runner.{os.getpid()}"
    cmd = [cxx, "-std=c++17", "-O2", f"-I{include}", f"-I{dlpack}", str(RUNNER_SOURCE), "-o", str(tmp), f"-L{out}",
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN"]
    result = devices.run_tool(cmd)
    if result.returncode:
        raise ToolchainError(f"building the TVM runner for {arch} failed: {result.stderr.strip()[:400]}")
    os.replace(tmp, exe)
    return exe


def main(argv: list[str]) -> None:
    """The setup step: ``main(["fetch"])`` prints the folder of the aarch64 runtime libraries."""
    if argv != ["fetch"]:
        sys.exit("usage: main(['fetch']) from edgepack.backends.tvm.toolchain")
    print(fetch("aarch64"))


if __name__ == "__main__":  # still works (with runpy's warning) for anyone who runs it the old way
    main(sys.argv[1:])
