"""pylibmc's ElastiCache autoconfiguration (``config get cluster``, else the
``AmazonElastiCache:cluster`` key), returning a ``fae.pylibmc.Client``."""

from __future__ import annotations

import socket


class UnsupportedAutoconfMethod(Exception):
    pass


class NoAutoconfFound(Exception):
    pass


def _elasticache_config_get(address, key):
    host, port = address.split(":")
    if isinstance(key, bytes):
        key = key.decode("ascii")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("config get %s\r\n" % key).encode("ascii"))
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("failed reading cluster config")
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        if line.upper().startswith(b"ERROR") or line.startswith(b"CLIENT_ERROR"):
            raise UnsupportedAutoconfMethod()
        n = int(line.split()[3])
        while len(buf) < n + 2:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("failed reading cluster config")
            buf += chunk
        return buf[:n]


def _parse_elasticache_config(cfg):
    _ver, nodes = cfg.split(b"\n", 1)
    parts = [n.decode("ascii").split("|") for n in nodes.split()]
    return ["%s:%s" % (addr or cname, port) for (cname, addr, port) in parts]


def elasticache(address="127.0.0.1:11211", config_key=b"cluster", mc_key="AmazonElastiCache:cluster"):
    from . import Client

    try:
        config = _elasticache_config_get(address, config_key)
    except UnsupportedAutoconfMethod:
        config = Client([address]).get(mc_key)
        if config is None:
            raise NoAutoconfFound
    return Client(_parse_elasticache_config(config))
