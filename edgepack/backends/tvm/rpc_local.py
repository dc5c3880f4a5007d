"""A TVM RPC tracker and device servers on 127.0.0.1, for tests and the local CI gate.

Each process is started by edgepack.devices (its own process group: TVM's server workers outlive SIGTERM
to the parent), and the whole group is killed on exit or by a stop signal.
"""
from __future__ import annotations

import socket
import sys
import time

from edgepack import devices
from edgepack.backends.tvm.runner import use_all_cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc, timeout: float = 60.0) -> None:
    """Until something listens on ``port``; ``proc`` (a devices.start process) exiting first is an error."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args[1:3]))} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def wait_registered(host: str, port: int, key: str, procs: list, n: int = 1, timeout: float = 60.0) -> None:
    """Until the tracker at ``host:port`` lists ``n`` free servers under ``key``: a server registers a while after it
    starts, and a job sent before then queues. One of ``procs`` (devices.start processes) exiting first is an error."""
    from tvm import rpc

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{' '.join(map(str, p.args[1:3]))} exited with code {p.returncode}")
        summary = rpc.connect_tracker(host, port).summary()
        if summary.get("queue_info", {}).get(key, {}).get("free", 0) >= n:
            return
        time.sleep(0.5)
    raise TimeoutError(f"servers did not register with the tracker under key {key!r}")


class LocalRPC:
    """``with LocalRPC(key="rpi4") as rpc: rpc.tracker -> "127.0.0.1:PORT"``; servers register under ``key``."""

    def __init__(self, key: str = "x86", servers: int = 1, tracker: bool = True):
        self.key, self.n_servers, self.use_tracker = key, servers, tracker
        self.procs: list = []  # devices.start processes: the tracker first, then the servers
        self.server_ports: list[int] = []
        self.tracker = None

    def _start(self, args: list[str]):
        use_all_cores()  # the server is this host's "board": all its cores, as on a real one
        p = devices.start([sys.executable, "-m", *args])
        self.procs.append(p)
        return p

    def __enter__(self) -> "LocalRPC":
        try:
            if self.use_tracker:
                tracker_port = free_port()
                wait_port(tracker_port, self._start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                                                     str(tracker_port), "--port-end", str(tracker_port + 1)]))
                self.tracker = f"127.0.0.1:{tracker_port}"
            for _ in range(self.n_servers):
                port = free_port()
                args = ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)]
                if self.tracker:
                    args += ["--tracker", self.tracker, "--key", self.key]
                server = self._start(args)
                if not self.tracker:  # a registered server that sees a probe drops its registration and redoes it
                    wait_port(port, server)
                self.server_ports.append(port)
            if self.tracker:
                wait_registered("127.0.0.1", tracker_port, self.key, self.procs, self.n_servers)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_servers(self) -> None:
        """Kill the device servers only (to test a device that dies mid-run)."""
        for p in self.procs[1 if self.tracker else 0:]:
            devices.stop(p)

    def freeze_servers(self) -> None:
        """Stop the device servers with SIGSTOP (to test a board that hangs): they stay registered
        and the kernel still accepts connections for them, but nothing answers."""
        for p in self.procs[1 if self.tracker else 0:]:
            devices.pause(p)

    def stop(self) -> None:
        for p in reversed(self.procs):
            devices.stop(p)
        self.procs.clear()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """python -m edgepack.backends.tvm.rpc_local [--key K] -- CMD ...: run CMD with a loopback tracker
    and server up; "{tracker}" in CMD becomes their HOST:PORT."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgepack.backends.tvm.rpc_local", description=main.__doc__)
    ap.add_argument("--key", default="x86")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = [c for c in args.command if c != "--"]
    if not command:
        ap.error("give the command to run")
    with LocalRPC(key=args.key) as rpc:
        proc = devices.start([c.replace("{tracker}", rpc.tracker) for c in command], quiet=False)
        try:
            return proc.wait()
        finally:
            devices.stop(proc)


if __name__ == "__main__":
    sys.exit(main())
