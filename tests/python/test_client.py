"""fae.Client against real memcached: every method, return values, bad input, errors."""

from __future__ import annotations

import json
import time

import pytest

import fae
from conftest import raw_command


@pytest.fixture(params=["meta", "text"])
def mc(request, servers):
    c = fae.Client(servers, protocol=request.param, timeout=1.0)
    yield c
    c.close()


def test_get_set_and_misses(mc):
    assert mc.get("nope") is None
    assert mc.get("nope", "dflt") == "dflt"
    assert mc.set("k", b"v") is True
    assert mc.get("k") == b"v"
    assert mc.get(b"k") == b"v", "str keys are UTF-8; the same bytes key is the same key"


def test_str_keys_are_utf8(mc, servers):
    assert mc.set("clé", "valeur")
    assert mc.get("clé".encode()) == "valeur"
    (addr,) = mc.route_for("clé")
    raw = raw_command(addr, b"get cl\xc3\xa9\r\n", b"END\r\n")
    assert raw.startswith(b"VALUE cl\xc3\xa9 16 6\r\n")


def test_add_replace_append_prepend(mc):
    assert mc.add("a", b"1") is True
    assert mc.add("a", b"2") is False
    assert mc.get("a") == b"1"
    assert mc.replace("missing", b"x") is False
    assert mc.replace("a", b"3") is True
    assert mc.append("a", b"4") is True
    assert mc.prepend("a", "2") is True
    assert mc.get("a") == b"234"
    assert mc.append("missing", b"x") is False


def test_cas(mc):
    assert mc.gets("c") == (None, None)
    assert mc.gets("c", 0, -1) == (0, -1)
    mc.set("c", b"1")
    v, token = mc.gets("c")
    assert v == b"1" and isinstance(token, int)
    assert mc.cas("c", b"2", token) is True
    assert mc.cas("c", b"3", token) is False, "EXISTS: changed since gets"
    assert mc.get("c") == b"2"
    _, token = mc.gets("c")
    assert mc.cas("c", b"4", str(token).encode()) is True, "pymemcache's bytes tokens"
    mc.delete("c")
    assert mc.cas("c", b"5", token) is None, "NOT_FOUND"


def test_delete_incr_decr_touch(mc):
    assert mc.delete("d") is False
    mc.set("d", b"1")
    assert mc.delete("d") is True
    assert mc.incr("n") is None
    mc.set("n", 10)
    assert mc.incr("n") == 11
    assert mc.incr("n", 5) == 16
    assert mc.decr("n", 20) == 0, "decr stops at 0"
    assert mc.get("n") == 0
    assert mc.touch("n", 100) is True
    assert mc.touch("missing", 100) is False


def test_incr_rejects_bad_deltas(mc):
    mc.set("n", 1)
    for bad in (-1, 2**64, "1", 1.5):
        with pytest.raises(fae.ClientError) as e:
            mc.incr("n", bad)
        assert e.value.reason == "invalid_argument"
    assert mc.get("n") == 1


def test_gat_gats(mc):
    assert mc.gat("g", 10) is None
    mc.set("g", b"v")
    assert mc.gat("g", 100) == b"v"
    v, token = mc.gats("g", 100)
    assert v == b"v" and token > 0


def test_expire_semantics(mc):
    mc.set("e0", b"v", expire=0)
    mc.set("eneg", b"v", expire=-1)
    mc.set("eabs", b"v", expire=int(time.time()) + 3600)
    mc.set("eold", b"v", expire=int(time.time()) - 3600)
    mc.set("e1", b"v", expire=1)
    assert mc.get("e0") == b"v"
    assert mc.get("eneg") is None, "a negative expire expires at once"
    assert mc.get("eabs") == b"v", "over 30 days: a unix time"
    assert mc.get("eold") is None
    assert mc.add("eneg", b"w", expire=100) is True
    assert mc.touch("eneg", -1) is True
    assert mc.get("eneg") is None
    with pytest.raises(fae.ClientError):
        mc.set("x", b"v", expire=2**32)
    with pytest.raises(fae.ClientError):
        mc.set("x", b"v", expire="soon")


