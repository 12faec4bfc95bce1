"""Route trees from a config dict, end to end against real memcached: failover to a gutter,
replicated all_majority with a server killed, prefix, operation, shadow, a local near cache,
and the embedded in-process cache (``config={}``)."""

from __future__ import annotations

import time

import pytest

import fae
from conftest import raw_command

TIMEOUTS = {"connect_ms": 200, "io_ms": 1000}


def raw_get(addr: str, key: str):
    """The value memcached at ``addr`` holds for ``key`` (None on a miss), read without fae."""
    reply = raw_command(addr, f"get {key}\r\n".encode(), b"END\r\n")
    if not reply.startswith(b"VALUE"):
        return None
    header, rest = reply.split(b"\r\n", 1)
    n = int(header.split()[3])
    return rest[:n]


def raw_ttl(addr: str, key: str) -> int:
    """The remaining TTL memcached at ``addr`` reports for ``key`` (meta ``mg <key> t``)."""
    reply = raw_command(addr, f"mg {key} t\r\n".encode())
    assert reply.startswith(b"HD "), reply
    return int(reply.split()[1][1:])


def pools(**servers: str) -> dict:
    return {name: {"servers": [addr]} for name, addr in servers.items()}


def test_failover_to_a_gutter(own_memcached, servers):
    main, gutter = own_memcached.addr, servers[1]
    cfg = {
        "pools": pools(main=main, gutter=gutter),
        "route": {
            "type": "failover",
            "children": ["main", {"type": "gutter", "pool": "gutter", "max_ttl": 10}],
        },
        "timeouts": TIMEOUTS,
    }
    c = fae.Client(config=cfg)
    assert c.route_for("k", op="set") == [main, gutter], "every destination a set could touch"
    assert c.route_for("k") == [main, gutter]
    assert sorted(c.servers) == sorted([main, gutter])

    assert c.set("k", b"on main", expire=3600)
    assert raw_get(main, "k") == b"on main" and raw_get(gutter, "k") is None
    assert c.get("k") == b"on main"

    own_memcached.stop()
    assert c.set("k", b"in the gutter", expire=3600), "the failover answers for the dead main"
    assert raw_get(gutter, "k") == b"in the gutter"
    assert 0 < raw_ttl(gutter, "k") <= 10, "the gutter caps the TTL at max_ttl"
    assert c.get("k") == b"in the gutter"
    assert c.get("missing") is None, "a gutter miss is a miss, not an error"
    assert c.incr("n") is None and c.set("n", 1) and c.incr("n", 4) == 5
    assert c.delete("k") and raw_get(gutter, "k") is None

    routes = c.client_stats()["routes"]
    assert routes["route"]["type"] == "failover" and routes["route"]["failovers"] >= 4
    gut = routes["route.children[1]"]
    assert gut["type"] == "gutter" and gut["ttl_capped"] >= 2
    c.close()


def test_replicated_all_majority_survives_a_killed_server(own_memcached, servers):
    a, b, d = own_memcached.addr, servers[1], servers[2]
    cfg = {
        "pools": pools(a=a, b=b, d=d),
        "route": {"type": "replicated", "children": ["a", "b", "d"], "write": "all_majority"},
        "timeouts": TIMEOUTS,
    }
    c = fae.Client(config=cfg)
    assert c.route_for("r:1", op="set") == [a, b, d]
    assert c.route_for("r:1", op="delete") == [a, b, d]

    assert c.set("r:1", b"three copies")
    assert [raw_get(s, "r:1") for s in (a, b, d)] == [b"three copies"] * 3
    assert c.set_many({"r:2": b"x", "r:3": b"y"}) == []

    own_memcached.stop()
    assert c.set("r:1", b"two copies"), "two of three replicas agree: the majority reply"
    assert [raw_get(s, "r:1") for s in (b, d)] == [b"two copies"] * 2
    assert c.get("r:1") == b"two copies", "replica 0 is dead: the read moves on"
    assert c.get_many(["r:1", "r:2", "r:3"]) == {"r:1": b"two copies", "r:2": b"x", "r:3": b"y"}
    assert c.add("r:1", b"no") is False, "the majority says NOT_STORED"
    assert c.delete("r:2") and raw_get(b, "r:2") is None and raw_get(d, "r:2") is None
    assert c.set("r:n", 10) and c.incr("r:n", 5) == 15

    st = c.client_stats()["routes"]["route"]
    assert st["type"] == "replicated" and st["replica_failures"] >= 1
    assert st["failovers"] >= 1, "reads that moved to the next replica"
    c.close()


