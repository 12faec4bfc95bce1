"""fae.pylibmc: pylibmc's API on libfae, against real memcached and side by side with the real
pylibmc where placement or value bytes matter."""

from __future__ import annotations

import threading

import pytest

import fae
import fae.pylibmc as fpl
from fae.pylibmc import _pylibmc


def test_exception_names():
    import _pylibmc as real

    assert [n for n, _ in _pylibmc.exceptions] == [n for n, _ in real.exceptions]
    for name, cls in _pylibmc.exceptions:
        assert getattr(fpl, name) is cls and issubclass(cls, fpl.Error) and issubclass(cls, fae.Error)
    assert sorted(fpl.Client(["127.0.0.1:1"]).behaviors) == sorted(real.all_behaviors)


@pytest.mark.parametrize("behaviors", [None, {"ketama": True}, {"ketama_weighted": True}, {"tcp_nodelay": True}])
def test_placement_matches_pylibmc(servers, behaviors):
    import pylibmc

    real = pylibmc.Client(servers, behaviors=behaviors)
    ours = fpl.Client(servers, behaviors=behaviors)
    keys = [f"key:{i}" for i in range(300)] + ["é", "日本"]
    assert [ours.hash(k) for k in keys] == [real.hash(k) for k in keys]
    for k in keys[:40]:
        real.set(k, k)
    assert ours.get_multi(keys[:40]) == {k: k for k in keys[:40]}, "pylibmc's values read back"


def test_unsupported_placement_is_refused(servers):
    with pytest.raises(fpl.NotSupportedError):
        fpl.Client(servers, behaviors={"hash": "crc"})


def test_missing_and_invalid_keys(server):
    mc = fpl.Client([server])
    with pytest.raises(fpl.NotFound):
        mc.incr("missing")
    with pytest.raises(fpl.NotFound):
        mc.decr("missing", 2)
    with pytest.raises(fpl.NotFound):
        mc.incr_multi(["a", "b"], key_prefix="x", delta=1)
    assert mc.get("") is None and mc.get("a b") is None and mc.get("a b", 5) == 5
    assert mc.set("", 1) is False and mc.delete("") is False and mc.delete("missing") is False
    with pytest.raises(ValueError):
        mc.get("x" * 251)
    with pytest.raises(TypeError):
        mc.set(1, "v")
    mc.set("a", "A")
    assert mc.get_multi(["a", "", "hello world"]) == {"a": "A"}, "one bad key does not fail the call"
    mc.set("n", 1)
    assert mc.incr("n", 5) == 6 and mc.decr("n") == 5
    mc.set("s", "text")
    with pytest.raises(fpl.ClientError):
        mc.incr("s")


def test_multi_with_prefix_and_values(server):
    mc = fpl.Client([server])
    assert mc.set_multi({"a": 1, "b": [1, 2], "c": "é"}, key_prefix="p:") == []
    assert mc.get("p:b") == [1, 2]
    assert mc.get_multi(["a", "b", "c", "d"], key_prefix="p:") == {"a": 1, "b": [1, 2], "c": "é"}
    assert sorted(mc.add_multi({"a": 0, "z": 26}, key_prefix="p:")) == ["a"]
    mc.incr_multi(["a", "z"], key_prefix="p:", delta=2)
    assert mc.get_multi(["a", "z"], key_prefix="p:") == {"a": 3, "z": 28}
    assert mc.delete_multi(["a", "nope"], key_prefix="p:") is False
    assert mc.delete_multi(["b", "c"], key_prefix="p:") is True
    assert mc.set("big", "x" * 5000, min_compress_len=100) and mc.get("big") == "x" * 5000
    assert mc.set("t", True) and mc.get("t") == 1, "bool reads back as int, as in pylibmc"


def test_mapping_clone_pools(server):
    mc = fpl.Client([server], behaviors={"cas": True})
    mc["k"] = "v"
    assert mc["k"] == "v" and "k" in mc and "nope" not in mc
    mc["none"] = None
    assert mc["none"] is None and "none" in mc
    del mc["k"]
    with pytest.raises(KeyError):
        mc["k"]
    value, cas = mc.gets("none")
    assert value is None and isinstance(cas, int)
    assert mc.cas("none", "new", cas) and mc.get("none") == "new"
    with pytest.raises(ValueError):
        fpl.Client([server]).gets("k")
    clone = mc.clone()
    assert clone is not mc and clone.get("none") == "new" and clone.behaviors["cas"]
    pool = fpl.ClientPool(mc, 2)
    with pool.reserve() as a:
        assert a.set("p", 1)
    tm = fpl.ThreadMappedPool(mc)

    def work():
        with tm.reserve() as c:
            assert c.get("p") == 1
        tm.relinquish()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_behaviors_and_stats(server):
    mc = fpl.Client([server])
    assert mc.behaviors["distribution"] == "modula" and mc.behaviors["hash"] == "default"
    mc.behaviors = {"ketama": True}
    assert mc.behaviors["distribution"] == "consistent ketama"
    with pytest.raises(ValueError):
        mc.behaviors = {"nonsense": 1}
    ((name, stats),) = mc.get_stats()
    assert name.startswith(server) and stats["pid"].isdigit()


def test_overridable_serde(server):
    import json

    class JsonClient(fpl.Client):
        def serialize(self, value):
            return json.dumps(value).encode(), 0

        def deserialize(self, data, flags):
            if data == b'"miss"':
                raise fpl.CacheMiss
            return json.loads(data)

    mc = JsonClient([server])
    mc["t"] = (1, 2)
    assert mc["t"] == [1, 2]
    mc.set("m", "miss")
    assert mc.get("m") is None and mc.get_multi(["t", "m"]) == {"t": [1, 2]}
    assert fpl.Client([server]).serialize(2**64) == (b"18446744073709551616", 4)


def test_server_down(own_memcached):
    mc = fpl.Client([own_memcached.addr], behaviors={"connect_timeout": 200})
    own_memcached.stop()
    seen = set()
    for _ in range(10):
        with pytest.raises(fpl.Error) as e:
            mc.get("k")
        seen.add(type(e.value))
    # Refused connections are pylibmc.ConnectionError; once libfae's breaker opens, ServerDown.
    assert seen and seen <= {fpl.ConnectionError, fpl.ServerDown}


def test_get_is_libfaes_own_method(server):
    import types
    import weakref

    mc = fpl.Client([server])
    # No Python frame between the caller and libfae on a plain client's get.
    assert isinstance(mc.get, types.BuiltinMethodType) and mc.get.__self__ is mc._c
    mc.behaviors = {"ketama": True}
    assert mc.get.__self__ is mc._c, "a rebuilt client reads through its new libfae client"
    mc.set("k", "v")
    assert mc.get("k") == "v" and mc.clone().get("k") == "v"

    class Counting(fpl.Client):
        calls = 0

        def get(self, key, default=None):
            Counting.calls += 1
            return super().get(key, default)

    sub = Counting([server])
    assert sub.get("k") == "v" and sub["k"] == "v" and Counting.calls == 2, "a subclass's get is kept"
    assert sub.get("a b", 5) == 5 and sub.get("missing") is None

    class Raw(fpl.Client):
        def deserialize(self, data, flags):
            return data

    raw = Raw([server])
    assert not isinstance(raw.get, types.BuiltinMethodType) and raw.get("k") == b"v"

    # The handler holds no reference to its client: a dropped client is freed at once.
    gone = weakref.ref(mc)
    del mc
    assert gone() is None
