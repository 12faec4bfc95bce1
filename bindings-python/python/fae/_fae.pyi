"""Type stubs of the native module ``fae._fae`` (re-exported by ``fae``)."""

from os import PathLike
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
    final,
)

Key = Union[str, bytes]
"""A key: ``str`` is UTF-8 encoded, ``bytes`` is sent as is; ``key_prefix`` is prepended."""

Server = Union[str, Tuple[str, int], Tuple[str, int, int]]
"""``"host:port[:weight]"`` (IPv6 as ``"[::1]:11211"``) or ``(host, port[, weight])``."""

SerdeName = Literal["pymemcache", "pylibmc", "raw", "interop"]

LeaseStatus = Literal["hit", "refresh", "stale", "miss", "wait"]

T = TypeVar("T")

class Serde(Protocol):
    """pymemcache's serde protocol, for ``serde=`` objects."""

    def serialize(self, key: bytes, value: Any) -> Tuple[bytes, int]: ...
    def deserialize(self, key: bytes, value: bytes, flags: int) -> Any: ...

def version() -> str:
    """The libfae version."""

def _fork_generation() -> int:
    """The core's process generation: 0 in the process that loaded libfae, +1 per fork."""

def _after_fork_in_child() -> None:
    """``os.register_at_fork(after_in_child=...)`` hook (installed by ``import fae``)."""

def _logging_shutdown() -> None:
    """``atexit`` hook (installed by ``import fae``): stop handing log records to Python."""

def _logging_refresh() -> None:
    """Re-read the ``"fae"`` logger's level now (it is otherwise re-read within a second)."""

@final
class Lease:
    """What ``Client.get_or_lease`` found: an immutable record (memcached's meta lease reply,
    the value decoded like ``get``).

    - ``hit``: ``value`` is current; serve it.
    - ``refresh``: ``value`` is stale (invalidated) or nearly expired
      (``stampede.recache_below_s``) and this caller won the right to refresh it: serve it,
      compute the new value, then ``set_with_lease(key, new, token)``.
    - ``stale``: ``value`` is stale and another client is refreshing it; serve it.
    - ``miss``: no value, and this caller holds the lease: compute, then
      ``set_with_lease(key, new, token)``.
    - ``wait``: no value, another client is filling it: read again shortly (or use
      ``get_or_set``, which does).

    A token of ``0`` means no lease could be had (a ``"text"`` protocol pool, the in-process
    cache): ``set_with_lease`` then stores with ``add``, which never overwrites either.
    """

    @property
    def status(self) -> LeaseStatus:
        """``"hit"``, ``"refresh"``, ``"stale"``, ``"miss"`` or ``"wait"``."""
    @property
    def value(self) -> Any:
        """The value to serve (``hit``, ``refresh``, ``stale``), decoded like ``get``; else
        None."""
    @property
    def token(self) -> Optional[int]:
        """The lease token for ``set_with_lease`` (``miss``, ``refresh``); else None."""
    @property
    def stale(self) -> bool:
        """True when the value was invalidated (``invalidate``) and is being served stale.
        A ``refresh`` of a nearly expired value (``stampede.recache_below_s``) is not stale."""
    def __repr__(self) -> str:
        """``fae.Lease(status='refresh', value='old', token=42, stale=True)`` (a long value
        repr is cut at 80 characters)."""