def test_prefix_and_operation_routes(servers):
    a, b, d = servers[0], servers[1], servers[2]
    cfg = {
        "pools": pools(a=a, b=b, d=d),
        "route": {
            "type": "prefix",
            "routes": {
                "user:": "a",
                "user:admin:": "b",
                "op:": {
                    "type": "operation",
                    "get": "a",
                    "set": {"type": "replicated", "children": ["a", "b"]},
                    "default": "a",
                },
            },
            "default": "d",
        },
        "timeouts": TIMEOUTS,
    }
    c = fae.Client(config=cfg)
    assert c.route_for("user:1") == [a]
    assert c.route_for("user:admin:1") == [b], "the longest prefix wins"
    assert c.route_for("other") == [d]
    assert c.route_for("op:1", op="get") == [a]
    assert c.route_for("op:1", op="set") == [a, b]
    assert c.route_for("op:1", op="delete") == [a]

    assert c.set_many({"user:1": b"u", "user:admin:1": b"adm", "other": b"o"}) == []
    assert raw_get(a, "user:1") == b"u" and raw_get(b, "user:admin:1") == b"adm"
    assert raw_get(d, "other") == b"o"
    assert c.get_many(["user:1", "user:admin:1", "other", "user:none"]) == {
        "user:1": b"u",
        "user:admin:1": b"adm",
        "other": b"o",
    }

    assert c.set("op:1", {"written": "twice"})
    assert raw_get(a, "op:1") is not None and raw_get(b, "op:1") is not None
    assert c.get("op:1") == {"written": "twice"}
    assert c.delete("op:1"), "delete has no route of its own: default (a)"
    assert raw_get(a, "op:1") is None and raw_get(b, "op:1") is not None
    c.close()


def test_shadow_mirrors_writes_off_the_request_path(servers):
    main, shadow = servers[0], servers[1]
    cfg = {
        "pools": pools(main=main, shadow=shadow),
        "route": {"type": "shadow", "route": "main", "shadow": "shadow", "fraction": 1.0},
    }
    c = fae.Client(config=cfg)
    assert c.route_for("s:1", op="set") == [main, shadow]
    assert c.set("s:1", b"mirrored")
    assert raw_get(main, "s:1") == b"mirrored"
    deadline = time.monotonic() + 2
    while raw_get(shadow, "s:1") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raw_get(shadow, "s:1") == b"mirrored"
    assert c.client_stats()["routes"]["route"]["shadowed"] >= 1
    c.close()


def test_local_near_cache_with_ttl_ms(servers):
    main = servers[0]
    cfg = {
        "pools": pools(main=main),
        "route": {"type": "local", "ttl_ms": 300, "max_items": 100, "route": "main"},
    }
    c = fae.Client(config=cfg)
    assert c.route_for("n:1") == ["local", main]
    assert c.route_for("n:1", op="set") == ["local", main]

    assert c.set("n:1", b"v1")
    assert raw_get(main, "n:1") == b"v1", "writes go through to the route"
    assert c.get("n:1") == b"v1"  # fills the near cache
    assert raw_command(main, b"set n:1 0 0 2\r\nv2\r\n") == b"STORED\r\n"
    assert c.get("n:1") == b"v1", "a near-cache hit: another writer is seen up to ttl_ms late"
    time.sleep(0.4)
    assert c.get("n:1") == b"v2", "after ttl_ms the route is asked again"

    assert c.set("n:1", b"v3") and c.get("n:1") == b"v3", "this process reads its own writes"
    v, cas = c.gets("n:1")
    assert v == b"v3" and c.cas("n:1", b"v4", cas) is True and c.get("n:1") == b"v4"
    assert c.delete("n:1") and c.get("n:1") is None and raw_get(main, "n:1") is None

    st = c.client_stats()["routes"]["route"]
    assert st["type"] == "local" and st["local_hits"] >= 1 and st["local_misses"] >= 1
    assert "items" in st and "bytes" in st
    c.close()


