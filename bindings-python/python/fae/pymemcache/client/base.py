"""``fae.pymemcache.client.base``: pymemcache's ``Client`` and ``PooledClient`` over
``fae.Client``. Routing, pooling and I/O are libfae's; this module converts arguments, return
types and exceptions to pymemcache's."""

from __future__ import annotations

import socket
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ... import _errors
from ..._fae import Client as _FaeClient
from .. import serde as _serde
from ..exceptions import (
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
    translate,
)

__all__ = ["Client", "PooledClient", "check_key_helper", "normalize_server_spec"]

# The server refuses values over its item size (1 MiB by default) with SERVER_ERROR, as with
# pymemcache; libfae's own client-side limit is lifted out of the way for these clients.
_NO_CLIENT_LIMIT = 2**31 - 1

# ASCII graphic bytes (0x21..0x7e). A key made only of these passes every check of
# check_key_helper (no whitespace, no NUL, ASCII) in either unicode mode, leaving only its
# length: the common case, checked with a few C-level calls instead of the Python rules.
_GRAPHIC = bytes(range(0x21, 0x7F))


def _graphic(key: Any) -> bool:
    """Whether a str or bytes key consists of ASCII graphic characters only."""
    if key.__class__ is str:
        return key.isascii() and key.isprintable() and " " not in key
    return key.__class__ is bytes and not key.translate(None, _GRAPHIC)


def normalize_server_spec(server: Any) -> Any:
    """pymemcache's server spec rules: ``(host, port)``, ``"host[:port]"``, ``"[v6]:port"``."""
    if isinstance(server, tuple):
        return server
    if not isinstance(server, str):
        raise ValueError(f"Unsupported server specification: {server!r}")
    if server.startswith("unix:"):
        return server[5:]
    if server.startswith("/"):
        return server
    if ":" not in server or server.endswith("]"):
        host, port = server, 11211
    else:
        host, port_s = server.rsplit(":", 1)
        port = int(port_s)
    if host.startswith("["):
        host = host.strip("[]")
    return (host, port)


def _spec(server: Any) -> str:
    s = normalize_server_spec(server)
    if isinstance(s, str):
        # A Unix-domain socket: libfae takes the path, and its pymemcache mode hashes the
        # node by the path as HashClient does (golden vectors tests/placement/pymemcache_unix.csv).
        return s
    host, port = s[0], s[1]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_key_helper(key: Any, allow_unicode_keys: bool, key_prefix: bytes = b"") -> bytes:
    """pymemcache's key check (used for its error classes and messages)."""
    if allow_unicode_keys:
        if isinstance(key, str):
            key = key.encode("utf8")
    elif isinstance(key, str):
        try:
            key = key.encode("ascii")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise MemcacheIllegalInputError("Non-ASCII key: %r" % key)
    key = key_prefix + key
    parts = key.split()
    if len(key) > 250:
        raise MemcacheIllegalInputError("Key is too long: %r" % key)
    elif len(parts) > 1 or (parts and parts[0] != key):
        raise MemcacheIllegalInputError("Key contains whitespace: %r" % key)
    elif b"\00" in key:
        raise MemcacheIllegalInputError("Key contains null: %r" % key)
    return key


