"""pylibmc's test helper ``make_test_client`` (its own tests import it), for fae.pylibmc."""

from __future__ import annotations

import os
import socket

from . import Client, _pylibmc


class NotAliveError(Exception):
    def __init__(self, svr):
        self.server_type, self.address, self.port = svr

    def __str__(self):
        return "test memcached %s:%s not alive; set MEMCACHED_HOST/MEMCACHED_PORT" % (self.address, self.port)


def is_alive(addr):
    _, host, port = addr
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"version\r\n")
            reply = s.recv(4096)
    except OSError:
        return False, None
    ok = reply.startswith(b"VERSION ") and reply.endswith(b"\r\n")
    return ok, (reply[8:-2] if ok else None)


def make_test_client(cls=Client, env=None, server_type="tcp", host="127.0.0.1", port=11211, **kwds):
    """A client of ``cls`` for the memcached at MEMCACHED_HOST:MEMCACHED_PORT."""
    types = {"tcp": _pylibmc.server_type_tcp, "udp": _pylibmc.server_type_udp,
             "unix": _pylibmc.server_type_unix}
    env = os.environ if env is None else env
    server = (types[env.get("MEMCACHED_TYPE", server_type)], str(env.get("MEMCACHED_HOST", host)),
              int(env.get("MEMCACHED_PORT", port)))
    if not is_alive(server)[0]:
        raise NotAliveError(server)
    return cls([server], **kwds)
