"""Target files (issue 12 items 4 and 5): typed tables that refuse unknown keys and wrong types, one file
validated at a time, and your own board files beside the built-in ones (--targets DIR, EDGEPACK_TARGETS)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgepack.errors import TargetError, ToolchainError, missing_dependency
from edgepack.targets import BACKENDS, BUILTIN_DIR, catalogue, get_target, parse_target
from tests.conftest import run_cli

BUILTIN = {"host", "rpi4", "rpi5", "arm64-a53", "x86-tvm", "intel-cpu", "intel-npu", "c-host", "cortex-m4", "cortex-m7", "cortex-m55", "tflm"}


def board(folder: Path, name: str, text: str, backend: str = "tvm") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "test board"\nbackend = "{backend}"\n{text}')
    return path


def copy_of(builtin: str, folder: Path, name: str) -> Path:
    """A built-in target file under another name: what a user starts a board file from."""
    text = (BUILTIN_DIR / f"{builtin}.toml").read_text().replace(f'name = "{builtin}"', f'name = "{name}"')
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    return folder / f"{name}.toml"


def test_builtin_targets_are_package_data_and_all_valid():
    found = catalogue()
    assert BUILTIN <= set(found.targets) and not found.broken and not found.overrides
    assert BUILTIN_DIR == Path(__import__("edgepack").__file__).parent / "targets"
    for target in found.targets.values():  # the manifest records exactly what the file says
        data = tomllib.loads(target.path.read_text())
        assert target.to_json() == {k: v for k, v in data.items()}, target.name
    rpi4 = found.targets["rpi4"]
    assert rpi4.compiler.arch == "aarch64" and rpi4.run.qemu_cpu == "cortex-a72" and rpi4.rpc.key == "rpi4"
    assert found.targets["cortex-m4"].toolchain.arch_flags[0] == "-mcpu=cortex-m4"  # lists become tuples
    assert found.targets["host"].budget.flash_bytes is None  # not in the file: the backend's default applies


@pytest.mark.parametrize("table, text, words", [
    ("misspelt key", '[compiler]\nint8_kernel = "neon"\n',
     ["[compiler] has no key 'int8_kernel'", "did you mean 'int8_kernels'?", "valid keys for the tvm backend are",
      "tvm_target, arch, cross_compiler, int8_kernels"]),
    ("wrong type", '[compiler]\ncross_compiler = 3\n', ["[compiler] cross_compiler must be a string, got 3"]),
    ("string for a list", '[compiler]\ntvm_target = "llvm"\n[run]\nqemu_cpu = ["cortex-a72"]\n',
     ["[run] qemu_cpu must be a string, got ['cortex-a72']"]),
    ("bad choice", '[compiler]\nint8_kernels = "sdot"\n',
     ["[compiler] int8_kernels must be one of auto, generic, vnni, neon, got 'sdot'"]),
    ("dead key", '[run]\nemulator = "qemu-aarch64"\n', ["[run] emulator is not read by the tvm backend (only by c): remove it"]),
    ("table of another backend", '[budget]\nflash_bytes = 1024\n', ["[budget] flash_bytes is not read by the tvm backend"]),
    ("misspelt table", '[tolerance]\ncost_increase = 0.01\n', ["unknown field 'tolerance'", "did you mean 'tolerances'?"]),
    ("not a table", 'rpc = "rpi4"\n', ["'rpc' must be a table ([rpc])"]),
    ("bad TOML", '[compiler\n', ["is not valid TOML"]),
])
def test_a_bad_file_is_refused_naming_file_table_and_key(tmp_path, table, text, words):
    path = board(tmp_path, "myboard", text)
    with pytest.raises(TargetError) as e:
        parse_target(path)
    message = str(e.value)
    assert message.startswith(f"target file {path}") and "\n" not in message
    for w in words:
        assert w in message


def test_types_of_the_c_and_openvino_tables(tmp_path):
    for text, words in [('[compiler]\ncflags = "-O2"\n', "[compiler] cflags must be a list of strings, got '-O2'"),
                        ('[compiler]\ncompare_kernels = 1\n', "[compiler] compare_kernels must be true or false, got 1"),
                        ('[budget]\nram_bytes = -4\n', "[budget] ram_bytes must be positive, got -4"),
                        ('[budget]\nram_bytes = 1.5\n', "[budget] ram_bytes must be an integer, got 1.5")]:
        with pytest.raises(TargetError) as e:
            parse_target(board(tmp_path, "mcu", text, backend="c"))
        assert str(e.value) == f"target file {tmp_path / 'mcu.toml'}: {words}"
    npu = '[compiler]\nbatch = 1\n[run]\ndevice = "NPU"\n[run.npu]\nPERFORMANCE_HINT = "LATENCY"\n'
    ok = parse_target(board(tmp_path, "npu", npu, backend="openvino"))
    assert ok.compiler.batch == 1 and ok.run.npu == {"PERFORMANCE_HINT": "LATENCY"}
    assert parse_target(board(tmp_path, "tol", "[tolerances]\ncost_increase = 1\n")).tolerances.cost_increase == 1


def test_a_broken_user_file_names_itself_and_hides_nothing(tmp_path, capsys):
    """`edgepack targets` lists every good target and one stderr line for the broken file (exit 2);
    a good target compiles past it (only its own file is parsed); the broken one fails naming its file."""
    mine = tmp_path / "boards"
    copy_of("c-host", mine, "my-c")
    broken = board(mine, "typo", '[compiler]\nint8_kernel = "neon"\n')
    code, out, err = run_cli(capsys, "targets", "--targets", str(mine))
    assert code == 2
    assert err.splitlines() == [f"edgepack targets: error: target file {broken}: [compiler] has no key 'int8_kernel' "
                                "(did you mean 'int8_kernels'?): valid keys for the tvm backend are tvm_target, arch, "
                                "cross_compiler, int8_kernels"]
    header, *rows = out.splitlines()  # issue 23: a header row names the columns
    assert header.split()[:3] == ["name", "aliases", "backend"]
    listed = {line.split()[0] for line in rows}
    assert listed == BUILTIN | {"my-c"}
    assert f"[{mine / 'my-c.toml'}]" in next(line for line in out.splitlines() if line.startswith("my-c "))
    assert get_target("my-c", [mine]).toolchain.cc == "gcc"
    code, out, err = run_cli(capsys, "compile", "--target", "typo", "--targets", str(mine))
    assert code == 2 and err.splitlines() == [f"edgepack compile: error: target file {broken}: [compiler] has no key "
                                              "'int8_kernel' (did you mean 'int8_kernels'?): valid keys for the tvm "
                                              "backend are tvm_target, arch, cross_compiler, int8_kernels"]


def test_search_order_flag_then_environment_then_builtin(tmp_path, monkeypatch, capsys):
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    board(first, "rpi4", '[compiler]\ntvm_target = "raspberry-pi/4b-aarch64"\narch = "aarch64"\n[run]\nqemu_cpu = "cortex-a53"\n')
    board(second, "rpi4", '[run]\nqemu_cpu = "cortex-a76"\n')
    board(third, "only-env", '[rpc]\nkey = "lab"\n')
    monkeypatch.setenv("EDGEPACK_TARGETS", os.pathsep.join([str(second), "", str(third)]))
    assert get_target("rpi4").run.qemu_cpu == "cortex-a76"  # EDGEPACK_TARGETS before the built-in
    assert get_target("rpi4", [first]).run.qemu_cpu == "cortex-a53"  # --targets before EDGEPACK_TARGETS
    assert get_target("only-env").rpc.key == "lab" and get_target("host").builtin
    found = catalogue([first])
    assert found.overrides["rpi4"] == (second / "rpi4.toml", BUILTIN_DIR / "rpi4.toml")
    code, out, err = run_cli(capsys, "targets", "--targets", str(first))
    assert code == 0 and err == ""
    rpi4 = next(line for line in out.splitlines() if line.startswith("rpi4 "))
    assert rpi4.endswith(f"[{first / 'rpi4.toml'}, overrides {second / 'rpi4.toml'} and the built-in one]")
    monkeypatch.setenv("EDGEPACK_TARGETS", str(tmp_path / "nowhere"))
    code, _, err = run_cli(capsys, "compile", "--target", "host")
    assert code == 2 and err.splitlines() == [f"edgepack compile: error: EDGEPACK_TARGETS {tmp_path / 'nowhere'}: no such "
                                              "folder: pass a folder that holds your target .toml files"]


def test_unknown_target_suggests_and_lists(capsys):
    code, _, err = run_cli(capsys, "compile", "--target", "rpi44")
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown target 'rpi44' (did you mean 'rpi4'?): choose one of arm64-a53, c-host," in err and "--targets DIR" in err


def _pinned(dist: str) -> set[str]:
    """The version specifiers pyproject.toml gives ``dist`` (order-free: the metadata reorders them)."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pinned = next(d for d in pyproject["project"]["dependencies"] if d.startswith(dist))
    return set(pinned[len(dist):].split("#")[0].replace(" ", "").split(","))


