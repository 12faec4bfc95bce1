"""Stampede protection through the Python binding, against real memcached: leases by hand
(miss → wait → fill → hit, a delete or set between lease and fill wins, invalidate → refresh
then stale), ``get_or_set`` storms (64 threads, once per expiry; 8 spawned processes), stale
served while one caller refills, exceptions, value layouts, the ``stampede`` config section and
the ``client_stats()["stampede"]`` counters.

Every wait is bounded (barriers, futures, queues and joins all carry timeouts), so a
regression fails instead of hanging CI.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import fae
from conftest import raw_command

# Every future, barrier and join below waits at most this long.
BOUND = 30.0

# Storms wait for the filler at most this long (stampede.wait_ms; 2000 by default): generous, so
# that a loaded CI machine cannot turn a slow fill into a second compute.
STORM_WAIT_MS = 10_000


_open: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    """Close every client a test made: a closed client leaves the core's supervisor registry,
    so the next test (or a later fork test) does not inherit this one's background work."""
    yield
    while _open:
        _open.pop().close()


def new_client(*args, **kwargs) -> fae.Client:
    c = fae.Client(*args, **kwargs)
    _open.append(c)
    return c


def client(addr: str, **stampede) -> fae.Client:
    """A one-server client; ``stampede`` keys go to the config's ``stampede`` section."""
    cfg = {"servers": [addr], "timeouts": {"connect_ms": 500, "io_ms": 2000}}
    if stampede:
        cfg["stampede"] = stampede
    return new_client(config=cfg)


def storm(n: int, call):
    """Run ``call()`` on ``n`` threads released together; their results (or exceptions) and
    how long each call took, in thread order."""
    barrier = threading.Barrier(n, timeout=BOUND)

    def one(_):
        barrier.wait()
        t0 = time.monotonic()
        try:
            r = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            r = e
        return r, time.monotonic() - t0

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        return [f.result(timeout=BOUND) for f in futures]


class Counted:
    """A compute function that counts its calls, sleeps, and returns ``make(n)``."""

    def __init__(self, sleep: float, make=lambda n: {"computed": n}):
        self.calls = 0
        self.sleep = sleep
        self.make = make
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.sleep)
        return self.make(n)


def wire(addr: str, key: str) -> bytes:
    """What memcached holds for ``key``: meta ``mg <key> v f`` (value and client flags)."""
    return raw_command(addr, f"mg {key} v f\r\n".encode())


# ---- leases by hand ---------------------------------------------------------------------------


def test_lease_miss_wait_fill_hit(server):
    c = client(server)
    first = c.get_or_lease("k")
    assert first.status == "miss" and first.value is None and not first.stale
    assert isinstance(first.token, int) and first.token > 0
    second = c.get_or_lease("k")
    assert (second.status, second.value, second.token) == ("wait", None, None)
    assert c.get("k") is None, "a plain get sees the lease stub as a miss"
    assert c.get_many(["k"]) == {}

    assert c.set_with_lease("k", {"row": 1}, first.token, expire=60) is True
    hit = c.get_or_lease("k")
    assert (hit.status, hit.value, hit.token, hit.stale) == ("hit", {"row": 1}, None, False)
    assert c.get("k") == {"row": 1}

    st = c.client_stats()["stampede"]
    assert (st["lease_misses"], st["lease_waits"], st["lease_hits"]) == (1, 1, 1)


def test_a_write_between_lease_and_fill_wins(server):
    c = client(server)
    lease = c.get_or_lease("d")
    assert lease.status == "miss"
    c.delete("d")
    assert c.set_with_lease("d", "computed before the delete", lease.token) is False
    assert c.get("d") is None

    lease = c.get_or_lease("s")
    assert lease.status == "miss"
    assert c.set("s", "newer")
    assert c.set_with_lease("s", "older", lease.token) is False
    assert c.get("s") == "newer"

    lease = c.get_or_lease("i")
    assert lease.status == "miss"
    c.invalidate("i", 30)
    assert c.set_with_lease("i", "late", lease.token) is False, "invalidate fails outstanding fills"