class Client:
    """A memcached client with libfae's router inside; one per process, shared by threads.

    Give exactly one of ``servers``, ``config`` (a dict in libfae's config schema) or
    ``config_file`` (JSON, or TOML when the name ends in ``.toml``). No socket is opened
    until the first request. ``fae.Client()`` with none of them raises; ``config={}`` (a
    config with no servers and no pools) is libfae's embedded in-process cache: an LRU with
    memcached's semantics, private to the client, no server needed.

    Args:
        servers: a list of servers, or one string ``"h1:p1,h2:p2"`` (``;`` also separates).
            A server is ``"host:port[:weight]"``, ``(host, port[, weight])``, or a Unix-domain
            socket path ``"/run/memcached/memcached.sock"`` (as pylibmc and pymemcache take it;
            ``("/path", 0, weight)`` weights one).
        config: libfae config dict (``{"servers": [...], "mode": ...}``, or ``pools`` plus a
            ``route`` tree such as ``{"type": "failover", "children": ["main", {"type":
            "gutter", "pool": "gutter", "max_ttl": 10}]}``; ``{}`` for the in-process cache). A
            ``stampede`` section (``{"lease_ttl_s": 10, "wait_ms": 2000, "recache_below_s": 0,
            "coalesce": True}``) tunes ``get_or_set`` and leases.
            ``tls`` (``{"ca_file": ..., "cert_file": ..., "key_file": ..., "server_name": ...,
            "verify": True}``) and ``auth`` (``{"username": ..., "password_file": ...}`` or
            ``"password_env"``) speak TLS and memcached's ``-Y`` login; a refused login or
            handshake raises ``AuthenticationError``.
        config_file: path of a libfae config file. The client watches it (``reload.watch_ms``
            in the file, default 1000 ms; 0 turns it off) and reloads when it changes; a bad
            edit is rejected, logged and counted, and the old config stays.
        mode: placement mode (``"libmemcached"`` default, ``"pymemcache"``, ``"libmemcached-ketama"``,
            ``"php-memcached-default"``, ``"mcrouter"``, ``"jump"`` …); only with ``servers``.
            ``"pymemcache"`` places keys exactly as pymemcache's ``HashClient``: by the key
            without ``key_prefix``, a ``str`` by its characters, a ``bytes`` key by its
            ``repr``. Leases and ``get_or_set`` then refuse ``bytes`` keys and keys with a
            ``key_prefix`` (they place by the stored key), raising ``ClientError``.
        protocol: ``"meta"`` (default) or ``"text"``; only with ``servers``.
        serde: ``"pymemcache"`` (default), ``"pylibmc"``, ``"raw"``, ``"interop"`` or an object
            with pymemcache's ``serialize``/``deserialize`` methods.
        key_prefix: bytes (or str) prepended to every key on the wire.
        connect_timeout: seconds to connect (default 0.1).
        timeout: seconds for a whole request, multi-key calls included (default 0.25).
        max_connections: connections per server per process (default 8); only with ``servers``.
        max_value_size: bytes; larger values raise ``ClientError`` before any I/O (default 1 MiB).
        binary_keys: meta only: allow keys with spaces/control bytes (sent base64).
        min_compress_len: zlib-compress serialized values longer than this (0 = never; default
            0, and 2000 for ``"interop"`` as php-memcached).
        compress_level: zlib level 0–9 (default 6).
        pickle_protocol: pickle protocol (default ``pickle.HIGHEST_PROTOCOL``).
        ignore_exc: like pymemcache: reads return the default instead of raising on a server or
            network failure (caller errors still raise).
        on_get_error: ``on_get_error(exc, key, default)`` is called when ``get`` fails, and
            ``get`` returns what it returns or raises what it raises. A compatibility layer
            keeps its own rules with it (``fae.pylibmc``: a bad key is a miss, pylibmc's
            exception classes) while its ``get`` stays this method, with no Python frame on
            a hit. Hold the client weakly in it, if at all: a cycle through a client is not
            collected.

    Raises:
        ClientError: the configuration is invalid (reason ``invalid_config``: a config dict
            with a cycle or nested deeper than 64 levels too) or a number is out of range
            (``invalid_argument``).
    """

    def __new__(
        cls,
        servers: Optional[Union[str, Iterable[Server]]] = None,
        *,
        config: Optional[Mapping[str, Any]] = None,
        config_file: Optional[Union[str, PathLike[str]]] = None,
        mode: Optional[str] = None,
        protocol: Optional[Literal["meta", "text"]] = None,
        serde: Optional[Union[SerdeName, Serde]] = None,
        key_prefix: Optional[Union[bytes, str]] = None,
        connect_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        max_value_size: Optional[int] = None,
        binary_keys: Optional[bool] = None,
        min_compress_len: Optional[int] = None,
        compress_level: int = ...,
        pickle_protocol: Optional[int] = None,
        ignore_exc: bool = False,
        on_get_error: Optional[Callable[[BaseException, Key, Any], Any]] = None,
    ) -> Client: ...
    @property
    def servers(self) -> List[str]:
        """Every pool's servers (``"host:port"``, or a socket server's path; pools in name
        order, servers in config order); ``[]`` for the in-process cache."""
    @property
    def serde(self) -> str:
        """The serde name (``"custom"`` for an object)."""
    @property
    def key_prefix(self) -> bytes:
        """The prefix added to every key."""
    @property
    def closed(self) -> bool:
        """Has ``close()`` been called?"""

    # Reads. A miss returns the default; errors raise (see ``ignore_exc``).
    def get(self, key: Key, default: Any = None) -> Any:
        """The value, or ``default`` on a miss (failures: see ``on_get_error``)."""
    def gets(self, key: Key, default: Any = None, cas_default: Any = None) -> Tuple[Any, Any]:
        """``(value, cas)`` with an int CAS token, or ``(default, cas_default)`` on a miss."""
    def gat(self, key: Key, expire: Optional[int] = ..., default: Any = None) -> Any:
        """Get and set the expiry (get-and-touch); ``default`` on a miss."""
    def gats(
        self, key: Key, expire: Optional[int] = ..., default: Any = None, cas_default: Any = None
    ) -> Tuple[Any, Any]:
        """``gets`` that also sets the expiry."""
    def get_many(self, keys: Iterable[Key]) -> Dict[Key, Any]:
        """``{key: value}`` for the keys that hit, keyed by the objects passed in. One pipelined
        batch per server, all servers at once, one deadline."""
    def get_multi(self, keys: Iterable[Key]) -> Dict[Key, Any]:
        """Alias of ``get_many``."""
    def gets_many(self, keys: Iterable[Key]) -> Dict[Key, Tuple[Any, int]]:
        """``{key: (value, cas)}`` for the keys that hit."""

    # Writes. ``expire``: 0 never, up to 30 days relative seconds, larger a unix time, negative
    # expires at once. ``noreply`` is accepted for pymemcache compatibility, but fae always
    # reads the reply: return values are the server's real answer.
    def set(
        self,
        key: Key,
        value: Any,
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
        min_compress_len: Optional[int] = None,
    ) -> bool:
        """Store unconditionally. True. ``flags`` overrides the serde's flags."""
    def set_many(
        self,
        values: Union[Mapping[Key, Any], Iterable[Tuple[Key, Any]]],
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
        min_compress_len: Optional[int] = None,
    ) -> List[Key]:
        """Store many (pipelined per server); returns the keys that were not stored, including
        keys whose server failed. Invalid keys or oversize values raise before any I/O."""
    def set_multi(
        self,
        values: Union[Mapping[Key, Any], Iterable[Tuple[Key, Any]]],
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
        min_compress_len: Optional[int] = None,
    ) -> List[Key]:
        """Alias of ``set_many``."""
    def add(
        self,
        key: Key,
        value: Any,
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
        min_compress_len: Optional[int] = None,
    ) -> bool:
        """Store only if absent. True if stored, False if the key exists."""
    def replace(
        self,
        key: Key,
        value: Any,
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
        min_compress_len: Optional[int] = None,
    ) -> bool:
        """Store only if present. True if stored, False if the key is missing."""
    def append(
        self,
        key: Key,
        value: Union[bytes, str],
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
    ) -> bool:
        """Append raw bytes (str as UTF-8) to the stored value. False if the key is missing."""
    def prepend(
        self,
        key: Key,
        value: Union[bytes, str],
        expire: Optional[int] = ...,
        noreply: Optional[bool] = None,
        flags: Optional[int] = None,
    ) -> bool:
        """Prepend raw bytes (str as UTF-8). False if the key is missing."""
    def cas(
        self,
        key: Key,
        value: Any,
        cas: Union[int, bytes],
        expire: Optional[int] = ...,
        noreply: bool = False,
        flags: Optional[int] = None,
    ) -> Optional[bool]:
        """Compare and swap: True stored, False changed since ``gets`` (EXISTS), None missing."""
    def delete(self, key: Key, noreply: Optional[bool] = None) -> bool:
        """True if the key existed."""
    def delete_many(self, keys: Iterable[Key], noreply: Optional[bool] = None) -> bool:
        """Delete many (pipelined per server). True; a failed server raises."""
    def delete_multi(self, keys: Iterable[Key], noreply: Optional[bool] = None) -> bool:
        """Alias of ``delete_many``."""
    def incr(self, key: Key, value: Optional[int] = ..., noreply: bool = False) -> Optional[int]:
        """Add ``value`` (0..2**64) to a decimal value; the new value, None if missing."""
    def decr(self, key: Key, value: Optional[int] = ..., noreply: bool = False) -> Optional[int]:
        """Subtract (stops at 0); the new value, None if missing."""
    def touch(self, key: Key, expire: Optional[int] = ..., noreply: Optional[bool] = None) -> bool:
        """Set the expiry. True if the key exists."""

    # Stampede protection (README "Stampede protection"; config section ``stampede``:
    # ``lease_ttl_s``, ``wait_ms``, ``recache_below_s``, ``coalesce``). The lease logic is the
    # core's and memcached's (meta ``mg N``/``R``, ``ms C``, ``md I``); leases need the
    # ``"meta"`` protocol, which is the default.
    def get_or_set(self, key: Key, fn: Callable[[], T], expire: Optional[int] = ...) -> T:
        """Read-through with stampede protection: the value of ``key`` if cached (a stale,
        invalidated one included while another caller refreshes it), else ``fn()``'s, stored
        with ``expire``.

        ``fn`` takes no arguments (as Django's ``cache.get_or_set`` callable default; bind
        what it needs with a lambda or ``functools.partial``) and returns any value ``set``
        takes; it is encoded by the client's serde exactly like ``set``, and the result is
        decoded like ``get`` (so ``fn``'s own caller gets the same type as everyone else).
        ``fn`` runs once per expiry across every thread and process sharing the servers: in
        this process one caller computes and the others wait for its value, with the GIL
        released; across processes the first to miss wins memcached's lease and the others
        poll until the value lands, at most ``stampede.wait_ms`` (default 2000 ms), after
        which they call ``fn`` themselves and return its value without storing it. ``fn``
        runs on the calling thread, holding the GIL.

        A cache failure (a server down or timing out) does not raise: ``fn()``'s value is
        returned unstored. ``ignore_exc`` does not change this method.

        Raises:
            Exception: whatever ``fn`` raised, as raised (then other waiting callers each try
                ``fn`` themselves).
            ClientError: an invalid key (``invalid_key``), ``fn`` not callable or a bad
                ``expire`` (``invalid_argument``), a closed client (``closed``) — all before
                ``fn`` is called; or a value the serde cannot store (``invalid_value``).
        """
    def get_or_lease(self, key: Key) -> Lease:
        """A lease read (meta ``mg <key> v f c t N<lease_ttl_s>``): see ``Lease`` for what
        each status asks the caller to do. Plain reads (``get``, ``get_many``) never take
        part in leases: they see a lease stub and an invalidated key as a miss.

        Raises:
            ClientError: an invalid key, a closed client. Server and network errors raise
                as for ``get`` (``ignore_exc`` does not apply to lease reads).
        """
    def set_with_lease(self, key: Key, value: Any, token: int, expire: Optional[int] = ...) -> bool:
        """Fill ``key`` with the ``Lease.token`` of a ``miss`` or ``refresh`` (meta
        ``ms <key> C<token>``), ``value`` encoded like ``set``. True stored; False a delete,
        set or invalidate of the key happened since the lease, so the newer state wins and
        ``value`` is not stored. Token 0 stores with ``add``.

        Raises:
            ClientError: a token that is not an int in 0..2**64 (``invalid_argument``), an
                invalid key, a value too large or the serde cannot store.
        """
    def invalidate(self, key: Key, stale_ttl: Optional[int] = ...) -> bool:
        """Mark ``key`` stale instead of deleting it (meta ``md <key> I T<stale_ttl>``), for
        stale-while-revalidate: the value stays for ``stale_ttl`` more seconds (0: its
        current TTL); the first lease reader (``get_or_lease``, ``get_or_set``) gets it as
        ``refresh`` with a token and refills it, the others get ``stale`` and serve the old
        value at once; plain reads see a miss; fills of leases taken before fail. True if the
        key was there. On a ``"text"`` protocol pool this is a plain delete.
        """

    # Admin.
    def flush_all(self, delay: int = ..., noreply: Optional[bool] = None) -> bool:
        """``flush_all`` on every server (after ``delay`` seconds, 0..2**32). True."""
    def version(self) -> Dict[str, str]:
        """``{server: version}``."""
    def stats(self, *args: str) -> Dict[str, Dict[str, Union[int, float, str]]]:
        """memcached ``stats [args]`` per server: ``{server: {name: value}}``."""
    def server_stats(self) -> Dict[str, Dict[str, Any]]:
        """libfae's view per server: ``state`` (breaker), ``open_connections``,
        ``idle_connections``, request counters and ``errors`` by reason."""
    def client_stats(self) -> Dict[str, Any]:
        """The whole stats snapshot: ``pools``, ``destinations``, ``routes`` (the route tree's
        counters by config path: ``{"route": {"type": "failover", "failovers": n, ...},
        "route.children[1]": {"type": "gutter", "ttl_capped": n, ...}}``; a ``local`` route
        adds ``local_hits``, ``local_misses``, ``items``, ``bytes``), ``supervisor``, and
        ``process``: ``config_version``, ``reloads``, ``reload_failures``; and ``stampede``:
        ``lease_hits``, ``lease_misses``, ``lease_waits``, ``lease_stale``,
        ``lease_refreshes``, ``computes``, ``fills_stored``, ``fills_lost``,
        ``wait_timeouts``, ``lease_errors``, ``coalesced_gets``, ``coalesced_fills``."""
    def reload(
        self,
        config: Optional[Mapping[str, Any]] = None,
        *,
        config_file: Optional[Union[str, PathLike[str]]] = None,
        servers: Optional[Union[str, Iterable[Server]]] = None,
        mode: Optional[str] = None,
        protocol: Optional[Literal["meta", "text"]] = None,
        connect_timeout: Optional[float] = None,
        timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
        max_value_size: Optional[int] = None,
        binary_keys: Optional[bool] = None,
    ) -> None:
        """Replace the configuration while requests keep flowing.

        Give exactly one of ``config`` (a dict), ``config_file`` (read once, now) or
        ``servers`` (with ``mode``, ``protocol``, ``max_connections``, ``binary_keys``), as
        for the constructor; ``connect_timeout``, ``timeout`` and ``max_value_size`` override
        any of them. The new config replaces the whole old one (constructor overrides are not
        carried over); ``serde``, ``key_prefix`` and the other client options stay.

        The new route is built off to the side and swapped in atomically, with the GIL
        released; requests in flight finish on the old one, and servers whose address and
        settings did not change keep their connections and breaker state.
        ``client_stats()["process"]["config_version"]`` goes up by one.

        A client constructed with ``config_file=`` also watches that file
        (``reload.watch_ms``, default 1000 ms) and reloads by itself when it changes; that stays
        the watched file whatever ``reload()`` is given, so its next edit wins over a
        ``reload(config=...)``.

        Raises:
            ClientError: the config is invalid (reason ``invalid_config``); the old config
                stays in force (a config the core rejects is counted in
                ``client_stats()["process"]["reload_failures"]``).
        """
    def route_for(self, key: Key, op: Optional[str] = ...) -> List[str]:
        """Every destination a request of ``op`` for ``key`` could touch, each once, in route
        order, without I/O: ``"host:port"`` per server and ``"local"`` for an in-process
        cache. A failover lists every child, a shadowed key its shadow too, a replicated route
        every replica, a near cache ``"local"`` then its route's servers. ``op`` (default
        get): get, gets, gat, gats, set, add, replace, append, prepend, cas, delete, incr,
        decr, touch.

        Raises:
            ClientError: an unknown ``op`` (``invalid_argument``) or an invalid key."""
    def bucket_for(self, key: Key, op: Optional[str] = ...) -> List[Dict[str, Any]]:
        """For every pool placed by virtual buckets that a request of ``op`` for ``key``
        reaches: ``{"pool", "bucket", "version", "server"}`` (``"host:port"``), plus ``"phase"``
        and ``"to"`` while the bucket is on the move. Without I/O; empty when no pool the key
        reaches is placed by buckets.

        Raises:
            ClientError: an unknown ``op`` (``invalid_argument``) or an invalid key."""
    def disconnect_all(self) -> None:
        """Close idle connections now; the client stays usable."""
    def quit(self) -> None:
        """Alias of ``disconnect_all``."""
    def close(self) -> None:
        """Close the client; later calls raise ``ClientError`` (reason ``closed``)."""
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
