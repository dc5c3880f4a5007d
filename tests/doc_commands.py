"""The commands README.md and docs/*.md show, as data: read by tests/unit/test_readme_commands.py (every one
parses, every path it reads exists) and tests/e2e/test_documented_commands_run.py (every one runs), so both
see the same list and a new command block is checked by both."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```(\S*)\s*$")


def fenced_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each command line of the shell blocks, `\\` continuations joined, and for
    each `run:` step of a YAML block (a CI job is a command list too), its more indented lines joined."""
    commands, lang, run_indent = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            lang, run_indent = (None if lang is not None else fence.group(1).lower()), None
            continue
        if lang in SHELL_LANGS:
            if commands and commands[-1][1].endswith("\\"):
                commands[-1] = (commands[-1][0], commands[-1][1][:-1].rstrip() + " " + line.strip())
            else:
                commands.append((number, line.strip()))
        elif lang in {"yaml", "yml"}:
            step = re.match(r"^(\s*)(?:- )?run: (.*)$", line)
            indent = len(line) - len(line.lstrip())
            if step:
                commands.append((number, step.group(2).strip()))
                run_indent = len(step.group(1))
            elif run_indent is not None and line.strip() and indent > run_indent + 2:
                commands[-1] = (commands[-1][0], commands[-1][1] + " " + line.strip())
            else:
                run_indent = None
    return [(n, c) for n, c in commands if c and not c.startswith("#")]


def simple_commands(command: str) -> list[list[str]]:
    """The words of each simple command of a line (split at && || ; |), comments, `time` and leading
    VAR=value assignments removed."""
    return [words for _, words in simple_commands_with_env(command)]


def simple_commands_with_env(command: str) -> list[tuple[dict[str, str], list[str]]]:
    """As simple_commands, with each command's leading VAR=value assignments kept as its environment."""
    out, current = [], []
    for word in shlex.split(command, comments=True) + ["&&"]:
        if word not in {"&&", "||", ";", "|"}:
            current.append(word)
            continue
        env = {}
        while current and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]) or current[0] == "time"):
            name, _, value = current.pop(0).partition("=")
            if value or name != "time":
                env[name] = value
        if current:
            out.append((env, current))
        current = []
    return out


def documented(docs: list[Path] = DOCS) -> list[tuple[str, list[str]]]:
    """(where, words) for every simple command in every doc's shell blocks, where = "README.md:17"."""
    found = []
    for doc in docs:
        for number, line in fenced_commands(doc.read_text()):
            for words in simple_commands(line):
                found.append((f"{doc.relative_to(REPO)}:{number}", words))
    return found


def python_file_blocks(text: str) -> dict[str, str]:
    """The python blocks that open with a `# NAME.py` comment line: NAME.py -> the block, a file the docs
    ask the reader to write (e.g. README's mynet.py, which `edgepack info --model mynet.py:MyNet` reads)."""
    files, lang, block = {}, None, []
    for line in text.splitlines():
        if FENCE.match(line):
            if lang == "python" and block and re.fullmatch(r"# [\w.-]+\.py", block[0].strip()):
                files[block[0].strip()[2:]] = "\n".join(block) + "\n"
            lang, block = (None if lang is not None else FENCE.match(line).group(1).lower()), []
        elif lang is not None:
            block.append(line)
    return files
