"""Python clients on the same memcached servers: fae vs pylibmc vs pymemcache.

    .venv/bin/python bindings-python/bench.py [--calls 20000] [--rounds 42] [--write-docs] [--compat] [--one-cpu]

Starts four memcached processes on free 127.0.0.1 ports (killed by PID at exit) and measures,
single-threaded, with 100-byte bytes values (flags 0: no serialization cost for anyone):

- get (hit) p50/p99, set p50, and 100-key get_many p50 (pylibmc get_multi), per call;
- ops/s = calls per second of the get loop (1 / mean latency);

for fae (4 servers, mode libmemcached), pylibmc (4 servers, ketama_weighted, tcp_nodelay),
pymemcache HashClient (4 servers) and pymemcache Client on ONE server (the round-trip baseline:
no hashing); with --compat also fae.pylibmc (same behaviors) and fae.pymemcache's HashClient
(the drop-in modules over fae). pymemcache runs with default_noreply=False so that its sets wait for the reply as
the others' do. Calls are interleaved in rounds (each client does calls/rounds, then the next)
so drift on this shared machine hits every client alike. On this 2-CPU VM a get's round trip
is about 27 µs or about 66 µs, depending on whether the scheduler left client and server on
one CPU, and the client before decides which: the client after the single-server pymemcache
Client ran its gets at about 28 µs where the others took 66 µs. So the order of the clients
changes every round, and over the rounds each client follows each other client equally often
(round orders `start, start + step, …` mod n, for every start and every step coprime to n).
Starting each round one client later is not enough: that keeps who follows whom. A second
pylibmc client with the same settings runs too, as an A/A control: its ratio to the first
shows how far two identical clients land apart in the same run (0.86–0.93 for get p50 in
three runs with the old rotation, where the second pylibmc always followed the
single-server pymemcache Client). Ratios are each client ÷ pylibmc,
and for the drop-in modules also ÷ the client they replace (fae.pylibmc ÷ pylibmc,
fae.pymemcache's HashClient ÷ pymemcache's HashClient).
Targets: get p50 ≤ 1.0 ×, 100-key get_many p50 ≤ 0.9 × pylibmc for fae, and the same ratios
against the replaced client for the drop-in modules.
With --write-docs the table replaces the "Python clients" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pylibmc
from pymemcache.client.base import Client as PmClient
from pymemcache.client.hash import HashClient

import fae
import fae.pylibmc
import fae.pymemcache

ROOT = Path(__file__).resolve().parent.parent
VALUE = b"v" * 100
NKEYS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(n: int):
    procs, addrs = [], []
    for _ in range(n):
        port = free_port()
        args = [shutil.which("memcached") or "memcached", "-l", "127.0.0.1", "-p", str(port),
                "-U", "0", "-m", "64", "-t", "1"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        addrs.append(f"127.0.0.1:{port}")
    for a in addrs:
        host, port = a.split(":")
        for _ in range(100):
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
    return procs, addrs


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


AA = "pylibmc, again (A/A)"


def clients(addrs, compat=False):
    hp = [(a.split(":")[0], int(a.split(":")[1])) for a in addrs]
    cs = {
        "fae": fae.Client(addrs, timeout=1.0),
        "pylibmc": pylibmc.Client(addrs, behaviors={"ketama_weighted": True, "tcp_nodelay": True}),
        "pymemcache HashClient": HashClient(hp, no_delay=True, default_noreply=False),
        "pymemcache Client (1 server)": PmClient(hp[0], no_delay=True, default_noreply=False),
        # The A/A control: a second pylibmc, same settings. Its ratio to the first is how far
        # two identical clients land apart in this run (see the module docs).
        AA: pylibmc.Client(addrs, behaviors={"ketama_weighted": True, "tcp_nodelay": True}),
    }
    if compat:
        cs["fae.pylibmc"] = fae.pylibmc.Client(addrs, behaviors={"ketama_weighted": True, "tcp_nodelay": True})
        cs["fae.pymemcache HashClient"] = fae.pymemcache.HashClient(hp, timeout=1.0, default_noreply=False)
    return cs


def multi(c):
    return c.get_multi if hasattr(c, "get_multi") else c.get_many


def round_orders(n: int):
    """Orders of n clients in which each client follows each other one equally often, and
    takes each place equally often: with n prime (5, 7), `start, start + step, …` mod n for
    every start and step; otherwise every permutation (4 clients: 24 orders)."""
    if n > 1 and all(n % d for d in range(2, n)):
        return [[(start + k * step) % n for k in range(n)] for step in range(1, n) for start in range(n)]
    return [list(p) for p in itertools.permutations(range(n))]


def schedule(names, calls: int, rounds: int):
    """The clients' order in each round (`round_orders`, repeated: `rounds` rounded up to whole
    cycles) and the gets and get_many calls each client makes per round."""
    orders = round_orders(len(names))
    n = -(-rounds // len(orders)) * len(orders)
    per_round = max(1, calls // n)
    plan = [[names[i] for i in orders[r % len(orders)]] for r in range(n)]
    return plan, per_round, max(1, per_round // 10)


def bench(calls: int, rounds: int, compat: bool = False):
    procs, addrs = start_servers(4)
    try:
        cs = clients(addrs, compat)
        keys = [f"bench:key:{i}" for i in range(NKEYS)]
        batches = [keys[i : i + 100] for i in range(0, NKEYS, 100)]
        for name, c in cs.items():  # warm: connections open, keys present
            for k in keys:
                c.set(k, VALUE)
            got = multi(c)(batches[0])
            assert len(got) == 100 and all(v == VALUE for v in got.values()), name
            assert c.get(keys[0]) == VALUE, name
        lat = {n: {"get": [], "set": [], "multi": [], "get_cpu": 0, "multi_cpu": 0} for n in cs}
        clock = time.perf_counter_ns
        # The process's CPU time (all threads, user + system): what the client spends, which
        # waiting for a CPU on a busy machine does not inflate as it does wall-clock latency.
        cpu = time.process_time_ns
        names = list(cs)
        plan, per_round, multi_per_round = schedule(names, calls, rounds)
        for r, order in enumerate(plan):
            for name in order:
                c = cs[name]
                get, st, mg = c.get, c.set, multi(c)
                out = lat[name]
                c0 = cpu()
                for i in range(per_round):
                    k = keys[(i * 7 + r) % NKEYS]
                    t0 = clock()
                    v = get(k)
                    out["get"].append(clock() - t0)
                    assert v is not None
                out["get_cpu"] += cpu() - c0
                for i in range(per_round):
                    k = keys[(i * 11 + r) % NKEYS]
                    t0 = clock()
                    st(k, VALUE)
                    out["set"].append(clock() - t0)
                c0 = cpu()
                for i in range(multi_per_round):
                    b = batches[(i + r) % len(batches)]
                    t0 = clock()
                    got = mg(b)
                    out["multi"].append(clock() - t0)
                    assert len(got) == 100
                out["multi_cpu"] += cpu() - c0
        return lat, per_round * len(plan), multi_per_round * len(plan)
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


# The client each drop-in module replaces (its "÷ original" column and targets).
ORIGINAL = {"fae.pylibmc": "pylibmc", "fae.pymemcache HashClient": "pymemcache HashClient"}
GET_TARGET, MULTI_TARGET = 1.0, 0.9


def table(lat, ncalls, nmulti):
    us = lambda ns: ns / 1000  # noqa: E731
    p50 = {n: {op: pct(l[op], .5) for op in ("get", "multi")} for n, l in lat.items()}
    ratio = lambda a, b, op: p50[a][op] / p50[b][op]  # noqa: E731
    rows = []
    head = ("| client | get p50 µs | get p99 µs | set p50 µs | get_many(100) p50 µs | get ops/s "
            "| get p50 ÷ pylibmc | get_many p50 ÷ pylibmc | get, get_many p50 ÷ the replaced client "
            "| CPU µs per get, per get_many |")
    rows.append(head)
    rows.append("|" + "---|" * 10)
    for name, l in lat.items():
        g99, s50 = pct(l["get"], .99), pct(l["set"], .5)
        ops = 1e9 / (sum(l["get"]) / len(l["get"]))
        orig = ORIGINAL.get(name)
        vs = f"{ratio(name, orig, 'get'):.3f}, {ratio(name, orig, 'multi'):.3f}" if orig in lat else ""
        rows.append(
            f"| {name} | {us(p50[name]['get']):.1f} | {us(g99):.1f} | {us(s50):.1f} "
            f"| {us(p50[name]['multi']):.1f} | {ops:,.0f} "
            f"| {ratio(name, 'pylibmc', 'get'):.3f} | {ratio(name, 'pylibmc', 'multi'):.3f} | {vs} "
            f"| {us(l['get_cpu'] / len(l['get'])):.1f}, {us(l['multi_cpu'] / len(l['multi'])):.1f} |"
        )
    verdict = []
    for name, base in [("fae", "pylibmc")] + [(n, o) for n, o in ORIGINAL.items() if n in lat]:
        for op, what, target in (("get", "get", GET_TARGET), ("multi", "100-key get_many", MULTI_TARGET)):
            r = ratio(name, base, op)
            verdict.append(f"- {name}: {what} p50 ≤ {target} × {base}: "
                           f"**{'PASS' if r <= target else 'MISS'}** ({r:.3f})")
    aa = ratio(AA, "pylibmc", "get")
    verdict.append(f"- A/A control: the second pylibmc ÷ the first, get p50 {aa:.3f}, get_many p50 "
                   f"{ratio(AA, 'pylibmc', 'multi'):.3f}: two identical clients differ by this much "
                   "in this run, so a get ratio that close to 1.0 is not a difference.")
    info = (f"{ncalls} gets and sets, {nmulti} get_many calls per client; Python "
            f"{platform.python_version()}, pylibmc {pylibmc.__version__}, "
            f"memcached 4 × `-t 1` on 127.0.0.1, "
            + ("all on CPU 0 (`--one-cpu`)." if len(os.sched_getaffinity(0)) == 1
               else f"{os.cpu_count()} CPUs shared with other work; the order of the clients changes "
                    "every round, each following each other one equally often."))
    return "\n".join(rows), "\n".join(verdict), info


def write_docs(text: str, marker: str = "python-bench"):
    """Replace the `<!-- MARKER:start -->`…`end` block of docs/BENCHMARKS.md (append it once)."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    doc = path.read_text()
    start = f"<!-- {marker}:start -->"
    end = f"<!-- {marker}:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)