@pytest.mark.parametrize("module, dist", [("tvm.relax", "apache-tvm"), ("tvm_ffi", "apache-tvm-ffi"), ("openvino", "openvino"),
                                          ("onnxruntime", "onnxruntime"), ("ai_edge_litert.interpreter", "ai-edge-litert")])
def test_missing_package_names_its_pinned_requirement(module, dist):
    """The pip command is edgepack's own requirement for that distribution (pyproject), not an extra that does not exist."""
    error = missing_dependency(ModuleNotFoundError(f"No module named {module!r}", name=module), "backend 'x'")
    top = module.split(".")[0]
    prefix = f"backend 'x' needs the Python module {top}, which is not installed: pip install '{dist}"
    assert isinstance(error, ToolchainError) and str(error).startswith(prefix) and str(error).endswith("'")
    assert set(str(error)[len(prefix):-1].split(",")) == _pinned(dist)
    assert missing_dependency(ModuleNotFoundError("No module named 'edgepack.nope'", name="edgepack.nope")) is None
    assert missing_dependency(ImportError("cannot import name 'x' from 'tvm'", name="tvm")) is None  # installed, wrong version


def test_cli_missing_package_is_exit_2_with_the_pip_command(tmp_path):
    """A lazily imported dependency missing from the environment: one line and exit 2, never an internal error."""
    blocked = "import sys\nsys.modules['cryptography'] = None\nfrom edgepack.cli.main import main\nsys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", blocked, "keygen", "-o", str(tmp_path / "key")], capture_output=True, text=True,
                       timeout=120)
    prefix = "edgepack keygen: error: edgepack needs the Python module cryptography, which is not installed: pip install 'cryptography"
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and p.stderr.startswith(prefix), p.stderr
    assert set(p.stderr.strip()[len(prefix):-1].split(",")) == _pinned("cryptography")


