"""The Python API refuses exactly what the CLI refuses, with the same message: one check in edgepack.validate
serves both. Each bad value goes to edgepack.compile / bench / debug in this process and to the CLI as its
own process; the CLI's whole stderr must be "edgepack CMD: error: " + the API's message, and neither may
write anything or print warnings.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

import edgepack
from edgepack.errors import EdgepackError
from tests.cli import SMALL, assert_one_line, edgepack as run_edgepack, tree

# case -> (API call on the paths dict, CLI argv with {name} for those paths)
SAME_MESSAGE = {
    "bench eval-size -1": (lambda p: edgepack.bench(p["artifact"], eval_size=-1), ["bench", "{artifact}", "--eval-size", "-1"]),
    "bench eval-size 0": (lambda p: edgepack.bench(p["artifact"], eval_size=0), ["bench", "{artifact}", "--eval-size", "0"]),
    "bench eval-size 2.5": (lambda p: edgepack.bench(p["artifact"], eval_size=2.5), ["bench", "{artifact}", "--eval-size", "2.5"]),
    "bench count 0": (lambda p: edgepack.bench(p["artifact"], count=0), ["bench", "{artifact}", "--count", "0"]),
    "bench warmup -1": (lambda p: edgepack.bench(p["artifact"], warmup=-1), ["bench", "{artifact}", "--warmup", "-1"]),
    "bench timeout 1e300": (lambda p: edgepack.bench(p["artifact"], timeout="1e300"), ["bench", "{artifact}", "--timeout", "1e300"]),
    "debug images 0": (lambda p: edgepack.debug(p["artifact"], images=0), ["debug", "{artifact}", "--images", "0"]),
    "report images 0": (lambda p: edgepack.report(p["artifact"], images=0), ["report", "{artifact}", "--images", "0"]),
    "report eval-size 2.5": (lambda p: edgepack.report(p["artifact"], eval_size=2.5),
                             ["report", "{artifact}", "--eval-size", "2.5"]),
    "compile eval-size 0": (lambda p: edgepack.compile(target="host", eval_size=0, output=p["out"]),
                            ["compile", "--target", "host", "--eval-size", "0", "-o", "{out}"]),
    "compile calib-size 2.5": (lambda p: edgepack.compile(target="host", calib_size=2.5, output=p["out"]),
                               ["compile", "--target", "host", "--calib-size", "2.5", "-o", "{out}"]),
    "compile classes 3e9": (lambda p: edgepack.compile(target="host", classes=3000000000, random_head=True, output=p["out"]),
                            ["compile", "--target", "host", "--classes", "3000000000", "--random-head", "-o", "{out}"]),
    "compile checkpoint FIFO": (lambda p: edgepack.compile(target="host", checkpoint=p["fifo"], output=p["out"]),
                                ["compile", "--target", "host", "--checkpoint", "{fifo}", "-o", "{out}"]),
    "compile calibration FIFO": (lambda p: edgepack.compile(target="host", calibration=p["fifo"], output=p["out"]),
                                 ["compile", "--target", "host", "--calibration", "{fifo}", "-o", "{out}"]),
    "compile eval-data FIFO": (lambda p: edgepack.compile(target="host", eval_data=p["fifo"], output=p["out"]),
                               ["compile", "--target", "host", "--eval-data", "{fifo}", "-o", "{out}"]),
    "compile calibration-method bogus": (lambda p: edgepack.compile(target="host", calibration_method="bogus", output=p["out"]),
                                         ["compile", "--target", "host", "--calibration-method", "bogus", "-o", "{out}"]),
    "compile calibration-method with qat": (
        lambda p: edgepack.compile(target="host", quant="qat", calibration_method="minmax", output=p["out"]),
        ["compile", "--target", "host", "--quant", "qat", "--calibration-method", "minmax", "-o", "{out}"]),
    "compile calibration ''": (lambda p: edgepack.compile(target="host", calibration="", output=p["out"]),
                               ["compile", "--target", "host", "--calibration", "", "-o", "{out}"]),
    "compile max-accuracy-drop -1": (lambda p: edgepack.compile(target="host", max_accuracy_drop=-1, output=p["out"]),
                                     ["compile", "--target", "host", "--max-accuracy-drop", "-1", "-o", "{out}"]),
    "compile max-accuracy-drop 101": (lambda p: edgepack.compile(target="host", max_accuracy_drop="101", output=p["out"]),
                                      ["compile", "--target", "host", "--max-accuracy-drop", "101", "-o", "{out}"]),
    "compile min-fp32-agreement 0.97": (lambda p: edgepack.compile(target="host", min_fp32_agreement=0.97, output=p["out"]),
                                        ["compile", "--target", "host", "--min-fp32-agreement", "0.97", "-o", "{out}"]),
    "compile min-fp32-agreement nan": (lambda p: edgepack.compile(target="host", min_fp32_agreement=float("nan"),
                                                                  output=p["out"]),
                                       ["compile", "--target", "host", "--min-fp32-agreement", "nan", "-o", "{out}"]),
}


@pytest.fixture
def paths(tmp_path):
    """A stand-in artifact folder (the values are refused before it is read), a FIFO, an output path."""
    (tmp_path / "artifact").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return {"artifact": str(tmp_path / "artifact"), "fifo": str(tmp_path / "fifo"), "out": str(tmp_path / "out")}


def api_error(call) -> EdgepackError:
    """The EdgepackError ``call`` raises; no other exception and no RuntimeWarning on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(EdgepackError) as info:
            call()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize("case", SAME_MESSAGE)
