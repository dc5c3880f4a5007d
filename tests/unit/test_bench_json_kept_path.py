"""`bench --json ARTIFACT.bench.json` wrote its plain report over the result bench keeps there for `edgepack report`
(which it then no longer recognised: report re-ran the whole bench, later benches refused to keep theirs). It is
refused in one line before any work; any other --json path still works."""
from __future__ import annotations

from tests.cli import assert_one_line, edgepack


def test_json_on_the_kept_result_is_refused_before_bench(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()  # never read: the refusal comes before the artifact is loaded
    code, out, err, _ = edgepack("bench", folder, "--json", tmp_path / "art.bench.json")
    assert_one_line(code, err, 2, "--json", "art.bench.json", "edgepack report", "another --json path")
    assert not (tmp_path / "art.bench.json").exists() and out == ""


def test_json_elsewhere_is_not_refused_for_it(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    code, _, err, _ = edgepack("bench", folder, "--json", tmp_path / "other.json")
    assert code == 2 and "another --json path" not in err  # refused for the empty folder, not for --json