def test_many(mc):
    keys = [f"m{i}" for i in range(200)]
    assert mc.set_many({k: k.upper() for k in keys}, expire=100) == []
    got = mc.get_many(keys + ["absent"])
    assert got == {k: k.upper() for k in keys}
    assert mc.get_multi(keys[:3]) == {k: k.upper() for k in keys[:3]}
    assert mc.get_many([]) == {}
    gm = mc.gets_many(keys[:2])
    assert set(gm) == set(keys[:2]) and all(isinstance(t, int) for _, t in gm.values())
    assert mc.set_multi([("p1", 1), ("p2", 2)]) == []
    mixed = mc.get_many(["p1", b"p2"])
    assert mixed == {"p1": 1, b"p2": 2}, "result keys are the objects passed in"
    assert mc.delete_many(keys) is True
    assert mc.get_many(keys) == {}
    assert mc.delete_multi(["p1"]) is True


def test_many_key_kinds(mc):
    class Key(str):
        pass

    keys = ["ascii", "clé", "日本語", "emoji-😀", Key("sub"), b"raw", b"\xc3\xa9t\xc3\xa9"]
    for k in keys:
        assert mc.set(k, b"v:" + (k if isinstance(k, bytes) else k.encode()))
    want = {k: b"v:" + (k if isinstance(k, bytes) else k.encode()) for k in keys}
    for given in (keys, tuple(keys), iter(keys), (k for k in keys), dict.fromkeys(keys)):
        got = mc.get_many(given)
        assert got == want
        assert all(any(g is k for k in keys) for g in got), "result keys are the objects passed in"
    assert mc.get_many(["été".encode()]) == {"été".encode(): b"v:" + "été".encode()}, "str and its UTF-8 bytes are one key"
    assert {k: v for k, (v, _) in mc.gets_many(keys).items()} == want
    with pytest.raises(fae.ClientError) as e:
        mc.get_many(["ascii", "k\ud800"])
    assert e.value.reason == "invalid_key"
    assert mc.get("ascii") == b"v:ascii", "no stray error left set by the refused key"


def test_set_many_reports_not_stored_keys_with_failed_server(own_memcached, server):
    c = fae.Client([server, own_memcached.addr], timeout=0.3, connect_timeout=0.2)
    keys = [f"s{i}" for i in range(40)]
    dead_keys = [k for k in keys if c.route_for(k) == [own_memcached.addr]]
    assert dead_keys
    own_memcached.stop()
    failed = c.set_many({k: b"v" for k in keys})
    assert sorted(failed) == sorted(dead_keys)
    live = [k for k in keys if k not in dead_keys]
    assert c.get_many(live) == {k: b"v" for k in live}
    # The set_many's refused connect opened the server's breaker (a hard failure): reads of
    # its keys now fail fast without touching a socket.
    with pytest.raises(fae.NoServerAvailable) as e:
        c.get_many(keys)
    assert e.value.reason == "tko" and e.value.destination == own_memcached.addr
    fresh = fae.Client([server, own_memcached.addr], timeout=0.3, connect_timeout=0.2)
    with pytest.raises(fae.ConnectionError) as e:
        fresh.get(dead_keys[0])
    assert e.value.reason == "connect_refused" and e.value.destination == own_memcached.addr
    tolerant = fae.Client([server, own_memcached.addr], timeout=0.3, ignore_exc=True)
    assert tolerant.get_many(keys) == {k: b"v" for k in live}
    assert tolerant.get(dead_keys[0], "d") == "d"


def test_bad_keys_raise_and_send_nothing(mc):
    mc.set("ok", b"1")
    bad_keys = ["", "a b", "a\r\nflush_all", "x" * 251, b"\x00", "tab\t", 5, None, 1.5, ["k"]]
    for bad in bad_keys:
        with pytest.raises(fae.ClientError) as e:
            mc.get(bad)
        assert e.value.reason == "invalid_key", bad
        assert isinstance(e.value, ValueError)
        with pytest.raises(fae.ClientError):
            mc.set(bad, b"v")
        with pytest.raises(fae.ClientError):
            mc.get_many(["ok", bad])
        with pytest.raises(fae.ClientError):
            mc.set_many({"ok": b"2", bad: b"v"} if isinstance(bad, (str, bytes)) else [("ok", b"2"), (bad, b"v")])
    with pytest.raises(fae.ClientError):
        mc.get("\ud800")
    with pytest.raises(fae.ClientError):
        mc.get_many("abc")
    assert mc.get("ok") == b"1", "a batch with one bad key sent nothing"
    assert mc.set("x" * 250, b"v") and mc.get("x" * 250) == b"v"


