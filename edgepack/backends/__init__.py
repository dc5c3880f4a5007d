"""Backends, by the name a target file gives. Each is a package of the same parts: ``spec.py`` (what its
target tables say, typed, with the defaults; backends that read no table have none), ``lower.py``
(``lower(build, folder) -> Lowered``: writes its files, returns what the manifest records, changes
nothing else; see lowered.py) and ``runner.py`` (``Runner(folder, manifest, **options)`` for bench, a
subclass of edgepack.backends.runner.Runner, the one interface bench calls; it declares its options).
The backends are the ones edgepack.targets.backends lists (the only list); modules are imported
lazily so heavy runtimes load only when used."""
from __future__ import annotations

import importlib

from edgepack.errors import ToolchainError, missing_dependency
from edgepack.targets.backends import MODULES


def backend_module(name: str):
    """The module of backend ``name``, imported now: an unknown name or a missing runtime is one ToolchainError line."""
    if name not in MODULES:
        raise ToolchainError(f"backend '{name}' is not available in this edgepack: available are {', '.join(MODULES)}")
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as e:
        raise missing_dependency(e, f"backend '{name}'") or e
