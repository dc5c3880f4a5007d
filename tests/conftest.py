"""Fixtures shared across the tiers. Under pytest-xdist (`-n 2`; pyproject's `--dist loadfile` keeps each test
file on one worker) every worker is its own process with its own tmp_path_factory folder: a session fixture
below is built once by each worker that uses it (every build takes under a minute; sharing one through a lock
would save CPU but leave a worker waiting), and nothing here writes outside that folder. What the workers do
share, the edgepack cache folder (QEMU plugin, TVM runtime and runner, digits split, stage estimates), is
written by renaming whole files into place, never rewritten in place."""
import os

import pytest

os.environ.setdefault("EDGEPACK_PROGRESS", "off")

ALPHA, RES = 0.25, 64  # small model for the end-to-end tests


@pytest.fixture(scope="session")
def host_artifact(tmp_path_factory):
    """One PTQ host artifact shared by the tests that only read it."""
    import edgepack

    out = tmp_path_factory.mktemp("art") / "host"
    return edgepack.compile(target="host", alpha=ALPHA, resolution=RES, eval_size=120, output=str(out))


@pytest.fixture(scope="session")
def small_artifacts(tmp_path_factory):
    """target -> the small model (tests.cli.SMALL) compiled by the CLI once per run: tests read it or copy it
    (shutil.copytree) before they edit anything, so one compile per target serves every module."""
    from tests.cli import SMALL, edgepack

    built = {}

    def get(target: str):
        if target not in built:
            out = tmp_path_factory.mktemp("small") / target
            code, _, err, _ = edgepack("compile", "--target", target, *SMALL, "-o", out)
            assert code == 0 and err == "", err  # a successful compile prints nothing on stderr
            built[target] = out
        return built[target]

    return get


def run_cli(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from edgepack.cli.main import main

    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