def test_oversize_values_raise_and_lose_nothing(mc):
    mc.set("big", b"old")
    with pytest.raises(fae.ClientError) as e:
        mc.set("big", b"x" * (1024 * 1024 + 1))
    assert e.value.reason == "value_too_large"
    with pytest.raises(fae.ClientError):
        mc.set_many({"a1": b"1", "big": b"x" * (1024 * 1024 + 1)})
    assert mc.get("big") == b"old"
    assert mc.get("a1") is None, "the batch was refused before any I/O"
    assert mc.set("limit", b"x" * (1024 * 1024 - 512))
    small = fae.Client(mc.servers, max_value_size=10)
    with pytest.raises(fae.ClientError):
        small.set("k", b"x" * 11)


def test_bad_values_and_arguments(mc):
    with pytest.raises(fae.ClientError):
        mc.append("k", 5)
    with pytest.raises(fae.ClientError):
        mc.set("k", b"v", flags=-1)
    with pytest.raises(fae.ClientError):
        mc.cas("k", b"v", "token")
    with pytest.raises(fae.ClientError):
        mc.route_for("k", op="frobnicate")
    with pytest.raises(fae.ClientError):
        mc.set_many([1, 2])
    raw = fae.Client(mc.servers, serde="raw")
    with pytest.raises(fae.ClientError) as e:
        raw.set("k", "text")
    assert e.value.reason == "invalid_value"


def test_flags_override(mc, servers):
    mc.set("f", b"v", flags=0xABCD)
    (addr,) = mc.route_for("f")
    assert raw_command(addr, b"get f\r\n", b"END\r\n").startswith(b"VALUE f 43981 1")


def test_closed_client(servers):
    c = fae.Client(servers)
    c.set("k", b"v")
    with c:
        assert c.get("k") == b"v"
    assert c.closed
    for call in (lambda: c.get("k"), lambda: c.set("k", b"v"), lambda: c.get_many(["k"]),
                 lambda: c.delete("k"), lambda: c.incr("k"), lambda: c.stats()):
        with pytest.raises(fae.ClientError) as e:
            call()
        assert e.value.reason == "closed"
    c.close()  # idempotent


def test_disconnect_all_keeps_the_client_usable(servers):
    c = fae.Client(servers)
    c.set("k", b"v")
    c.disconnect_all()
    assert all(s["open_connections"] == 0 for s in c.server_stats().values())
    assert c.get("k") == b"v"
    c.quit()
    assert c.get("k") == b"v"


def test_admin(mc, servers):
    v = mc.version()
    assert list(v) == servers and all(isinstance(x, str) for x in v.values())
    mc.set("k", b"v")
    st = mc.stats()
    assert list(st) == servers
    assert all(isinstance(s["pid"], int) and s["curr_connections"] >= 1 for s in st.values())
    settings = mc.stats("settings")
    assert all("maxbytes" in s for s in settings.values())
    # memcached answers ERROR (an unknown command): the request was wrong, a client error.
    with pytest.raises(fae.ClientError):
        mc.stats("nonsense")
    assert mc.flush_all() is True
    assert mc.get("k") is None
    ss = mc.server_stats()
    assert sorted(ss) == sorted(servers)
    for s in ss.values():
        assert s["state"] == "closed" and s["open_connections"] >= 1 and "idle_connections" in s
    snap = mc.client_stats()
    assert set(snap["destinations"]) == set(servers) and "pools" in snap


def test_route_for_matches_where_values_land(servers):
    c = fae.Client(servers)
    for i in range(50):
        key = f"route:{i}"
        c.set(key, b"v")
        (addr,) = c.route_for(key, op="set")
        assert raw_command(addr, f"get {key}\r\n".encode(), b"END\r\n").startswith(b"VALUE")
        assert c.route_for(key) == c.route_for(key.encode(), "delete")


