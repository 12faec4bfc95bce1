"""Fixtures: real memcached processes on free 127.0.0.1 ports, killed by PID at teardown.

``FAE_TEST_MEMCACHED`` overrides the memcached binary. Nothing here is a mock: every test talks
to a memcached the fixture started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List

import pytest

MEMCACHED = os.environ.get("FAE_TEST_MEMCACHED") or shutil.which("memcached") or "memcached"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_command(addr: str, line: bytes, until: bytes = b"\r\n") -> bytes:
    """Send one command on a fresh socket and read until the reply ends with ``until``.
    ``addr`` is ``host:port`` or a Unix-domain socket path."""
    if addr.startswith("/"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(2)
        conn.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        conn = socket.create_connection((host, int(port)), timeout=2)
    with conn as s:
        s.sendall(line)
        buf = b""
        while not buf.endswith(until):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


class Memcached:
    """One memcached process."""

    def __init__(self, extra: "List[str] | None" = None) -> None:
        for _ in range(20):
            self.port = _free_port()
            args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
            if os.geteuid() == 0:
                args += ["-u", "root"]
            args += extra or []
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("could not start memcached")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        # kill() returns before every thread has stopped: on a loaded machine a worker thread
        # could still answer the next request. Wait (bounded) until all of them show state T.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not self._stopped():
            time.sleep(0.001)

    def _stopped(self) -> bool:
        tasks = f"/proc/{self.proc.pid}/task"
        try:
            for tid in os.listdir(tasks):
                with open(f"{tasks}/{tid}/stat") as f:
                    # "pid (comm) state ...": the state follows the last ')'.
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                        return False
        except OSError:
            return True  # no /proc (or the process is gone): nothing more to wait for
        return True

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class SocketMemcached:
    """One memcached on a Unix-domain socket (``memcached -s PATH``) in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fae-py-sock-")
        self.addr = os.path.join(self.dir, "memcached.sock")
        self.start()

    def start(self) -> None:
        args = [MEMCACHED, "-s", self.addr, "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                raw_command(self.addr, b"version\r\n")
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"memcached on {self.addr} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def socket_memcached() -> Iterator[SocketMemcached]:
    """A memcached on a Unix-domain socket of this test's own."""
    m = SocketMemcached()
    yield m
    m.stop()
    shutil.rmtree(m.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def memcached_pool() -> Iterator[List[Memcached]]:
    servers = [Memcached() for _ in range(4)]
    yield servers
    for m in servers:
        m.stop()


@pytest.fixture
def servers(memcached_pool: List[Memcached]) -> List[str]:
    """Four running servers, flushed."""
    for m in memcached_pool:
        assert raw_command(m.addr, b"flush_all\r\n") == b"OK\r\n"
    return [m.addr for m in memcached_pool]


@pytest.fixture
def server(servers: List[str]) -> str:
    """One running server, flushed."""
    return servers[0]


@pytest.fixture
def own_memcached() -> Iterator[Memcached]:
    """A memcached of this test's own, for tests that pause or kill it."""
    m = Memcached()
    yield m
    m.stop()
