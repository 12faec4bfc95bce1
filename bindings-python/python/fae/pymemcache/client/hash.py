"""``fae.pymemcache.client.hash``: pymemcache's ``HashClient`` over one ``fae.Client`` in
``mode="pymemcache"``, which places every key (``str``, ``bytes``, with ``key_prefix``) on the
server pymemcache's rendezvous hash picks. Dead-server handling is libfae's (breakers,
``fae.Client`` health options); ``retry_attempts``, ``retry_timeout``, ``dead_timeout`` and
``use_pooling`` are accepted for compatibility."""

from __future__ import annotations

import socket
from typing import Any, Dict, Iterable, List, Optional

from ... import _errors
from ..exceptions import MemcacheError, translate
from .base import Client, PooledClient, normalize_server_spec

__all__ = ["HashClient"]


class HashClient(Client):
    """pymemcache's ``HashClient``: same constructor arguments, same placement."""

    _mode = "pymemcache"
    _ignore_writes = True
    client_class = Client

    def __init__(
        self,
        servers: Iterable[Any],
        hasher: Any = None,
        serde: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        connect_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
        no_delay: bool = False,
        socket_module: Any = socket,
        socket_keepalive: Any = None,
        key_prefix: Any = b"",
        max_pool_size: Optional[int] = None,
        pool_idle_timeout: int = 0,
        lock_generator: Any = None,
        retry_attempts: int = 2,
        retry_timeout: float = 1,
        dead_timeout: float = 60,
        use_pooling: bool = False,
        ignore_exc: bool = False,
        allow_unicode_keys: bool = False,
        default_noreply: bool = True,
        encoding: str = "ascii",
        tls_context: Any = None,
    ) -> None:
        if hasher is not None and getattr(hasher, "__name__", "") != "RendezvousHash":
            raise MemcacheError("fae.pymemcache.HashClient places keys by rendezvous hashing only")
        self.retry_attempts = retry_attempts
        self.retry_timeout = retry_timeout
        self.dead_timeout = dead_timeout
        self.use_pooling = use_pooling
        self._servers: List[Any] = [normalize_server_spec(s) for s in servers]
        self.default_kwargs: Dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "key_prefix": key_prefix,
            "serde": serde,
            "serializer": serializer,
            "deserializer": deserializer,
            "allow_unicode_keys": allow_unicode_keys,
            "default_noreply": default_noreply,
            "encoding": encoding,
        }
        self._clients: Optional[Dict[str, Client]] = None
        super().__init__(
            list(self._servers),
            ignore_exc=ignore_exc,
            **self.default_kwargs,
        )

    @staticmethod
    def _make_client_key(server: Any) -> Any:
        if isinstance(server, (list, tuple)) and len(server) == 2:
            return "%s:%s" % tuple(server)
        return server

    @property
    def clients(self) -> Dict[str, Client]:
        """``{"host:port": Client}`` for each server, as pymemcache keeps them (made on first
        use; each is a single-server client of its own)."""
        if self._clients is None:
            cls = PooledClient if self.use_pooling else self.client_class
            self._clients = {self._make_client_key(s): cls(s, **self.default_kwargs) for s in self._servers}
        return self._clients

    def _reload(self) -> None:
        from .base import _spec

        try:
            self._c.reload(
                servers=[_spec(s) for s in self._servers],
                mode="pymemcache",
                connect_timeout=self.connect_timeout,
                timeout=self.timeout,
                max_value_size=2**31 - 1,
            )
        except _errors.Error as e:
            raise translate(e) from None
        self._clients = None

    def add_server(self, server: Any, port: Optional[int] = None) -> None:
        if port is not None:
            if not isinstance(server, str):
                raise TypeError("Server must be a string when passing port.")
            server = (server, port)
        server = normalize_server_spec(server)
        if server not in self._servers:
            self._servers.append(server)
            self._reload()

    def remove_server(self, server: Any, port: Optional[int] = None) -> None:
        if port is not None:
            server = (server, port)
        server = normalize_server_spec(server)
        if server not in self._servers:
            raise ValueError("No such node %s to remove" % (server,))
        self._servers.remove(server)
        self._reload()

    def get_many(self, keys: Iterable[Any], gets: bool = False, *args: Any, **kwargs: Any) -> Dict[Any, Any]:
        if gets:
            return self.gets_many(keys)
        return super().get_many(keys)

    get_multi = get_many

    def flush_all(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().flush_all(*args, **kwargs)

    def raw_command(self, command: Any, end_tokens: Any = "\r\n") -> bytes:
        """pymemcache's HashClient has no raw_command; this sends it to the first server."""
        return super().raw_command(command, end_tokens)
