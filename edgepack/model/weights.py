"""Default digits weights shipped in the package, and user checkpoints.

Shipped weights are compact .npz files: conv/FC weights as float16 (the 16-bit rounding is what
the accuracy claims were measured with), BatchNorm tensors and biases as float32.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from edgepack.errors import CheckpointError
from edgepack.model import builtin
from edgepack.validate import check_alpha, check_regular_file

WEIGHTS_DIR = builtin.WEIGHTS_DIR
shipped_alphas = builtin.shipped_alphas  # listed without torch, for the CLI's checks
DEFAULT_ALPHAS = (1.0, 0.75, 0.5, 0.25)
DIGITS_CLASSES = 10


def weights_path(alpha: float, model: str = "mobilenet_v1") -> Path:
    return WEIGHTS_DIR / f"{model}_{alpha:g}_digits.npz"


def save_compact(model: torch.nn.Module, path: Path) -> None:
    """Store a state dict compactly: >=2-D float tensors as float16, the rest as they are."""
    arrays = {}
    for name, t in model.state_dict().items():
        a = t.detach().cpu().numpy()
        arrays[name] = a.astype(np.float16) if a.dtype == np.float32 and a.ndim >= 2 else a
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())


def load_compact(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]) for k in z.files}


def pretrained(alpha: float, resolution: int = 224, num_classes: int = DIGITS_CLASSES,
               model: str = builtin.DEFAULT) -> torch.nn.Module:
    """The built-in ``model`` with the shipped digits weights (one checkpoint per alpha serves every resolution)."""
    alpha = check_alpha(alpha, builtin.max_alpha(model))
    path = weights_path(alpha, model)
    if not path.exists():
        shipped = ", ".join(f"{a:g}" for a in shipped_alphas(model)) or "none yet"
        which, option = ("", "") if model == builtin.DEFAULT else (f" {model}", f" --model {model}")
        raise CheckpointError(
            f"no shipped{which} weights for alpha {alpha:g} (shipped: {shipped}): pass --checkpoint PATH "
            f"or train them with scripts/train_digits.py{option} --alpha {alpha:g}"
        )
    state = load_compact(path)
    if num_classes != DIGITS_CLASSES:
        # keep the feature extractor, re-initialise the classifier for a different label set
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    net = builtin.build(model, alpha, resolution, num_classes)
    net.load_state_dict(state, strict=num_classes == DIGITS_CLASSES)
    return net.eval()


def check_finite(state: dict, where: str) -> None:
    """NaN or infinite weights poison calibration and every figure after it: refuse them by name."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{where}: {name} has {bad} NaN or infinite values: retrain or repair the weights")


def load_checkpoint(path: str | Path, alpha: float, resolution: int, num_classes: int,
                    model_name: str = builtin.DEFAULT) -> torch.nn.Module:
    """A state dict of the built-in ``model_name`` saved with torch.save (or an .npz from save_compact)."""
    path = Path(path)
    cls = builtin.BUILTIN[builtin.check_builtin(model_name)][1]
    check_regular_file(path, "checkpoint", CheckpointError, f"pass the path of a {cls} state dict")  # never open a FIFO
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the path of a {cls} state dict")
    try:
        if path.suffix == ".npz":
            state = load_compact(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch state dict ({type(e).__name__}): re-save it with torch.save(model.state_dict(), path)")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors: save model.state_dict()")
    check_finite(state, f"checkpoint {path}")
    model = builtin.build(model_name, alpha, resolution, num_classes)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        found = "; ".join(f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected)) if keys)
        raise CheckpointError(f"checkpoint {path} is not a state dict of edgepack's {cls} ({found}): save "
                              f"{cls}(...).state_dict(), or compile your own nn.Module with edgepack.compile(model, ...)")
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"checkpoint {path} does not match {cls}(alpha={alpha:g}, classes={num_classes}): {k} has shape "
            f"{tuple(state[k].shape)}, expected {tuple(expected[k].shape)}: pass the --alpha and --classes it was trained with")
    model.load_state_dict(state, strict=True)
    return model.eval()
