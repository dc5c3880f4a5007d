"""bench of a built-in artifact measured on the bundled digits imports no torch once the resized digits are in the
edgepack cache (data.resized_digits): torch's import was most of bench's start (4.1 s of it under -X importtime
on the loaded 2-core machine)."""
import json
import subprocess
import sys

import pytest

from edgepack import evaldata
from tests.cli import TRACKED


@pytest.mark.slow
def test_bench_of_a_builtin_artifact_on_the_digits_does_not_import_torch(small_artifacts):
    folder = small_artifacts("host")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["eval"]["source"].startswith("digits:") and manifest["eval"]["file"] is None
    evaldata.load(manifest, folder)  # the images bench reloads: warms the cache, as the compile did
    p = subprocess.run([sys.executable, "-c", TRACKED, "bench", str(folder), "--eval-size", "8"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "no torch"
