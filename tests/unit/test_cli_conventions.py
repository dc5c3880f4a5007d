"""Issue 23 item 7: every command's --json FILE writes the file and ``--json -`` writes the JSON to stdout with
nothing else there (human text on stderr, never a file named '-'); --quiet/--verbose work after the
subcommand; compile's stage-times line only with --verbose; colour only on a terminal, never with NO_COLOR.
Bench and debug run with their library calls replaced (no artifact is compiled here)."""
from __future__ import annotations

import json
import logging
import os

import pytest

from tests.conftest import run_cli

REPORT = {"artifact": "a", "target": "host", "passed": True, "accuracy": 0.5}


@pytest.fixture
def fake_bench(monkeypatch, tmp_path):
    """bench_artifact/format_report stand-ins: what the CLI does with the report is what is tested."""
    from edgepack.benchmark import run

    monkeypatch.setattr(run, "bench_artifact", lambda *a, **k: dict(REPORT))
    monkeypatch.setattr(run, "format_report", lambda r: "bench of a\nresult: PASS")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fake_debug(monkeypatch, tmp_path):
    from edgepack.benchmark import debug

    monkeypatch.setattr(debug, "debug_artifact", lambda *a, **k: {"layers": [1, 2]})
    monkeypatch.setattr(debug, "format_debug", lambda d: "layer table")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bench_json_dash_is_stdout_and_the_report_text_moves_to_stderr(fake_bench, capsys):
    code, out, err = run_cli(capsys, "bench", "art", "--json", "-")
    assert code == 0 and json.loads(out) == REPORT
    assert "result: PASS" in err and "result" not in out
    assert not (fake_bench / "-").exists()  # was: a file named '-'


def test_bench_json_file_is_written_and_the_text_stays_on_stdout(fake_bench, capsys):
    code, out, err = run_cli(capsys, "bench", "art", "--json", "r.json")
    assert code == 0 and out.strip().endswith("result: PASS") and err == ""
    assert json.loads((fake_bench / "r.json").read_text()) == REPORT


def test_debug_json_dash_is_stdout(fake_debug, capsys):
    code, out, err = run_cli(capsys, "debug", "art", "--json", "-")
    assert code == 0 and json.loads(out) == {"layers": [1, 2]} and "layer table" in err
    assert not (fake_debug / "-").exists()
    code, out, err = run_cli(capsys, "debug", "art", "--json", "d.json")
    assert code == 0 and out.strip() == "layer table" and json.loads((fake_debug / "d.json").read_text())["layers"]


def test_an_existing_json_file_is_replaced_as_before(fake_bench, capsys):
    """bench and debug always replaced an existing --json file (checked writable first): kept."""
    (fake_bench / "r.json").write_text("old")
    code, _, _ = run_cli(capsys, "bench", "art", "--json", "r.json")
    assert code == 0 and json.loads((fake_bench / "r.json").read_text()) == REPORT


def test_targets_json_dash_file_and_flag_alone(tmp_path, capsys):
    code, out, err = run_cli(capsys, "targets", "--json", "-")
    listed = json.loads(out)
    assert code == 0 and err == "" and listed["rpi4"]["aliases"] == ["pi4", "jetson-nano"]
    assert set(listed["host"]["toolchain"]) == {"installed", "missing"}
    code, alone, _ = run_cli(capsys, "targets", "--json")  # as before: --json alone is stdout
    assert json.loads(alone) == listed
    code, out, err = run_cli(capsys, "targets", "--json", str(tmp_path / "t.json"))
    assert code == 0 and json.loads((tmp_path / "t.json").read_text()) == listed and out.startswith("name ")


def test_info_json_file_keeps_the_table_on_stdout(tmp_path, capsys):
    small = ("info", "--alpha", "0.25", "--resolution", "32")
    code, out, err = run_cli(capsys, *small, "--json", "-")
    report = json.loads(out)
    assert code == 0 and err == "" and report["resolution"] == 32
    code, out, _ = run_cli(capsys, *small, "--json", str(tmp_path / "i.json"))  # was: a file named as the flag's value refused
    assert code == 0 and out.startswith("MobileNetV1 alpha=0.25") and json.loads((tmp_path / "i.json").read_text()) == report


def test_a_json_folder_is_refused_before_any_work(tmp_path, capsys):
    code, _, err = run_cli(capsys, "info", "--json", str(tmp_path))
    assert code == 2 and "--json" in err and "is a folder" in err


@pytest.fixture
def fake_compile(monkeypatch):
    """compile with its pipeline replaced by the two lines every compile ends with (and a library log line)."""
    from edgepack.cli import compile_cmd

    def compile_locked(config, target, model, log=None):
        logger = logging.getLogger("edgepack.compiler")  # as compiler.compile_locked logs
        logging.getLogger("edgepack.test").info("library info line")
        logger.debug('stage times (s): {"lower": 1.0}')
        logger.info(f"artifact written to {config.output}")
        assert os.environ.get("EDGEPACK_PROGRESS") == ("off" if "--quiet" in os.environ.get("ARGS", "") else None)

    monkeypatch.setattr(compile_cmd, "compile_locked", compile_locked)
    monkeypatch.setattr(compile_cmd, "enforce", lambda *a, **k: None)  # no artifact written: no gate to read
    monkeypatch.delenv("EDGEPACK_PROGRESS", raising=False)


@pytest.mark.parametrize("flag", ["", "--verbose", "--quiet"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_before_or_after_the_subcommand(fake_compile, tmp_path, capsys, monkeypatch, flag, where):
    monkeypatch.setenv("ARGS", flag)
    argv = ["compile", "--target", "host", "-o", str(tmp_path / "a")]
    argv = ([flag] + argv if where == "before" else argv + [flag]) if flag else argv
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    if flag == "--quiet":
        assert lines == []
    else:
        assert lines[0] == "library info line" and lines[-1] == f"artifact written to {tmp_path / 'a'}"
        assert any(line.startswith("stage times (s): ") for line in lines) == (flag == "--verbose")
    assert os.environ.get("EDGEPACK_PROGRESS") is None  # restored after the command


def test_verbose_after_the_subcommand_prints_an_internal_error_traceback(monkeypatch, tmp_path, capsys):
    from edgepack.cli import compile_cmd

    def broken(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(compile_cmd, "compile_locked", broken)
    code, _, err = run_cli(capsys, "compile", "--target", "host", "-o", str(tmp_path / "a"), "--verbose")
    assert code == 3 and "Traceback" in err and "RuntimeError: bug" in err


def test_quiet_and_verbose_together_are_refused(capsys):
    code, _, err = run_cli(capsys, "--quiet", "targets", "--verbose")
    assert code == 2 and len(err.splitlines()) == 1 and "--quiet and --verbose ask for opposite things" in err


class Tty:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    from edgepack.cli import colour

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour.paint("PASS", "green", Tty(True)) == "\033[32mPASS\033[0m"
    assert colour.paint("PASS", "green", Tty(False)) == "PASS"
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour.paint("PASS", "green", Tty(True)) == "PASS"


def test_bench_badge_is_plain_in_a_pipe_and_coloured_on_a_terminal(monkeypatch):
    import sys

    from edgepack.cli.bench_cmd import _with_badge

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _with_badge("x\nresult: FAIL") == "x\nresult: FAIL"  # capsys/pipe: no escape codes
    monkeypatch.setattr(sys, "stdout", Tty(True))
    assert _with_badge("x\nresult: FAIL") == "x\nresult: \033[31mFAIL\033[0m"