def test_invalidate_serves_stale_to_lease_readers(server):
    c = client(server)
    assert c.set("page", "old", expire=60)
    assert c.invalidate("page", 30) is True
    # A plain get would also be fine first: it hands back the refresh right it is given (see
    # test_a_plain_get_does_not_take_the_refresh).
    refresh = c.get_or_lease("page")
    assert (refresh.status, refresh.value, refresh.stale) == ("refresh", "old", True)
    assert isinstance(refresh.token, int) and refresh.token > 0
    stale = c.get_or_lease("page")
    assert (stale.status, stale.value, stale.token, stale.stale) == ("stale", "old", None, True)
    assert c.get("page") is None, "a plain get sees an invalidated key as a miss"
    assert c.gets("page") == (None, None)
    assert c.get_many(["page"]) == {}

    assert c.set_with_lease("page", "new", refresh.token, expire=60) is True
    hit = c.get_or_lease("page")
    assert (hit.status, hit.value, hit.stale) == ("hit", "new", False)
    assert c.get("page") == "new"

    assert c.invalidate("never-set") is False
    st = c.client_stats()["stampede"]
    assert (st["lease_refreshes"], st["lease_stale"]) == (1, 1)


def test_a_plain_get_does_not_take_the_refresh(server):
    # memcached 1.6.18 gives the refresh right (W) to the first meta read of a stale item, even
    # a plain `mg k v f`; the core hands it back (md C<cas> I), so a lease reader still refreshes.
    c = client(server)
    assert c.set("p", "old", expire=60)
    assert c.invalidate("p", 30)
    assert c.get("p") is None
    assert c.get_or_lease("p").status == "refresh"


def test_lease_repr_and_type():
    c = new_client(config={})  # the in-process cache: no lease possible, token 0
    lease = c.get_or_lease("k")
    assert isinstance(lease, fae.Lease)
    assert (lease.status, lease.token) == ("miss", 0), "token 0: the fill is an add"
    assert repr(lease) == "fae.Lease(status='miss', value=None, token=0, stale=False)"
    assert c.set_with_lease("k", "x" * 500, lease.token) is True
    assert c.set_with_lease("k", "other", 0) is False, "an add never overwrites"
    r = repr(c.get_or_lease("k"))
    assert r.startswith("fae.Lease(status='hit', value='xxx") and "...," in r and len(r) < 200
    with pytest.raises(AttributeError):
        lease.status = "hit"  # frozen


def test_text_protocol_leases_degrade_to_add(server):
    c = new_client([server], protocol="text", timeout=2.0)
    a, b = c.get_or_lease("t"), c.get_or_lease("t")
    assert (a.status, a.token, b.status, b.token) == ("miss", 0, "miss", 0)
    assert c.set_with_lease("t", b"first", a.token) is True
    assert c.set_with_lease("t", b"second", b.token) is False
    assert c.get("t") == b"first"
    f = Counted(0.005)
    results = storm(16, lambda: c.get_or_set("tt", f, expire=60))
    assert f.calls == 1, "coalesced in the process"
    assert all(r == {"computed": 1} for r, _ in results)


def test_recache_below_refreshes_before_expiry(server):
    c = client(server, recache_below_s=30)
    assert c.set("r", "current", expire=10)
    first = c.get_or_lease("r")
    assert (first.status, first.value, first.stale) == ("refresh", "current", False)
    assert isinstance(first.token, int)
    assert c.get_or_lease("r").status == "hit", "one refresher; the others keep reading"


def test_lease_argument_errors(server):
    c = client(server)
    for bad in (None, "1", -1, 2**64, 1.5):
        with pytest.raises(fae.ClientError) as e:
            c.set_with_lease("k", b"v", bad)
        assert e.value.reason == "invalid_argument", bad
    for bad in (-1, 2**32, "30"):
        with pytest.raises(fae.ClientError) as e:
            c.invalidate("k", bad)
        assert e.value.reason == "invalid_argument", bad
    for call in (lambda k: c.get_or_lease(k), lambda k: c.invalidate(k), lambda k: c.set_with_lease(k, b"v", 1)):
        with pytest.raises(fae.ClientError) as e:
            call("a b")
        assert e.value.reason == "invalid_key"


# ---- get_or_set ---------------------------------------------------------------------------------


def test_get_or_set_basics(server):
    c = client(server)
    f = Counted(0)
    assert c.get_or_set("g", f, expire=60) == {"computed": 1}
    assert c.get_or_set("g", f, expire=60) == {"computed": 1}, "a hit: fn is not called"
    assert c.get_or_set(key="g", fn=f) == {"computed": 1}
    assert f.calls == 1
    assert c.get("g") == {"computed": 1}
    st = c.client_stats()["stampede"]
    assert (st["computes"], st["fills_stored"]) == (1, 1)


