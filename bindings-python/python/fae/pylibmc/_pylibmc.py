"""``fae.pylibmc._pylibmc``: what pylibmc's C extension ``_pylibmc`` provides — its constants,
exception classes and the ``client`` base class — over ``fae.Client``.

The ``client`` class converts pylibmc's arguments, behaviors, key rules and results to and from
``fae.Client`` calls; routing, pooling, I/O and the value layout (``serde="pylibmc"``) are
libfae's. Key rules follow pylibmc: ``str`` keys travel as UTF-8, ``bytes`` as they are, any
other type raises ``TypeError``; a key over 250 bytes raises ``ValueError``; an empty key, or
one memcached cannot carry (spaces, control characters; allowed with ``binary=True``), is a
miss for reads and ``False`` for writes.
"""

from __future__ import annotations

import pickle
import re
import weakref
import zlib
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .. import _errors
from .._fae import Client as _FaeClient

__version__ = "1.6.3"
libmemcached_version = "1.0.18"
libmemcached_version_hex = 0x01000018
support_compression = True
support_sasl = False

server_type_tcp = 1
server_type_udp = 2
server_type_unix = 4

hash_default = 0
hash_md5 = 1
hash_crc = 2
hash_fnv1_64 = 3
hash_fnv1a_64 = 4
hash_fnv1_32 = 5
hash_fnv1a_32 = 6
hash_hsieh = 7
hash_murmur = 8
hash_jenkins = 9

distribution_modula = 0
distribution_consistent = 1
distribution_consistent_ketama = 2
distribution_random = 3
distribution_consistent_ketama_spy = 4
distribution_consistent_weighted = 5
distribution_virtual_bucket = 6
distribution_consistent_max = 7

callback_namespace = 0


class Error(_errors.Error):
    """Base class of pylibmc's exceptions (also an ``fae.Error``)."""

    def __init__(self, message: str = "", reason: str = "error", destination: Optional[str] = None,
                 detail: Optional[str] = None) -> None:
        super().__init__(message, reason, destination, detail)


_NAMES = [
    "CacheMiss", "Failure", "HostLookupError", "ConnectionError", "ConnectionBindError",
    "WriteError", "ReadError", "UnknownReadFailure", "ProtocolError", "ClientError",
    "ServerError", "SocketCreateError", "DataExists", "DataDoesNotExist", "NotFound",
    "AllocationError", "SomeErrors", "NoServers", "UnixSocketError", "NotSupportedError",
    "FetchNotFinished", "BadKeyProvided", "InvalidHostProtocolError", "ServerDead",
    "ServerDown", "TooBig", "UnknownStatKey",
]
exceptions: List[Tuple[str, type]] = [("Error", Error)]
for _n in _NAMES:
    _cls = type(_n, (Error,), {"__module__": "pylibmc"})
    globals()[_n] = _cls
    exceptions.append((_n, _cls))
Error.__module__ = "pylibmc"

all_behaviors = [
    "no_block", "tcp_nodelay", "tcp_keepalive", "hash", "ketama_hash", "ketama",
    "ketama_weighted", "distribution", "cas", "buffer_requests", "verify_keys",
    "connect_timeout", "send_timeout", "receive_timeout", "num_replicas", "auto_eject",
    "retry_timeout", "remove_failed", "failure_limit", "_io_msg_watermark",
    "_io_bytes_watermark", "_io_key_prefetch", "_hash_with_prefix_key", "_noreply",
    "_sort_hosts", "_poll_timeout", "_socket_send_size", "_socket_recv_size", "dead_timeout",
    "pickle_protocol",
]
all_callbacks = ["namespace"]

_DEFAULT_BEHAVIORS: Dict[str, Any] = {
    "no_block": 0, "tcp_nodelay": 0, "tcp_keepalive": 0, "hash": hash_default,
    "ketama_hash": 0, "ketama": 0, "ketama_weighted": 0, "distribution": distribution_modula,
    "cas": 0, "buffer_requests": 0, "verify_keys": 0, "connect_timeout": 4000,
    "send_timeout": 0, "receive_timeout": 0, "num_replicas": 0, "auto_eject": 0,
    "retry_timeout": 2, "remove_failed": 5, "failure_limit": 5, "_io_msg_watermark": 500,
    "_io_bytes_watermark": 66560, "_io_key_prefetch": 0, "_hash_with_prefix_key": 0,
    "_noreply": 0, "_sort_hosts": 0, "_poll_timeout": 5000, "_socket_send_size": 0,
    "_socket_recv_size": 0, "dead_timeout": 0, "pickle_protocol": -1,
}

