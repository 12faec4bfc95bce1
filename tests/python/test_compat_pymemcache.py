"""fae.pymemcache: pymemcache's public API on libfae, checked against real memcached and,
where it matters, side by side with the real pymemcache."""

from __future__ import annotations

import pytest

import fae
import fae.pymemcache as fpm
from fae.pymemcache import exceptions as fexc
from fae.pymemcache.client.base import Client, PooledClient
from fae.pymemcache.client.hash import HashClient
from fae.pymemcache.client.retrying import RetryingClient


def hostport(addr: str):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def test_layout_and_names():
    import pymemcache
    import pymemcache.exceptions as pexc

    for name in pymemcache.__all__ if hasattr(pymemcache, "__all__") else []:
        assert hasattr(fpm, name), name
    for name in dir(pexc):
        if name.startswith("Memcache"):
            ours, theirs = getattr(fexc, name), getattr(pexc, name)
            assert [c.__name__ for c in ours.__mro__ if c.__name__.startswith("Memcache")] == [
                c.__name__ for c in theirs.__mro__ if c.__name__.startswith("Memcache")
            ], name
            assert issubclass(ours, fae.Error)
    assert fpm.client.Client is Client and fpm.HashClient is HashClient


@pytest.mark.parametrize("cls", [Client, PooledClient, lambda s, **kw: HashClient([s], **kw)])
def test_return_types(server, cls):
    c = cls(hostport(server))
    assert c.set("k", b"v") is True
    assert c.get("k") == b"v" and c.get("missing", b"d") == b"d"
    value, token = c.gets("k")
    assert value == b"v" and isinstance(token, bytes) and token.isdigit()
    assert c.cas("k", b"w", token.decode(), noreply=False) is True, "a str token is accepted"
    assert c.cas("k", b"x", "1", noreply=False) is False
    assert c.cas("nope", b"x", b"1", noreply=False) is None
    assert c.get("k") == b"w"
    assert c.add("k", b"y", noreply=False) is False and c.add("k", b"y") is True
    assert c.set_many({"a": b"1", "b": b"2"}) == []
    assert c.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    assert {k: v for k, (v, t) in c.gets_many(["a"]).items()} == {"a": b"1"}
    assert all(isinstance(t, bytes) for _, t in c.gets_many(["a", "b"]).values())
    assert c.incr("a", 5) == 6 and c.decr("a", 2) == 4 and c.incr("zz", 1) is None
    assert c.set("n", 42) and c.get("n") == b"42", "no serde: str() of the value, like pymemcache"
    assert c.delete("a", noreply=False) is True and c.delete("a", noreply=False) is False
    assert c.touch("b", 10, noreply=False) is True
    assert c.flush_all() is (None if isinstance(c, HashClient) else True), "as pymemcache"


def test_errors_are_pymemcaches(server):
    c = Client(hostport(server))
    with pytest.raises(fexc.MemcacheIllegalInputError):
        c.get("bad key")
    with pytest.raises(fexc.MemcacheIllegalInputError):
        c.get("é")
    with pytest.raises(fexc.MemcacheIllegalInputError):
        c.set("k" * 251, b"v")
    c.set("s", b"text")
    with pytest.raises(fexc.MemcacheClientError):
        c.incr("s", 1)
    with pytest.raises(fexc.MemcacheServerError):
        c.set("big", b"x" * (1024 * 1024 + 1), noreply=False)
    with pytest.raises(fexc.MemcacheUnknownCommandError):
        c.raw_command("nonsense")
    with pytest.raises(fae.Error):
        c.get("bad key")


KEY_SAMPLES = [
    "k", "", "a b", "tab\tkey", "nl\nkey", "nul\x00", "del\x7f", "ctl\x01", "fs\x1c", "é",
    "ключ", "k" * 240, "k" * 241, "k" * 250, b"k", b"", b"a b", b"\x00", b"\x7f", b"\xff",
    b"k" * 245, bytearray(b"ba"), 7, None,
]


