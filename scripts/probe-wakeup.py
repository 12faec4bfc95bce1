#!/usr/bin/env python3
"""Where a loopback get's time goes, below any client: one memcached (`-t 1`) on a free
127.0.0.1 port, a raw socket, 1000 stored keys of 100 bytes, and rounds of single gets that
alternate between ways of asking and of waiting for the reply. Prints p50 per round, the
server's CPU per request (its threads' `schedstat` run time) and this process's.

    .venv/bin/python scripts/probe-wakeup.py [--rounds 8] [--n 5000]

Forms compared: text `get`; libfae's single meta get (`mg <key> v f k O0 c q` + `mn`); and
text `get` where the reply is waited for by polling the socket without blocking for up to
100 µs before blocking in `recv` (what no client here does: it shows how much of a get is
the sleep and wake-up of the waiting thread). Bounded: rounds × forms × n requests, then
the server (started here, killed by PID) is stopped."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bindings-python"))
from bench import free_port  # noqa: E402


def server_cpu(pid: int) -> float:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def read_until(s: socket.socket, end: bytes, spin_ns: int) -> None:
    buf = b""
    limit = time.perf_counter_ns() + spin_ns
    while not buf.endswith(end):
        if spin_ns:
            try:
                buf += s.recv(4096, socket.MSG_DONTWAIT)
                continue
            except BlockingIOError:
                if time.perf_counter_ns() < limit:
                    continue
        buf += s.recv(4096)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n", type=int, default=5000, help="requests per form per round")
    a = ap.parse_args()
    port = free_port()
    mc = subprocess.Popen(["memcached", "-u", "root", "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-t", "1"])
    try:
        time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(1000):
            s.sendall(b"set bench:key:%d 0 0 100\r\n%s\r\n" % (i, b"v" * 100))
            read_until(s, b"STORED\r\n", 0)
        forms = {
            "text get, blocking recv": (lambda k: b"get %s\r\n" % k, b"END\r\n", 0),
            "mg v f k O c q + mn, blocking recv": (lambda k: b"mg %s v f k O0 c q\r\nmn\r\n" % k, b"MN\r\n", 0),
            "text get, poll 100 us then block": (lambda k: b"get %s\r\n" % k, b"END\r\n", 100_000),
        }
        rows: dict[str, list[tuple[float, float, float]]] = {f: [] for f in forms}
        for _ in range(a.rounds):
            for name, (ask, end, spin_ns) in forms.items():
                lat = []
                srv0, own0 = server_cpu(mc.pid), time.process_time()
                for i in range(a.n):
                    req = ask(b"bench:key:%d" % (i % 1000))
                    t0 = time.perf_counter_ns()
                    s.sendall(req)
                    read_until(s, end, spin_ns)
                    lat.append(time.perf_counter_ns() - t0)
                lat.sort()
                rows[name].append(
                    (
                        lat[len(lat) // 2] / 1000,
                        (server_cpu(mc.pid) - srv0) / a.n * 1e6,
                        (time.process_time() - own0) / a.n * 1e6,
                    )
                )
        print("| form | p50 µs per round | server CPU µs per request | this process's CPU µs per request |")
        print("|---|---|---|---|")
        for name, r in rows.items():
            cols = [" ".join(f"{x[j]:.1f}" for x in r) for j in range(3)]
            print(f"| {name} | {cols[0]} | {cols[1]} | {cols[2]} |")
    finally:
        os.kill(mc.pid, signal.SIGKILL)
        mc.wait()


if __name__ == "__main__":
    main()
