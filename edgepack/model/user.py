"""A user's own nn.Module on the CLI: ``--model FILE.py:NAME`` or ``--model package.module:NAME``,
where NAME is an nn.Module class (built with no arguments) or a function returning one, and
``--checkpoint`` its state dict. The spec is checked without importing torch (parse_model_spec);
the module is imported only when the compile starts (load_user_model). Constructors run after
``torch.manual_seed(0)``, so a model built without a checkpoint is the same on every run.

The user's code (the module's import, NAME(), and a probe forward on the input the data will have) runs
under one guard (call_user_code): an exception, ``sys.exit`` or a KeyboardInterrupt it raises is the
user's code failing, exit 2 naming the file, the function and the original message, never an exit
code, an "interrupted" or an "internal error" that edgepack did not choose.
"""
from __future__ import annotations

import re
from pathlib import Path

from edgepack.errors import CheckpointError, ConfigError, EdgepackError, UnsupportedModelError
from edgepack.model.builtin import BUILTIN

SPEC_FORMAT = "FILE.py:NAME or package.module:NAME (NAME an nn.Module class or a function returning one)"


def parse_model_spec(spec: str) -> tuple[str, str]:
    """(file or module, name) of a --model spec; a missing file or a malformed spec is a ConfigError."""
    where, sep, name = str(spec).rpartition(":")
    if not sep:  # a bare name: most likely a built-in model's, misspelt
        raise ConfigError(f"--model {spec!r} is neither a built-in model ({', '.join(BUILTIN)}) nor {SPEC_FORMAT}")
    if not where or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"--model {spec!r} is not {SPEC_FORMAT}")
    if where.endswith(".py"):
        if not Path(where).is_file():
            raise ConfigError(f"--model {spec}: {where} does not exist: pass the Python file that defines {name}")
    elif not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", where):
        raise ConfigError(f"--model {spec!r} is not {SPEC_FORMAT}")
    return where, name


def load_user_model(spec: str, checkpoint: str | None = None):
    """Import and build the --model module; load ``checkpoint`` (a state dict) into it when given."""
    import importlib
    import importlib.util

    import torch
    from torch import nn

    where, name = parse_model_spec(spec)

    def import_module():
        if where.endswith(".py"):
            path = Path(where).resolve()
            module_spec = importlib.util.spec_from_file_location(f"edgepack_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)

    module = call_user_code(import_module, f"--model {spec}: importing {where}", "fix the module", ConfigError)
    factory = getattr(module, name, None)
    if factory is None:
        raise ConfigError(f"--model {spec}: {where} defines no {name}: name an nn.Module class or a function returning one")
    torch.manual_seed(0)
    model = call_user_code(factory, f"--model {spec}: {name}()", f"fix {name} in {where}: it must build the model with no arguments")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {spec}: {name}() returned a {type(model).__name__}, not a torch.nn.Module")
    if checkpoint:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            model.load_state_dict(state, strict=True)
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(f"checkpoint {checkpoint} does not load into {type(model).__name__} ({type(e).__name__}: "
                                  f"{first}): save it with torch.save(model.state_dict(), path) from the same class")
    return model


def call_user_code(call, what: str, fix: str, error: type[EdgepackError] = UnsupportedModelError):
    """``call()``, the user's code: whatever it raises, a ``sys.exit`` or a KeyboardInterrupt included (a real
    Ctrl-C on the CLI never gets here: its signal handler ends edgepack at once), becomes ``error`` naming
    ``what`` and the original message."""
    try:
        return call()
    except BaseException as e:  # noqa: BLE001 - the user's code may end any way it likes; we say how it did
        raise error(f"{what} failed ({_how(e)}): {fix}") from e


def _how(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    if isinstance(e, KeyboardInterrupt):
        return "it raised KeyboardInterrupt"
    message = " ".join(str(e).split())
    return f"{type(e).__name__}: {message[:300]}" if message else type(e).__name__


def probe_forward(model, input_shape: tuple[int, ...], name: str) -> None:
    """One forward pass, in eval mode, on a zero batch of the shape the calibration and eval data will have,
    before any data is read: a model that cannot take edgepack's (N, C, H, W) float32 images, or that does
    not return (N, classes) logits, fails here by name. ``name``: the --model spec, or the class name."""
    import torch

    batch = (2, *input_shape)
    what = (f"vectors of {input_shape[0]} values" if len(input_shape) == 1
            else f"{input_shape[0]}-channel {input_shape[1]}x{input_shape[2]} images")
    fix = f"it must take edgepack's {what}, float32 {batch}, and return (N, classes) logits"
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = call_user_code(lambda: model(torch.zeros(batch)), f"{name}: {type(model).__name__}.forward on a "
                                 f"{batch} batch", fix)
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != batch[0]:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise UnsupportedModelError(f"{name}: {type(model).__name__}.forward returned {got}, not (N, classes) logits: {fix}")
