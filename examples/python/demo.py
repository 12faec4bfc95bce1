"""libfae from Python: route keys over several memcached servers, read a key another language
wrote, show where keys live, and fail over to a gutter pool when a server dies.

    python examples/python/demo.py 127.0.0.1:21211 127.0.0.1:21212 127.0.0.1:21213
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import fae


def main(servers):
    mc = fae.Client(servers, timeout=0.5)  # mode="libmemcached", serde="pymemcache" by default

    mc.set("py:user:1", {"name": "alice", "langs": ["python", "rust"]}, expire=300)
    mc.set("py:greeting", "héllo from Python")
    mc.set("py:visits", 41)
    print("get py:user:1        ->", mc.get("py:user:1"))
    print("incr py:visits       ->", mc.incr("py:visits"))

    many = {f"py:item:{i}": i * i for i in range(10)}
    print("set_many failed      ->", mc.set_many(many))
    got = mc.get_many(list(many) + ["py:missing"])
    print(f"get_many             -> {len(got)} hits of {len(many) + 1} keys")

    assert mc.get("py:user:1")["name"] == "alice" and len(got) == len(many)

    # demo:a was written by the C example through libfae.so with client flags 1: same
    # placement; read it as raw bytes (flags 1 means "pickle" to the pymemcache layout).
    raw = fae.Client(servers, serde="raw")
    print("get demo:a (from C)  ->", raw.get("demo:a"))

    # Lookaside without a stampede: the loader runs once per expiry, however many threads and
    # processes miss at once; invalidate keeps the old value served while one caller refills.
    loads = []

    def load_user():  # stands in for a database query
        loads.append(1)
        return {"name": "bob", "version": len(loads)}

    mc.delete("py:user:2")
    for _ in range(3):
        user = mc.get_or_set("py:user:2", load_user, expire=300)
    print("get_or_set x3        ->", user, f"({len(loads)} load)")
    mc.invalidate("py:user:2", stale_ttl=30)  # e.g. after the row changed
    user = mc.get_or_set("py:user:2", load_user, expire=300)
    print("after invalidate     ->", user, f"({len(loads)} loads)")
    assert user["version"] == 2 and len(loads) == 2

    for key in ("py:user:1", "py:greeting", "py:visits"):
        print(f"route_for {key:<12} -> {mc.route_for(key)[0]}")

    try:
        mc.get("bad key")
    except fae.ClientError as e:
        print("bad key              ->", type(e).__name__, e.reason)

    mc.close()


def start_memcached():
    """A throwaway memcached on a free port, for the failover demo to kill."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [shutil.which("memcached") or "memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"127.0.0.1:{port}"


def failover_demo(gutter):
    """A route tree from a config dict: writes go to "main"; when main dies, to a gutter pool
    whose TTLs are capped at 10 s (its entries expire without invalidation)."""
    proc, main = start_memcached()
    try:
        mc = fae.Client(config={
            "pools": {"main": {"servers": [main]}, "gutter": {"servers": [gutter]}},
            "route": {"type": "failover",
                      "children": ["main", {"type": "gutter", "pool": "gutter", "max_ttl": 10}]},
            "timeouts": {"connect_ms": 200, "io_ms": 500},
        })
        print("route_for set py:fo  ->", mc.route_for("py:fo", op="set"), "(main, then gutter)")
        mc.set("py:fo", "written to main", expire=3600)
        print("get py:fo            ->", mc.get("py:fo"))
        proc.kill()
        proc.wait()
        print(f"killed main          -> {main}")
        mc.set("py:fo", "written to the gutter", expire=3600)
        print("get py:fo            ->", mc.get("py:fo"))
        routes = mc.client_stats()["routes"]
        print("failovers            ->", routes["route"]["failovers"],
              "| gutter ttl_capped ->", routes["route.children[1]"]["ttl_capped"])
        assert mc.get("py:fo") == "written to the gutter"
        mc.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # No servers at all: config={} is libfae's in-process cache, memcached semantics included.
    local = fae.Client(config={})
    local.set("py:n", 41)
    print("in-process cache     ->", local.route_for("py:n"), "incr ->", local.incr("py:n"))


if __name__ == "__main__":
    servers = sys.argv[1:] or ["127.0.0.1:11211"]
    main(servers)
    failover_demo(servers[-1])
