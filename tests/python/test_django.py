"""fae.django.FaeCache from a minimal Django project (settings + django.core.cache.caches)
against real memcached, case by case against Django's documented cache API."""

from __future__ import annotations

import time

import django
import pytest
from django.conf import settings

import fae


@pytest.fixture
def cache(servers):
    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "fae.django.FaeCache",
                    "LOCATION": ";".join(servers),
                    "OPTIONS": {"timeout": 1.0},
                },
                "pylibmc_layout": {
                    "BACKEND": "fae.django.FaeCache",
                    "LOCATION": servers,
                    "OPTIONS": {"serde": "pylibmc", "mode": "libmemcached"},
                    "KEY_PREFIX": "p",
                    "TIMEOUT": 60,
                },
            },
            USE_TZ=True,
        )
        django.setup()
    from django.core.cache import caches

    yield caches["default"]
    from django.core.cache import close_caches

    close_caches()


def test_backend_is_fae(cache):
    from fae.django import FaeCache

    assert isinstance(cache, FaeCache)
    assert isinstance(cache._cache, fae.Client)


def test_get_set_add_delete(cache):
    assert cache.get("k") is None
    assert cache.get("k", "d") == "d"
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    assert cache.add("k", 2) is False
    assert cache.add("new", 2) is True
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.has_key("new") and not cache.has_key("k")


def test_timeouts(cache):
    cache.set("none", 1, timeout=None)
    cache.set("zero", 1, timeout=0)
    cache.set("neg", 1, timeout=-1)
    cache.set("long", 1, timeout=60 * 60 * 24 * 365)
    cache.set("short", 1, timeout=1)
    assert cache.get("none") == 1, "None: never expires"
    assert cache.get("zero") is None, "0: expires at once"
    assert cache.get("neg") is None, "negative: expires at once"
    assert cache.get("long") == 1, "over 30 days: sent as a unix time"
    assert cache.get("short") == 1
    assert cache.add("zero", 2, timeout=0) is True
    assert cache.get("zero") is None


def test_get_or_set_and_many(cache):
    assert cache.get_or_set("gos", 5) == 5
    assert cache.get_or_set("gos", 6) == 5
    assert cache.get_or_set("gos_call", lambda: "called") == "called"
    assert cache.set_many({"a": 1, "b": "two", "c": b"3"}) == []
    assert cache.get_many(["a", "b", "c", "missing"]) == {"a": 1, "b": "two", "c": b"3"}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": b"3"}
    cache.delete_many([])


def test_set_many_reports_keys_the_client_did_not_store(cache, monkeypatch):
    # set_many goes through the client's set_multi (the name Django's memcached backends call)
    # and maps the stored keys it reports back to the caller's keys.
    calls = []

    def refuse_all(self, mapping, *args, **kwargs):
        calls.append(dict(mapping))
        return list(mapping)

    monkeypatch.setattr(fae.Client, "set_multi", refuse_all)
    assert cache.set_many({"sm1": 1, "sm2": 2}) == ["sm1", "sm2"]
    assert [sorted(c) for c in calls] == [[cache.make_key("sm1"), cache.make_key("sm2")]]


def test_touch(cache):
    assert cache.touch("missing") is False
    cache.set("t", 1, timeout=1)
    assert cache.touch("t", timeout=None) is True
    time.sleep(1.2)
    assert cache.get("t") == 1, "touch(None) made it permanent"
    assert cache.touch("t", timeout=0) is True
    assert cache.get("t") is None, "touch(0) expires it"


def test_incr_decr(cache):
    with pytest.raises(ValueError):
        cache.incr("nope")
    with pytest.raises(ValueError):
        cache.decr("nope")
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 10) == 21
    assert cache.decr("n", 5) == 16
    assert cache.incr("n", -6) == 10
    assert cache.get("n") == 10
    assert cache.incr_version("n") == 2
    assert cache.get("n", version=2) == 10


def test_clear(cache):
    cache.set("x", 1)
    cache.clear()
    assert cache.get("x") is None


def test_key_validation(cache):
    from django.core.cache.backends.base import InvalidCacheKey

    for bad in ("has space", "x" * 300, "ctl\x01"):
        with pytest.raises(InvalidCacheKey):
            cache.set(bad, 1)
        with pytest.raises(InvalidCacheKey):
            cache.get(bad)
    cache.set("ünïcode", "ok")
    assert cache.get("ünïcode") == "ok"


def test_oversize_value_deletes_old(cache):
    cache.set("big", "old")
    cache.set("big", "x" * (2 * 1024 * 1024))
    assert cache.get("big") is None, "like Django's memcached backends: no stale value"
    assert cache.set_many({"ok": 1, "big2": b"x" * (2 * 1024 * 1024)}) == ["big2"]
    assert cache.get("ok") == 1


def test_close_per_request_keeps_working(cache):
    from django.core import signals

    cache.set("r", 1)
    for _ in range(3):
        signals.request_finished.send(sender=None)
        assert cache.get("r") == 1
    cache.close()
    assert cache.get("r") == 1


def test_second_cache_with_pylibmc_layout(cache, servers):
    import pylibmc
    from django.core.cache import caches

    other = caches["pylibmc_layout"]
    other.set("shared", "text")
    key = other.make_key("shared")
    assert pylibmc.Client(servers, behaviors={"ketama_weighted": True}).get(key) == "text"


def test_values_from_django_pymemcache_backend_read_back(cache, servers):
    from django.core.cache.backends.memcached import PyMemcacheCache

    old = PyMemcacheCache(";".join(servers), {"OPTIONS": {}})
    new = caches_new(servers)
    old.set("migr", {"from": "PyMemcacheCache"})
    assert new.get("migr") == {"from": "PyMemcacheCache"}
    new.set("back", [1, 2])
    assert old.get("back") == [1, 2]


def caches_new(servers):
    from fae.django import FaeCache

    return FaeCache(servers, {"OPTIONS": {"mode": "pymemcache"}})
