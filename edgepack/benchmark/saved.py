"""A bench result kept beside its artifact (``ARTIFACT.bench.json``), so `edgepack report` shows what bench
measured instead of measuring again (217 s for a cortex-m4 artifact). It lives beside the folder, not in it:
an artifact holds only what its manifest lists (artifact.verify refuses any other file). The result names
the manifest's sha256, so a recompiled artifact never shows an older artifact's figures."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from edgepack import artifact
from edgepack.artifact import MANIFEST, sha256
from edgepack.benchmark import compare
from edgepack.errors import ConfigError
from edgepack.validate import check_regular_file

FORMAT = "edgepack-bench-result"  # marks the files edgepack wrote: no other file is ever replaced
REPORT_KEYS = ("checks", "passed", "accuracy", "eval_images")  # what report reads from a bench report
log = logging.getLogger("edgepack.benchmark")


def path_for(folder) -> Path:
    folder = Path(folder).resolve()
    return folder.with_name(folder.name + ".bench.json")


def manifest_sha256(folder) -> str | None:
    """The sha256 of the artifact's manifest.json, None when there is none to read."""
    try:
        return sha256(Path(folder) / MANIFEST)
    except OSError:
        return None


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def keep(report: dict, folder, manifest_sha: str | None) -> Path | None:
    """Write ``report`` to ARTIFACT.bench.json, replacing only a file edgepack wrote there; returns the path,
    or None (with a warning saying why) when it was not kept. A bench never fails for this."""
    target = path_for(folder)
    if manifest_sha is None:
        return None
    if os.path.lexists(target):
        old = _read(target) if target.is_file() and not target.is_symlink() else None
        if not (isinstance(old, dict) and old.get("format") == FORMAT):
            log.warning("bench result not kept: %s exists and edgepack did not write it (move it away so that "
                        "`edgepack report` can reuse bench results)", target)
            return None
    text = json.dumps({"format": FORMAT, "manifest_sha256": manifest_sha, "report": report}, indent=1) + "\n"
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except OSError as e:
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)
        log.warning("bench result not kept: cannot write %s (%s)", target, e.strerror or e)
        return None
    return target


def _is_report(data) -> bool:
    return isinstance(data, dict) and all(k in data for k in REPORT_KEYS)


def find(folder, eval_images: int | None = None) -> tuple[dict | None, str]:
    """The kept bench result of this artifact when it matches (same manifest sha256 and, when given, the same
    number of eval images): (report, where it came from), or (None, one line saying why there is none)."""
    target = path_for(folder)
    if not os.path.lexists(target):
        return None, f"no bench result kept beside the artifact ({target.name})"
    data = _read(target) if target.is_file() and not target.is_symlink() else None
    if not (isinstance(data, dict) and data.get("format") == FORMAT and _is_report(data.get("report"))):
        return None, f"{target} is not a bench result edgepack wrote"
    if data.get("manifest_sha256") != manifest_sha256(folder):
        return None, f"{target} is the bench of an earlier build of this artifact (its manifest changed)"
    report = data["report"]
    if eval_images is not None and report["eval_images"] != eval_images:
        return None, f"{target} measured {report['eval_images']} eval images, not {eval_images}"
    return report, str(target)


def load(path, folder) -> dict:
    """``report --bench FILE``: a `bench --json FILE` output (or an ARTIFACT.bench.json) of this artifact;
    a file that is no bench report, or a bench of another artifact, is refused in one line."""
    check_regular_file(path, "--bench", fix="pass what `edgepack bench ARTIFACT --json FILE` wrote")
    if not Path(path).exists():
        raise ConfigError(f"--bench {path} does not exist: pass what `edgepack bench ARTIFACT --json FILE` wrote")
    data = _read(Path(path))
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if data.get("manifest_sha256") != manifest_sha256(folder):
            raise ConfigError(f"--bench {path} is the bench of another artifact (manifest sha256 differs): run "
                              f"`edgepack bench {folder}` again, or drop --bench")
        data = data.get("report")
    if not _is_report(data):
        raise ConfigError(f"--bench {path} is not a bench report: pass what `edgepack bench ARTIFACT --json FILE` wrote")
    manifest = artifact.read(Path(folder))  # a `bench --json` file names no sha256: its identity must match
    expected = json.loads(json.dumps({"target": manifest.target.name, "backend": manifest.backend,
                                      **compare.artifact_identity(manifest)}))
    differ = [k for k, v in expected.items() if data.get(k) != v]
    if differ:
        raise ConfigError(f"--bench {path} is the bench of another artifact ({', '.join(differ)} differ): run "
                          f"`edgepack bench {folder} --json {path}` again, or drop --bench")
    return data
