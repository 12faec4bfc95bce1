"""One Client shared by 16 threads; the GIL is released during I/O; a gunicorn-style pre-fork
(client used in the parent, then in 8 forked children at once, none of which keeps a copy of
the parent's connections)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import fae
import fae._fae


def test_sixteen_threads_share_one_client(servers):
    c = fae.Client(servers, max_connections=4, timeout=2.0)

    def work(t):
        for i in range(200):
            key = f"t{t}:{i}"
            assert c.set(key, {"t": t, "i": i})
            assert c.get(key) == {"t": t, "i": i}
            if i % 50 == 0:
                keys = [f"t{t}:{j}" for j in range(i + 1)]
                got = c.get_many(keys)
                assert got == {k: {"t": t, "i": int(k.split(":")[1])} for k in keys}
        assert c.incr(f"count", 1) is not None
        return t

    c.set("count", 0)
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sorted(pool.map(work, range(16))) == list(range(16))
    assert c.get("count") == 16
    for s in c.server_stats().values():
        assert s["open_connections"] <= 4


def test_io_releases_the_gil(own_memcached):
    """While one thread waits on a stopped server, another Python thread keeps running."""
    c = fae.Client([own_memcached.addr], timeout=0.8)
    c.set("k", b"v")
    own_memcached.pause()
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = len(ticks)
    try:
        c.get("k")
    except fae.TimeoutError:
        pass
    during = len(ticks) - before
    stop.set()
    t.join()
    own_memcached.resume()
    assert during > 100, f"the other thread ran only {during} times in 0.8 s: GIL held"


def sockets_to(addrs):
    """This process's descriptors that are TCP sockets connected to one of `addrs`."""
    remote = {"0100007F:%04X" % int(a.rsplit(":", 1)[1]) for a in addrs}
    with open("/proc/self/net/tcp") as f:
        inodes = {ln.split()[9] for ln in f.readlines()[1:] if ln.split()[2] in remote}
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            fds.append(int(fd))
    return fds


def test_prefork_children_get_their_own_connections(servers):
    c = fae.Client(servers)
    c.set_many({f"parent:{i}": i for i in range(100)})
    c.set("forks", 0)
    assert c.get("parent:1") == 1  # the parent holds pooled connections now
    assert sockets_to(servers), "the parent's pooled connections"
    gen = fae._fae._fork_generation()
    r, w = os.pipe()
    pids = []
    for n in range(8):
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(r)
                assert fae._fae._fork_generation() == gen + 1
                # The fork left the child's copies of the parent's sockets on /dev/null.
                assert sockets_to(servers) == [], "a parent's socket is open in the child"
                for round_ in range(50):
                    key = f"child:{n}:{round_}"
                    assert c.set(key, (n, round_))
                    assert c.get(key) == (n, round_)
                    got = c.get_many([f"parent:{i}" for i in range(100)])
                    assert got == {f"parent:{i}": i for i in range(100)}
                    assert c.incr("forks") is not None
                os.write(w, b"k")
                code = 0
            except BaseException as e:  # noqa: BLE001 - report anything
                os.write(w, repr(e).encode()[:200] + b"\n")
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(w)
    codes = [os.waitpid(p, 0)[1] for p in pids]
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    assert codes == [0] * 8, out
    assert out == b"k" * 8, out
    # The parent's pool is intact and every child's writes landed.
    assert c.get("parent:99") == 99
    assert c.get_many([f"child:{n}:49" for n in range(8)]) == {
        f"child:{n}:49": (n, 49) for n in range(8)
    }
    assert c.get("forks") == 8 * 50
    assert fae._fae._fork_generation() == gen