@pytest.mark.parametrize("command", [["compile", "--target", "my-c"], ["sweep", "--target", "my-c"],
                                     ["tune", "--target", "my-c"], ["targets"]])
def test_every_command_that_takes_a_target_takes_targets_dir(command, tmp_path, capsys, monkeypatch):
    """--targets DIR reaches compile, sweep, tune and targets; a folder that does not exist is one line, exit 2."""
    mine = tmp_path / "boards"
    copy_of("x86-tvm", mine, "my-c")
    code, _, err = run_cli(capsys, *command, "--targets", str(tmp_path / "nope"))
    assert code == 2 and err.splitlines() == [f"edgepack {command[0]}: error: --targets {tmp_path / 'nope'}: no such folder: "
                                              "pass a folder that holds your target .toml files"]
    if command[0] == "targets":
        return
    code, _, err = run_cli(capsys, *command)  # without the folder the user's target is unknown: the flag finds it
    assert code == 2 and "unknown target 'my-c'" in err
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("not a sweep")
    monkeypatch.setenv("EDGEPACK_TUNING_DIR", str(tmp_path / "tuning"))
    past_the_target = {"compile": ["-o", str(tmp_path / "project")], "sweep": ["-o", str(tmp_path / "project")],
                       "tune": ["--retarget-from", "my-c"]}[command[0]]  # each stops at its next check, before any work
    code, _, err = run_cli(capsys, *command, "--targets", str(mine), *past_the_target)
    assert code == 2 and len(err.splitlines()) == 1 and "unknown target" not in err
    assert {"compile": "not an edgepack artifact", "sweep": "not an edgepack sweep",
            "tune": f"no tuning records for my-c in {tmp_path / 'tuning' / 'my-c'}"}[command[0]] in err


# ---------------------------------------------------------------- each backend's typed spec

def _backend_specs():
    from edgepack.backends.c.spec import BuildSpec
    from edgepack.backends.openvino.spec import OpenVinoSpec
    from edgepack.backends.tvm.spec import TvmSpec

    return {"c": BuildSpec, "tvm": TvmSpec, "openvino": OpenVinoSpec}


SPEC_BACKENDS = ("c", "tvm", "openvino")  # onnxruntime and tflm read no target table: they have no spec


