"""Unix-domain sockets vs TCP loopback, fae and pylibmc, in one run.

    .venv/bin/python bindings-python/bench_unix.py [--calls 20000] [--rounds 24] [--write-docs]

Starts four memcached processes on 127.0.0.1 ports and four on Unix-domain sockets (`-s PATH`,
all `-t 1`, killed by PID at exit) and measures, single-threaded, with 100-byte bytes values:
get (hit) p50/p99 and 100-key get_many p50 (pylibmc get_multi) per call, for fae and pylibmc
(ketama_weighted; tcp_nodelay on TCP) over each transport. Calls are interleaved in rounds so
drift on a shared machine hits every row alike. With --write-docs the table replaces the "Unix
sockets" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time

import pylibmc

import fae
from bench import VALUE, pct, schedule, start_servers, side_by_side_main

NKEYS = 1000


def start_socket_servers(n: int):
    d = tempfile.mkdtemp(prefix="fae-bench-sock-")
    procs, paths = [], []
    for i in range(n):
        path = os.path.join(d, f"m{i}.sock")
        args = [shutil.which("memcached") or "memcached", "-s", path, "-m", "64", "-t", "1"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        paths.append(path)
    for p in paths:
        for _ in range(100):
            if os.path.exists(p):
                break
            time.sleep(0.02)
    return procs, paths, d


def bench(calls: int, rounds: int):
    tprocs, addrs = start_servers(4)
    sprocs, paths, sdir = start_socket_servers(4)
    try:
        cs = {
            "fae, TCP loopback": fae.Client(addrs, timeout=1.0),
            "fae, Unix socket": fae.Client(paths, timeout=1.0),
            "pylibmc, TCP loopback": pylibmc.Client(addrs, behaviors={"ketama_weighted": True, "tcp_nodelay": True}),
            "pylibmc, Unix socket": pylibmc.Client(paths, behaviors={"ketama_weighted": True}),
        }
        keys = [f"bench:key:{i}" for i in range(NKEYS)]
        batches = [keys[i : i + 100] for i in range(0, NKEYS, 100)]
        for name, c in cs.items():  # warm: connections open, keys present
            for k in keys:
                c.set(k, VALUE)
            mg = c.get_multi if hasattr(c, "get_multi") else c.get_many
            got = mg(batches[0])
            assert len(got) == 100 and all(v == VALUE for v in got.values()), name
        lat = {n: {"get": [], "multi": []} for n in cs}
        clock = time.perf_counter_ns
        names = list(cs)
        # Each client follows each other one equally often (see bench.py's module docs).
        plan, per_round, multi_per_round = schedule(names, calls, rounds)
        for r, order in enumerate(plan):
            for name in order:
                c = cs[name]
                get = c.get
                mg = c.get_multi if hasattr(c, "get_multi") else c.get_many
                out = lat[name]
                for i in range(per_round):
                    k = keys[(i * 7 + r) % NKEYS]
                    t0 = clock()
                    v = get(k)
                    out["get"].append(clock() - t0)
                    assert v == VALUE
                for i in range(multi_per_round):
                    b = batches[(i + r) % len(batches)]
                    t0 = clock()
                    got = mg(b)
                    out["multi"].append(clock() - t0)
                    assert len(got) == 100
        return lat, per_round * len(plan), multi_per_round * len(plan)
    finally:
        for p in tprocs + sprocs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(sdir, ignore_errors=True)


def table(lat, ncalls, nmulti):
    us = lambda ns: ns / 1000  # noqa: E731
    base = lat["fae, TCP loopback"]
    rows = [
        "| client, transport | get p50 µs | get p99 µs | get_many(100) p50 µs | get ops/s "
        "| get p50 ÷ fae TCP | get_many p50 ÷ fae TCP |",
        "|" + "---|" * 7,
    ]
    for name, l in lat.items():
        g50, g99, m50 = pct(l["get"], 0.5), pct(l["get"], 0.99), pct(l["multi"], 0.5)
        ops = 1e9 / (sum(l["get"]) / len(l["get"]))
        rows.append(
            f"| {name} | {us(g50):.1f} | {us(g99):.1f} | {us(m50):.1f} | {ops:,.0f} "
            f"| {g50 / pct(base['get'], 0.5):.3f} | {m50 / pct(base['multi'], 0.5):.3f} |"
        )
    info = (f"{ncalls} gets, {nmulti} get_many calls per row; Python {platform.python_version()}, "
            f"pylibmc {pylibmc.__version__}, memcached 4 × `-t 1` per transport, "
            f"{os.cpu_count()} CPUs shared with other work.")
    return "\n".join(rows), info


SECTION = """## Unix-domain sockets vs TCP loopback (Python: fae and pylibmc)

Command (after `bash scripts/setup.sh` and `maturin develop --release` in `bindings-python/`):

```sh
.venv/bin/python bindings-python/bench_unix.py --write-docs
```

{info}

{rows}
"""


def main():
    side_by_side_main(__doc__, bench, table, SECTION, "unix-bench")


if __name__ == "__main__":
    main()