def test_bucket_for_reports_the_bucket_and_its_move(servers):
    a, b = servers[0], servers[1]

    def config(version, moves):
        return {"pools": {"main": {"servers": [a, b], "buckets": {
            "count": 4, "version": version, "map": [0, 0, 1, 1], "moves": moves}}}}

    c = fae.Client(config=config(1, []))
    seen = {}
    for i in range(1000):
        (info,) = c.bucket_for(f"bk:{i}")
        seen.setdefault(info["bucket"], (f"bk:{i}", info))
        if len(seen) == 4:
            break
    for bucket, (key, info) in seen.items():
        want = a if bucket < 2 else b
        assert info == {"pool": "main", "bucket": bucket, "version": 1, "server": want}
        assert c.route_for(key) == [want]
    c.reload(config=config(2, [{"bucket": 0, "to": 1, "phase": "dual_write_read_new"}]))
    key = seen[0][0]
    assert c.bucket_for(key) == [{"pool": "main", "bucket": 0, "version": 2, "server": a,
                                  "phase": "dual_write_read_new", "to": b}]
    assert c.route_for(key) == [b, a]
    with pytest.raises(fae.ClientError):
        c.reload(config=config(1, []))
    assert c.bucket_for(key)[0]["version"] == 2
    assert fae.Client([a]).bucket_for("x") == []


def test_key_prefix(servers):
    c = fae.Client(servers, key_prefix=b"app:")
    c.set("k", b"v")
    assert c.key_prefix == b"app:"
    assert fae.Client(servers).get("app:k") == b"v"
    assert c.get_many(["k"]) == {"k": b"v"}
    with pytest.raises(fae.ClientError):
        c.get("x" * 247), "the prefix counts toward 250 bytes"


def test_construction(servers, tmp_path):
    c = fae.Client(",".join(servers))
    assert c.servers == servers
    host, port = servers[0].split(":")
    assert fae.Client([(host, int(port))]).servers == [servers[0]]
    assert fae.Client([(host, int(port), 2)]).servers == [servers[0]]
    cfg = {"servers": servers, "mode": "jump", "protocol": "text"}
    d = fae.Client(config=cfg, timeout=0.5)
    d.set("k", b"v")
    assert d.get("k") == b"v"
    path = tmp_path / "fae.json"
    path.write_text(json.dumps(cfg))
    assert fae.Client(config_file=path).get("k") == b"v"
    assert fae.Client(config_file=str(path)).get("k") == b"v"
    bad = [
        dict(),
        dict(servers=servers, config=cfg),
        dict(config={"servers": servers, "severs": []}),
        dict(config=cfg, mode="jump"),
        dict(servers=servers, mode="no-such-mode"),
        dict(servers=["host:notaport"]),
        dict(servers=[5]),
        dict(servers=servers, serde="yaml"),
        dict(servers=servers, serde=object()),
        dict(servers=servers, timeout=-1),
        dict(config_file=tmp_path / "missing.json"),
    ]
    for kwargs in bad:
        with pytest.raises(fae.ClientError) as e:
            fae.Client(**kwargs)
        assert e.value.reason in ("invalid_config", "invalid_argument"), kwargs
    with pytest.raises(fae.ClientError) as e:
        fae.Client(config={"servers": servers, "severs": []})
    assert "severs" in str(e.value)
    assert "fae.Client" in repr(c)


def test_connection_refused_and_timeout(own_memcached):
    addr = own_memcached.addr
    c = fae.Client([addr], timeout=0.2, connect_timeout=0.2)
    c.set("k", b"v")
    own_memcached.pause()
    t0 = time.monotonic()
    with pytest.raises(fae.TimeoutError) as e:
        c.get("k")
    assert time.monotonic() - t0 < 1.0
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, fae.Error)
    assert e.value.reason == "timeout" and e.value.destination == addr
    own_memcached.resume()
    assert c.get("k") == b"v", "a fresh connection after the timed-out one was discarded"
    own_memcached.stop()
    with pytest.raises(fae.ConnectionError) as e:
        c.get("k")
    assert isinstance(e.value, ConnectionError)
    assert e.value.reason in ("connect_refused", "reset", "io")


def test_exception_tree():
    for cls in (fae.ClientError, fae.ServerError, fae.TimeoutError, fae.ConnectionError,
                fae.NoServerAvailable):
        assert issubclass(cls, fae.Error)
        e = cls("m", "tko", "h:1", "d")
        assert (e.reason, e.destination, e.detail, str(e)) == ("tko", "h:1", "d", "m")
    assert issubclass(fae.ClientError, ValueError)


def test_no_panic_reaches_python(servers):
    # Odd but legal inputs go through the same checks as ordinary ones.
    c = fae.Client(servers, binary_keys=True)
    assert c.set(b"a b\x00c", b"v") and c.get(b"a b\x00c") == b"v"
    assert c.get_many([b"a b\x00c", "plain"]) == {b"a b\x00c": b"v"}
    assert c.set("empty", b"") and c.get("empty") == b""
    assert c.incr("n", 0) is None
