"""One client's call loop, for `scripts/bench-calls.py` (run under callgrind or strace).

    python bench_loop.py CLIENT OP N     (servers in FAE_BENCH_SERVERS, "host:port,...")

CLIENT: fae, pylibmc, fae.pylibmc, pymemcache-hash, fae.pymemcache-hash; OP: get or get_many
(100 keys). Stores 1000 keys of 100 bytes, does one untimed call of each op, then N calls."""

import os
import sys

who, op, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
addrs = os.environ["FAE_BENCH_SERVERS"].split(",")
hp = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addrs]
behaviors = {"ketama_weighted": True, "tcp_nodelay": True}
if who == "fae":
    import fae

    c = fae.Client(addrs, timeout=10.0)  # generous: valgrind runs ~50 times slower
elif who == "pylibmc":
    import pylibmc

    c = pylibmc.Client(addrs, behaviors=behaviors)
elif who == "fae.pylibmc":
    import fae.pylibmc

    c = fae.pylibmc.Client(addrs, behaviors=behaviors)
elif who == "pymemcache-hash":
    from pymemcache.client.hash import HashClient

    c = HashClient(hp, no_delay=True, default_noreply=False)
elif who == "fae.pymemcache-hash":
    import fae.pymemcache

    c = fae.pymemcache.HashClient(hp, timeout=10.0, default_noreply=False)
else:
    sys.exit(f"unknown client {who}")
keys = [f"bench:key:{i}" for i in range(1000)]
for k in keys:
    c.set(k, b"v" * 100)
batches = [keys[i : i + 100] for i in range(0, 1000, 100)]
get, many = c.get, (c.get_multi if hasattr(c, "get_multi") else c.get_many)
assert get(keys[0]) is not None and len(many(batches[0])) == 100
if op == "get":
    for i in range(n):
        get(keys[i % 1000])
elif op == "get_many":
    for i in range(n):
        many(batches[i % 10])
else:
    sys.exit(f"unknown op {op}")
