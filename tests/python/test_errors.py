"""Every failure of a ``fae`` call is an ``fae.Error``: overflowing numbers, deep or cyclic
config dicts, and memcached's ``CLIENT_ERROR`` replies (a client error, as pymemcache reports
it)."""

from __future__ import annotations

import pytest

import fae


@pytest.mark.parametrize("delay", [-1, 2**40, "soon"])
def test_flush_all_bad_delay(servers, delay):
    with pytest.raises(fae.ClientError):
        fae.Client(servers).flush_all(delay)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compress_level": -1},
        {"compress_level": 2**40},
        {"max_connections": -1},
        {"max_value_size": 2**70},
        {"min_compress_len": -5},
        {"timeout": 10**400},
        {"connect_timeout": "x"},
        {"pickle_protocol": 2**40},
    ],
)
def test_constructor_numbers(servers, kwargs):
    with pytest.raises(fae.ClientError):
        fae.Client(servers, **kwargs)


def test_per_call_numbers(servers):
    c = fae.Client(servers)
    with pytest.raises(fae.ClientError):
        c.set("k", b"v", min_compress_len=-1)
    with pytest.raises(fae.ClientError):
        c.set_many({"k": b"v"}, min_compress_len=2**70)


def nested_route(depth: int, pool: str) -> dict:
    route: object = pool
    for _ in range(depth):
        route = {"type": "failover", "children": [route]}
    return route  # type: ignore[return-value]


@pytest.mark.parametrize("depth", [200, 1000, 5000])
def test_deep_config(servers, depth):
    cfg = {"pools": {"a": {"servers": servers[:1]}}, "route": nested_route(depth, "a")}
    with pytest.raises(fae.ClientError, match="nest|recursion"):
        fae.Client(config=cfg)
    with pytest.raises(fae.ClientError):
        fae.Client(servers).reload(config=cfg)


def test_depth_limit_is_the_core_one(servers):
    # The same limit as a JSON or TOML config (config::limits::MAX_DEPTH = 64 levels).
    ok = {"pools": {"a": {"servers": servers[:1]}}, "route": nested_route(31, "a")}
    fae.Client(config=ok)
    deep = {"pools": {"a": {"servers": servers[:1]}}, "route": nested_route(32, "a")}
    with pytest.raises(fae.ClientError, match="deeper than 64 levels"):
        fae.Client(config=deep)


def test_shallow_nesting_is_fine(servers):
    cfg = {"pools": {"a": {"servers": servers[:1]}}, "route": nested_route(20, "a")}
    c = fae.Client(config=cfg)
    assert c.set("k", b"v") and c.get("k") == b"v"


def test_cyclic_config(servers):
    cfg: dict = {"pools": {"a": {"servers": servers[:1]}}}
    cfg["route"] = {"type": "failover", "children": ["a"]}
    cfg["route"]["children"].append(cfg["route"])
    with pytest.raises(fae.ClientError, match="cycle|[Cc]ircular"):
        fae.Client(config=cfg)


def test_client_error_reply_is_a_client_error(servers):
    c = fae.Client(servers, serde="raw")
    c.set("n", b"not a number")
    with pytest.raises(fae.ClientError) as e:
        c.incr("n", 1)
    assert e.value.reason == "client_error"
    assert isinstance(e.value, ValueError)
    with pytest.raises(fae.ClientError):
        c.decr("n", 1)


@pytest.mark.parametrize("bad", [("h",), ("h", 99999), ("h", 1, -1), (5, 1), ("h", 1, 2, 3)])
def test_bad_server_tuples(bad):
    with pytest.raises(fae.ClientError):
        fae.Client([bad])


LONE = "\ud800"  # a str UTF-8 cannot carry


@pytest.mark.parametrize("serde", ["pymemcache", "pylibmc", "interop"])
def test_lone_surrogate_value(servers, serde):
    mc = fae.Client(servers, serde=serde)
    mc.set("lone", b"kept")
    for call in (lambda: mc.set("lone", LONE), lambda: mc.append("lone", LONE)):
        with pytest.raises(fae.ClientError) as e:
            call()
        assert e.value.reason == "invalid_value"
    assert mc.get("lone") == b"kept"


def test_lone_surrogate_key_and_config(servers):
    with pytest.raises(fae.ClientError) as e:
        fae.Client(servers).get("k" + LONE)
    assert e.value.reason == "invalid_key"
    with pytest.raises(fae.ClientError) as e:
        fae.Client(servers, key_prefix=LONE)
    assert e.value.reason == "invalid_argument"
    for bad in ({"servers": LONE}, {"servers": [LONE]}, {"servers": servers, "serde": LONE}):
        with pytest.raises(fae.ClientError) as e:
            fae.Client(**bad)
        assert e.value.reason == "invalid_config"


def test_lone_surrogate_and_wrong_types_in_other_arguments(servers, tmp_path):
    mc = fae.Client(servers)
    for call, reason in (
        (lambda: fae.Client(config_file=LONE), "invalid_config"),
        (lambda: fae.Client(config_file=5), "invalid_config"),
        (lambda: mc.stats(LONE), "invalid_argument"),
        (lambda: mc.stats(5), "invalid_argument"),
        (lambda: mc.route_for("k", op=LONE), "invalid_argument"),
        (lambda: mc.route_for("k", op=5), "invalid_argument"),
    ):
        with pytest.raises(fae.ClientError) as e:
            call()
        assert e.value.reason == reason
    assert mc.route_for("k") == mc.route_for("k", op="get") == mc.route_for("k", "get")
    assert set(mc.stats("settings")) == set(servers)


def test_on_get_error_answers_for_a_failed_get(servers, own_memcached):
    seen = []

    def handler(exc, key, default):
        seen.append((type(exc), exc.reason, key, default))
        return ("handled", default)

    c = fae.Client(servers, on_get_error=handler)
    c.set("k", b"v")
    assert c.get("k") == b"v" and c.get("missing", 3) == 3 and not seen, "hits and misses skip it"
    assert c.get("a b", 7) == ("handled", 7)
    assert c.get(12) == ("handled", None)
    assert seen == [(fae.ClientError, "invalid_key", "a b", 7), (fae.ClientError, "invalid_key", 12, None)]

    down = fae.Client([own_memcached.addr], connect_timeout=0.2, on_get_error=handler)
    own_memcached.stop()
    assert down.get("k", 1) == ("handled", 1) and issubclass(seen[-1][0], fae.Error)

    def refuse(exc, key, default):
        raise KeyError(key)

    with pytest.raises(KeyError):
        fae.Client(servers, on_get_error=refuse).get("")
    with pytest.raises(fae.ClientError, match="on_get_error must be callable"):
        fae.Client(servers, on_get_error=5)
