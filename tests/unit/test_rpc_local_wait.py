"""rpc_local.wait_registered, the one wait LocalRPC and the documented-commands test share, against a fake TVM
tracker: a real one (`python -m tvm.exec.rpc_tracker`) took 14 s to listen and a server 19 s more to register
on the loaded 2-core machine, too slow for the fast tier; tests/e2e/test_rpc_faults.py runs the real ones."""
import sys
import types

import pytest

from edgepack.backends.tvm.rpc_local import wait_registered


class Tracker:
    """What ``tvm.rpc.connect_tracker(host, port).summary()`` answers, one scripted summary per call."""

    def __init__(self, *summaries):
        self.summaries, self.calls = list(summaries), []

    def connect_tracker(self, host, port):
        self.calls.append((host, port))
        summary = self.summaries.pop(0) if len(self.summaries) > 1 else self.summaries[0]
        return types.SimpleNamespace(summary=lambda: summary)


@pytest.fixture
def tracker(monkeypatch):
    """Installs a fake ``tvm`` module whose rpc is a Tracker; the test scripts its summaries."""
    fake = Tracker({})
    monkeypatch.setitem(sys.modules, "tvm", types.SimpleNamespace(rpc=fake))
    return fake


def proc(module: str, returncode=None):
    """A devices.start process of ``python -m module`` that is running (None) or exited with ``returncode``."""
    return types.SimpleNamespace(args=[sys.executable, "-m", module], returncode=returncode, poll=lambda: returncode)


def queue(**free) -> dict:
    return {"queue_info": {key: {"free": n, "pending": 0} for key, n in free.items()}}


def test_returns_once_n_servers_are_free_under_the_key(tracker):
    tracker.summaries = [{}, queue(k=1, other=5), queue(k=2)]
    wait_registered("127.0.0.1", 9190, "k", [proc("tvm.exec.rpc_tracker"), proc("tvm.exec.rpc_server")], n=2, timeout=30)
    assert tracker.calls == [("127.0.0.1", 9190)] * 3  # servers under another key never counted


def test_a_process_that_exited_is_named_with_its_exit_code(tracker):
    tracker.summaries = [queue(k=1)]
    with pytest.raises(RuntimeError, match=r"^-m tvm\.exec\.rpc_server exited with code 2$"):
        wait_registered("127.0.0.1", 9190, "k", [proc("tvm.exec.rpc_tracker"), proc("tvm.exec.rpc_server", 2)])
    assert tracker.calls == []  # a dead server is reported before the tracker is asked


def test_no_server_under_the_key_times_out_naming_the_key(tracker):
    tracker.summaries = [queue(other=1)]
    with pytest.raises(TimeoutError, match="servers did not register with the tracker under key 'k'"):
        wait_registered("127.0.0.1", 9190, "k", [proc("tvm.exec.rpc_server")], timeout=1.0)
    assert 2 <= len(tracker.calls) <= 3  # polled every 0.5 s until the timeout