@pytest.mark.parametrize("name", [n for n in sorted(BUILTIN) if get_target(n).backend in SPEC_BACKENDS])
def test_a_backend_spec_reads_the_same_from_the_target_file_and_from_the_manifest_record(name):
    """Bench rebuilds the spec from the target the manifest records (Target.to_json()): it must be the spec
    the compile used, defaults included."""
    target = get_target(name)
    spec_class = _backend_specs()[target.backend]
    compiled, benched = spec_class.from_target(target), spec_class.from_json(target.to_json())
    if hasattr(compiled, "path"):  # the TVM spec names the file in messages; a manifest records only the name
        compiled = dataclasses.replace(compiled, path=benched.path)
    assert compiled == benched


def test_a_backend_spec_fills_what_the_file_leaves_out_with_its_defaults(tmp_path):
    """Each default lives in the spec: a target file that sets none of the optional keys still reads as typed values."""
    from edgepack.backends.tvm.toolchain import HOST_ARCH

    specs = _backend_specs()
    host_c = parse_target(board(tmp_path, "my-c", '[toolchain]\nkind = "host"\ncc = "gcc"\n', backend="c"))
    c = specs["c"].from_target(host_c)
    assert (c.kernels, c.size, c.packages, c.run.device, c.budget.to_json()) == ("portable", "size", "gcc", "native", {})
    assert c.run.timeout(images=2) == 120 + 2 * 30 and c.cross_emulator() == ("qemu-aarch64", "qemu-user")
    tvm = specs["tvm"].from_target(parse_target(board(tmp_path, "my-tvm", '[compiler]\ntvm_target = "llvm"\n')))
    assert (tvm.arch, tvm.int8_kernels, tvm.cross, tvm.qemu_cpu) == (HOST_ARCH, "auto", False, None)
    ov = specs["openvino"].from_target(parse_target(board(tmp_path, "my-ov", "", backend="openvino")))
    assert (ov.device, ov.batch, ov.compress_to_fp16, ov.device_config("CPU")) == ("CPU", 1, False, {})


def test_openvino_threads_become_the_cpu_thread_count_unless_the_cpu_table_sets_one(tmp_path):
    run = '[run]\nthreads = 3\n[run.cpu]\nPERFORMANCE_HINT = "LATENCY"\n'
    spec = _backend_specs()["openvino"].from_target(parse_target(board(tmp_path, "ov", run, backend="openvino")))
    assert spec.device_config("CPU") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 3}
    pinned = run + "INFERENCE_NUM_THREADS = 1\n"
    spec = _backend_specs()["openvino"].from_target(parse_target(board(tmp_path, "ov", pinned, backend="openvino")))
    assert spec.device_config("CPU")["INFERENCE_NUM_THREADS"] == 1 and spec.device_config("NPU") == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_has_the_same_parts(backend):
    """backends/<name>/lower.py holds lower() -> Lowered and runner.py its Runner (bench's interface); the
    package exports both, so backend_module(name) reads the same for every backend."""
    import importlib
    import inspect

    from edgepack.backends import backend_module, runner

    package = backend_module(backend)
    lower = importlib.import_module(f"{package.__name__}.lower")
    runs = importlib.import_module(f"{package.__name__}.runner")
    assert package.lower is lower.lower and package.Runner is runs.Runner
    assert issubclass(package.Runner, runner.Runner)
    assert inspect.signature(lower.lower).return_annotation == "Lowered"


def test_helium_kernels_on_a_core_without_mve_are_refused_when_the_file_is_read(tmp_path):
    """kernels = "helium" builds MVE code only for an MVE core: elsewhere the build would quietly fall back to the
    fast twins while the manifest named Helium kernels, so the file itself is refused, naming the fix."""
    text = (BUILTIN_DIR / "cortex-m7.toml").read_text().replace('name = "cortex-m7"', 'name = "m7-helium"')
    (tmp_path / "m7-helium.toml").write_text(text.replace('kernels = "fast"', 'kernels = "helium"'))
    with pytest.raises(TargetError, match='kernels = "helium" needs a Helium \\(MVE\\) core .* use kernels = "fast"'):
        parse_target(tmp_path / "m7-helium.toml")
    m55 = (BUILTIN_DIR / "cortex-m55.toml").read_text()
    assert parse_target(BUILTIN_DIR / "cortex-m55.toml").compiler.kernels == "helium"
    (tmp_path / "m55-march.toml").write_text(m55.replace('name = "cortex-m55"', 'name = "m55-march"').replace(
        '"-mcpu=cortex-m55"', '"-march=armv8.1-m.main+mve"'))
    assert parse_target(tmp_path / "m55-march.toml").toolchain.arch_flags[0] == "-march=armv8.1-m.main+mve"