class Client:
    """pymemcache's ``Client`` (same constructor arguments and return types) on libfae.

    Thread-safe and pooled (libfae's pool), so ``PooledClient`` is the same class.
    ``no_delay``, ``socket_module``, ``socket_keepalive`` and ``tls_context`` are accepted
    and ignored (libfae sets TCP_NODELAY itself)."""

    _mode: Optional[str] = None
    _ignore_writes = False

    def __init__(
        self,
        server: Any,
        serde: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        connect_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
        no_delay: bool = False,
        ignore_exc: bool = False,
        socket_module: Any = socket,
        socket_keepalive: Any = None,
        key_prefix: Union[bytes, str] = b"",
        default_noreply: bool = True,
        allow_unicode_keys: bool = False,
        encoding: str = "ascii",
        tls_context: Any = None,
    ) -> None:
        self.server = normalize_server_spec(server) if not isinstance(server, list) else server
        if isinstance(key_prefix, str):
            key_prefix = key_prefix.encode("ascii")
        if not isinstance(key_prefix, bytes):
            raise TypeError("key_prefix should be bytes.")
        self.key_prefix = key_prefix
        # Longest key the fast path of _key may pass: 250 bytes with the prefix, and none at all
        # when the prefix itself needs check_key_helper's rules.
        self._fast_max = 250 - len(key_prefix) if not key_prefix or _graphic(key_prefix) else -1
        if serde is None and (serializer or deserializer):
            serde = _serde.LegacyWrappingSerde(serializer, deserializer)
        self.serde = serde
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.ignore_exc = ignore_exc
        self.default_noreply = default_noreply
        self.allow_unicode_keys = allow_unicode_keys
        self.encoding = encoding
        opts: Dict[str, Any] = {}
        native = _serde.native_options(serde) if serde is not None else None
        # No serde: bytes as they are, anything else str()-encoded (pymemcache's default);
        # done in _value before a raw store.
        self._raw = serde is None
        if native is not None:
            opts.update(native)
        elif serde is not None:
            opts["serde"] = serde
        else:
            opts["serde"] = "raw"
        servers = [_spec(s) for s in (server if isinstance(server, list) else [server])]
        try:
            self._c = _FaeClient(
                servers,
                mode=self._mode,
                key_prefix=key_prefix,
                connect_timeout=connect_timeout,
                timeout=timeout,
                max_value_size=_NO_CLIENT_LIMIT,
                ignore_exc=ignore_exc,
                **opts,
            )
        except _errors.Error as e:
            raise translate(e) from None

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, key: Any) -> Any:
        c = key.__class__
        if not ((c is str or c is bytes) and len(key) <= self._fast_max and _graphic(key)):
            check_key_helper(key, self.allow_unicode_keys, self.key_prefix)
        return key

    def _keys(self, keys: Any) -> None:
        """``_key`` for each of ``keys`` (a non-empty list): one joined check for the lot when
        they are all str (or all bytes), the per-key rules only when that fails."""
        try:
            first = keys[0]
            joined = ("" if first.__class__ is str else b"").join(keys)
            if max(map(len, keys)) <= self._fast_max and _graphic(joined):
                return
        except TypeError:
            pass
        for k in keys:
            self._key(k)

    def _failed(self, e: Exception, default: Any) -> Any:
        """A read failed: ``default`` under ``ignore_exc`` (not for client errors), else
        pymemcache's exception."""
        if self.ignore_exc and not isinstance(e, _errors.ClientError):
            return default
        raise translate(e) from None

    def _value(self, value: Any) -> Any:
        if not self._raw or isinstance(value, bytes):
            return value
        try:
            return str(value).encode(self.encoding)
        except UnicodeEncodeError as e:
            raise MemcacheIllegalInputError("Data values must be binary-safe: %s" % e)

    def _noreply(self, noreply: Optional[bool]) -> bool:
        return self.default_noreply if noreply is None else noreply

    def _ignored(self, default: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _errors.Error as e:
            if self.ignore_exc and not isinstance(e, _errors.ClientError):
                return default
            raise translate(e) from None

    def _written(self, default: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A write: ``ignore_exc`` covers reads only in pymemcache's Client (HashClient's
        covers every call)."""
        if self._ignore_writes:
            return self._ignored(default, fn, *args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except _errors.Error as e:
            raise translate(e) from None

    # -- storage ---------------------------------------------------------------------------

    def _store(self, name: str, key: Any, value: Any, expire: int, noreply: Optional[bool], flags: Any) -> bool:
        self._key(key)
        r = self._written(False, getattr(self._c, name), key, self._value(value), expire, flags=flags)
        return True if self._noreply(noreply) else bool(r)

    def set(self, key: Any, value: Any, expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> bool:
        return self._store("set", key, value, expire, noreply, flags)

    def add(self, key: Any, value: Any, expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> bool:
        return self._store("add", key, value, expire, noreply, flags)

    def replace(self, key: Any, value: Any, expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> bool:
        return self._store("replace", key, value, expire, noreply, flags)

    def append(self, key: Any, value: Any, expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> bool:
        self._key(key)
        r = self._written(False, self._c.append, key, self._value(value))
        return True if self._noreply(noreply) else bool(r)

    def prepend(self, key: Any, value: Any, expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> bool:
        self._key(key)
        r = self._written(False, self._c.prepend, key, self._value(value))
        return True if self._noreply(noreply) else bool(r)

    def set_many(self, values: Dict[Any, Any], expire: int = 0, noreply: Optional[bool] = None, flags: Optional[int] = None) -> List[Any]:
        for k in values:
            self._key(k)
        vals = {k: self._value(v) for k, v in values.items()} if self._raw else values
        failed = self._written(list(values), self._c.set_many, vals, expire, flags=flags)
        return [] if self._noreply(noreply) else list(failed)

    set_multi = set_many

    def cas(self, key: Any, value: Any, cas: Any, expire: int = 0, noreply: bool = False, flags: Optional[int] = None) -> Optional[bool]:
        self._key(key)
        if isinstance(cas, str):
            cas = cas.encode("ascii")
        if isinstance(cas, bytes) and not cas.isdigit():
            raise MemcacheIllegalInputError("CAS must be an int or decimal bytes: %r" % cas)
        r = self._written(False, self._c.cas, key, self._value(value), cas, expire, flags=flags)
        return True if noreply else r

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        self._key(key)
        try:
            return self._c.get(key, default)
        except _errors.Error as e:
            return self._failed(e, default)

    def get_many(self, keys: Iterable[Any]) -> Dict[Any, Any]:
        keys = keys if keys.__class__ is list else list(keys)
        if not keys:
            return {}
        self._keys(keys)
        try:
            return self._c.get_many(keys)
        except _errors.Error as e:
            return self._failed(e, {})

    get_multi = get_many

    def gets(self, key: Any, default: Any = None, cas_default: Any = None) -> Tuple[Any, Any]:
        self._key(key)
        value, cas = self._ignored((default, cas_default), self._c.gets, key, default, cas_default)
        return value, (str(cas).encode() if isinstance(cas, int) else cas)

    def gets_many(self, keys: Iterable[Any]) -> Dict[Any, Tuple[Any, bytes]]:
        keys = keys if keys.__class__ is list else list(keys)
        if not keys:
            return {}
        self._keys(keys)
        got = self._ignored({}, self._c.gets_many, keys)
        return {k: (v, str(c).encode()) for k, (v, c) in got.items()}

    def gat(self, key: Any, expire: int = 0) -> Any:
        self._key(key)
        return self._ignored(None, self._c.gat, key, expire)

    def gats(self, key: Any, expire: int = 0) -> Tuple[Any, Any]:
        self._key(key)
        value, cas = self._ignored((None, None), self._c.gats, key, expire)
        return value, (str(cas).encode() if isinstance(cas, int) else cas)

    # -- the rest --------------------------------------------------------------------------

    def delete(self, key: Any, noreply: Optional[bool] = None) -> bool:
        self._key(key)
        r = self._written(False, self._c.delete, key)
        return True if self._noreply(noreply) else bool(r)

    def delete_many(self, keys: Iterable[Any], noreply: Optional[bool] = None) -> bool:
        keys = list(keys)
        if not keys:
            return True
        for k in keys:
            self._key(k)
        self._written(True, self._c.delete_many, keys)
        return True

    delete_multi = delete_many

    def _arith(self, name: str, key: Any, value: Any, noreply: Optional[bool]) -> Optional[int]:
        self._key(key)
        if not isinstance(value, int) or isinstance(value, bool):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise MemcacheIllegalInputError("value must be an int: %r" % (value,))
        r = self._written(None, getattr(self._c, name), key, value)
        return None if noreply else r

    def incr(self, key: Any, value: Any, noreply: Optional[bool] = False) -> Optional[int]:
        return self._arith("incr", key, value, noreply)

    def decr(self, key: Any, value: Any, noreply: Optional[bool] = False) -> Optional[int]:
        return self._arith("decr", key, value, noreply)

    def touch(self, key: Any, expire: int = 0, noreply: Optional[bool] = None) -> bool:
        self._key(key)
        r = self._written(False, self._c.touch, key, expire)
        return True if self._noreply(noreply) else bool(r)

    def stats(self, *args: Any) -> Dict[bytes, Any]:
        """The server's stats, keys as bytes (pymemcache's form)."""
        per = self._ignored({}, self._c.stats, *[a.decode() if isinstance(a, bytes) else a for a in args])
        out: Dict[bytes, Any] = {}
        for values in per.values():
            for k, v in values.items():
                out[k.encode() if isinstance(k, str) else k] = v
        return out

    def version(self) -> bytes:
        versions = self._ignored({}, self._c.version)
        return next(iter(versions.values()), "").encode()

    def flush_all(self, delay: int = 0, noreply: Optional[bool] = None) -> bool:
        self._written(False, self._c.flush_all, delay)
        return True

    def cache_memlimit(self, memlimit: int) -> bool:
        """``cache_memlimit`` (MiB) on the server."""
        memlimit = int(memlimit)
        reply = self.raw_command(b"cache_memlimit %d" % memlimit)
        if reply != b"OK":
            raise MemcacheUnknownCommandError(reply.decode("ascii", "replace"))
        return True

    def raw_command(self, command: Union[str, bytes], end_tokens: Union[str, bytes] = "\r\n") -> bytes:
        """Send one command line to the server and return its reply up to ``end_tokens``
        (without it). An admin call on a connection of its own, outside libfae's pool."""
        if isinstance(command, str):
            command = command.encode(self.encoding)
        if isinstance(end_tokens, str):
            end_tokens = end_tokens.encode(self.encoding)
        addr = self._c.servers[0]
        host, port = addr.rsplit(":", 1)
        buf = b""
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout or self.connect_timeout) as s:
                s.sendall(command + b"\r\n")
                while end_tokens not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as e:
            raise _errors.ConnectionError(f"{addr}: {e}", "io", addr, str(e)) from None
        reply = buf[: buf.find(end_tokens)] if end_tokens in buf else buf
        for prefix, cls in ((b"CLIENT_ERROR", MemcacheClientError), (b"SERVER_ERROR", MemcacheServerError)):
            if reply.startswith(prefix):
                raise cls(reply.decode("ascii", "replace"))
        if reply.startswith(b"ERROR"):
            raise MemcacheUnknownCommandError(command.decode("ascii", "replace"))
        return reply

    def shutdown(self, graceful: bool = False) -> None:
        try:
            self.raw_command(b"shutdown graceful" if graceful else b"shutdown")
        except _errors.ConnectionError:
            pass

    def quit(self) -> None:
        self._c.quit()

    def close(self) -> None:
        self._c.disconnect_all()

    disconnect_all = close

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set(key, value, noreply=True)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError
        return value

    def __delitem__(self, key: Any) -> None:
        self.delete(key, noreply=True)


class PooledClient(Client):
    """pymemcache's ``PooledClient``: libfae's client is pooled and thread-safe already, so
    ``max_pool_size``, ``pool_idle_timeout`` and ``lock_generator`` are accepted and the pool
    is libfae's."""

    def __init__(self, server: Any, *args: Any, max_pool_size: Optional[int] = None,
                 pool_idle_timeout: int = 0, lock_generator: Any = None, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.max_pool_size = max_pool_size
        self.pool_idle_timeout = pool_idle_timeout