def side_by_side_main(doc: str, bench_fn, table_fn, section: str, marker: str):
    """The command line of a side-by-side script (bench_unix.py, bench_tls.py): run, print the
    table, and with --write-docs put `section` (with {rows} and {info}) into its marker block."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=24)  # the 24 orders of 4 clients (round_orders)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    lat, ncalls, nmulti = bench_fn(a.calls, a.rounds)
    rows, info = table_fn(lat, ncalls, nmulti)
    print(rows)
    print()
    print(info)
    if a.write_docs:
        write_docs(section.format(rows=rows, info=info), marker)
        print("docs/BENCHMARKS.md updated", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    # Rounded up to a whole number of `round_orders` cycles: 20 orders of the 5 clients, 42
    # with --compat's 7.
    ap.add_argument("--rounds", type=int, default=42)
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--compat", action="store_true", help="also fae.pylibmc and fae.pymemcache's HashClient")
    ap.add_argument("--one-cpu", action="store_true",
                    help="run the bench and its servers on CPU 0 only: no cross-CPU wake-ups, so a "
                         "round trip costs what the client and server spend, not where the scheduler put them")
    a = ap.parse_args()
    if a.one_cpu:
        os.sched_setaffinity(0, {0})  # the servers, started later, inherit it
    lat, ncalls, nmulti = bench(a.calls, a.rounds, a.compat)
    rows, verdict, info = table(lat, ncalls, nmulti)
    print(rows)
    print()
    print(verdict)
    print()
    print(info)
    if a.write_docs:
        write_docs(SECTION.format(rows=rows, verdict=verdict, info=info))
        print("docs/BENCHMARKS.md updated", file=sys.stderr)


SECTION = """## Python clients: fae vs pylibmc vs pymemcache

Command (after `bash scripts/setup.sh` and `maturin develop --release` in `bindings-python/`):

```sh
nice -n -20 .venv/bin/python bindings-python/bench.py --compat --write-docs
```

{info}

{rows}

Targets:
{verdict}
"""


if __name__ == "__main__":
    main()
