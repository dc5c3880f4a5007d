"""c-host's aarch64 build as the typed CrossSpec the C backend reads: its values and defaults from the target
file, and a cross_* key without cross_cc refused at read time (it used to fail later, with a KeyError)."""
from __future__ import annotations

import pytest

from edgepack.backends.c.spec import BuildSpec, CrossSpec
from edgepack.errors import TargetError
from edgepack.targets import get_target, parse_target


def c_board(tmp_path, toolchain: str):
    path = tmp_path / "my-c.toml"
    path.write_text(f'name = "my-c"\ndescription = "test board"\nbackend = "c"\n[toolchain]\nkind = "host"\ncc = "gcc"\n{toolchain}')
    return parse_target(path)


def test_c_host_reads_its_cross_keys_into_a_cross_spec():
    spec = BuildSpec.from_target(get_target("c-host"))
    assert spec.cross == CrossSpec(cc="aarch64-linux-gnu-gcc", debian_packages="gcc-aarch64-linux-gnu",
                                   arch_flags=(), ldflags=("-static",))
    assert spec.devices() == ["native", "qemu-aarch64"]


def test_a_target_without_cross_keys_has_no_cross_build(tmp_path):
    spec = BuildSpec.from_target(c_board(tmp_path, ""))
    assert spec.cross is None and spec.devices() == ["native"] and list(spec.binaries()) == ["native"]


def test_cross_package_defaults_to_the_cross_compiler_name(tmp_path):
    spec = BuildSpec.from_target(c_board(tmp_path, 'cross_cc = "aarch64-linux-gnu-gcc"\n'))
    assert spec.cross == CrossSpec(cc="aarch64-linux-gnu-gcc", debian_packages="aarch64-linux-gnu-gcc")


def test_cross_flags_without_a_cross_compiler_are_refused(tmp_path):
    with pytest.raises(TargetError, match="sets cross_ldflags but no cross_cc: add cross_cc"):
        BuildSpec.from_target(c_board(tmp_path, 'cross_ldflags = ["-static"]\n'))
