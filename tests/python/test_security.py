"""TLS and memcached's login from Python: the config dict's ``tls`` and ``auth`` sections against
real memcached servers started with ``-Z`` (certificates made with the openssl command) and
``-Y``; a refused login or handshake is ``fae.AuthenticationError`` and never shows the
password."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fae
from conftest import Memcached


def _login_server(tmp_path: Path, user: str, password: str) -> Memcached:
    auth = tmp_path / "memcached-auth"
    auth.write_text(f"{user}:{password}\n")
    return Memcached(["-Y", str(auth)])


def test_login_from_a_password_file(tmp_path: Path) -> None:
    mc = _login_server(tmp_path, "app", "py-secret-1")
    try:
        pw = tmp_path / "pw"
        pw.write_text("py-secret-1\n")
        auth = {"username": "app", "password_file": str(pw)}
        c = fae.Client(config={"servers": [mc.addr], "auth": auth})
        c.set("k", b"v")
        assert c.get("k") == b"v"
        assert c.get_many(["k", "absent"]) == {"k": b"v"}

        pw.write_text("wrong-canary\n")
        bad = fae.Client(config={"servers": [mc.addr], "auth": auth})
        with pytest.raises(fae.AuthenticationError) as info:
            bad.get("k")
        e = info.value
        assert isinstance(e, PermissionError)
        assert e.reason == "auth_failed" and e.destination == mc.addr
        assert "wrong-canary" not in str(e) and "py-secret-1" not in str(e)
        # Fails fast with the same error; no breaker opens.
        with pytest.raises(fae.AuthenticationError):
            bad.set("k", b"x")
    finally:
        mc.stop()


def test_login_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mc = _login_server(tmp_path, "app", "py-secret-2")
    try:
        monkeypatch.setenv("FAE_PY_TEST_PW", "py-secret-2")
        c = fae.Client(config={"servers": [mc.addr], "auth": {"username": "app", "password_env": "FAE_PY_TEST_PW"}})
        c.set("k", b"env")
        assert c.get("k") == b"env"
    finally:
        mc.stop()


def test_a_missing_password_file_is_a_config_error() -> None:
    with pytest.raises(fae.ClientError) as info:
        fae.Client(config={"servers": ["127.0.0.1:1"], "auth": {"username": "app", "password_file": "/nonexistent/pw"}})
    assert info.value.reason == "invalid_config"
    assert "auth.password_file" in str(info.value)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca_key, ca, key, csr, cert = (str(tmp_path / n) for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=fae python test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = tmp_path / "ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", str(ext))
    mc = Memcached(["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"])
    try:
        c = fae.Client(config={"servers": [mc.addr], "tls": {"ca_file": ca}})
        c.set("k", b"over tls")
        assert c.get("k") == b"over tls"
        keys = [f"k{i}" for i in range(100)]
        c.set_many({k: k.encode() for k in keys})
        assert c.get_many(keys) == {k: k.encode() for k in keys}

        # The system's CAs do not know this one.
        untrusted = fae.Client(config={"servers": [mc.addr], "tls": {"ca_file": cert}})
        with pytest.raises(fae.AuthenticationError) as info:
            untrusted.get("k")
        assert info.value.reason == "tls_failed"
        # A plain client to the TLS server: a clear connection error naming the likely cause.
        plain = fae.Client(config={"servers": [mc.addr], "timeouts": {"connect_ms": 300}})
        with pytest.raises(fae.ConnectionError) as info2:
            plain.get("k")
        assert '"tls"' in str(info2.value)
    finally:
        mc.stop()
    assert os.path.exists(ca)
