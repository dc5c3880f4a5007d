"""Issue 23 item 9: board aliases are data in the target files. `--target rpi3` is the Cortex-A53 target (not
rpi5, whose SDOT a Pi 3 lacks), the manifest records the real name and the alias used, an alias never shadows
a name or another alias, "did you mean" knows the aliases, and `edgepack targets` shows them."""
from __future__ import annotations

import pytest

from edgepack.errors import TargetError
from edgepack.targets import BUILTIN_DIR, catalogue, get_target, parse_target, target_from_json
from tests.conftest import run_cli


def board(folder, name: str, extra: str = "", backend: str = "onnxruntime"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "test board"\nbackend = "{backend}"\n{extra}')
    return path


@pytest.mark.parametrize("alias, name", [("rpi3", "arm64-a53"), ("pi3", "arm64-a53"), ("pi4", "rpi4"),
                                         ("pi5", "rpi5"), ("jetson-nano", "rpi4")])
def test_builtin_board_aliases_name_the_matching_core(alias, name):
    target = get_target(alias)
    assert (target.name, target.alias, target.path) == (name, alias, BUILTIN_DIR / f"{name}.toml")
    assert get_target(name).alias is None


def test_armv8_0_boards_get_no_sdot_kernels():
    """A Pi 3 (Cortex-A53) and a Jetson Nano (Cortex-A57) are ARMv8.0: their targets must not enable dotprod."""
    for alias in ("rpi3", "jetson-nano"):
        target = get_target(alias)
        assert "dotprod" not in str(target.compiler.tvm_target) and target.run.qemu_cpu in ("cortex-a53", "cortex-a72")
    assert "+dotprod" in get_target("pi5").compiler.tvm_target["mattr"]


def test_the_manifest_records_the_real_name_and_the_alias_used():
    recorded = get_target("rpi3").to_json()
    assert recorded["name"] == "arm64-a53" and recorded["alias"] == "rpi3" and "pi3" in recorded["aliases"]
    back = target_from_json(recorded, "manifest target")
    assert (back.name, back.alias) == ("arm64-a53", "rpi3")
    assert "alias" not in get_target("arm64-a53").to_json()
    with pytest.raises(TargetError, match="alias 'pi5' is not one of the target's aliases"):
        target_from_json({**recorded, "alias": "pi5"}, "manifest target")  # a tampered manifest


def test_compile_preflight_resolves_an_alias(tmp_path):
    from edgepack.compiler import preflight
    from edgepack.config import CompileConfig

    with preflight(CompileConfig(target="pi4", output=str(tmp_path / "a"))) as target:
        assert (target.name, target.alias) == ("rpi4", "pi4")


@pytest.mark.parametrize("extra, words", [
    ('aliases = "mine"\n', "aliases must be a list of strings"),
    ('aliases = ["Mine Board"]\n', "alias 'Mine Board' must be a lower-case board name"),
    ('aliases = ["myboard"]\n', "alias 'myboard' is the target's own name: remove it"),
    ('aliases = ["b", "b"]\n', "alias 'b' is listed twice: remove it"),
])
def test_a_bad_alias_list_refuses_its_file(tmp_path, extra, words):
    with pytest.raises(TargetError) as e:
        parse_target(board(tmp_path, "myboard", extra))
    assert str(e.value).startswith(f"target file {tmp_path / 'myboard.toml'}: ") and words in str(e.value)


def test_an_alias_may_not_shadow_a_target_name_or_another_alias(tmp_path, capsys):
    mine = tmp_path / "boards"
    shadow_name = board(mine, "lab-a", 'aliases = ["host"]\n')
    board(mine, "lab-b", 'aliases = ["shared"]\n')
    shadow_alias = board(mine, "lab-c", 'aliases = ["shared"]\n')
    board(mine, "lab-d", 'aliases = ["bench-pc"]\n')
    found = catalogue([mine])
    assert found.broken == {
        shadow_name: f"target file {shadow_name}: alias 'host' is the name of the target file {BUILTIN_DIR / 'host.toml'}: "
                     "remove the alias or rename that file",
        shadow_alias: f"target file {shadow_alias}: alias 'shared' is already an alias of target lab-b: remove it "
                      "from one of the two files"}
    assert found.aliases["bench-pc"] == "lab-d" and found.aliases["shared"] == "lab-b" and found.aliases["rpi3"] == "arm64-a53"
    assert get_target("bench-pc", [mine]).name == "lab-d" and get_target("rpi3", [mine]).name == "arm64-a53"
    with pytest.raises(TargetError, match="alias 'host' is the name of"):
        get_target("lab-a", [mine])
    code, out, err = run_cli(capsys, "targets", "--targets", str(mine))
    assert code == 2 and len(err.splitlines()) == 2 and "lab-d " in out and "lab-a " not in out


def test_did_you_mean_considers_aliases(capsys):
    code, _, err = run_cli(capsys, "compile", "--target", "rpi33")
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown target 'rpi33' (did you mean 'rpi3'?)" in err and "rpi3 = arm64-a53" in err


def test_targets_table_shows_aliases_core_budgets_and_toolchain(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no program is found: the c and TVM targets' tools are missing, named
    code, out, err = run_cli(capsys, "targets")
    header, *rows = out.splitlines()
    assert code == 0 and err == ""
    assert header.split("  ")[0] == "name" and "aliases" in header and "toolchain installed" in header
    row = {line.split()[0]: line for line in rows}
    assert row["arm64-a53"].split()[1:4] == ["rpi3,pi3", "tvm", "cortex-a53"]
    assert row["cortex-m4"].split()[1:8] == ["-", "c", "cortex-m4", "1", "MiB", "256", "KiB"]
    assert "no (arm-none-eabi-gcc, arm-none-eabi-size, qemu-system-arm)" in row["cortex-m4"]
    assert "no (aarch64-linux-gnu-g++, qemu-aarch64)" in row["rpi4"]
    assert row["host"].split()[1:9] == ["-", "onnxruntime", "this", "host's", "CPU", "-", "-", "yes"]  # a Python package


def test_a_builtin_alias_gives_way_to_your_own_file_or_alias(tmp_path):
    """Your pi4.toml is the target pi4 and your alias pi5 is yours; the built-in rpi4 and rpi5 stay usable."""
    mine = tmp_path / "boards"
    board(mine, "pi4")
    board(mine, "lab", 'aliases = ["pi5"]\n')
    found = catalogue([mine])
    assert not found.broken and found.aliases["pi5"] == "lab" and found.aliases["jetson-nano"] == "rpi4"
    assert found.targets["rpi4"].aliases == ("jetson-nano",) and found.targets["rpi5"].aliases == ()
    assert get_target("pi4", [mine]).name == "pi4" and get_target("pi5", [mine]).name == "lab"
    assert get_target("rpi4", [mine]).name == "rpi4"
