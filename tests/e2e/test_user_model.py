"""Issue 12, items 1 and 3: a user's own model and data.

A 7-class ReLU6 MobileNet-style network written here with plain torch.nn (no edgepack code), fed
inputs in [0, 1] at 32x32: compiled through the NNCF-shaped Python API from in-memory arrays and
benched on several targets, and through the CLI (`--model FILE.py:NAME`, an .npz, `--mean/--std`).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgepack
from edgepack.artifact import verify
from edgepack.errors import DataError
from tests.conftest import run_cli

NET_SOURCE = '''
from torch import nn


def separable(cin, cout, stride):
    return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)]


class SevenClassNet(nn.Module):
    """An independently written MobileNet-style network: ReLU6, 7 classes."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True),
                                      *separable(8, 16, 1), *separable(16, 32, 2), *separable(32, 32, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 7))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))
'''
RES, CALIBRATION, EVAL = 32, 48, 32


def seven_class_net():
    return net_from_source(NET_SOURCE, "SevenClassNet")


def net_from_source(source: str, class_name: str, *args):
    """The class ``class_name`` defined by ``source``, built with ``args`` (seeded), in eval mode."""
    namespace: dict = {}
    exec(source, namespace)
    torch.manual_seed(0)
    model = namespace[class_name](*args).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained network has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def compile_user_net(source: str, class_name: str, target: str, folder: Path, res: int, classes: int):
    """``class_name`` of ``source`` compiled through the Python API for ``target`` on 48 seeded random inputs,
    with 16 labelled eval inputs: the artifact folder and its verified manifest."""
    images = np.random.default_rng(0).random((64, 3, res, res), dtype=np.float32)
    out = edgepack.compile(net_from_source(source, class_name), target, calibration=images[:48],
                           eval_data=(images[48:], np.arange(16) % classes), output=str(folder / target))
    return out, verify(out)


def assert_bench_passes(out, target: str) -> None:
    """bench PASS; bit-exact golden and eval checks on an integer executor (none on host's ONNX Runtime)."""
    report = edgepack.bench(out, count=3, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    exact = [c["name"] for c in report["checks"] if "bit-exact" in c["name"]]
    assert len(exact) == (0 if target == "host" else 2), report["checks"]


def labels_by_rule(model, images: np.ndarray) -> np.ndarray:
    """A fixed rule: the model's own top-1 on even images, the next class on odd ones (accuracy ~50%)."""
    with torch.no_grad():
        top1 = model(torch.from_numpy(images)).argmax(1).numpy()
    return np.where(np.arange(len(images)) % 2 == 0, top1, (top1 + 1) % 7).astype(np.int64)


@pytest.fixture(scope="module")
def user_data():
    model = seven_class_net()
    rng = np.random.default_rng(0)
    images = rng.random((CALIBRATION + EVAL, 3, RES, RES), dtype=np.float32)  # inputs in [0, 1], as the model expects
    calibration, eval_images = images[:CALIBRATION], images[CALIBRATION:]
    return model, calibration, eval_images, labels_by_rule(model, eval_images)


@pytest.fixture(scope="module")
def api_artifact(user_data, tmp_path_factory):
    """Compiled with in-memory arrays, the output folder left to its default (named after the class)."""
    model, calibration, eval_images, labels = user_data
    cwd = tmp_path_factory.mktemp("api")
    import os

    before = os.getcwd()
    os.chdir(cwd)
    try:
        out = edgepack.compile(model, "host", calibration=calibration, eval_data=(eval_images, labels))
    finally:
        os.chdir(before)
    return out


@pytest.mark.slow
def test_api_compiles_in_memory_arrays_named_after_the_class(api_artifact, user_data):
    model, _, eval_images, labels = user_data
    assert api_artifact.parent.name == "artifacts" and api_artifact.name == "sevenclassnet_32_host_ptq"
    manifest = verify(api_artifact)
    assert manifest["model"]["classes"] == 7 and manifest["model"]["resolution"] == RES
    assert manifest["model"]["name"] == "SevenClassNet" and "in_memory" in manifest["preprocessing"]
    # used exactly as given: the recorded eval copy is the arrays passed, bit for bit
    with np.load(api_artifact / manifest["eval"]["file"]) as z:
        assert np.array_equal(z["images"], eval_images) and np.array_equal(z["labels"], labels)
    with torch.no_grad():
        fp32 = float((model(torch.from_numpy(eval_images)).argmax(1).numpy() == labels).mean())
    assert manifest["metrics"]["fp32_accuracy"] == pytest.approx(fp32, abs=1e-6) and 0.3 < fp32 < 0.7
    assert manifest["quantization"]["calibration"]["images"] == CALIBRATION


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "rpi4", "arm64-a53", "x86-tvm", "cortex-m4", "cortex-m7",
                                    "intel-cpu", "intel-npu"])
def test_user_model_benches_pass_on_every_target(target, user_data, tmp_path):
    """rpi4 / arm64-a53 run under qemu-aarch64, whose runner once took the output size from the
    config (10) instead of the artifact (7); intel-npu's IR is benched on the CPU (no NPU here)."""
    model, calibration, eval_images, labels = user_data
    out = edgepack.compile(model, target, calibration=torch.from_numpy(calibration), eval_data=(eval_images, labels),
                           output=str(tmp_path / target))
    device = {"device": "cpu"} if target == "intel-npu" else {}
    report = edgepack.bench(out, count=3, warmup=1, **device)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert report["accuracy"] is not None and 0.3 < report["accuracy"] < 0.7
    assert report["fidelity"]["top1_agreement_vs_reference"] >= 0.99


@pytest.mark.slow
def test_iterables_of_batches_and_pairs_are_accepted(user_data, tmp_path):
    """A DataLoader of (input, label) pairs for both arguments gives the same artifact as the arrays."""
    model, calibration, eval_images, labels = user_data
    from torch.utils.data import DataLoader, TensorDataset

    cal = DataLoader(TensorDataset(torch.from_numpy(calibration), torch.zeros(CALIBRATION, dtype=torch.long)), batch_size=10)
    ev = DataLoader(TensorDataset(torch.from_numpy(eval_images), torch.from_numpy(labels)), batch_size=7)
    a = edgepack.compile(model, "host", calibration=cal, eval_data=ev, output=str(tmp_path / "loader"))
    b = edgepack.compile(model, "host", calibration=[calibration[:20], calibration[20:]], eval_data=(eval_images, labels),
                         output=str(tmp_path / "arrays"))
    assert (a / "qdq.onnx").read_bytes() == (b / "qdq.onnx").read_bytes()
    assert verify(a)["eval"]["sha256"] == verify(b)["eval"]["sha256"]


@pytest.mark.slow
def test_without_eval_labels_no_accuracy_but_fidelity(user_data, tmp_path):
    model, calibration, _, _ = user_data
    out = edgepack.compile(model, "host", calibration=calibration, output=str(tmp_path / "unlabelled"))
    manifest = verify(out)
    metrics = manifest["metrics"]
    assert metrics["fp32_accuracy"] is None and metrics["int8_accuracy"] is None and "no labelled eval data" in metrics["accuracy_note"]
    assert metrics["int8_vs_fp32"]["sqnr_db"] > 20 and metrics["reference_vs_onnxruntime"]["top1_agreement"] >= 0.99
    held = round(CALIBRATION * 0.2)  # the last 20% of the calibration inputs, not used to calibrate
    assert manifest["eval"]["images"] == held and manifest["eval"]["labelled"] is False
    assert manifest["quantization"]["calibration"]["images"] == CALIBRATION - held
    with np.load(out / "eval_data.npz") as z:
        assert np.array_equal(z["images"], calibration[-held:]) and "labels" not in z.files
    report = edgepack.bench(out, count=3, warmup=1)
    assert report["passed"] and report["accuracy"] is None and "fidelity" in report
    from edgepack.benchmark.run import format_report
    assert "accuracy: none" in format_report(report)


def test_resolution_mismatch_and_wrong_shapes_are_refused_in_one_line(user_data, tmp_path):
    model, calibration, eval_images, labels = user_data
    with pytest.raises(DataError) as e:
        edgepack.compile(model, "host", calibration=calibration, resolution=64, output=str(tmp_path / "x"))
    message = str(e.value)
    assert "32x32" in message and "resolution=64" in message and len(message.splitlines()) == 1
    for bad, what in ((calibration[:, 0], "(N, C, H, W)"), ((calibration * 255).astype(np.uint8), "float")):
        with pytest.raises(DataError) as e:
            edgepack.compile(model, "host", calibration=bad, output=str(tmp_path / "x"))
        assert what in str(e.value) and len(str(e.value).splitlines()) == 1
    with pytest.raises(DataError, match="eval_data has 3x16x8 inputs but calibration has 32x32 inputs"):  # any shape, one
        edgepack.compile(model, "host", calibration=calibration, eval_data=(eval_images[..., :16, :8], labels),
                         output=str(tmp_path / "x"))
    with pytest.raises(DataError, match="eval_data has 16x16 inputs but calibration has 32x32 inputs"):
        edgepack.compile(model, "host", calibration=calibration, eval_data=(eval_images[..., :16, :16], labels),
                         output=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host", "rpi4"])  # ONNX Runtime, the C runner, TVM under qemu
def test_cli_compiles_a_user_model_from_npz_with_mean_and_std(target, user_data, tmp_path, capsys):
    """--model FILE.py:NAME + --checkpoint + an .npz of pixels + --mean/--std; bench reuses the mapping."""
    model, _, _, _ = user_data
    (tmp_path / "net.py").write_text(NET_SOURCE)
    torch.save(model.state_dict(), tmp_path / "net.pt")
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (CALIBRATION + EVAL, RES, RES, 3), dtype=np.uint8)  # NHWC, as images are stored
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    inputs = ((pixels.transpose(0, 3, 1, 2) / np.float32(255.0) - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    labels = labels_by_rule(model, inputs)
    np.savez(tmp_path / "calib.npz", images=pixels[:CALIBRATION], labels=labels[:CALIBRATION])
    np.savez(tmp_path / "eval.npz", images=pixels[CALIBRATION:], labels=labels[CALIBRATION:])
    out = tmp_path / "cli"
    code, _, err = run_cli(capsys, "compile", "--target", target, "--model", f"{tmp_path / 'net.py'}:SevenClassNet",
                           "--checkpoint", str(tmp_path / "net.pt"), "--resolution", str(RES),
                           "--calibration", str(tmp_path / "calib.npz"), "--eval-data", str(tmp_path / "eval.npz"),
                           "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "-o", str(out))
    assert code == 0, err
    manifest = verify(out)
    assert manifest["model"]["classes"] == 7 and manifest["model"]["name"] == "SevenClassNet"
    assert manifest["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert manifest["preprocessing"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    with np.load(out / "eval_data.npz") as z:  # the mapped inputs, as the model saw them
        assert np.allclose(z["images"], inputs[CALIBRATION:], atol=1e-5)
    assert 0.3 < manifest["metrics"]["fp32_accuracy"] < 0.7
    code, stdout, err = run_cli(capsys, "bench", str(out), "--count", "3", "--warmup", "1")
    assert code == 0 and "result: PASS" in stdout, err
    # bench with the compile's own --eval-data maps the pixels as the manifest records (else sha256 differs)
    code, stdout, err = run_cli(capsys, "bench", str(out), "--eval-data", str(tmp_path / "eval.npz"), "--count", "3")
    assert code == 0 and "result: PASS" in stdout, err


@pytest.mark.slow
def test_cli_user_model_without_eval_data_holds_out_calibration(user_data, tmp_path, capsys):
    """Never the digits split: the last 20% of the calibration file measure fidelity, no accuracy."""
    model, _, _, _ = user_data
    (tmp_path / "net.py").write_text(NET_SOURCE)
    pixels = np.random.default_rng(2).integers(0, 256, (40, 3, RES, RES), dtype=np.uint8)
    np.savez(tmp_path / "calib.npz", images=pixels, labels=np.arange(40) % 7)
    code, _, err = run_cli(capsys, "compile", "--target", "host", "--model", f"{tmp_path / 'net.py'}:SevenClassNet",
                           "--resolution", str(RES), "--calibration", str(tmp_path / "calib.npz"),
                           "--mean", "0", "--std", "1", "-o", str(tmp_path / "held"))
    assert code == 0, err
    manifest = verify(tmp_path / "held")
    assert manifest["eval"]["images"] == 8 and manifest["eval"]["labelled"] is False
    assert manifest["preprocessing"]["mean"] == [0, 0, 0] and "in_memory" not in manifest["preprocessing"]
    assert manifest["quantization"]["calibration"]["images"] == 32 and manifest["metrics"]["fp32_accuracy"] is None
    with np.load(tmp_path / "held" / "eval_data.npz") as z:  # mean 0, std 1: pixels / 255, inputs in [0, 1]
        assert np.array_equal(z["images"], pixels[-8:].astype(np.float32) / np.float32(255.0))
    code, stdout, err = run_cli(capsys, "bench", str(tmp_path / "held"), "--count", "3")
    assert code == 0 and "accuracy: none" in stdout, err


def test_bad_model_spec_is_refused_in_one_line(capsys, tmp_path):
    for spec, words in (("nocolon", "FILE.py:NAME"), (f"{tmp_path / 'missing.py'}:Net", "does not exist")):
        code, _, err = run_cli(capsys, "compile", "--target", "host", "--model", spec, "-o", str(tmp_path / "x"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


def test_bad_mean_is_refused_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "--target", "host", "--std", "0.2,0", "-o", str(tmp_path / "x"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--std" in err


def test_classes_without_checkpoint_is_refused_before_torch(tmp_path):
    """Shipped weights exist for the 10 digits classes only: another count needs --checkpoint."""
    script = ("import sys; from edgepack.cli.main import main; "
              f"code = main(['compile', '--target', 'host', '--classes', '5', '-o', {str(tmp_path / 'x')!r}]); "
              "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--checkpoint" in r.stderr and "--classes 5" in r.stderr
    assert r.stdout.strip() == "no torch"
    assert not (tmp_path / "x").exists()


def test_classes_with_random_head_or_quant_none_is_allowed():
    from edgepack.config import CompileConfig

    assert CompileConfig(classes=5, random_head=True).classes == 5
    assert CompileConfig(classes=5, quant="none").classes == 5


def test_tvm_runner_takes_the_output_size_from_the_artifact(tmp_path):
    """The qemu runner's output row size is the artifact's (its golden output), not the config's classes."""
    from edgepack.backends.tvm.runner import output_size

    np.save(tmp_path / "golden_output.npy", np.zeros((8, 7), np.int8))
    assert output_size(tmp_path, {"model": {"classes": 10}}) == 7
