"""Client.reload, the watched config file, and the core's log records in Python's logging.

Real memcached throughout (conftest fixtures). Waits on background work (the supervisor
thread, the file watch) are bounded polling loops, never fixed sleeps that assume a speed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

import fae
from conftest import raw_command


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def process(c: fae.Client) -> dict:
    return c.client_stats()["process"]


def key_on(c: fae.Client, addr: str, prefix: str = "k") -> str:
    return next(f"{prefix}{i}" for i in range(10_000) if c.route_for(f"{prefix}{i}") == [addr])


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Records(logging.Handler):
    """Collects the records that reach the "fae" logger's handlers, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: List[logging.LogRecord] = []
        self._mu = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._mu:
            self.records.append(record)

    def matching(self, text: str) -> List[logging.LogRecord]:
        with self._mu:
            return [r for r in self.records if text in r.getMessage()]


@pytest.fixture
def fae_log():
    """A handler on logging.getLogger("fae"), the logger's level restored afterwards."""
    logger = logging.getLogger("fae")
    old = logger.level
    h = Records()
    logger.addHandler(h)
    yield logger, h
    logger.removeHandler(h)
    logger.setLevel(old)
    fae._fae._logging_refresh()


def set_level(logger: logging.Logger, level: int) -> None:
    logger.setLevel(level)
    # Records from other threads see a new level within a second; don't wait in tests.
    fae._fae._logging_refresh()


# ---------------------------------------------------------------------------------------------
# reload


def test_reload_moves_keys_to_the_new_servers(servers, tmp_path):
    a, b, c_, d = servers
    c = fae.Client([a], timeout=1.0)
    assert c.set("k", b"old")
    assert process(c)["config_version"] == 1 and process(c)["reloads"] == 0

    assert c.reload(servers=[b]) is None
    assert c.servers == [b]
    assert c.route_for("k") == [b]
    assert c.get("k") is None, "b is empty: the key moved"
    assert c.set("k", b"new")
    assert raw_command(b, b"get k\r\n", b"END\r\n") == b"VALUE k 0 3\r\nnew\r\nEND\r\n"
    assert raw_command(a, b"get k\r\n", b"END\r\n") == b"VALUE k 0 3\r\nold\r\nEND\r\n"
    p = process(c)
    assert (p["config_version"], p["reloads"], p["reload_failures"]) == (2, 1, 0)

    # A dict, with a placement mode: keys spread over both servers as that mode places them.
    c.reload({"servers": [a, b], "mode": "pymemcache", "protocol": "text"})
    assert c.servers == [a, b]
    ref = fae.Client([a, b], mode="pymemcache")
    keys = [f"spread:{i}" for i in range(64)]
    assert [c.route_for(k) for k in keys] == [ref.route_for(k) for k in keys]
    assert {c.route_for(k)[0] for k in keys} == {a, b}
    assert c.set_many({k: k for k in keys}) == []
    assert c.get_many(keys) == {k: k for k in keys}

    # servers= with its pool options, and a file (read once).
    c.reload(servers=f"{c_};{d}", mode="jump", max_connections=2, timeout=0.5)
    assert c.servers == [c_, d]
    path = tmp_path / "fae.json"
    path.write_text(json.dumps({"servers": [d], "reload": {"watch_ms": 0}}))
    c.reload(config_file=path)
    assert c.servers == [d]
    assert c.get("k") is None and c.set("k", 1) and c.get("k") == 1
    assert process(c)["config_version"] == 5
    assert process(c)["reloads"] == 4


def test_reload_keeps_client_options(servers):
    a, b = servers[:2]
    c = fae.Client([a], serde="raw", key_prefix="p:")
    c.reload(servers=[b])
    assert c.serde == "raw" and c.key_prefix == b"p:"
    assert c.set("k", b"v")
    assert raw_command(b, b"get p:k\r\n", b"END\r\n") == b"VALUE p:k 0 1\r\nv\r\nEND\r\n"


def test_reload_releases_the_gil_and_serves_during_reloads(servers):
    a, b = servers[:2]
    c = fae.Client([a, b], timeout=1.0)
    c.set_many({f"r:{i}": i for i in range(50)})
    stop = threading.Event()
    errors: List[BaseException] = []

    def reader():
        while not stop.is_set():
            try:
                for i in range(50):
                    assert c.get(f"r:{i}") == i
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(100):
            c.reload(servers=[a, b], timeout=1.0 + i / 1000)
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert process(c)["config_version"] == 101


