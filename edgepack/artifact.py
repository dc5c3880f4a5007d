"""The artifact folder: files + manifest.json with the sha256 of every file.

Written into a temporary sibling folder and renamed into place, so a failed or interrupted
compile leaves nothing half-written; ``verify`` refuses a tampered or partial folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgepack import manifest_schema
from edgepack.errors import ArtifactError, OutputError
from edgepack.files import kind_of as path_kind
from edgepack.manifest_schema import Manifest  # artifact.Manifest: what load() and read() return

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # Ed25519 signature of manifest.json (edgepack.signing)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


ARTIFACT_FORMAT = "edgepack-artifact"
# Names edgepack gives its own siblings of an output folder OUT: only these are ever removed.
PARTIAL, OLD, LOCK = ".{}.edgepack-partial-", ".{}.edgepack-old", ".{}.edgepack-lock"
_HELD: set[Path] = set()  # outputs this process holds the lock of
_PARTIAL: set[Path] = set()  # temporary artifact folders this process is writing
_COMMIT = {"active": False, "signal": None}  # renaming into place: a stop signal waits for the end of it


def abandon() -> None:
    """Remove this process's partial artifact folders and lock files: what a stop signal's handler calls
    before it exits (edgepack.cli.main), since an exception raised from it could cross native code."""
    for tmp in list(_PARTIAL):
        shutil.rmtree(tmp, ignore_errors=True)
    for out in list(_HELD):
        with contextlib.suppress(OSError):
            os.unlink(out.with_name(LOCK.format(out.name)))


def defer_signal(signum: int) -> bool:
    """True (and the signal is re-sent once the rename is done) while an artifact is being renamed into place."""
    if _COMMIT["active"]:
        _COMMIT["signal"] = signum
        return True
    return False


def kind_of(path: Path) -> str | None:
    """None for a regular file (not a symlink), "missing", or what else it is: checked before any open."""
    return "missing" if not os.path.lexists(path) else path_kind(path, follow_links=False)


def _tree(folder: Path):
    """(relative name, kind_of) of everything under ``folder`` except folders, never following a symlink."""
    for root, dirs, files in os.walk(folder):
        for name in sorted(files) + [d for d in sorted(dirs) if os.path.islink(os.path.join(root, d))]:
            path = Path(root) / name
            yield path.relative_to(folder).as_posix(), kind_of(path)


def _is_edgepack_manifest(folder: Path) -> dict | None:
    if kind_of(folder / MANIFEST) is not None:
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ours = isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) and (
        manifest.get("format") == ARTIFACT_FORMAT or "edgepack_version" in manifest)
    return manifest if ours else None


def replace_blockers(out: Path) -> list[str]:
    """Why ``out`` may not be replaced without --force: anything in it edgepack did not write, as written."""
    manifest = _is_edgepack_manifest(out)
    if manifest is None:
        return ["not an edgepack artifact"]
    listed = manifest["files"]
    problems = []
    for name, kind in _tree(out):
        if name in (MANIFEST, SIGNATURE) and kind is None:
            continue
        if name not in listed or kind is not None:
            problems.append(f"{name} is not part of the artifact" + (f" ({kind})" if kind else ""))
        elif not isinstance(listed[name], dict) or sha256(out / name) != listed[name].get("sha256"):
            problems.append(f"{name} was modified")
    return problems


def check_output_dir(out: Path, force: bool = False, inputs: dict | None = None) -> None:
    """Refuse an output edgepack must not replace: a file, a folder that is not an edgepack artifact
    (never, even with --force), an artifact holding files edgepack did not write (unless --force), a
    folder inside an artifact or holding one, or one that holds an input of this compile (``inputs``:
    flag -> path), which replacing it would delete."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"output {out} exists and is not a folder: pass -o with a new or empty folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} (a parent of output {out}) is a file: pass -o with a folder path")
            break
    _check_not_nested(out)
    _check_inputs_outside(out, inputs or {})
    if not out.is_dir() or not any(out.iterdir()):
        return
    problems = replace_blockers(out)
    if problems == ["not an edgepack artifact"]:
        raise OutputError(f"output folder {out} is not empty and not an edgepack artifact: nothing was changed; "
                          "pass -o with a new or empty folder")
    if problems and not force:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise OutputError(f"output folder {out} is an edgepack artifact with changes ({shown}): move them out, "
                          "choose another -o, or pass --force to replace it anyway")


def _check_not_nested(out: Path) -> None:
    """An output inside an artifact would break that artifact (its manifest does not list the new files);
    an artifact inside the output would be deleted with it."""
    resolved = out.resolve()
    for parent in resolved.parents:
        if _is_edgepack_manifest(parent) is not None:
            raise OutputError(f"output {out} is inside the edgepack artifact {parent}, which it would break: "
                              "choose a -o outside it")
    for folder in _subfolders(resolved, deep=_is_edgepack_manifest(resolved) is not None):
        if _is_edgepack_manifest(folder) is not None:
            raise OutputError(f"output {out} holds the edgepack artifact {folder}, which replacing it would "
                              "delete: nothing was changed; choose another -o")


