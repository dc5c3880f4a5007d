"""Issue 12 item 2: `debug`, `report` and `sweep` on artifacts built from a checkpoint or a user model.

debug rebuilds the fp32 model the artifact was compiled from (its recorded checkpoint or --model file,
both checked by sha256) and runs on the calibration inputs it was quantized with (its recorded source,
--mean/--std and size); report works on them, and on unlabelled artifacts (fidelity, no accuracy).
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import edgepack
from edgepack.benchmark.debug import debug_artifact
from edgepack.errors import ConfigError
from tests.conftest import run_cli
from tests.e2e.test_user_model import NET_SOURCE, seven_class_net

pytestmark = pytest.mark.slow  # every test here compiles an artifact

CALIB, EVAL = 24, 16


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def rows_equal(a: dict, b: dict) -> bool:
    return [r["isolated_sqnr_db"] for r in a["layers"]] == [r["isolated_sqnr_db"] for r in b["layers"]]


@pytest.fixture(scope="module")
def checkpoint_artifact(tmp_path_factory):
    """MobileNetV1 0.25-32 from a checkpoint that is not the shipped weights, calibrated on an .npz of
    pixels mapped with ImageNet's mean/std."""
    from edgepack.model.weights import pretrained

    tmp = tmp_path_factory.mktemp("ckpt")
    model = pretrained(0.25, 32, 10)
    with torch.no_grad():  # other weights than the shipped ones: debug must use these
        for p in model.parameters():
            p.mul_(1.0 + 0.2 * torch.rand_like(p))
    torch.save(model.state_dict(), tmp / "mine.pt")
    pixels = np.random.default_rng(3).integers(0, 256, (CALIB + EVAL, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(CALIB + EVAL) % 10
    np.savez(tmp / "calib.npz", images=pixels[:CALIB], labels=labels[:CALIB])
    np.savez(tmp / "eval.npz", images=pixels[CALIB:], labels=labels[CALIB:])
    out = edgepack.compile(target="host", alpha=0.25, resolution=32, checkpoint=str(tmp / "mine.pt"),
                           calibration=str(tmp / "calib.npz"), eval_data=str(tmp / "eval.npz"),
                           mean="0.485,0.456,0.406", std="0.229,0.224,0.225", output=str(tmp / "art"))
    return out, model, tmp


def test_debug_of_a_checkpoint_artifact_uses_its_checkpoint_and_calibration(checkpoint_artifact, capsys):
    out, model, tmp = checkpoint_artifact
    code, stdout, err = run_cli(capsys, "debug", str(out), "--images", "8")
    assert code == 0, err
    assert f"npz:{tmp / 'calib.npz'}" in stdout and "worst layers" in stdout
    d = debug_artifact(out, images=8)
    assert d["images"] == 8 and rows_equal(d, debug_artifact(out, images=8, model=model))
    from edgepack.model.weights import pretrained
    assert not rows_equal(d, debug_artifact(out, images=8, model=pretrained(0.25, 32, 10)))  # not the shipped weights
    # the calibration inputs are the compile's: the .npz mapped with the recorded mean/std, not [-1, 1]
    from edgepack.data import load_npz
    mapped = load_npz(tmp / "calib.npz", 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).images[:8]
    assert rows_equal(d, debug_artifact(out, images=8, model=model, calibration=mapped))
    assert not rows_equal(d, debug_artifact(out, images=8, model=model, calibration=(mapped * 0.229 + 0.485 - 0.5) / 0.5))


def test_report_of_a_checkpoint_artifact(checkpoint_artifact, capsys):
    out, _, tmp = checkpoint_artifact
    code, stdout, err = run_cli(capsys, "report", str(out), "-o", str(tmp / "r.html"))
    assert code == 0, err
    page = (tmp / "r.html").read_text()
    assert "Per-layer error" in page and "calib.npz" in page and "Device accuracy (bench)" in page


def test_debug_refuses_a_changed_or_missing_checkpoint_or_calibration(checkpoint_artifact, tmp_path, capsys):
    import shutil

    out, _, tmp = checkpoint_artifact
    for name in ("mine.pt", "calib.npz"):
        original = tmp_path / name
        shutil.copy(tmp / name, original)
        try:
            if name.endswith(".npz"):  # other pixels, still a valid .npz
                with np.load(original) as z:
                    np.savez(tmp / name, images=255 - z["images"], labels=z["labels"])
            else:
                with open(tmp / name, "ab") as f:
                    f.write(b"\0")
            code, _, err = run_cli(capsys, "debug", str(out))
            assert code == 2 and name in one_line(err) and "changed" in err and "recompile" in err, err
            (tmp / name).unlink()
            code, _, err = run_cli(capsys, "debug", str(out))
            assert code == 2 and name in one_line(err) and "gone" in err, err
        finally:
            shutil.copy(original, tmp / name)
    assert run_cli(capsys, "debug", str(out), "--images", "4")[0] == 0


@pytest.fixture(scope="module")
def user_model_artifact(tmp_path_factory):
    """The 7-class user network through the CLI: --model FILE.py:NAME + --checkpoint, an .npz of pixels
    with --mean 0 --std 1 and no eval data (the last 20% of the calibration inputs measure fidelity)."""
    tmp = tmp_path_factory.mktemp("user")
    (tmp / "net.py").write_text(NET_SOURCE)
    model = seven_class_net()
    torch.save(model.state_dict(), tmp / "net.pt")
    pixels = np.random.default_rng(4).integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
    np.savez(tmp / "calib.npz", images=pixels, labels=np.arange(30) % 7)
    return tmp, model


def test_debug_and_report_of_a_user_model_artifact(user_model_artifact, capsys):
    tmp, model = user_model_artifact
    code, _, err = run_cli(capsys, "compile", "--target", "host", "--model", f"{tmp / 'net.py'}:SevenClassNet",
                           "--checkpoint", str(tmp / "net.pt"), "--resolution", "32", "--calibration", str(tmp / "calib.npz"),
                           "--mean", "0", "--std", "1", "-o", str(tmp / "art"))
    assert code == 0, err
    spec = f"{tmp / 'net.py'}:SevenClassNet"
    code, _, err = run_cli(capsys, "debug", str(tmp / "art"))  # the artifact names code: debug runs it only when asked
    assert code == 2 and f"--model {spec}" in one_line(err) and "does not run code an artifact names" in err, err
    code, stdout, err = run_cli(capsys, "debug", str(tmp / "art"), "--model", spec, "--json", str(tmp / "d.json"))
    assert code == 0, err
    d = json.loads((tmp / "d.json").read_text())
    assert d["images"] == 24 and d["inputs"].startswith(f"npz:{tmp / 'calib.npz'}")  # the 24 kept to calibrate
    inputs = torch.from_numpy(np.load(tmp / "calib.npz")["images"][:24].astype(np.float32) / 255)
    assert rows_equal(d, debug_artifact(tmp / "art", model=model, calibration=inputs))
    assert all(r["isolated_sqnr_db"] > 15 for r in d["layers"]), d["layers"]
    code, _, err = run_cli(capsys, "report", str(tmp / "art"), "--model", spec)
    assert code == 0, err
    page = (tmp / "art.report.html").read_text()
    assert "Per-layer error" in page and "SevenClassNet" in page and "Top-1 agreement with int8 reference" in page
    assert "device accuracy" not in page and "fp32 accuracy" not in page  # unlabelled: fidelity, no accuracy
    (tmp / "net.py").write_text(NET_SOURCE + "\n# edited\n")
    try:
        code, _, err = run_cli(capsys, "debug", str(tmp / "art"), "--model", spec)
        assert code == 2 and "net.py" in one_line(err) and "is not the code" in err, err
    finally:
        (tmp / "net.py").write_text(NET_SOURCE)


def test_debug_of_an_in_memory_model_needs_the_model(tmp_path, capsys):
    """The Python API's model and calibration are not on disk: debug says to pass the model, then runs on
    the artifact's own eval inputs; report renders without the per-layer section."""
    model = seven_class_net()
    rng = np.random.default_rng(5)
    calibration = rng.random((CALIB, 3, 32, 32), dtype=np.float32)
    out = edgepack.compile(model, "host", calibration=calibration, output=str(tmp_path / "api"))
    with pytest.raises(ConfigError, match="model=") as e:
        edgepack.debug(out)
    assert len(str(e.value).splitlines()) == 1
    d = edgepack.debug(out, model=model)
    assert d["images"] == round(CALIB * 0.2) and "not stored" in d["inputs"]
    assert rows_equal(edgepack.debug(out, model=model, calibration=calibration[:19]),
                      debug_artifact(out, images=19, model=model, calibration=torch.from_numpy(calibration[:19])))
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 0, err
    assert "not computed" in (tmp_path / "api.report.html").read_text()


def _image_folder(root, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    for c in range(7):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")


def test_sweep_of_a_user_model_over_two_resolutions(user_model_artifact, tmp_path, capsys):
    tmp, _ = user_model_artifact
    _image_folder(tmp_path / "cal", 3, 6)
    _image_folder(tmp_path / "ev", 2, 7)
    spec = f"{tmp / 'net.py'}:SevenClassNet"
    common = ["sweep", "--target", "host", "--model", spec, "--checkpoint", str(tmp / "net.pt"), "--resolution", "32,64",
              "--calibration", str(tmp_path / "cal"), "--eval-data", str(tmp_path / "ev"), "--mean", "0", "--std", "1"]
    code, _, err = run_cli(capsys, *common, "--alpha", "0.5", "-o", str(tmp_path / "refused"))
    assert code == 2 and "--alpha" in one_line(err) and not (tmp_path / "refused").exists()
    code, _, err = run_cli(capsys, *common, "--jobs", "1", "-o", str(tmp_path / "sw"))
    assert code == 0, err
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert [(r["model"], r["alpha"], r["resolution"]) for r in rows] == [("SevenClassNet", None, 32), ("SevenClassNet", None, 64)]
    assert all(r["passed"] and r["int8_accuracy"] is not None for r in rows)
    assert rows[1]["macs"] > 3.5 * rows[0]["macs"]
    for r in rows:
        manifest = json.loads((tmp_path / "sw" / f"r{r['resolution']}" / "manifest.json").read_text())
        assert manifest["model"]["classes"] == 7 and manifest["eval"]["images"] == 14
        assert manifest["preprocessing"]["mean"] == [0, 0, 0] and manifest["model"]["checkpoint"]["path"] == str(tmp / "net.pt")
    code, _, err = run_cli(capsys, "report", str(tmp_path / "sw"))
    assert code == 0, err