def test_embedded_local_cache_is_config_with_no_servers():
    c = fae.Client(config={})
    assert c.servers == [] and c.route_for("k") == ["local"]
    assert c.route_for("k", op="set") == ["local"]
    assert c.get("k") is None
    assert c.set("k", {"any": "value"}) and c.get("k") == {"any": "value"}
    assert c.delete("k") is True and c.delete("k") is False and c.get("k") is None
    assert c.incr("n") is None
    assert c.set("n", 5) and c.incr("n", 3) == 8 and c.decr("n", 10) == 0
    assert c.touch("n", 100) is True and c.touch("missing", 100) is False
    assert c.set("gone", b"x", expire=-1) and c.get("gone") is None
    v, cas = c.gets("n")
    assert v == 0 and isinstance(cas, int)
    assert c.cas("n", 1, cas) is True and c.cas("n", 2, cas) is False
    assert c.cas("missing", 1, cas) is None and c.get("n") == 1
    assert c.add("n", 9) is False and c.replace("missing", 9) is False
    assert c.append("s", b"!") is False and c.set("s", b"a") and c.append("s", b"!")
    assert c.get("s") == b"a!"
    assert c.get_many(["n", "s", "missing"]) == {"n": 1, "s": b"a!"}
    assert c.flush_all() and c.get("n") is None
    assert c.version() == {} and c.stats() == {}

    snap = c.client_stats()
    assert snap["pools"] == {} and snap["destinations"] == {}
    assert snap["routes"]["route"]["type"] == "local" and snap["routes"]["route"]["local_hits"] > 0
    c.close()
    with pytest.raises(fae.ClientError) as e:
        c.get("n")
    assert e.value.reason == "closed"


def test_embedded_cache_limits_and_one_cache_per_client():
    c = fae.Client(config={"route": {"type": "local", "max_items": 2}})
    other = fae.Client(config={})
    assert c.set("a", 1) and c.set("b", 2) and c.set("c", 3)
    assert len(c.get_many(["a", "b", "c"])) == 2, "max_items bounds the LRU"
    assert c.client_stats()["routes"]["route"]["evictions"] >= 1
    assert other.get("c") is None, "nothing is shared between clients"


def test_no_source_is_still_an_error():
    # fae.Client() keeps raising (pymemcache and pylibmc need a server, and a forgotten server
    # list must not silently become a per-process cache); config={} asks for the local cache.
    with pytest.raises(fae.ClientError) as e:
        fae.Client()
    assert e.value.reason == "invalid_config" and "config={}" in str(e.value)
    with pytest.raises(fae.ClientError):
        fae.Client([])


def test_route_errors_name_the_path(servers):
    cfg = {
        "pools": pools(main=servers[0]),
        "route": {"type": "failover", "children": ["main", {"type": "pool", "pool": "nope"}]},
    }
    with pytest.raises(fae.ClientError) as e:
        fae.Client(config=cfg)
    assert e.value.reason == "invalid_config"
    assert 'route.children[1].pool: unknown pool "nope"' in str(e.value)


def test_reload_into_a_route_tree(servers):
    main, gutter = servers[0], servers[1]
    c = fae.Client([main])
    assert c.route_for("k", op="set") == [main]
    c.reload(
        {
            "pools": pools(main=main, gutter=gutter),
            "route": {"type": "gutter", "pool": "gutter", "max_ttl": 5, "route": "main"},
        }
    )
    assert c.route_for("k", op="set") == [main, gutter]
    assert c.set("k", b"v") and raw_get(main, "k") == b"v"
    assert "route" in c.client_stats()["routes"]
    c.reload(config={})
    assert c.route_for("k") == ["local"] and c.get("k") is None
