"""Unix-domain socket servers from Python, against real memcached listening on sockets: a pool
mixing a socket and TCP, placement equal to pymemcache's and pylibmc's (golden vectors and live
clients), a missing path, a killed and restarted server."""

from __future__ import annotations

import csv
import os
import time

import pytest

import fae
from conftest import SocketMemcached, raw_command

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def vectors(name):
    with open(os.path.join(ROOT, "tests", "placement", name)) as f:
        rows = list(csv.reader(f))
    return rows[1:]


def test_a_mixed_pool_stores_where_route_for_says(socket_memcached, servers):
    path = socket_memcached.addr
    c = fae.Client([path, servers[0]], serde="raw")
    assert c.servers == [path, servers[0]]
    keys = [f"u:{i}" for i in range(100)]
    assert c.set_many({k: k.encode() for k in keys}) == []
    assert c.get_many(keys) == {k: k.encode() for k in keys}
    on_socket = [k for k in keys if c.route_for(k) == [path]]
    assert 10 < len(on_socket) < 90
    for k in on_socket[:10]:
        assert raw_command(path, f"get {k}\r\n".encode(), b"END\r\n").startswith(b"VALUE " + k.encode())
    snap = c.client_stats()
    assert snap["destinations"][path]["requests"] > 0
    assert set(c.server_stats()) == {path, servers[0]}


def test_weighted_socket_tuple_and_config_dict(socket_memcached):
    path = socket_memcached.addr
    c = fae.Client([(path, 0, 3)])
    assert c.set("k", "v") and c.get("k") == "v"
    d = fae.Client(config={"servers": [{"addr": path, "weight": 2}]})
    assert d.get("k") == "v"


def test_placement_equals_pymemcache_and_pylibmc_vectors():
    mixed = ["/tmp/fae-placement/m1.sock", "127.0.0.1:21211", "/tmp/fae-placement/m2.sock", "127.0.0.1:21212"]
    sockets = [f"/tmp/fae-placement/m{i}.sock" for i in range(1, 5)]
    for file, servers, mode in [
        ("pymemcache_unix.csv", mixed, "pymemcache"),
        ("libmemcached_unix.csv", mixed, "libmemcached"),
        ("pylibmc_unix.csv", sockets, "libmemcached"),
        ("pylibmc-ketama_unix.csv", sockets, "libmemcached-ketama"),
    ]:
        c = fae.Client(servers, mode=mode)
        bad = [k for k, want in vectors(file) if c.route_for(k) != [want]]
        assert bad == [], f"{file}: {len(bad)} keys differ"


def test_pymemcache_hashes_a_socket_by_its_path(socket_memcached, servers):
    from pymemcache.client.hash import HashClient

    path = socket_memcached.addr
    host, port = servers[0].rsplit(":", 1)
    theirs = HashClient([path, (host, int(port))])
    ours = fae.Client([path, servers[0]], mode="pymemcache")
    keys = [f"key:{i}" for i in range(2000)]
    assert [ours.route_for(k)[0] for k in keys] == [theirs.hasher.get_node(k) for k in keys]


def test_reads_what_pylibmc_wrote_over_the_same_sockets():
    pylibmc = pytest.importorskip("pylibmc")
    a, b = SocketMemcached(), SocketMemcached()
    try:
        theirs = pylibmc.Client([a.addr, b.addr], behaviors={"ketama_weighted": True})
        keys = [f"pl:{i}" for i in range(200)]
        for k in keys:
            theirs.set(k, k.encode())
        ours = fae.Client([a.addr, b.addr], mode="libmemcached", serde="raw")
        assert ours.get_many(keys) == {k: k.encode() for k in keys}
    finally:
        a.stop()
        b.stop()


def test_a_missing_path_is_a_clear_connection_error():
    c = fae.Client(["/nonexistent-dir/m.sock"])
    t = time.monotonic()
    with pytest.raises(fae.ConnectionError) as e:
        c.get("k")
    assert time.monotonic() - t < 0.5
    assert e.value.reason == "connect_failed"
    assert "/nonexistent-dir/m.sock" in str(e.value)


def test_a_killed_socket_server_comes_back(socket_memcached):
    path = socket_memcached.addr
    c = fae.Client([path])
    assert c.set("k", "v")
    socket_memcached.stop()
    with pytest.raises(fae.Error):
        c.get("k")
    socket_memcached.start()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert c.get("k") is None  # a restarted server is empty
            break
        except fae.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert c.set("k", "w") and c.get("k") == "w"


@pytest.mark.parametrize("behaviors", [None, {"ketama": True}, {"ketama_weighted": True}])
def test_fae_pylibmc_reads_what_pylibmc_stored_over_sockets(behaviors):
    import pylibmc

    import fae.pylibmc as fpl

    socks = [SocketMemcached() for _ in range(3)]
    try:
        paths = [m.addr for m in socks]
        real = pylibmc.Client(paths, behaviors=behaviors)
        ours = fpl.Client(paths, behaviors=behaviors)
        keys = [f"s:{i}" for i in range(300)]
        real.set_multi({k: k for k in keys})
        # Every key read back means every key is on the server pylibmc chose.
        assert ours.get_multi(keys) == {k: k for k in keys}
        held = [int(raw_command(p, b"stats\r\n", b"END\r\n").split(b"curr_items ")[1].split()[0]) for p in paths]
        assert sum(held) == 300 and min(held) > 30, held
        assert ours.set("new", 1) and real.get("new") == 1
        # A socket as pylibmc's (type, path, port) tuple, alone: it reads exactly the keys
        # pylibmc put on that socket.
        alone = fpl.Client([(fpl.server_type_unix, paths[0], 0)], behaviors=behaviors)
        assert len(alone.get_multi(keys)) == held[0]
    finally:
        for m in socks:
            m.stop()


def test_fae_pylibmc_socket_rules_are_pylibmcs(socket_memcached):
    import fae.pylibmc as fpl

    with pytest.raises(ValueError, match="mix transport"):
        fpl.Client([socket_memcached.addr, "127.0.0.1:11211"])
    with pytest.raises(ValueError, match="port on unix"):
        fpl.Client([(fpl.server_type_unix, socket_memcached.addr, 11211)])
    with pytest.raises(fpl.NotSupportedError):
        fpl.Client(["udp:127.0.0.1:11211"])


def test_fae_pymemcache_takes_sockets_as_pymemcache(socket_memcached, servers):
    from pymemcache.client.hash import HashClient as RealHash

    from fae.pymemcache.client.base import Client, PooledClient
    from fae.pymemcache.client.hash import HashClient

    path = socket_memcached.addr
    for c in (Client(path), PooledClient("unix:" + path)):
        assert c.set("k", b"v", noreply=False) and c.get("k") == b"v"
    mixed = [path, servers[0], servers[1]]
    real = RealHash(mixed)
    keys = [f"p:{i}" for i in range(200)]
    real.set_many({k: k.encode() for k in keys}, noreply=False)
    # Every key read back through the socket and the TCP servers: each is where pymemcache put it.
    assert HashClient(mixed).get_many(keys) == {k: k.encode() for k in keys}
    on_socket = Client(path).get_many(keys)
    assert 20 < len(on_socket) < 180
