"""`edgepack report` shows what `edgepack bench` measured (kept beside the artifact as ARTIFACT.bench.json, or
given with --bench FILE) instead of benching again (217 s for a cortex-m4 artifact); it benches only with
--rebench or when no kept result matches the artifact, saying so in one line. The artifact folder itself is
never written (verify refuses any file its manifest does not list), and a file edgepack did not write is
never replaced. The per-layer section uses debug's image count, so both show the same SQNR per layer."""
from __future__ import annotations

import json
import shutil

import pytest

import edgepack
from edgepack.benchmark.report import _cell
from edgepack.errors import ConfigError
from tests.cli import assert_one_line, edgepack as run, tree

pytestmark = pytest.mark.slow  # compiles (once, shared) and benches

MARK = 0.4321  # an accuracy no bench of the small model measures: on the page only when read from the file


@pytest.fixture
def art(small_artifacts, tmp_path):
    """A copy of the small host artifact: what bench keeps beside it is this test's alone."""
    return shutil.copytree(small_artifacts("host"), tmp_path / "art")


def _mark(path, wrapped: bool = True) -> None:
    """Set the accuracy in a bench file to MARK, as the file's own figure (a bench never measures it)."""
    data = json.loads(path.read_text())
    (data["report"] if wrapped else data)["accuracy"] = MARK
    path.write_text(json.dumps(data))


def test_report_shows_the_bench_that_bench_kept_and_benches_again_only_when_asked(art, tmp_path):
    before = tree(art)
    code, out, err, _ = run("bench", art, "--count", "2", "--json", tmp_path / "b.json")
    kept = tmp_path / "art.bench.json"
    assert code == 0 and err == "" and f"bench result kept in {kept}" in out, err
    assert json.loads(kept.read_text())["report"] == json.loads((tmp_path / "b.json").read_text())
    assert tree(art) == before and run("verify", art)[0] == 0  # nothing written into the artifact
    _mark(kept)
    code, out, err, _ = run("report", art)
    assert code == 0 and err == "" and f"bench result from {kept}" in out, err
    assert _cell("accuracy", MARK) in (tmp_path / "art.report.html").read_text()
    code, out, err, _ = run("report", art, "--rebench")
    assert code == 0 and err == "" and "--rebench: running bench" in out, err
    assert _cell("accuracy", MARK) not in (tmp_path / "art.report.html").read_text()
    assert json.loads(kept.read_text())["report"]["accuracy"] != MARK  # the new bench is kept in turn
    assert tree(art) == before


def test_a_kept_bench_of_another_build_or_size_is_measured_again(art, tmp_path):
    code, _, err, _ = run("bench", art, "--count", "2")
    assert code == 0, err
    kept = tmp_path / "art.bench.json"
    _mark(kept)
    code, out, err, _ = run("report", art, "--eval-size", "8")
    assert code == 0 and err == "" and "measured 16 eval images, not 8: running bench" in out, err
    assert json.loads(kept.read_text())["report"]["eval_images"] == 8
    data = json.loads(kept.read_text())
    data["manifest_sha256"] = "0" * 64  # what an artifact recompiled over the same folder leaves behind
    data["report"]["accuracy"] = MARK
    kept.write_text(json.dumps(data))
    code, out, err, _ = run("report", art)
    assert code == 0 and err == "" and "earlier build of this artifact" in out, err
    assert _cell("accuracy", MARK) not in (tmp_path / "art.report.html").read_text()


def test_bench_never_replaces_a_file_it_did_not_write(art, tmp_path):
    mine = tmp_path / "art.bench.json"
    mine.write_text("my notes\n")
    code, out, err, _ = run("bench", art, "--count", "2")
    assert code == 0 and f"bench result not kept: {mine} exists and edgepack did not write it" in out + err
    assert mine.read_text() == "my notes\n"
    code, out, err, _ = run("report", art, "--images", "4")
    assert code == 0 and "is not a bench result edgepack wrote: running bench" in out, err
    assert mine.read_text() == "my notes\n"


def test_report_bench_file_is_shown_and_one_of_another_artifact_refused(art, small_artifacts, tmp_path):
    code, _, err, _ = run("bench", art, "--count", "2", "--json", tmp_path / "b.json")
    assert code == 0, err
    _mark(tmp_path / "b.json", wrapped=False)
    code, out, err, _ = run("report", art, "--bench", tmp_path / "b.json", "-o", tmp_path / "page.html")
    assert code == 0 and err == "" and "running bench" not in out, err
    assert _cell("accuracy", MARK) in (tmp_path / "page.html").read_text()
    other = json.loads((tmp_path / "b.json").read_text())
    other["backend"] = "tvm"
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err, _ = run("report", art, "--bench", tmp_path / "other.json", "-o", tmp_path / "other.html")
    assert_one_line(code, err, 2, "bench of another artifact", "backend")
    code, _, err, _ = run("report", art, "--bench", art / "manifest.json", "-o", tmp_path / "other.html")
    assert_one_line(code, err, 2, "is not a bench report")
    assert not (tmp_path / "other.html").exists()


def test_report_and_debug_show_one_sqnr_per_layer(art, tmp_path):
    """The per-layer section runs debug with debug's default image count: the same figures as `debug`."""
    code, _, err, _ = run("debug", art, "--json", tmp_path / "d.json")
    assert code == 0, err
    layers = json.loads((tmp_path / "d.json").read_text())["layers"]
    code, _, err, _ = run("report", art)
    page = (tmp_path / "art.report.html").read_text()
    assert code == 0 and layers, err
    for row in layers:
        assert f">{_cell('isolated_sqnr_db', row['isolated_sqnr_db'])}<" in page, row


def test_python_api_report_takes_a_bench_dict_and_returns_the_page(art, tmp_path):
    result = edgepack.bench(art, count=2)
    page = edgepack.report(art, bench={**result, "accuracy": MARK}, images=4, output=tmp_path / "api.html")
    assert page == tmp_path / "api.html" and _cell("accuracy", MARK) in page.read_text()
    assert not (tmp_path / "art.bench.json").exists()  # the API's bench returns its report, keeps no file
    with pytest.raises(ConfigError, match="--bench and --rebench"):
        edgepack.report(art, bench=result, rebench=True)