def test_storm_of_64_threads_computes_once_per_expiry(server):
    c = client(server, wait_ms=STORM_WAIT_MS)
    f = Counted(0.005)
    results = storm(64, lambda: c.get_or_set("hot", f, expire=1))
    assert f.calls == 1
    assert [r for r, _ in results] == [{"computed": 1}] * 64

    time.sleep(2.1)  # memcached's clock ticks in whole seconds: expire=1 is gone by now
    assert c.get("hot") is None
    results = storm(64, lambda: c.get_or_set("hot", f, expire=1))
    assert f.calls == 2, "once per expiry"
    assert [r for r, _ in results] == [{"computed": 2}] * 64
    st = c.client_stats()["stampede"]
    assert st["computes"] == 2 and st["fills_stored"] == 2
    assert st["coalesced_fills"] > 0


def _storm_process(addr, key, barrier, computes, out):
    """One spawned process: its own fae.Client, released with the others by ``barrier``."""
    try:
        c = client(addr, wait_ms=STORM_WAIT_MS)

        def compute():
            with computes.get_lock():
                computes.value += 1
            time.sleep(0.1)
            return {"filled_by": os.getpid()}

        barrier.wait(timeout=BOUND)
        value = c.get_or_set(key, compute, expire=60)
        out.put(("ok", value, c.client_stats()["stampede"]["computes"]))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(e), -1))


def test_storm_of_8_processes_computes_once(server):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    computes = ctx.Value("i", 0)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_storm_process, args=(server, "proc-hot", barrier, computes, out))
        for _ in range(8)
    ]
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=BOUND)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    assert all(kind == "ok" for kind, _, _ in results), results
    assert computes.value == 1, results
    values = [v for _, v, _ in results]
    assert values == [values[0]] * 8 and set(values[0]) == {"filled_by"}
    assert sum(n for _, _, n in results) == 1
    assert client(server).get("proc-hot") == values[0]


def test_stale_served_while_one_caller_refills(server):
    c = client(server, wait_ms=STORM_WAIT_MS)
    assert c.set("page", "old", expire=60)
    assert c.invalidate("page", 30)
    f = Counted(0.3, make=lambda n: "new")
    results = storm(16, lambda: c.get_or_set("page", f, expire=60))
    assert f.calls == 1
    new = [(r, t) for r, t in results if r == "new"]
    old = [(r, t) for r, t in results if r == "old"]
    assert len(new) == 1 and len(old) == 15, results
    assert new[0][1] >= 0.3, "the refresher computed"
    assert all(t < 0.2 for _, t in old), f"stale readers waited: {[round(t, 3) for _, t in old]}"
    assert c.get("page") == "new"


def test_get_or_set_waits_for_a_lease_held_elsewhere(server):
    holder, c = client(server), client(server)
    lease = holder.get_or_lease("w")
    assert lease.status == "miss"
    f = Counted(0)

    def fill_later():
        time.sleep(0.1)
        holder.set_with_lease("w", "filled by the holder", lease.token, expire=60)

    t = threading.Thread(target=fill_later)
    t.start()
    assert c.get_or_set("w", f, expire=60) == "filled by the holder"
    t.join(timeout=BOUND)
    assert f.calls == 0, "the waiter polled until the holder's value landed"


def test_stampede_config_passes_through(server):
    c = client(server, lease_ttl_s=5, wait_ms=300, recache_below_s=0, coalesce=False)
    holder = client(server)
    assert holder.get_or_lease("abandoned").status == "miss"  # never filled
    f = Counted(0, make=lambda n: "computed anyway")
    t0 = time.monotonic()
    assert c.get_or_set("abandoned", f) == "computed anyway"
    waited = time.monotonic() - t0
    # The core gives up when its next poll would end past the deadline: up to ~60 ms early.
    assert 0.2 <= waited < 1.5, f"wait_ms=300 bounds the wait ({waited:.3f} s)"
    assert f.calls == 1
    assert c.get("abandoned") == "computed anyway", "the abandoned stub is filled with its CAS"
    assert c.client_stats()["stampede"]["wait_timeouts"] == 1

    with pytest.raises(fae.ClientError) as e:
        fae.Client(config={"servers": [server], "stampede": {"no_such_key": 1}})
    assert e.value.reason == "invalid_config"
    with pytest.raises(fae.ClientError) as e:
        fae.Client(config={"servers": [server], "stampede": {"lease_ttl_s": 0}})
    assert e.value.reason == "invalid_config"


def test_stats_rows(server):
    st = client(server).client_stats()["stampede"]
    assert set(st) >= {
        "lease_hits", "lease_misses", "lease_waits", "lease_stale", "lease_refreshes",
        "computes", "fills_stored", "fills_lost", "wait_timeouts", "lease_errors",
        "coalesced_gets", "coalesced_fills",
    }
    assert all(v == 0 for v in st.values())


