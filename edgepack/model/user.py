"""A user's own nn.Module on the CLI: ``--model FILE.py:NAME`` or ``--model package.module:NAME``,
where NAME is an nn.Module class (built with no arguments) or a function returning one, and
``--checkpoint`` its state dict. The spec is checked without importing torch (parse_model_spec);
the module is imported only when the compile starts (load_user_model). Constructors run after
``torch.manual_seed(0)``, so a model built without a checkpoint is the same on every run.
"""
from __future__ import annotations

import re
from pathlib import Path

from edgepack.errors import CheckpointError, ConfigError

SPEC_FORMAT = "FILE.py:NAME or package.module:NAME (NAME an nn.Module class or a function returning one)"


def parse_model_spec(spec: str) -> tuple[str, str]:
    """(file or module, name) of a --model spec; a missing file or a malformed spec is a ConfigError."""
    where, sep, name = str(spec).rpartition(":")
    if not sep or not where or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
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
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            module_spec = importlib.util.spec_from_file_location(f"edgepack_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as e:
        raise ConfigError(f"--model {spec}: importing {where} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): fix the module")
    factory = getattr(module, name, None)
    if factory is None:
        raise ConfigError(f"--model {spec}: {where} defines no {name}: name an nn.Module class or a function returning one")
    torch.manual_seed(0)
    try:
        model = factory()
    except Exception as e:
        raise ConfigError(f"--model {spec}: {name}() failed ({type(e).__name__}): it must build the model with no arguments")
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
