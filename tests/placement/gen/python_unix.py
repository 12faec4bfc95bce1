"""Placement with Unix-socket servers as pymemcache and pylibmc compute it, for the mixed
socket/TCP pool of tests/placement/README.md. Writes `key,server` CSVs (a socket server is
written as its path) into the directory given as the only argument.

pymemcache: `HashClient.hasher.get_node(key)` (pure placement, no I/O), mixed pool.
pylibmc has no placement API and refuses to mix sockets with TCP ("can't mix transport
types"): its pool is the four sockets m1..m4.sock. Real memcached servers are started on them,
every key is stored through pylibmc, then each server is asked which keys it holds. Needs
memcached on PATH.
"""

import os
import shutil
import subprocess
import sys
import time

import pylibmc
import pymemcache
from pymemcache.client.base import Client as PlainClient
from pymemcache.client.hash import HashClient

SOCK_DIR = "/tmp/fae-placement"
SOCKETS = [f"{SOCK_DIR}/m{i}.sock" for i in range(1, 5)]
TCP = [("127.0.0.1", 21211), ("127.0.0.1", 21212)]
KEYS = [f"key:{i}" for i in range(10_000)]


def write(path, placement):
    with open(path, "w") as f:
        f.write("key,server\n")
        for k in KEYS:
            f.write(f"{k},{placement[k]}\n")
    print(f"wrote {path}", file=sys.stderr)


def pymemcache_vectors():
    c = HashClient([SOCKETS[0], TCP[0], SOCKETS[1], TCP[1]])
    # Node names are the bare path for a socket and "host:port" for TCP.
    return {k: c.hasher.get_node(k) for k in KEYS}


def start_servers():
    os.makedirs(SOCK_DIR, exist_ok=True)
    user = ["-u", "root"] if os.geteuid() == 0 else []
    procs = []
    for s in SOCKETS:
        if os.path.exists(s):
            os.unlink(s)
        procs.append(subprocess.Popen(["memcached", "-s", s, "-m", "64", *user]))
    deadline = time.time() + 5
    for addr in SOCKETS:
        while True:
            try:
                PlainClient(addr, connect_timeout=0.2).version()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
    return procs


def pylibmc_vectors(behaviors):
    plain = [PlainClient(a) for a in SOCKETS]
    for p in plain:
        p.flush_all()
    mc = pylibmc.Client(SOCKETS, behaviors=behaviors)
    for k in KEYS:
        mc.set(k, "1")
    placement = {}
    for name, p in zip(SOCKETS, plain):
        for i in range(0, len(KEYS), 500):
            for k in p.get_many(KEYS[i : i + 500]):
                k = k.decode() if isinstance(k, bytes) else k
                assert k not in placement, f"{k} on two servers"
                placement[k] = name
    missing = [k for k in KEYS if k not in placement]
    assert not missing, f"{len(missing)} keys on no server (evicted?)"
    return placement


def main():
    out = sys.argv[1]
    print(f"pymemcache {pymemcache.__version__}, pylibmc {pylibmc.__version__}", file=sys.stderr)
    write(os.path.join(out, "pymemcache_unix.csv"), pymemcache_vectors())
    procs = start_servers()
    try:
        write(os.path.join(out, "pylibmc_unix.csv"), pylibmc_vectors({"ketama_weighted": True}))
        write(os.path.join(out, "pylibmc-ketama_unix.csv"), pylibmc_vectors({"ketama": True}))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(SOCK_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
