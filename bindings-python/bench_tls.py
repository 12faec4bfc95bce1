"""TLS vs plain text from Python: fae and pymemcache (``tls_context``), in one run.

    .venv/bin/python bindings-python/bench_tls.py [--calls 20000] [--rounds 24] [--write-docs]

Starts four memcached processes with ``-Z`` (a CA and server certificate made with the openssl
command) and a second, plain listener each (``-l 127.0.0.1,notls:127.0.0.1:PORT``), so every
row talks to the same processes; all ``-t 1``, killed by PID at exit. Measures, single-threaded,
with 100-byte values: get (hit) p50/p99 and a 100-key get_many p50, for fae and pymemcache's
HashClient, each over plain text and over TLS. Calls are interleaved in rounds. With
--write-docs the table replaces the "TLS (Python)" block of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import ssl
import subprocess
import tempfile
import time

import pymemcache
from pymemcache.client.hash import HashClient

import fae
from bench import VALUE, free_port, pct, schedule, side_by_side_main

NKEYS = 1000


def certificates(d: str) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    j = lambda n: os.path.join(d, n)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", j("ca.key"), "-out", j("ca.pem"), "-days", "2", "-subj", "/CN=fae bench CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", j("s.key"), "-out", j("s.csr"), "-subj", "/CN=localhost")
    with open(j("ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", j("s.csr"), "-CA", j("ca.pem"), "-CAkey", j("ca.key"),
            "-CAcreateserial", "-out", j("s.pem"), "-days", "2", "-extfile", j("ext"))


def start_servers(n: int, d: str):
    procs, tls, plain = [], [], []
    for _ in range(n):
        port, ctrl = free_port(), free_port()
        args = [shutil.which("memcached") or "memcached", "-l", f"127.0.0.1,notls:127.0.0.1:{ctrl}",
                "-p", str(port), "-U", "0", "-m", "64", "-t", "1", "-Z",
                "-o", f"ssl_chain_cert={d}/s.pem,ssl_key={d}/s.key"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tls.append(f"127.0.0.1:{port}")
        plain.append(f"127.0.0.1:{ctrl}")
    import socket

    for a in tls + plain:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", int(a.split(":")[1])), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
    return procs, tls, plain


def bench(calls: int, rounds: int):
    d = tempfile.mkdtemp(prefix="fae-bench-tls-")
    certificates(d)
    procs, tls, plain = start_servers(4, d)
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
        hp = lambda addrs: [(a.split(":")[0], int(a.split(":")[1])) for a in addrs]  # noqa: E731
        cs = {
            "fae, plain": fae.Client(plain, timeout=1.0),
            "fae, TLS": fae.Client(config={"servers": tls, "tls": {"ca_file": os.path.join(d, "ca.pem")},
                                           "timeouts": {"io_ms": 1000}}),
            "pymemcache HashClient, plain": HashClient(hp(plain), no_delay=True, default_noreply=False),
            "pymemcache HashClient, TLS": HashClient(hp(tls), no_delay=True, default_noreply=False,
                                                     tls_context=ctx),
        }
        keys = [f"bench:key:{i}" for i in range(NKEYS)]
        batches = [keys[i : i + 100] for i in range(0, NKEYS, 100)]
        for name, c in cs.items():  # warm: connections open (handshakes done), keys present
            for k in keys:
                c.set(k, VALUE)
            got = c.get_many(batches[0])
            assert len(got) == 100 and all(v == VALUE for v in got.values()), name
        lat = {n: {"get": [], "multi": []} for n in cs}
        clock = time.perf_counter_ns
        names = list(cs)
        # Each client follows each other one equally often (see bench.py's module docs).
        plan, per_round, multi_per_round = schedule(names, calls, rounds)
        for r, order in enumerate(plan):
            for name in order:
                c = cs[name]
                get, mg, out = c.get, c.get_many, lat[name]
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
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def table(lat, ncalls, nmulti):
    us = lambda ns: ns / 1000  # noqa: E731
    rows = [
        "| client, transport | get p50 µs | get p99 µs | get_many(100) p50 µs | get ops/s "
        "| get p50 ÷ same client plain | get_many p50 ÷ same client plain |",
        "|" + "---|" * 7,
    ]
    for name, l in lat.items():
        base = lat[name.replace("TLS", "plain")]
        g50, g99, m50 = pct(l["get"], 0.5), pct(l["get"], 0.99), pct(l["multi"], 0.5)
        ops = 1e9 / (sum(l["get"]) / len(l["get"]))
        rows.append(
            f"| {name} | {us(g50):.1f} | {us(g99):.1f} | {us(m50):.1f} | {ops:,.0f} "
            f"| {g50 / pct(base['get'], 0.5):.3f} | {m50 / pct(base['multi'], 0.5):.3f} |"
        )
    info = (f"{ncalls} gets, {nmulti} get_many calls per row; Python {platform.python_version()}, "
            f"pymemcache {pymemcache.__version__} (HashClient, `tls_context` from Python's ssl "
            f"module), memcached 4 × `-t 1` with `-Z` (TLS 1.3, P-256) and a plain listener each, "
            f"{os.cpu_count()} CPUs shared with other work; load average {os.getloadavg()[0]:.1f} "
            f"at the end.")
    return "\n".join(rows), info


SECTION = """## TLS from Python: fae and pymemcache

Command (after `bash scripts/setup.sh` and `maturin develop --release` in `bindings-python/`):

```sh
.venv/bin/python bindings-python/bench_tls.py --write-docs
```

{info}

{rows}
"""


def main():
    side_by_side_main(__doc__, bench, table, SECTION, "tls-python-bench")


if __name__ == "__main__":
    main()
