"""A user's --model FILE.py:NAME whose own code fails (at import, in its constructor, in its forward, or
because it cannot take the images edgepack feeds it) ends edgepack with exit 2 and one stderr line naming
the file, the function and the original message: never the user's exit code, an "interrupted", or an
"internal error". The forward is probed before any data is read, so the failure is quick and leaves no
output folder. Each case is its own CLI process, as a user would run it."""
from __future__ import annotations

import pytest

from tests.cli import assert_one_line, edgepack

MODELS = '''
import sys
from torch import nn


def head():
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]


class Exits(nn.Module):
    def __init__(self):
        super().__init__()
        sys.exit(7)


class Interrupts(nn.Module):
    def __init__(self):
        super().__init__()
        raise KeyboardInterrupt


class Fails(nn.Module):
    def __init__(self):
        super().__init__()
        raise RuntimeError("the weights server is down")


class ForwardFails(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3), *head())

    def forward(self, x):
        raise ValueError("forward is not written yet")


class ForwardExits(ForwardFails):
    def forward(self, x):
        sys.exit(3)


class OneChannel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(1, 8, 3), *head())

    def forward(self, x):
        return self.layers(x)


class ReturnsTuple(OneChannel):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 3), *head())

    def forward(self, x):
        return self.layers(x), x
'''

CASES = {  # NAME: words of the one stderr line besides the file and the name
    "Exits": ["Exits()", "sys.exit(7)"],
    "Interrupts": ["Interrupts()", "KeyboardInterrupt"],
    "Fails": ["Fails()", "RuntimeError: the weights server is down"],
    "ForwardFails": ["ForwardFails.forward", "ValueError: forward is not written yet", "3-channel 32x32"],
    "ForwardExits": ["ForwardExits.forward", "sys.exit(3)"],
    "OneChannel": ["OneChannel.forward", "to have 1 channels, but got 3 channels", "3-channel 32x32"],
    "ReturnsTuple": ["ReturnsTuple.forward returned a tuple", "(N, classes) logits"],
}


@pytest.mark.parametrize("name", CASES)
def test_failing_user_code_is_one_line_naming_it(name, tmp_path):
    models = tmp_path / "models.py"
    models.write_text(MODELS)
    out = tmp_path / "out"
    code, _, err, seconds = edgepack("compile", "--target", "host", "--model", f"{models}:{name}", "--resolution", "32",
                                     "--calib-size", "16", "--eval-size", "16", "-o", out)
    assert_one_line(code, err, 2, "edgepack compile: error:", f"{models}:{name}", *CASES[name])
    assert "internal error" not in err and "interrupted" not in err
    assert seconds < 120  # refused before calibration (torch's import is most of it)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.py"]


def test_a_module_that_exits_on_import_is_one_line(tmp_path):
    models = tmp_path / "exits_on_import.py"
    models.write_text("import sys\nsys.exit(5)\n")
    code, _, err, _ = edgepack("compile", "--target", "host", "--model", f"{models}:Net", "-o", tmp_path / "out")
    assert_one_line(code, err, 2, f"importing {models} failed", "sys.exit(5)", "fix the module")
    assert not (tmp_path / "out").exists()