def test_api_and_cli_refuse_a_bad_value_with_one_message(case, paths, tmp_path):
    call, argv = SAME_MESSAGE[case]
    before = tree(tmp_path)
    message = str(api_error(lambda: call(paths)))
    if "FIFO" in case:  # by what it is, found with stat: opening a FIFO would wait forever
        assert "is a FIFO, not a regular file" in message
    assert tree(tmp_path) == before
    code, _, err, _ = run_edgepack(*[a.format(**paths) for a in argv], cwd=tmp_path, timeout=120)
    assert code == 2 and err == f"edgepack {argv[0]}: error: {message}\n"
    assert tree(tmp_path) == before


@settings(max_examples=60, deadline=None)
@example("--")  # argparse strips a "--" even from an option's value: it once reached bench as count=[]
@given(st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=6)))
def test_count_flag_and_api_agree_on_every_value(text):
    """Whatever --count receives, the parser accepts it as the API does, or says what the API says."""
    from edgepack.cli.main import build_parser
    from edgepack.validate import check_count

    try:
        expected, message = check_count(text, "--count"), None
    except EdgepackError as e:
        expected, message = None, str(e)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parsed = build_parser().parse_args(["bench", "art", f"--count={text}"]).count
        except SystemExit as e:
            assert e.code == 2
            parsed = None
    if message is None:
        assert parsed == expected and err.getvalue() == ""
    else:
        assert err.getvalue() == f"edgepack bench: error: {' '.join(message.split())}\n"


def _small_model():
    from edgepack.model.mobilenet import MobileNetV1

    return MobileNetV1(0.25, 32, 10)


API_ONLY = {  # arguments only the Python API can receive: one line, an edgepack error, no raw TypeError
    "bench None": (lambda p: edgepack.bench(None), "artifact None is not a path"),
    "bench timeout 1e300": (lambda p: edgepack.bench(p["artifact"], timeout=1e300), "--timeout 1e+300 is not a number of seconds"),
    "compile a string": (lambda p: edgepack.compile("not a model", "host"), "'not a model' is a str, not a torch.nn.Module"),
    "compile target None": (lambda p: edgepack.compile(None, None), "target None is not a target name"),
    "float16 model": (lambda p: edgepack.compile(_small_model().half(), "host", output=p["out"]), "is float16"),
    "meta-device model": (lambda p: edgepack.compile(_small_model().to("meta"), "host", output=p["out"]), "meta device"),
    "debug None": (lambda p: edgepack.debug(None), "artifact None is not a path"),
}


@pytest.mark.parametrize("case", API_ONLY)
def test_api_refuses_what_the_cli_cannot_receive(case, paths):
    call, words = API_ONLY[case]
    message = str(api_error(lambda: call(paths)))
    assert words in message and "\n" not in message
    assert not os.path.exists(paths["out"])


@pytest.mark.parametrize("labels", [np.arange(16) % 13, np.arange(16) - 1], ids=["label 12", "label -1"])
def test_api_refuses_labels_outside_the_classes_as_the_cli_does(labels, tmp_path):
    """In-memory labels get the CLI's check of an .npz's labels: the same message but for the source."""
    images = np.random.default_rng(0).integers(0, 256, (16, 3, 32, 32)).astype(np.uint8)
    api = api_error(lambda: edgepack.compile(target="host", alpha=0.25, resolution=32, output=str(tmp_path / "api"),
                                             eval_data=(torch.from_numpy(images / 127.5 - 1).float(), labels)))
    np.savez(tmp_path / "eval.npz", images=images, labels=labels)
    code, _, err, _ = run_edgepack("compile", "--target", "host", *SMALL[:4], "--eval-data", tmp_path / "eval.npz",
                                   "-o", tmp_path / "cli")
    assert_one_line(code, err, 2, "labels span")
    assert str(api).startswith("in-memory eval_data: labels span")
    assert err.split(": labels span", 1)[1] == str(api).split(": labels span", 1)[1] + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.npz"]


@pytest.fixture(scope="module")
def small_artifact(small_artifacts):
    return small_artifacts("host")


OTHER_MODELS = {  # model -> what the message says
    "wider MobileNetV1": "does not match the artifact: plan layer",
    "another architecture": "does not match the artifact: plan layer",
    "a 1-channel model": "cannot run the artifact's (3, 32, 32) inputs (RuntimeError",
}


@pytest.mark.slow
@pytest.mark.parametrize("other", OTHER_MODELS)
def test_debug_with_a_different_model_is_one_line(small_artifact, other):
    from torch import nn

    from edgepack.model.mobilenet import MobileNetV1

    channels = 1 if other == "a 1-channel model" else 3
    model = MobileNetV1(0.5, 32, 10) if other == "wider MobileNetV1" else nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    message = str(api_error(lambda: edgepack.debug(small_artifact, model=model)))
    assert OTHER_MODELS[other] in message and message.endswith("pass the model the artifact was compiled from")
    assert "\n" not in message
