#!/usr/bin/env python3
"""Client cost per call, measured in numbers a busy machine does not blur: user-space
instructions and level-1 instruction-cache misses of the calling thread (valgrind callgrind,
simulated cache) and syscalls (strace -c), for the Python clients
(fae, pylibmc, the drop-in modules, pymemcache's HashClient) and the PHP ones (Fae\\Client,
php-memcached). Each figure is (run with N calls − run with 0 calls) / N, so start-up and
warm-up cancel out.

    .venv/bin/python scripts/bench-calls.py [--php-ext PATH] [--only python|php] [--n 2000]

Needs valgrind and strace; the Python module built into .venv (maturin develop --release) and,
for PHP, a release build of the extension (cargo build --release -p fae-php) and php-memcached.
Starts four memcached on free 127.0.0.1 ports (killed by PID at exit)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bindings-python"))
from bench import start_servers  # noqa: E402

PY_CLIENTS = ["fae", "pylibmc", "fae.pylibmc", "pymemcache-hash", "fae.pymemcache-hash"]
PHP_CLIENTS = ["fae", "php-memcached"]


def instructions(cmd: list[str], env: dict) -> tuple[int, int]:
    """The calling thread's instructions and level-1 instruction-cache misses (callgrind's
    simulated cache, this host's sizes): libfae's supervisor thread wakes by the clock, and
    valgrind's slowdown would make its share vary from run to run. The misses count how many
    64-byte lines of code a call runs that the calls before it evicted: with the same
    instructions, a path spread over more code costs more, as each miss waits for L2."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cg"
        r = subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes", "--cache-sim=yes",
                            f"--callgrind-out-file={out}", *cmd], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        text = Path(f"{out}-01").read_text()
        events = re.search(r"^events: (.+)$", text, re.M).group(1).split()
        totals = [int(x) for x in re.search(r"^(?:totals|summary): (.+)$", text, re.M).group(1).split()]
        return totals[events.index("Ir")], totals[events.index("I1mr")]


def syscalls(cmd: list[str], env: dict) -> dict[str, int]:
    with tempfile.NamedTemporaryFile("r") as f:
        subprocess.run(["strace", "-f", "-c", "-o", f.name, *cmd], env=env, capture_output=True, check=True)
        counts = {}
        for line in f.read().splitlines():
            p = line.split()
            if len(p) >= 5 and p[0][0].isdigit() and p[-1].isidentifier() and p[-1] != "total":
                counts[p[-1]] = int(p[3])
        return counts


def measure(cmd: list[str], env: dict, n: int) -> tuple[int, int, str]:
    (ir1, mr1), (ir0, mr0) = instructions(cmd + [str(n)], env), instructions(cmd + ["0"], env)
    a, b = syscalls(cmd + ["0"], env), syscalls(cmd + [str(n)], env)
    per = {k: (b[k] - a.get(k, 0)) / n for k in b}
    calls = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items()) if v >= 0.05)
    return (ir1 - ir0) // n, (mr1 - mr0) // n, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--php-ext", default=str(ROOT / "target/release/libfae_php.so"))
    ap.add_argument("--only", choices=["python", "php"])
    ap.add_argument("--n", type=int, default=2000, help="calls per get run (get_many: a tenth)")
    a = ap.parse_args()
    procs, addrs = start_servers(4)
    env = dict(os.environ, FAE_BENCH_SERVERS=",".join(addrs))
    try:
        print("| client | op | instructions per call | I1 misses per call | syscalls per call |")
        print("|---|---|--:|--:|---|")
        if a.only != "php":
            for who in PY_CLIENTS:
                for op, n in (("get", a.n), ("get_many", max(1, a.n // 10))):
                    cmd = [sys.executable, str(ROOT / "bindings-python/bench_loop.py"), who, op]
                    ins, miss, calls = measure(cmd, env, n)
                    print(f"| Python {who} | {op} | {ins:,} | {miss:,} | {calls} |", flush=True)
        if a.only != "python":
            php = ["php", "-n", "-d", "extension=igbinary", "-d", "extension=msgpack", "-d", "extension=memcached",
                   "-d", f"extension={a.php_ext}", str(ROOT / "tests/php/bench_loop.php")]
            for who in PHP_CLIENTS:
                for op, n in (("get", a.n), ("getMulti", max(1, a.n // 10))):
                    ins, miss, calls = measure(php + [who, op], env, n)
                    print(f"| PHP {who} | {op} | {ins:,} | {miss:,} | {calls} |", flush=True)
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


if __name__ == "__main__":
    main()