# pylibmc value flags (the "pylibmc" layout libfae reads and writes natively).
_F_PICKLE, _F_INTEGER, _F_LONG, _F_ZLIB, _F_TEXT = 1, 2, 4, 8, 16
_MAX_KEY = 250
# Bytes the text protocol cannot carry in a key (the same rule as libfae's key check).
_FORBIDDEN = re.compile(rb"[\x00-\x20\x7f]")
_MISS = object()


def _placement_mode(b: Dict[str, Any]) -> str:
    """The libfae mode that places keys as libmemcached does under these behaviors (golden
    vectors: default = modula/one-at-a-time, ketama, ketama_weighted)."""
    dist, h = b["distribution"], b["hash"]
    if b.get("ketama_weighted"):
        if dist in (distribution_modula, distribution_consistent_ketama) and h in (hash_default, hash_md5):
            return "libmemcached"
    elif b.get("ketama") or dist == distribution_consistent_ketama:
        if h == hash_default:
            return "libmemcached-ketama"
    elif dist == distribution_modula and h == hash_default:
        return "php-memcached-default"
    raise NotSupportedError(
        "fae.pylibmc places keys with the default behaviors, {'ketama': True} or "
        "{'ketama_weighted': True}; hash=%r distribution=%r is not supported" % (h, dist)
    )


def _translate(e: _errors.Error) -> Error:
    if isinstance(e, Error):
        return e
    if isinstance(e, _errors.NoServerAvailable):
        cls: type = ServerDown if e.reason != "no_servers" else NoServers  # noqa: F821
    elif isinstance(e, _errors.TimeoutError):
        cls = ConnectionError  # noqa: F821
    elif isinstance(e, _errors.ConnectionError):
        cls = WriteError if e.reason == "reset" else ConnectionError  # noqa: F821
    elif e.reason == "value_too_large":
        cls = TooBig  # noqa: F821
    elif e.reason in ("client_error", "invalid_key"):
        cls = ClientError  # noqa: F821
    elif isinstance(e, _errors.ServerError):
        cls = ServerError if e.reason == "server_error" else ProtocolError  # noqa: F821
    else:
        cls = Error
    return cls(str(e), e.reason, e.destination, e.detail)


def _wire_key(key: Any, prefix: Any, binary: bool) -> Optional[bytes]:
    """The wire key, or None if memcached cannot take it (a miss / False)."""
    if isinstance(key, str):
        k = key.encode("utf-8")
    elif isinstance(key, bytes):
        k = key
    else:
        raise TypeError("key must be bytes")
    if prefix:
        k = (prefix.encode("utf-8") if isinstance(prefix, str) else prefix) + k
    if len(k) > _MAX_KEY:
        raise ValueError("key length %d too long, max is %d" % (len(k), _MAX_KEY))
    if not k:
        return None
    if not binary and _FORBIDDEN.search(k):
        return None
    return k


class _GetFailed:
    """``get``'s failures under pylibmc's rules, as ``fae.Client``'s ``on_get_error``: a key
    memcached cannot carry is a miss, a key of another type ``TypeError``, one over 250 bytes
    ``ValueError``; anything else raises as pylibmc's class. With it ``client.get`` can be
    ``fae.Client.get`` itself, with no Python frame on the way to a hit (callgrind: 8,803 →
    8,095 instructions per get, ``scripts/bench-calls.py``). It holds no reference to the
    client: the client holds it, and a cycle through a libfae client is not collected."""

    def __init__(self, binary: bool) -> None:
        self._binary = binary

    def __call__(self, e: BaseException, key: Any, default: Any) -> Any:
        if not isinstance(e, _errors.Error):
            raise e
        # libfae and pylibmc take the same key bytes (str as UTF-8, bytes as they are), so
        # a key libfae refuses and pylibmc passes would be refused by memcached as well.
        if e.reason == "invalid_key" and _wire_key(key, None, self._binary) is None:
            return default
        raise _translate(e) from None


class _MethodSerde:
    """A subclass's own ``serialize(value)``/``deserialize(bytes, flags)`` as libfae's serde
    protocol. ``CacheMiss`` from ``deserialize`` makes that key a miss."""

    def __init__(self, owner: "client") -> None:
        self._owner = weakref.ref(owner)

    def serialize(self, key: bytes, value: Any) -> Tuple[bytes, int]:
        data, flags = self._owner().serialize(value)  # type: ignore[union-attr]
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise ValueError("serialize() must return (bytes, int flags), not flags %r" % (flags,))
        if isinstance(data, str):
            data = data.encode("utf-8")
        return data, flags

    def deserialize(self, key: bytes, value: bytes, flags: int) -> Any:
        try:
            return self._owner().deserialize(value, flags)  # type: ignore[union-attr]
        except CacheMiss:  # noqa: F821
            return _MISS