def test_bad_config_raises_and_the_old_one_keeps_serving(servers, tmp_path):
    a, b = servers[:2]
    c = fae.Client([a], timeout=1.0)
    assert c.set("k", b"v")
    bad = [
        dict(),
        dict(config={"servers": [b]}, servers=[b]),
        dict(config={"servers": [b], "severs": []}),
        dict(config={"servers": [b]}, mode="jump"),
        dict(config={"servers": []}),
        dict(config=["not", "a", "dict"]),
        dict(servers=[b], mode="no-such-mode"),
        dict(servers=["host:notaport"]),
        dict(servers=[b], timeout=-1),
        dict(config_file=tmp_path / "missing.json"),
    ]
    for kwargs in bad:
        with pytest.raises(fae.ClientError) as e:
            c.reload(**kwargs)
        assert e.value.reason == "invalid_config", kwargs
        assert isinstance(e.value, ValueError)
    with pytest.raises(fae.ClientError) as e:
        c.reload(config={"servers": [b], "severs": []})
    assert "severs" in str(e.value)
    # Parsed fine, rejected by the core's reload (a topology snapshot that is missing): counted.
    missing = tmp_path / "topology.json"
    with pytest.raises(fae.ClientError) as e:
        c.reload(config={"servers": [b], "discovery": {"file": str(missing)}})
    assert e.value.reason == "invalid_config"
    assert "discovery.file" in str(e.value)

    assert c.servers == [a]
    assert c.get("k") == b"v"
    p = process(c)
    assert (p["config_version"], p["reloads"], p["reload_failures"]) == (1, 0, 1)


def test_config_file_client_picks_up_an_edited_file(servers, tmp_path):
    a, b = servers[:2]
    path = tmp_path / "fae.json"
    path.write_text(json.dumps({"servers": [a], "reload": {"watch_ms": 20}}))
    c = fae.Client(config_file=path, timeout=1.0)
    assert c.set("k", b"on-a")  # the first request starts the supervisor, which watches
    assert process(c)["config_version"] == 1

    write_atomically(path, json.dumps({"servers": [b], "reload": {"watch_ms": 20}}))
    wait_for(lambda: c.servers == [b], what="the edited file to be loaded")
    assert process(c)["config_version"] == 2
    assert c.get("k") is None
    assert c.set("k", b"on-b") and c.get("k") == b"on-b"

    # A broken edit is rejected and counted; the last good config stays.
    write_atomically(path, '{"servers": [')
    wait_for(lambda: process(c)["reload_failures"] >= 1, what="the bad edit to be rejected")
    assert c.servers == [b] and c.get("k") == b"on-b"
    assert process(c)["config_version"] == 2

    # The file stays the watched one after a reload() from elsewhere: its next edit wins.
    c.reload(servers=[a])
    assert c.servers == [a]
    write_atomically(path, json.dumps({"servers": [a, b], "reload": {"watch_ms": 20}}))
    wait_for(lambda: c.servers == [a, b], what="the second edit to be loaded")
    assert process(c)["config_version"] == 4


# ---------------------------------------------------------------------------------------------
# logging


def breaker_config(*addrs: str, **health) -> dict:
    h = {
        "max_tko_fraction": 1.0,
        "probe_initial_ms": 50,
        "probe_max_ms": 100,
        "half_open_requests": 1,
    }
    h.update(health)
    return {
        "servers": list(addrs),
        "timeouts": {"connect_ms": 200, "io_ms": 200},
        "health": h,
    }


def test_breaker_open_is_a_warning_on_the_fae_logger(server, own_memcached, fae_log, caplog):
    logger, h = fae_log
    caplog.set_level(logging.WARNING, logger="fae")
    fae._fae._logging_refresh()
    dead = own_memcached.addr
    c = fae.Client(config=breaker_config(server, dead))
    key = key_on(c, dead)
    assert c.set(key, b"v")
    own_memcached.stop()
    for _ in range(5):
        try:
            c.get(key)
        except fae.Error:
            pass
        if h.matching(f"destination={dead} breaker=open"):
            break
    # From the request thread or the supervisor thread: wait, bounded.
    (rec,) = wait_for(
        lambda: h.matching(f"destination={dead} breaker=open"), what="breaker=open record"
    )[:1]
    assert rec.name == "fae"
    assert rec.levelno == logging.WARNING and rec.levelname == "WARNING"
    assert rec.fae["destination"] == dead
    assert rec.fae["breaker"] == "open"
    assert rec.fae["reason"]
    assert rec.getMessage().startswith(f"destination={dead} breaker=open reason=")
    assert any(
        r.name == "fae" and "breaker=open" in r.getMessage() for r in caplog.records
    ), "seen through caplog too"
    assert c.client_stats()["destinations"][dead]["state"] == "open"


def test_breaker_recovery_is_logged_from_the_supervisor_thread(server, own_memcached, fae_log):
    logger, h = fae_log
    set_level(logger, logging.INFO)
    sick = own_memcached.addr
    c = fae.Client(config=breaker_config(server, sick, tko_soft_threshold=1))
    key = key_on(c, sick)
    assert c.set(key, b"v")
    own_memcached.pause()
    try:
        for _ in range(10):
            with pytest.raises(fae.Error):
                c.get(key)
            if c.client_stats()["destinations"][sick]["state"] == "open":
                break
        wait_for(lambda: h.matching(f"destination={sick} breaker=open"), what="breaker=open")
    finally:
        own_memcached.resume()
    # Only the supervisor probes (no request is made meanwhile): the half-open record comes
    # from its thread, which is not a Python thread and held no GIL.
    (half,) = wait_for(
        lambda: h.matching(f"destination={sick} breaker=half_open"), what="half_open"
    )[:1]
    assert half.levelno == logging.INFO
    assert half.thread != threading.get_ident()
    assert half.fae == {"destination": sick, "breaker": "half_open", "reason": "probe_ok"}
    assert c.get(key) == b"v"  # the trial request closes it again
    (closed,) = wait_for(lambda: h.matching(f"destination={sick} breaker=closed"))[:1]
    assert closed.levelno == logging.INFO