@pytest.mark.parametrize("prefix", [b"", b"p:", b"p p", b"p\x00", "s:"])
@pytest.mark.parametrize("unicode_keys", [False, True])
def test_key_checks_match_pymemcache(server, prefix, unicode_keys):
    """The fast key checks accept and refuse exactly what pymemcache's check_key_helper does,
    one key at a time and in batches (one bad key among good ones)."""
    from pymemcache.client.base import check_key_helper as theirs

    c = Client(hostport(server), key_prefix=prefix, allow_unicode_keys=unicode_keys)
    bprefix = prefix.encode() if isinstance(prefix, str) else prefix

    def refused(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # ours or pymemcache's classes: compared by name
            return type(e).__name__
        return None

    for k in KEY_SAMPLES:
        want = refused(theirs, k, unicode_keys, bprefix)
        assert refused(c._key, k) == want, (k, prefix)
        for good in (["a", "b"], [b"a", b"b"]):
            batch = good + [k]
            want_batch = next((w for w in (refused(theirs, x, unicode_keys, bprefix) for x in batch) if w), None)
            assert refused(c._keys, batch) == want_batch, (batch, prefix)
    if not (b" " in bprefix or b"\x00" in bprefix):
        assert c.get_many(["a", "b"]) == {} and c.get("a") is None


def test_unicode_keys(server):
    c = Client(hostport(server), allow_unicode_keys=True)
    assert c.set("ключ", b"v") and c.get("ключ") == b"v"


def test_admin(server):
    c = Client(hostport(server))
    assert c.version().startswith(b"1.")
    st = c.stats()
    assert isinstance(st[b"pid"], int)
    assert c.cache_memlimit(64) is True
    assert c.raw_command("version").startswith(b"VERSION ")
    c.set("r", b"v")
    assert c.raw_command(b"get r", b"END\r\n") == b"VALUE r 0 1\r\nv\r\n"


def test_serde_objects(server):
    from pymemcache import serde as pserde

    addr = hostport(server)
    for serde in (fpm.serde.pickle_serde, pserde.pickle_serde, fpm.serde.compressed_serde,
                  pserde.compressed_serde, fpm.serde.CompressedSerde(min_compress_len=10)):
        c = Client(addr, serde=serde)
        value = {"a": [1, 2, 3] * 200, "s": "é"}
        c.set("v", value)
        assert c.get("v") == value
        c.set("i", 7)
        assert c.get("i") == 7
    # The same bytes and flags as pymemcache: each reads what the other wrote.
    from pymemcache.client.base import Client as RealClient

    real = RealClient(addr, serde=pserde.compressed_serde, default_noreply=False)
    ours = Client(addr, serde=fpm.serde.compressed_serde)
    big = ["x" * 50] * 100
    ours.set("c", big)
    assert real.get("c") == big
    real.set("d", {"k": big})
    assert ours.get("d") == {"k": big}
    # min_compress_len=0 never compresses, as in pymemcache; above it, flag 8 is added.
    for n, flags in ((0, b"1"), (100, b"9")):
        c = Client(addr, serde=fpm.serde.CompressedSerde(min_compress_len=n))
        c.set("z", big)
        assert c.raw_command(b"get z", b"END\r\n").split(b"\r\n")[0].split()[2] == flags


def test_hash_client_matches_pymemcache(servers):
    from pymemcache.client.hash import HashClient as RealHashClient

    addrs = [hostport(s) for s in servers]
    real = RealHashClient(addrs, key_prefix=b"p:", allow_unicode_keys=True, default_noreply=False)
    ours = HashClient(addrs, key_prefix=b"p:", allow_unicode_keys=True)
    keys = [f"k{i}-é" for i in range(40)] + [f"b{i}".encode() for i in range(40)]
    for i, k in enumerate(keys):
        ours.set(k, b"%d" % i)
    assert all(real.get(k) == b"%d" % i for i, k in enumerate(keys))
    assert set(ours.clients) == {"%s:%s" % a for a in addrs}
    ours.remove_server(*addrs[0])
    assert len(ours._c.servers) == 3
    ours.add_server(*addrs[0])
    assert all(ours.get(k) == b"%d" % i for i, k in enumerate(keys))


def test_retrying_client(server, own_memcached):
    c = RetryingClient(Client(hostport(server)), attempts=3, retry_for=[fexc.MemcacheClientError])
    assert c.set("k", b"v") and c.get("k") == b"v"
    with pytest.raises(ValueError):
        RetryingClient(c, attempts=0)
    with pytest.raises(ValueError):
        RetryingClient(c, retry_for=[KeyError], do_not_retry_for=[KeyError])
    calls = []

    class Flaky:
        def get(self, key):
            calls.append(key)
            if len(calls) < 3:
                raise fexc.MemcacheClientError("flaky")
            return b"ok"

    assert RetryingClient(Flaky(), attempts=3).get("k") == b"ok" and len(calls) == 3


def test_ignore_exc(own_memcached):
    c = Client(hostport(own_memcached.addr), ignore_exc=True, connect_timeout=0.2, timeout=0.2)
    own_memcached.stop()
    assert c.get("k") is None and c.get_many(["a"]) == {}
    # pymemcache's Client ignores errors of reads only; HashClient of every call.
    with pytest.raises(OSError):
        c.set("k", b"v")
    h = HashClient([hostport(own_memcached.addr)], ignore_exc=True, connect_timeout=0.2, timeout=0.2)
    assert h.set("k", b"v", noreply=False) is False and h.get("k") is None
