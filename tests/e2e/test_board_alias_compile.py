"""Issue 23 items 7 and 9 end to end: a compile for a board alias records the real target and the alias in its
manifest, bench reads that manifest back, and `bench --json -` puts the report JSON alone on stdout."""
from __future__ import annotations

import json

import pytest

from edgepack.targets import BUILTIN_DIR
from tests.cli import SMALL, edgepack


@pytest.mark.slow
def test_compile_for_an_alias_records_target_and_alias_and_benches_to_stdout_json(tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    text = (BUILTIN_DIR / "c-host.toml").read_text().replace('name = "c-host"', 'name = "lab-pc"')
    (boards / "lab-pc.toml").write_text(text.replace('backend = "c"', 'backend = "c"\naliases = ["bench-box"]'))
    code, out, err, _ = edgepack("compile", "--target", "bench-box", "--targets", boards, *SMALL, "-o", tmp_path / "art")
    assert code == 0, err
    assert not any(line.startswith("stage times") for line in out.splitlines())  # only with --verbose
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert (manifest["target"]["name"], manifest["target"]["alias"]) == ("lab-pc", "bench-box")
    code, out, err, _ = edgepack("bench", tmp_path / "art", "--count", "3", "--json", "-", cwd=tmp_path)
    report = json.loads(out)  # stdout is the JSON and nothing else
    assert code == 0 and report["target"] == "lab-pc" and report["passed"], err
    assert "result: PASS" in err and not (tmp_path / "-").exists()
