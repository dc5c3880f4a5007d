"""`edgepack compile --help` states the --alpha default compile and info actually take (model.builtin.default_alpha):
it once said "mobilenet_v3_small 1.0" while every built-in model compiled at 0.75."""
from __future__ import annotations

import re

from edgepack.cli import compile_cmd
from edgepack.config import CompileConfig
from edgepack.model.builtin import BUILTIN, default_alpha
from tests.conftest import run_cli


def test_compile_help_states_the_alpha_every_builtin_model_compiles_at(capsys):
    code, out, _ = run_cli(capsys, "compile", "--help")
    text = " ".join(out.split())
    stated = re.search(r"--alpha ALPHA width multiplier in \(0, 1\]; mobilenet_v2: \(0, 1\.4\] \(default ([\d.]+) for "
                       r"every built-in model\)", text)
    assert code == 0 and stated, text
    for name in BUILTIN:  # what a compile without --alpha builds, as CompileConfig resolves it
        assert float(stated.group(1)) == default_alpha(name) == CompileConfig(target="host", architecture=name).alpha


def test_alpha_help_lists_each_default_when_the_models_differ(monkeypatch):
    """A model whose default width differs is named with its own default, read from the same function."""
    monkeypatch.setattr(compile_cmd, "default_alpha", lambda name: 1.0 if name == "mobilenet_v3_small" else 0.75)
    text = compile_cmd.alpha_help()
    assert "mobilenet_v3_small 1," in text and "mobilenet_v1 0.75," in text and "every built-in" not in text
