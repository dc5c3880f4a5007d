"""MobileNetV3 before the int8 plan has hard-swish, hard-sigmoid and the squeeze-and-excite multiply (issue 21):
`edgepack compile --model mobilenet_v3_*` ends in a one-line refusal with exit code 2 and writes no artifact,
never a traceback. With weights, the graph check names the first unsupported operator (hard-swish) before
calibration; without shipped weights too (training them would not help)."""
from __future__ import annotations

import pytest
import torch

from edgepack.model.mobilenet_v3 import MobileNetV3Small
from tests.conftest import run_cli

FLAGS = ("compile", "--model", "mobilenet_v3_small", "--target", "host", "--alpha", "1.0", "--resolution", "96",
         "--calib-size", "8", "--eval-size", "8")


def one_line_refusal(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
def test_compile_refuses_hard_swish_by_name_before_calibration(tmp_path, capsys):
    torch.save(MobileNetV3Small(1.0, 96, 10).state_dict(), tmp_path / "v3.pt")
    code, _, err = run_cli(capsys, *FLAGS, "--checkpoint", str(tmp_path / "v3.pt"), "-o", str(tmp_path / "out"))
    line = one_line_refusal(code, err)
    assert "hardswish" in line and "is not supported by the int8 plan" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compile_without_weights_names_the_unsupported_layer_not_the_weights(tmp_path, capsys):
    code, _, err = run_cli(capsys, *FLAGS, "-o", str(tmp_path / "out"))
    line = one_line_refusal(code, err)
    assert "(Hardswish) is not supported" in line and "weights" not in line
    assert not (tmp_path / "out").exists()