# ---- errors -------------------------------------------------------------------------------------


def test_fn_exception_propagates_as_raised(server):
    c = client(server, wait_ms=200)
    err = ValueError("no such row")

    def fail():
        raise err

    with pytest.raises(ValueError) as e:
        c.get_or_set("e1", fail)
    assert e.value is err, "the very exception fn raised"
    assert c.get("e1") is None

    class Custom(Exception):
        pass

    def custom():
        raise Custom()

    with pytest.raises(Custom):
        c.get_or_set("e2", custom)
    with pytest.raises(TypeError):
        c.get_or_set("e3", lambda needs_an_arg: 1)
    raw = new_client([server], serde="raw")
    with pytest.raises(fae.ClientError) as e:
        raw.get_or_set("e4", lambda: "a str: raw stores bytes only")
    assert e.value.reason == "invalid_value"


def test_after_a_failed_compute_the_next_caller_fills(server):
    # The failed compute hands its lease back: the next caller wins it at once.
    c = client(server, wait_ms=300)
    with pytest.raises(ValueError):
        c.get_or_set("after-fail", lambda: int("not a number"))
    t0 = time.monotonic()
    assert c.get_or_set("after-fail", lambda: 7, expire=60) == 7
    assert time.monotonic() - t0 < 0.2 and c.get("after-fail") == 7


def test_bad_keys_raise_before_fn_is_called(server):
    c = client(server)
    f = Counted(0)
    for bad in ("", "a b", "a\r\nflush_all", "x" * 251, b"\x00", 5, None, ["k"], "\ud800"):
        with pytest.raises(fae.ClientError) as e:
            c.get_or_set(bad, f)
        assert e.value.reason == "invalid_key", bad
    with pytest.raises(fae.ClientError) as e:
        c.get_or_set("k", "not callable")
    assert e.value.reason == "invalid_argument"
    with pytest.raises(fae.ClientError) as e:
        c.get_or_set("k", f, expire="soon")
    assert e.value.reason == "invalid_argument"
    c.close()
    with pytest.raises(fae.ClientError) as e:
        c.get_or_set("k", f)
    assert e.value.reason == "closed"
    assert f.calls == 0


# ---- values -------------------------------------------------------------------------------------

VALUES = {
    "pymemcache": ["text é", b"\x00bytes", 42, -7, 2**70, {"a": [1, 2]}, [1, "x"], (1, 2), 1.5, True, None, b""],
    "pylibmc": ["text é", b"\x00bytes", 42, 2**70, {"a": [1, 2]}, True, 1.5, None],
    "interop": ["text é", b"\x00bytes", 42, 1.5, True, False, {"a": [1, 2]}, [1, "x"], None, (1, 2)],
    "raw": [b"\x00bytes", b""],
}


@pytest.mark.parametrize("serde", sorted(VALUES))
def test_values_round_trip_like_set_and_get(server, serde):
    c = new_client([server], serde=serde, timeout=2.0)
    for i, v in enumerate(VALUES[serde]):
        set_key, gos_key = f"set:{serde}:{i}", f"gos:{serde}:{i}"
        assert c.set(set_key, v, expire=60)
        expected = c.get(set_key)
        got = c.get_or_set(gos_key, lambda: v, expire=60)
        again = c.get_or_set(gos_key, lambda: pytest.fail("a hit must not compute"))
        for r in (got, again, c.get(gos_key)):
            assert r == expected and type(r) is type(expected), (serde, v, r)
        assert wire(server, gos_key) == wire(server, set_key), "same bytes and flags as set"
        lease_key = f"lease:{serde}:{i}"
        lease = c.get_or_lease(lease_key)
        assert c.set_with_lease(lease_key, v, lease.token, expire=60)
        assert wire(server, lease_key) == wire(server, set_key)
        assert c.get_or_lease(lease_key).value == expected


def test_custom_serde_round_trip(server):
    class Serde:
        def serialize(self, key, value):
            return pickle.dumps(("wrapped", value)), 77

        def deserialize(self, key, data, flags):
            assert flags == 77
            return pickle.loads(data)[1]

    c = new_client([server], serde=Serde(), timeout=2.0)
    assert c.get_or_set("c", lambda: {"x": 1}, expire=60) == {"x": 1}
    assert c.get("c") == {"x": 1}
    assert wire(server, "c").split(b"\r\n")[0].endswith(b"f77")