class client:
    """pylibmc's ``_pylibmc.client`` over one ``fae.Client``."""

    def __init__(self, servers: Iterable[Any] = (), binary: bool = False, username: Any = None,
                 password: Any = None, behaviors: Optional[Dict[str, Any]] = None) -> None:
        self._servers = list(servers)
        if not self._servers:
            raise NoServers("no servers given")  # noqa: F821
        if username is not None or password is not None:
            raise NotSupportedError("SASL is not supported")  # noqa: F821
        self._binary = bool(binary)
        self._behaviors = dict(_DEFAULT_BEHAVIORS)
        if behaviors:
            self._apply(behaviors)
        self._build()

    # -- configuration ---------------------------------------------------------------------

    def _apply(self, behaviors: Dict[str, Any]) -> None:
        for name, value in behaviors.items():
            if name not in _DEFAULT_BEHAVIORS:
                raise ValueError("unknown behavior name: %s" % name)
            if name == "ketama_weighted" and value:
                self._behaviors["hash"] = hash_md5
                self._behaviors["distribution"] = distribution_consistent_ketama
            if name == "ketama":
                self._behaviors["distribution"] = distribution_consistent_ketama if value else distribution_modula
            self._behaviors[name] = int(value) if isinstance(value, bool) else value

    def _specs(self) -> List[Any]:
        """libfae server specs, with pylibmc's checks: one transport for all servers, no port
        on a socket. A socket's keys land where pylibmc puts them (golden vectors
        ``tests/placement/pylibmc*_unix.csv``)."""
        out: List[Any] = []
        stypes = set()
        for s in self._servers:
            # (type, host, port[, weight]) from translate_server_spec, or (host, port).
            stype, host, port, weight = (*s, 1)[:4] if len(s) >= 3 else (server_type_tcp, *s, 1)
            stypes.add(stype)
            if len(stypes) > 1:
                raise ValueError("can't mix transport types")
            if stype == server_type_unix:
                if port:
                    raise ValueError("can't set port on unix sockets")
                out.append((str(host), 0, int(weight)))
            elif stype == server_type_tcp:
                host = "[%s]" % host if ":" in host and not host.startswith("[") else host
                out.append("%s:%d:%d" % (host, int(port), int(weight)))
            else:
                raise NotSupportedError("UDP servers are not supported, not %r" % (s,))  # noqa: F821
        return out

    def _overridden(self) -> bool:
        cls = type(self)
        return cls.serialize is not client.serialize or cls.deserialize is not client.deserialize

    def _build(self) -> None:
        b = self._behaviors
        kwargs: Dict[str, Any] = {
            "mode": _placement_mode(b),
            # The server judges value sizes (libmemcached has no limit of its own).
            "max_value_size": 2**31 - 1,
        }
        self._custom = self._overridden()
        if self._custom:
            kwargs["serde"] = _MethodSerde(self)
        else:
            kwargs["serde"] = "pylibmc"
            kwargs["pickle_protocol"] = b["pickle_protocol"]
        if self._binary:
            kwargs["binary_keys"] = True
        if b["connect_timeout"]:
            kwargs["connect_timeout"] = b["connect_timeout"] / 1000.0
        io_us = max(b["receive_timeout"], b["send_timeout"])
        if io_us:
            kwargs["timeout"] = io_us / 1e6
        try:
            self._c = _FaeClient(self._specs(), on_get_error=_GetFailed(self._binary), **kwargs)
        except _errors.Error as e:
            raise _translate(e) from None
        if not self._custom and type(self).get is client.get:
            # The hot read calls libfae directly (see _GetFailed); set again on every rebuild.
            self.get = self._c.get  # type: ignore[method-assign]

    def get_behaviors(self) -> Dict[str, Any]:
        return dict(self._behaviors)

    def set_behaviors(self, behaviors: Dict[str, Any]) -> None:
        placement = {"hash", "distribution", "ketama", "ketama_weighted", "ketama_hash",
                     "connect_timeout", "receive_timeout", "send_timeout", "pickle_protocol"}
        self._apply(behaviors)
        if placement.intersection(behaviors):
            self._build()

    def clone(self) -> "client":
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._behaviors = dict(self._behaviors)
        if self._overridden():
            new._build()  # its serde calls the clone's own methods
        return new

    # -- keys ------------------------------------------------------------------------------

    def _key(self, key: Any, prefix: Any = None) -> Optional[bytes]:
        """The wire key, or None if memcached cannot take it (a miss / False)."""
        return _wire_key(key, prefix, self._binary)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _errors.Error as e:
            raise _translate(e) from None

    # -- reads -----------------------------------------------------------------------------

    # A deserialize that raises keeps the calling frames alive through its traceback; these
    # methods drop their references to the caller's key objects before calling libfae, so a
    # subclass that stores such errors holds no extra references to keys (as pylibmc's C).

    def get(self, key: Any, default: Any = None) -> Any:
        # A client whose class keeps this method and the default serde reads through
        # fae.Client.get directly (set in _build); this is the path of the others. libfae takes
        # str/bytes keys as they are; its failures go through _GetFailed.
        v = self._c.get(key, _MISS)
        key = None
        return default if v is _MISS else v

    def gets(self, key: Any) -> Tuple[Any, Optional[int]]:
        if not self._behaviors["cas"]:
            raise ValueError("gets without cas behavior")
        k = self._key(key)
        del key
        if k is None:
            return None, None
        v, cas = self._call(self._c.gets, k, _MISS, None)
        return (None, None) if v is _MISS else (v, cas)

    def get_multi(self, keys: Iterable[Any], key_prefix: Any = None) -> Dict[Any, Any]:
        if not key_prefix:
            # Fast path: libfae takes the key objects as they are and answers keyed by them;
            # only when it refuses a key does the per-key path below apply pylibmc's rules.
            keys = keys if isinstance(keys, (list, tuple)) else list(keys)
            try:
                got = self._c.get_many(keys)
            except _errors.ClientError:
                pass
            except _errors.Error as e:
                raise _translate(e) from None
            else:
                keys = None
                box = [{k: v for k, v in got.items() if v is not _MISS} if self._custom else got]
                got = None
                return box.pop()
        wire: Dict[bytes, Any] = {}
        for key in keys:
            k = self._key(key, key_prefix)
            if k is not None:
                wire[k] = key
        key = keys = None
        if not wire:
            return {}
        got = self._call(self._c.get_many, list(wire))
        out = [{wire[k]: v for k, v in got.items() if v is not _MISS}]
        wire.clear()
        return out.pop()

    # -- writes ----------------------------------------------------------------------------

    def _store(self, name: str, key: Any, val: Any, time: int, min_compress_len: int) -> bool:
        fn = getattr(self._c, name)
        m = min_compress_len or None
        try:
            return bool(fn(key, val, time, min_compress_len=m))
        except _errors.Error as e:
            if e.reason != "invalid_key":
                raise _translate(e) from None
        k = self._key(key)
        return False if k is None else bool(self._call(lambda: fn(k, val, time, min_compress_len=m)))

    def set(self, key: Any, val: Any, time: int = 0, min_compress_len: int = 0, compress_level: int = -1) -> bool:
        return self._store("set", key, val, time, min_compress_len)

    def add(self, key: Any, val: Any, time: int = 0, min_compress_len: int = 0, compress_level: int = -1) -> bool:
        return self._store("add", key, val, time, min_compress_len)

    def replace(self, key: Any, val: Any, time: int = 0, min_compress_len: int = 0, compress_level: int = -1) -> bool:
        return self._store("replace", key, val, time, min_compress_len)

    def append(self, key: Any, val: Any, time: int = 0, min_compress_len: int = 0, compress_level: int = -1) -> bool:
        k = self._key(key)
        return False if k is None else bool(self._call(self._c.append, k, val))

    def prepend(self, key: Any, val: Any, time: int = 0, min_compress_len: int = 0, compress_level: int = -1) -> bool:
        k = self._key(key)
        return False if k is None else bool(self._call(self._c.prepend, k, val))

    def cas(self, key: Any, val: Any, cas: int, time: int = 0) -> bool:
        if not self._behaviors["cas"]:
            raise ValueError("cas without cas behavior")
        k = self._key(key)
        return False if k is None else bool(self._call(self._c.cas, k, val, cas, time))

    def _store_multi(self, name: str, mapping: Dict[Any, Any], time: int, key_prefix: Any,
                     min_compress_len: int) -> List[Any]:
        failed: List[Any] = []
        wire: Dict[bytes, Any] = {}
        values = []
        for key, val in mapping.items():
            k = self._key(key, key_prefix)
            if k is None:
                failed.append(key)
            else:
                wire[k] = key
                values.append((k, val))
        if name == "set" and values:
            m = min_compress_len or None
            not_stored = self._call(lambda: self._c.set_many(values, time, min_compress_len=m))
            failed.extend(wire[k] for k in not_stored)
        else:
            for k, val in values:
                if not self._call(lambda: getattr(self._c, name)(k, val, time, min_compress_len=min_compress_len or None)):
                    failed.append(wire[k])
        return failed

    def set_multi(self, mapping: Dict[Any, Any], time: int = 0, key_prefix: Any = None,
                  min_compress_len: int = 0, compress_level: int = -1) -> List[Any]:
        return self._store_multi("set", mapping, time, key_prefix, min_compress_len)

    def add_multi(self, mapping: Dict[Any, Any], time: int = 0, key_prefix: Any = None,
                  min_compress_len: int = 0, compress_level: int = -1) -> List[Any]:
        return self._store_multi("add", mapping, time, key_prefix, min_compress_len)

    def delete(self, key: Any) -> bool:
        k = self._key(key)
        return False if k is None else bool(self._call(self._c.delete, k))

    def delete_multi(self, keys: Iterable[Any], time: Any = None, key_prefix: Any = None) -> bool:
        ok = True
        for key in keys:
            k = self._key(key, key_prefix)
            ok = (k is not None and bool(self._call(self._c.delete, k))) and ok
        return ok

    def touch(self, key: Any, time: int) -> bool:
        k = self._key(key)
        return False if k is None else bool(self._call(self._c.touch, k, time))

    def _arith(self, name: str, key: Any, delta: int) -> int:
        if not isinstance(delta, int) or delta < 0:
            raise ValueError("delta must be a non-negative int")
        k = self._key(key)
        if k is None:
            raise NotFound("invalid key %r" % (key,))  # noqa: F821
        r = self._call(getattr(self._c, name), k, delta)
        if r is None:
            raise NotFound("1 keys not found")  # noqa: F821
        return r

    def incr(self, key: Any, delta: int = 1) -> int:
        return self._arith("incr", key, delta)

    def decr(self, key: Any, delta: int = 1) -> int:
        return self._arith("decr", key, delta)

    def incr_multi(self, keys: Iterable[Any], key_prefix: Any = None, delta: int = 1) -> None:
        missing = 0
        for key in keys:
            k = self._key(key, key_prefix)
            if k is None or self._call(self._c.incr, k, delta) is None:
                missing += 1
        if missing:
            raise NotFound("%d keys not found" % missing)  # noqa: F821

    # -- admin -----------------------------------------------------------------------------

    def get_stats(self, args: Optional[str] = None) -> List[Tuple[str, Dict[str, str]]]:
        per = self._call(self._c.stats, *([args] if args else []))
        return [("%s (%d)" % (addr, i), {k: str(v) for k, v in st.items()})
                for i, (addr, st) in enumerate(per.items())]

    def flush_all(self, time: int = 0) -> bool:
        return bool(self._call(self._c.flush_all, time))

    def disconnect_all(self) -> None:
        self._c.disconnect_all()

    def hash(self, key: Any) -> int:
        """The index (in the server list) of the server ``key`` maps to."""
        k = self._key(key) or b"_"
        (addr,) = self._c.route_for(k)
        return [s.rsplit(":", 1)[0] for s in self._specs()].index(addr)

    # -- values (overridable, as in pylibmc) -----------------------------------------------

    def serialize(self, value: Any) -> Tuple[bytes, int]:
        """pylibmc's layout: bytes 0, str 16, bool 2, int 4, anything else pickled (1)."""
        if isinstance(value, bytes):
            return value, 0
        if isinstance(value, str):
            return value.encode("utf-8"), _F_TEXT
        if isinstance(value, bool):
            return (b"1" if value else b"0"), _F_INTEGER
        if isinstance(value, int):
            return str(value).encode("ascii"), _F_LONG
        return pickle.dumps(value, self._behaviors["pickle_protocol"]), _F_PICKLE

    def deserialize(self, data: bytes, flags: int) -> Any:
        if flags & _F_ZLIB:
            data = zlib.decompress(data)
        kind = flags & ~_F_ZLIB
        if kind == 0:
            return data
        if kind == _F_TEXT:
            return data.decode("utf-8")
        if kind in (_F_INTEGER, _F_LONG):
            return int(data)
        if kind == _F_PICKLE:
            return pickle.loads(data)
        raise ValueError("unknown flags %d" % flags)
