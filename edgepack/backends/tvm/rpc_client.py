"""The client side of TVM RPC with every wait bounded by one timeout, for bench on a board.

TVM's own client can wait forever: ``connect_tracker`` retries a refused address for 60 s with a
warning every 5 s, ``TrackerSession.request`` blocks until a server frees up, and the session's
calls (upload, load, run, time_evaluator) block in C++ with no timeout at all. So:

- the tracker is spoken to by hand (its protocol is JSON over a socket, see tvm/rpc/tracker.py)
  on a socket with a timeout. The protocol has no "cancel": a REQUEST stays queued at the tracker
  until a server for its key frees up, even after its client has gone (``summary()`` counts it as
  pending). So REQUEST is only sent once the tracker's summary shows a free server for the key,
  and until then we poll: a wait that times out leaves nothing queued (unless another client took
  that free server between our two messages; then our request waits in the queue, and if it times
  out there the tracker drops it when the next server frees up).
- each blocking session call runs in a daemon thread (TVM releases the GIL while it waits). On
  timeout the session's socket is shut down, which makes the blocked call fail and frees the
  thread, and the device is reported dead.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import struct
import threading
import time
import weakref

from edgepack.errors import DeviceError

POLL_SECONDS = 0.5  # how often the tracker's summary is asked while no server is free
REQUEST_PRIORITY = 1  # what TVM's TrackerSession.request uses by default for a one-off job

# The tracker protocol as tvm/rpc/base.py defines it (RPC_TRACKER_MAGIC, TrackerCode), copied so that
# asking a tracker needs no tvm import (2 s): a wrong address fails in milliseconds.
TRACKER_MAGIC = 0x2F271
SUCCESS, REQUEST, SUMMARY = 0, 4, 6


class Budget:
    """One timeout, shared by the steps of one wait (connect, handshake, polling, request)."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.001)

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds < self.end


def open_socket(host: str, port: int, budget: Budget, what: str) -> socket.socket:
    """A TCP connection to host:port within the budget; a refused address fails at once (no retry)."""
    address = f"{host}:{port}"
    try:
        return socket.create_connection((host, port), timeout=budget.left())
    except ConnectionRefusedError:
        raise DeviceError(f"nothing listens at {address} (connection refused): start the {what} there, "
                          "or fix --rpc HOST:PORT") from None
    except socket.gaierror as e:
        raise DeviceError(f"cannot resolve host {host!r} ({e.strerror}): fix --rpc HOST:PORT") from None
    except TimeoutError:
        raise DeviceError(f"{address} did not answer within {budget.seconds:g}s: check the address and the "
                          "network, or raise --timeout") from None
    except OSError as e:
        raise DeviceError(f"cannot reach {address} ({e.strerror or e}): check the address and the network") from None


def request_server(host: str, port: int, key: str, timeout: float) -> tuple[str, int, str]:
    """Ask the RPC tracker at host:port for a free server registered under ``key``, waiting at most
    ``timeout`` seconds; return the server's (host, port, match key) for ``Session``."""
    tracker, budget = f"{host}:{port}", Budget(timeout)

    def ask(message: list):
        sock.settimeout(budget.left())
        data = json.dumps(message).encode()
        sock.sendall(struct.pack("<i", len(data)) + data)
        return json.loads(_receive(sock, struct.unpack("<i", _receive(sock, 4))[0]))

    with open_socket(host, port, budget, "RPC tracker (python -m tvm.exec.rpc_tracker)") as sock:
        try:
            sock.settimeout(budget.left())
            sock.sendall(struct.pack("<i", TRACKER_MAGIC))
            if struct.unpack("<i", _receive(sock, 4))[0] != TRACKER_MAGIC:
                raise ValueError("wrong magic")
        except (OSError, ValueError):  # a timeout too: a tracker answers its handshake at once
            raise DeviceError(f"{tracker} is not a TVM RPC tracker (no tracker handshake): pass the tracker's "
                              "HOST:PORT, or drop --key to use an RPC server directly") from None
        summary = None
        try:
            summary = ask([SUMMARY])[1]
            while not summary["queue_info"].get(key, {}).get("free", 0):
                if not budget.allows(POLL_SECONDS):
                    raise DeviceError(_no_free_server(summary, key, tracker, timeout))
                time.sleep(POLL_SECONDS)
                summary = ask([SUMMARY])[1]
            # another client may take the free server first: then this request waits in the queue
            status, (server_host, server_port, match_key) = ask([REQUEST, key, "", REQUEST_PRIORITY])
            if status != SUCCESS:
                raise ValueError(f"status {status}")
            return server_host, int(server_port), match_key
        except TimeoutError:  # after a first summary, the budget ran out while polling or queued
            if summary is not None:
                raise DeviceError(_no_free_server(summary, key, tracker, timeout)) from None
            raise DeviceError(f"RPC tracker {tracker} did not answer within {timeout:g}s: check that it runs, "
                              "or raise --timeout") from None
        except OSError as e:
            raise DeviceError(f"RPC tracker {tracker} closed the connection ({e}): check that it still runs") from None
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise DeviceError(f"RPC tracker {tracker} sent a reply this client does not understand "
                              f"({type(e).__name__}: {e}): use a TVM 0.27 tracker") from None


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the connection was closed")
        data += chunk
    return data