def _subfolders(folder: Path, deep: bool) -> list[Path]:
    """The folders under ``folder`` (not following links): all of them in an artifact (a small tree), only its
    children elsewhere (any other non-empty folder is refused anyway: this only names the artifact in it)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    if not deep:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    return sorted(Path(root) / d for root, dirs, _ in os.walk(folder) for d in dirs
                  if not os.path.islink(os.path.join(root, d)))


def _check_inputs_outside(out: Path, inputs: dict) -> None:
    resolved = out.resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        given = Path(path).resolve()
        if given == resolved or resolved in given.parents:
            raise OutputError(f"output {out} holds the {flag} input {path}, which replacing it would delete: "
                              "choose a -o elsewhere")


@contextlib.contextmanager
def output_lock(out: Path):
    """Hold ``.OUT.edgepack-lock`` beside ``out`` for the whole compile: a second compile to the same folder
    fails at once instead of silently racing the first. Also removes what killed runs left behind."""
    out = Path(out).absolute()
    if out in _HELD:  # re-entrant within one process (the CLI locks before the heavy imports, then compiles)
        yield out.with_name(LOCK.format(out.name))
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the parent folder of output {out} ({e.strerror}): choose a writable -o")
    path = out.with_name(LOCK.format(out.name))
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write beside output {out} ({e.strerror}): choose a writable -o")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"another edgepack run is writing {out} (it holds {path.name}): wait for it to finish "
                              "or choose another -o")
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and flock: take the new one
    _HELD.add(out)
    try:
        _remove_leftovers(out)
        yield path
    finally:
        _HELD.discard(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _remove_leftovers(out: Path) -> None:
    """Partial and old folders of a run that was killed (SIGKILL, power loss); safe under the lock."""
    for prefix in (PARTIAL.format(out.name), OLD.format(out.name)):
        for p in out.parent.glob(glob.escape(prefix) + "*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out: Path, force: bool = False):
    """Yield a temporary folder; on success replace ``out`` with it, on failure delete it.
    Call under ``output_lock(out)``: the output is re-checked here, just before it is replaced."""
    out = Path(out).absolute()
    check_output_dir(out, force)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=PARTIAL.format(out.name), dir=out.parent))
    except OSError as e:
        raise OutputError(f"cannot write beside output {out} ({e.strerror}): choose a writable -o")
    _PARTIAL.add(tmp)
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; an artifact is meant to be shared
        check_output_dir(out, force)  # files may have appeared while we compiled
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _PARTIAL.discard(tmp)


def _commit(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place (replacing an old artifact); a stop signal waits for it."""
    _COMMIT["active"] = True
    try:
        if out.exists():
            old = out.with_name(OLD.format(out.name))
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        raise OutputError(f"cannot move the artifact into {out} ({e.strerror or e}): choose a writable -o") from e
    finally:
        _COMMIT["active"] = False
        signum, _COMMIT["signal"] = _COMMIT["signal"], None
        if signum is not None:
            os.kill(os.getpid(), signum)  # the artifact is complete: now stop as asked


def write_manifest(folder: Path, manifest: dict) -> dict:
    files = sorted(name for name in (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
                   if name not in (MANIFEST, SIGNATURE))
    manifest = {"format": ARTIFACT_FORMAT, **manifest, "files": {f: {"sha256": sha256(folder / f), "bytes": (folder / f).stat().st_size} for f in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    """The manifest, checked against the artifact schema (edgepack.manifest_schema) before anyone reads it."""
    path = Path(folder) / MANIFEST
    return manifest_schema.check(_read_json(folder), str(path))


def read(folder: Path) -> Manifest:
    """The manifest as a typed Manifest, checked as by ``read_manifest`` (its files are not: see ``load``)."""
    return manifest_schema.parse(_read_json(folder), str(Path(folder) / MANIFEST))


def load(folder: Path) -> Manifest:
    """The artifact's typed Manifest once every file is checked as by ``verify``: what bench reads."""
    folder = Path(folder)
    manifest = read(folder)
    _check_files(folder, manifest.raw)
    return manifest


def _read_json(folder: Path):
    """manifest.json parsed, not yet checked; one ArtifactError line when it cannot be."""
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise ArtifactError(f"artifact {folder} does not exist: compile it with `edgepack compile -o {folder}`")
    kind = kind_of(path)
    if kind == "missing":
        raise ArtifactError(f"{folder} has no {MANIFEST}: it is not a complete artifact, recompile it")
    if kind is not None:
        raise ArtifactError(f"{path} is {kind}, not a regular file: recompile the artifact, do not edit artifacts")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}): recompile the artifact")
    except OSError as e:
        raise ArtifactError(f"{path} cannot be read ({e.strerror}): check its permissions")


def verify(folder: Path) -> dict:
    """Check every file listed in the manifest exists with its sha256, and no file is unlisted
    (manifest.sig, the signature of the manifest, cannot be listed in it: edgepack.signing checks it)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    _check_files(folder, manifest)
    return manifest


def _check_files(folder: Path, manifest: dict) -> None:
    listed = manifest["files"]
    present = dict(_tree(folder))
    problems = [f"{name} is {kind}, not a regular file" for name, kind in present.items() if kind is not None]
    for name, info in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name} is missing")
        elif present[name] is None and sha256(folder / name) != info["sha256"]:
            problems.append(f"{name} was modified (sha256 mismatch)")
    problems += [f"{name} is not in the manifest" for name, kind in present.items()
                 if kind is None and name not in (MANIFEST, SIGNATURE) and name not in listed]
    if problems:
        raise ArtifactError(f"artifact {folder} failed verification: {'; '.join(problems)}: recompile it, do not edit artifacts")
