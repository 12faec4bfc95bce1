"""pymemcache placement: ``fae.Client(mode="pymemcache")`` puts every key a Python program can
pass (``str`` of any characters, ``bytes``, with and without ``key_prefix``) on the server
pymemcache's ``HashClient`` picks. The vectors in ``tests/placement/pymemcache-python.csv`` were
written by the real pymemcache (``tests/placement/gen/pymemcache_python.py``); the live tests
below store through one client and read through the other."""

from __future__ import annotations

import csv
import os

import pytest

import fae

VECTORS = os.path.join(os.path.dirname(__file__), "..", "placement", "pymemcache-python.csv")
VECTOR_SERVERS = [f"127.0.0.1:{21211 + i}" for i in range(4)]


def test_golden_vectors_100_percent():
    clients = {}
    total, wrong = 0, []
    with open(VECTORS, newline="") as f:
        for row in csv.DictReader(f):
            prefix = bytes.fromhex(row["key_prefix"])
            if prefix not in clients:
                # No I/O: route_for only places the key.
                clients[prefix] = fae.Client(VECTOR_SERVERS, mode="pymemcache", key_prefix=prefix)
            raw = bytes.fromhex(row["key"])
            key = raw.decode() if row["kind"] == "str" else raw
            total += 1
            if clients[prefix].route_for(key) != [row["server"]]:
                wrong.append((row, clients[prefix].route_for(key)))
    assert total == 10_000
    assert not wrong, f"{len(wrong)} of {total} differ, e.g. {wrong[:3]}"


KEYS = ["ascii", "é", "naïve-ключ", "日本語キー", "emoji-😀", "\u0085x", "ÿ", b"raw", b"\xe9t\xe9", b"it's", "b'raw'"]


@pytest.mark.parametrize("prefix", [b"", b"app:"])
def test_stores_where_pymemcache_reads(servers, prefix):
    from pymemcache.client.hash import HashClient

    hosts = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in servers]
    pm = HashClient(hosts, key_prefix=prefix, allow_unicode_keys=True, default_noreply=False)
    c = fae.Client(servers, mode="pymemcache", key_prefix=prefix, serde="raw")
    for i, key in enumerate(KEYS):
        value = f"v{i}".encode()
        assert c.set(key, value)
        assert pm.get(key) == value, key
        # Every operation places the same way.
        assert c.append(key, b"+")
        assert c.touch(key, 100)
        assert c.gat(key, 100) == value + b"+"
        assert c.gets(key)[0] == value + b"+"
        pm.set(key, b"7")
        assert c.incr(key, 2) == 9
        assert c.get_many([key]) == {key: b"9"}
        assert c.delete(key)
        assert pm.get(key) is None
    assert c.set_many({k: b"m" for k in KEYS}) == []
    assert all(pm.get(k) == b"m" for k in KEYS)
    c.delete_many(KEYS)
    assert all(pm.get(k) is None for k in KEYS)


def test_other_modes_place_by_the_stored_key(servers):
    # Only pymemcache placement drops the prefix: libmemcached-style clients hash it.
    c = fae.Client(servers, key_prefix=b"app:")
    assert c.route_for("k") == fae.Client(servers).route_for("app:k")


def test_leases_refuse_keys_they_would_misplace(servers):
    c = fae.Client(servers, mode="pymemcache", key_prefix=b"app:")
    with pytest.raises(fae.ClientError):
        c.get_or_lease("k")
    assert fae.Client(servers, mode="pymemcache").get_or_set("k", lambda: b"v") == b"v"


def test_placement_follows_reload(servers):
    c = fae.Client(servers, mode="pymemcache", key_prefix=b"app:")
    pm = fae.Client(servers, mode="pymemcache")
    assert c.route_for("k") == pm.route_for("k"), "pymemcache hashes the key without its prefix"
    c.reload(servers=servers)
    assert c.route_for("k") == fae.Client(servers).route_for("app:k")
    c.reload(servers=servers, mode="pymemcache")
    assert c.route_for(b"k") == pm.route_for(b"k")