def _no_free_server(summary: dict | None, key: str, tracker: str, timeout: float) -> str:
    servers = [s.get("key", "") for s in (summary or {}).get("server_info", [])]
    mine = servers.count(f"server:{key}")
    if mine:
        return (f"all {mine} RPC server(s) with key {key!r} at tracker {tracker} stayed busy for {timeout:g}s: "
                "retry when they are free, or raise --timeout")
    keys = sorted({s.partition(":")[2] for s in servers})
    known = f"registered keys: {', '.join(keys)}" if keys else "no server is registered"
    return (f"no RPC server with key {key!r} registered at tracker {tracker} within {timeout:g}s ({known}): "
            f"check --key, or start the board's server: python -m tvm.exec.rpc_server --tracker {tracker} --key {key}")


class Session:
    """A TVM RPC session whose every blocking call returns within ``timeout`` seconds or raises
    DeviceError; ``call(what, fn, *args)`` runs one such call (``what`` names it in the error).

    The calls run one at a time on a worker thread of the session's own (a thread per call would
    cost TVM's per-thread setup on every eval image: 3x slower over loopback)."""

    def __init__(self, host: str, port: int, match_key: str, timeout: float, device: str):
        from tvm import rpc

        self.timeout, self.device, self.port = timeout, device, port
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_work, args=(self._jobs,), name=f"edgepack rpc {device}", daemon=True).start()
        weakref.finalize(self, self._jobs.put, None)  # the worker ends with the session
        self._dead: str | None = None  # the call that timed out: the session is unusable after it
        self._before = _socket_fds()
        self._sockets: set[int] | None = None  # known once the session is open
        try:
            # no session_timeout: it caps the whole session (every eval image), not a silent wait
            self.remote = self.call("opening the session", rpc.connect, host, port, match_key)
        except DeviceError:
            raise
        except Exception as e:
            if "Connect to" in str(e):
                raise DeviceError(f"nothing accepts connections at {host}:{port}: start the RPC server there "
                                  "(python -m tvm.exec.rpc_server), or fix --rpc HOST:PORT") from None
            raise DeviceError(f"{host}:{port} refused the RPC session ({first_line(e)}): pass an RPC server's "
                              "HOST:PORT, or a tracker's with --key") from None
        self._sockets = self._session_sockets()

    def call(self, what: str, fn, *args):
        if self._dead:
            raise DeviceError(f"{self.device} stopped answering while {self._dead}: check the board, then rerun")
        job = _Job(fn, args)
        self._jobs.put(job)
        if not job.done.wait(self.timeout):
            self._dead = what
            self.hang_up()
            job.done.wait(1.0)  # let the woken call fail out of TVM's C++ before anything else happens (exit)
            raise DeviceError(f"{self.device} did not answer within {self.timeout:g}s while {what}: check that "
                              "the board is up and responsive, or raise --timeout")
        if job.error is not None:
            raise job.error
        return job.value

    def hang_up(self) -> None:
        """Shut the session's socket down, so that a call blocked on it in C++ fails and frees the worker."""
        for fd in self._sockets if self._sockets is not None else self._session_sockets():
            try:
                with socket.socket(fileno=os.dup(fd)) as s:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _session_sockets(self) -> set[int]:
        """The sockets opened since this session started that lead to its server's port."""
        found = set()
        for fd in _socket_fds() - self._before:
            try:
                with socket.socket(fileno=os.dup(fd)) as s:
                    if s.getpeername()[1] == self.port:
                        found.add(fd)
            except (OSError, IndexError, TypeError):
                pass
        return found


class _Job:
    def __init__(self, fn, args):
        self.fn, self.args, self.done = fn, args, threading.Event()
        self.value = self.error = None


def _work(jobs: queue.SimpleQueue) -> None:
    """A session's worker: run its calls in order until the session is gone (None)."""
    while (job := jobs.get()) is not None:
        try:
            job.value = job.fn(*job.args)
        except BaseException as e:  # handed to the caller's thread
            job.error = e
        job.done.set()
        del job  # drop the call's objects (remote tensors) now, not at the next call


def _socket_fds() -> set[int]:
    """This process's socket file descriptors (Linux /proc; elsewhere none, and a timed-out call's
    thread is left behind instead of being woken)."""
    fds = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return fds
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            pass
    return fds


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__
