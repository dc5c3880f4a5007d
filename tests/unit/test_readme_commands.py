"""Every command the README and docs/*.md show in a shell block must still be a valid command: each
`edgepack ...` line parses with edgepack's own argparse parser (nothing is run: no compile here), every
repository path such a command reads exists (or an earlier command in the same file writes it), and every
`python3 scripts/...` / `python3 benchmarks/...` script named exists. Docs drift silently otherwise."""
from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest

from edgepack.cli.main import build_parser
from tests.doc_commands import DOCS, FENCE, REPO, documented, fenced_commands, simple_commands

# folders of this repository: a path under one of them, named by a documented command, must exist
REPO_DIRS = ("benchmarks/", "docs/", "scripts/", "edgepack/", "tests/", ".ci/")
# flags whose value is a file or folder the command writes, not one it reads
OUTPUT_FLAGS = {"-o", "--output", "--update-baseline", "--json", "--junit", "--plot"}


def edgepack_commands() -> list[tuple[str, list[str]]]:
    return [(where, words) for where, words in documented() if words[0] == "edgepack"]


def parse_error(argv: list[str]) -> str | None:
    """edgepack's own parser on argv: None when it parses, else what it printed (argparse exits)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        return err.getvalue().strip() or f"exit {e.code}"
    return None


def read_paths(words: list[str]) -> list[str]:
    """The repository paths a command reads: words under REPO_DIRS that are not an output flag's value."""
    return [w for i, w in enumerate(words)
            if w.startswith(REPO_DIRS) and not (i and words[i - 1] in OUTPUT_FLAGS)]


def written_paths(words: list[str]) -> list[str]:
    return [w for i, w in enumerate(words) if i and words[i - 1] in OUTPUT_FLAGS]


def test_the_docs_show_edgepack_commands_at_all():
    """Guards the extraction itself: an empty list would make every check below pass vacuously."""
    where = {w.split(":")[0] for w, _ in edgepack_commands()}
    assert "README.md" in where and "docs/ci.md" in where, where


@pytest.mark.parametrize("where,words", edgepack_commands(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_documented_edgepack_command_parses(where, words):
    problem = parse_error(words[1:])
    assert problem is None, f"{where}: `{shlex.join(words)}` no longer parses: {problem}"


def test_every_repository_path_a_documented_command_reads_exists():
    missing, written = [], {}
    for where, words in documented():
        doc = where.split(":")[0]
        for path in read_paths(words):
            if not (REPO / path).exists() and path not in written.get(doc, set()):
                missing.append(f"{where}: `{shlex.join(words)}` names {path}, which does not exist")
        written.setdefault(doc, set()).update(written_paths(words))
    assert not missing, "\n".join(missing)


def test_every_documented_python_script_exists():
    scripts = [(where, words[1]) for where, words in documented()
               if re.fullmatch(r"python3?", words[0]) and len(words) > 1 and words[1].startswith(("scripts/", "benchmarks/"))]
    scripts += [(where, words[1]) for where, words in documented() if words[0] == "bash" and len(words) > 1]
    assert scripts, "no documented script found: the extraction is broken"
    missing = [f"{where}: {script} does not exist" for where, script in scripts if not (REPO / script).is_file()]
    assert not missing, "\n".join(missing)


def written_by_doc() -> dict[str, set[str]]:
    """Per doc, the paths its shell blocks write (output flags): a doc may name a file its own command creates."""
    written: dict[str, set[str]] = {}
    for where, words in documented():
        written.setdefault(where.split(":")[0], set()).update(written_paths(words))
    return written


PROSE_PATH = re.compile(r"`((?:edgepack|tests|benchmarks|scripts|docs)/[A-Za-z0-9_/.*-]+)`")
PROSE_SCRIPT = re.compile(r"\b(?:python3?|bash) +((?:scripts|benchmarks)/[A-Za-z0-9_/.-]+)")


def test_every_repository_path_the_prose_names_exists():
    """`edgepack/...`, `tests/...`, `benchmarks/...` in backticks, and `python benchmarks/x.py` anywhere: a
    renamed module or test must take its docs along (a glob must match something)."""
    written, missing = written_by_doc(), []
    for doc in DOCS:
        name, text = str(doc.relative_to(REPO)), doc.read_text()
        for path in {p.rstrip(".") for p in PROSE_PATH.findall(text) + PROSE_SCRIPT.findall(text)}:
            if not any(REPO.glob(path.rstrip("/"))) and path not in written.get(name, set()):
                missing.append(f"{name}: names {path}, which does not exist")
    assert not missing, "\n".join(sorted(missing))


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a document's headings (outside code blocks): lower case, punctuation dropped,
    spaces as hyphens, a repeated heading suffixed -1, -2, ..."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        fenced ^= bool(FENCE.match(line))
        heading = None if fenced else re.match(r"^#{1,6} (.+)$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_link_to_a_section_finds_its_heading():
    """A renamed heading must take its links along (the README links between its sections a lot)."""
    broken = []
    for doc in DOCS:
        text = doc.read_text()
        anchors = heading_anchors(text)
        broken += [f"{doc.relative_to(REPO)}: (#{a}) has no heading" for a in re.findall(r"\]\(#([^)]+)\)", text)
                   if a not in anchors]
    assert not broken, "\n".join(broken)


def test_a_broken_command_is_caught():
    """The checks above can fail: a removed flag and a missing script are both reported."""
    text = "```sh\nedgepack compile --target rpi4 --no-such-flag && python3 scripts/nope.py\n```\n"
    (number, line), = fenced_commands(text)
    first, second = simple_commands(line)
    assert number == 2 and "--no-such-flag" in parse_error(first[1:])
    assert second[1] == "scripts/nope.py" and not (REPO / second[1]).exists()


def test_a_compile_without_o_writes_its_default_folder(tmp_path, monkeypatch):
    """README's `edgepack compile --target cortex-m4 --alpha 0.25 --resolution 96` has no -o: it must write compile's
    --help default artifacts/<model>_<alpha>_<res>_<target>_<quant>, not a folder named "None" (it did)."""
    from edgepack.cli.compile_cmd import _torch_config

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["compile", "--target", "cortex-m4", "--alpha", "0.25", "--resolution", "96"])
    assert _torch_config(args).output_path() == tmp_path / "artifacts" / "mobilenet_v1_0.25_96_cortex-m4_ptq"