def test_reload_records_carry_structured_fields(servers, tmp_path, fae_log):
    logger, h = fae_log
    logger.setLevel(logging.INFO)  # reload() itself re-reads the level: no refresh needed
    c = fae.Client(servers[:1])
    c.reload(servers=servers[:2])
    (ok,) = h.matching("reload=ok")
    assert ok.levelno == logging.INFO
    assert ok.fae["reload"] == "ok"
    assert ok.fae["config_version"] == 2  # ints are ints
    assert ok.fae["destinations_kept"] == 1
    with pytest.raises(fae.ClientError):
        c.reload(config={"servers": servers[:1], "discovery": {"file": str(tmp_path / "no")}})
    (failed,) = h.matching("reload=failed")
    assert failed.levelno == logging.WARNING
    assert failed.fae["reason"] == "invalid_config"
    assert "discovery.file" in failed.fae["detail"]
    assert "the old config stays in force" in failed.getMessage()


def test_nothing_arrives_below_the_logger_level(server, own_memcached, fae_log):
    logger, h = fae_log
    set_level(logger, logging.ERROR)
    dead = own_memcached.addr
    c = fae.Client(config=breaker_config(server, dead))
    key = key_on(c, dead)
    assert c.set(key, b"v")
    c.reload(config=breaker_config(server, dead))  # an INFO record, dropped
    own_memcached.stop()
    for _ in range(5):
        try:
            c.get(key)
        except fae.Error:
            pass
    wait_for(
        lambda: c.client_stats()["destinations"][dead]["breaker_opened"] >= 1,
        what="the breaker to open",
    )
    time.sleep(0.2)  # let the supervisor probe (and fail) a few times
    assert h.records == []
    # Back to WARNING: the same kind of event is seen again.
    set_level(logger, logging.WARNING)
    with pytest.raises(fae.ClientError):
        c.reload(config={"servers": [server], "severs": []})  # binding-side: no record
    assert h.records == []
    with pytest.raises(fae.ClientError):
        c.reload(config={"servers": [server], "discovery": {"file": "/nonexistent/x.json"}})
    assert len(h.matching("reload=failed")) == 1


def test_logging_disable_is_honoured(servers, fae_log):
    logger, h = fae_log
    set_level(logger, logging.DEBUG)
    logging.disable(logging.INFO)
    try:
        fae._fae._logging_refresh()
        c = fae.Client(servers[:1])
        c.reload(servers=servers[:2])
        assert h.records == []
    finally:
        logging.disable(logging.NOTSET)
    fae._fae._logging_refresh()
    c.reload(servers=servers[:1])
    assert len(h.matching("reload=ok")) == 1


def test_records_in_a_forked_child(servers):
    c = fae.Client(servers[:1])
    c.set("x", 1)  # the parent's supervisor is running
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            h = Records()
            logger = logging.getLogger("fae")
            logger.addHandler(h)
            logger.setLevel(logging.INFO)
            c.reload(servers=servers[:2])
            assert c.get("x") in (1, None)
            assert len(h.matching("reload=ok config_version=2")) == 1
            os.write(w, b"ok")
            code = 0
        except BaseException as e:  # noqa: BLE001 - report anything
            os.write(w, repr(e).encode()[:200])
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    out = os.read(r, 4096)
    os.close(r)
    assert status == 0 and out == b"ok", out


SHUTDOWN_SCRIPT = r"""
import json, logging, os, sys, threading, time
import fae
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(message)s")
path, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
def write(servers):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"servers": servers, "reload": {"watch_ms": 1}}, f)
    os.replace(tmp, path)
write([a])
c = fae.Client(config_file=path)
c.set("k", 1)  # starts the supervisor, which reloads (and logs) on every edit
def churn():
    i = 0
    while True:
        write([a, b] if i % 2 else [a])
        i += 1
threading.Thread(target=churn, daemon=True).start()
deadline = time.monotonic() + 5
while c.client_stats()["process"]["reloads"] < 5 and time.monotonic() < deadline:
    time.sleep(0.01)
print("reloads", c.client_stats()["process"]["reloads"], flush=True)
time.sleep(float(sys.argv[4]))
# Exit while the supervisor thread keeps logging.
"""


def test_interpreter_exit_while_the_supervisor_logs(servers, tmp_path):
    script = tmp_path / "shutdown.py"
    script.write_text(SHUTDOWN_SCRIPT)
    for n in range(3):
        p = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"fae{n}.json"), *servers[:2], str(n / 50)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert "Fatal Python error" not in p.stderr and "panicked" not in p.stderr
        assert "reload=ok" in p.stdout
        assert "reloads" in p.stdout
