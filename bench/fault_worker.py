"""One worker process of `fae-bench fault` (not a test): paced single gets through one Python client.

    python bench/fault_worker.py --client fae|fae.pylibmc|pylibmc --servers H:P,H:P,... \
        --keys FILE --worker I --workers N [--pace-us 250] [--max-secs 120] [--place MARKER]

`fae-bench fault` starts one of these per worker (as gunicorn runs one client per process),
pauses and resumes a server and reads the samples. The keys file has one `key value` line per
key (ASCII, no spaces). With `--place MARKER` the worker only sets every key to MARKER through
its client and exits (the bench then reads each server directly to see where they landed).

Otherwise it builds its client, reads every key once (warm connections), prints `ready`, waits
for `go DEADLINE` on stdin (CLOCK_MONOTONIC nanoseconds, the clock time.monotonic_ns reads) and
gets key after key, starting at key I*len/N, at most one per pace (no catch-up after a stall),
until the deadline. Then it prints `samples`, one `START_NS LATENCY_NS KEY_INDEX OUTCOME` line
per get (OUTCOME: h hit with the right value, m miss, e error or a wrong value) and `end COUNT`;
on stderr, up to 5 distinct error texts with their counts.
Exit status 3: the client is not available here (the message says why).

Settings: `fae` is `fae.Client(servers)` on libfae's defaults (placement `libmemcached` =
weighted ketama, `timeout` 0.25 s). `pylibmc` and `fae.pylibmc` get the same behaviors, the
failover settings pylibmc documents: `ketama_weighted` (the same placement), `remove_failed` 2,
`retry_timeout` 1 s, `dead_timeout` 1 s, `connect_timeout` 250 ms, `receive_timeout` and
`send_timeout` 250 ms (in µs), `_poll_timeout` 250 ms; fae.pylibmc maps the timeouts onto
libfae's and leaves failure handling to libfae's breaker.
"""

from __future__ import annotations

import argparse
import sys
import time

# At most this many samples per worker (the bench's bound, as for its threads).
MAX_SAMPLES = 1 << 20

PYLIBMC_BEHAVIORS = {
    "ketama_weighted": True,
    "tcp_nodelay": True,
    "remove_failed": 2,
    "retry_timeout": 1,
    "dead_timeout": 1,
    "connect_timeout": 250,
    "receive_timeout": 250_000,
    "send_timeout": 250_000,
    "_poll_timeout": 250,
}


def unavailable(why: str) -> None:
    print(why, file=sys.stderr, flush=True)
    sys.exit(3)


def make_client(name: str, servers: list[str]):
    """The client and the exception type its failed calls raise."""
    if name == "fae":
        try:
            import fae
        except ImportError as e:
            unavailable(f"the fae module is not importable ({e})")
        return fae.Client(servers), fae.Error
    if name in ("pylibmc", "fae.pylibmc"):
        try:
            if name == "pylibmc":
                import pylibmc
            else:
                import fae.pylibmc as pylibmc
        except ImportError as e:
            unavailable(f"{name} is not importable ({e})")
        return pylibmc.Client(servers, binary=False, behaviors=dict(PYLIBMC_BEHAVIORS)), pylibmc.Error
    unavailable(f"unknown client {name!r}")
    raise AssertionError


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--client", required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pace-us", type=int, default=250)
    p.add_argument("--max-secs", type=float, default=120.0)
    p.add_argument("--place")
    a = p.parse_args()

    keys, values = [], []
    with open(a.keys, "rb") as f:
        for line in f:
            k, v = line.rstrip(b"\n").split(b" ", 1)
            keys.append(k.decode())
            values.append(v)
    if not keys:
        sys.exit("no keys")
    mc, error = make_client(a.client, a.servers.split(","))

    if a.place is not None:
        marker = a.place.encode()
        for k in keys:
            if not mc.set(k, marker):
                sys.exit(f"set {k} failed")
        print(f"placed {len(keys)}", flush=True)
        return

    for k in keys:
        try:
            mc.get(k)
        except error:
            pass
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "go":
        return  # the bench gave up before the start
    deadline = int(line[1])
    hard_stop = time.monotonic_ns() + int(a.max_secs * 1e9)
    deadline = min(deadline, hard_stop)

    pace = a.pace_us * 1000
    n = len(keys)
    i = a.worker * n // max(a.workers, 1)
    out = []
    seen: dict[str, int] = {}  # up to 5 distinct error texts, counted (for the bench's stderr)
    now = time.monotonic_ns
    nxt = now()
    while len(out) < MAX_SAMPLES:
        t0 = now()
        if t0 >= deadline:
            break
        idx = i % n
        i += 1
        try:
            v = mc.get(keys[idx])
            o = "m" if v is None else ("h" if v == values[idx] else "e")
        except error as e:
            o = "e"
            why = f"{type(e).__name__}: {e}".replace(keys[idx], "KEY")
            if why in seen or len(seen) < 5:
                seen[why] = seen.get(why, 0) + 1
        t1 = now()
        out.append(f"{t0} {t1 - t0} {idx} {o}")
        nxt += pace
        if nxt > t1:
            time.sleep((nxt - t1) / 1e9)
        else:
            nxt = t1
    sys.stdout.write("samples\n")
    if out:
        sys.stdout.write("\n".join(out))
        sys.stdout.write("\n")
    sys.stdout.write(f"end {len(out)}\n")
    sys.stdout.flush()
    for why, count in seen.items():
        print(f"{count} × {why}", file=sys.stderr)


if __name__ == "__main__":
    main()
