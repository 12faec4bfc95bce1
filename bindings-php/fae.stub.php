<?php
// IDE stubs for the `fae` extension (bindings-php). Not loaded by PHP; for editors and static
// analysers. Fae\Client mirrors php-memcached's Memcached: same names, options, result codes,
// value format and key placement. See bindings-php/README.md.
//
// INI: fae.log_level = "warn" (default) | "info" | "debug" (PHP_INI_ALL). libfae's own log
// records (breaker transitions, reloads, discovery, stats export) go to PHP's error log, as
// "fae: level=warn destination=10.0.0.2:11211 breaker=open reason=timeout"; errors and
// warnings always, info/debug when this setting asks for them.
// INI: fae.provide_memcached_classes = 1 (default, PHP_INI_SYSTEM): when php-memcached is not
// loaded, register \Memcached and \MemcachedException (below), php-memcached's memcached.*
// settings and session.save_handler = memcached. session.save_handler = fae always works.
// INI: fae.encoding_scheme = libmemcached-1.1 (PHP_INI_PERDIR; or libmemcached-1.0): which
// libmemcached's value encryption setEncodingKey() matches (AES-256-CBC with OpenSSL, or ECB).
// INI: fae.tls = 0, fae.tls_ca_file, fae.tls_cert_file, fae.tls_key_file, fae.tls_server_name,
// fae.tls_verify = 1, fae.auth_username, fae.auth_password_file, fae.auth_password_env
// (PHP_INI_PERDIR): TLS and memcached's login for every client whose $config has no "tls" /
// "auth" section, and for \Memcached objects. A refused login or TLS handshake is
// RES_AUTH_FAILURE (getResultCode()), not retried.

namespace Fae {

/** Invalid arguments and configuration. Operational failures return false instead. */
class Exception extends \RuntimeException {}

/** Is the serializer ("php", "json", "json_array", "igbinary", "msgpack") usable in this process? */
function have_serializer(string $name): bool {}

/** libfae's version. */
function version(): string {}

class Client
{
    public const OPT_COMPRESSION = -1001;
    public const OPT_PREFIX_KEY = -1002;
    public const OPT_SERIALIZER = -1003;
    public const OPT_COMPRESSION_TYPE = -1004;
    public const OPT_STORE_RETRY_COUNT = -1005;
    public const OPT_USER_FLAGS = -1006;
    public const OPT_COMPRESSION_LEVEL = -1007;
    public const OPT_ITEM_SIZE_LIMIT = -1008;
    public const OPT_NO_BLOCK = 0;
    public const OPT_TCP_NODELAY = 1;
    public const OPT_HASH = 2;
    public const OPT_SOCKET_SEND_SIZE = 4;
    public const OPT_SOCKET_RECV_SIZE = 5;
    public const OPT_CACHE_LOOKUPS = 6;
    public const OPT_POLL_TIMEOUT = 8;
    public const OPT_DISTRIBUTION = 9;
    public const OPT_BUFFER_WRITES = 10;
    public const OPT_SORT_HOSTS = 12;
    public const OPT_VERIFY_KEY = 13;
    public const OPT_CONNECT_TIMEOUT = 14;
    public const OPT_RETRY_TIMEOUT = 15;
    public const OPT_LIBKETAMA_COMPATIBLE = 16;
    public const OPT_LIBKETAMA_HASH = 17;
    public const OPT_BINARY_PROTOCOL = 18;
    public const OPT_SEND_TIMEOUT = 19;
    public const OPT_RECV_TIMEOUT = 20;
    public const OPT_SERVER_FAILURE_LIMIT = 21;
    public const OPT_HASH_WITH_PREFIX_KEY = 25;
    public const OPT_NOREPLY = 26;
    public const OPT_USE_UDP = 27;
    public const OPT_AUTO_EJECT_HOSTS = 28;
    public const OPT_NUMBER_OF_REPLICAS = 29;
    public const OPT_RANDOMIZE_REPLICA_READ = 30;
    public const OPT_TCP_KEEPALIVE = 32;
    public const OPT_REMOVE_FAILED_SERVERS = 35;
    public const OPT_DEAD_TIMEOUT = 36;
    public const OPT_SERVER_TIMEOUT_LIMIT = 37;
    public const HASH_DEFAULT = 0;
    public const HASH_MD5 = 1;
    public const HASH_CRC = 2;
    public const HASH_FNV1_64 = 3;
    public const HASH_FNV1A_64 = 4;
    public const HASH_FNV1_32 = 5;
    public const HASH_FNV1A_32 = 6;
    public const HASH_HSIEH = 7;
    public const HASH_MURMUR = 8;
    public const DISTRIBUTION_MODULA = 0;
    public const DISTRIBUTION_CONSISTENT = 1;
    public const DISTRIBUTION_VIRTUAL_BUCKET = 6;
    public const SERIALIZER_PHP = 1;
    public const SERIALIZER_IGBINARY = 2;
    public const SERIALIZER_JSON = 3;
    public const SERIALIZER_JSON_ARRAY = 4;
    public const SERIALIZER_MSGPACK = 5;
    public const COMPRESSION_ZLIB = 1;
    public const COMPRESSION_FASTLZ = 2;
    public const GET_PRESERVE_ORDER = 1;
    public const GET_EXTENDED = 2;
    public const LIBMEMCACHED_VERSION_HEX = 16777240;
    public const RES_SUCCESS = 0;
    public const RES_FAILURE = 1;
    public const RES_HOST_LOOKUP_FAILURE = 2;
    public const RES_CONNECTION_FAILURE = 3;
    public const RES_WRITE_FAILURE = 5;
    public const RES_UNKNOWN_READ_FAILURE = 7;
    public const RES_PROTOCOL_ERROR = 8;
    public const RES_CLIENT_ERROR = 9;
    public const RES_SERVER_ERROR = 10;
    public const RES_CONNECTION_SOCKET_CREATE_FAILURE = 11;
    public const RES_DATA_EXISTS = 12;
    public const RES_NOTSTORED = 14;
    public const RES_STORED = 15;
    public const RES_NOTFOUND = 16;
    public const RES_PARTIAL_READ = 18;
    public const RES_SOME_ERRORS = 19;
    public const RES_NO_SERVERS = 20;
    public const RES_END = 21;
    public const RES_ERRNO = 26;
    public const RES_NOT_SUPPORTED = 28;
    public const RES_TIMEOUT = 31;
    public const RES_BUFFERED = 32;
    public const RES_BAD_KEY_PROVIDED = 33;
    public const RES_SERVER_MARKED_DEAD = 35;
    public const RES_E2BIG = 37;
    public const RES_INVALID_ARGUMENTS = 38;
    public const RES_KEY_TOO_BIG = 39;
    public const RES_AUTH_PROBLEM = 40;
    public const RES_AUTH_FAILURE = 41;
    public const RES_AUTH_CONTINUE = 42;
    public const RES_SERVER_TEMPORARILY_DISABLED = 47;
    public const RES_SERVER_MEMORY_ALLOCATION_FAILURE = 48;
    public const RES_PAYLOAD_FAILURE = -1001;
    public const RES_CONNECTION_BIND_FAILURE = 4;
    public const RES_READ_FAILURE = 6;
    public const RES_DATA_DOES_NOT_EXIST = 13;
    public const RES_MEMORY_ALLOCATION_FAILURE = 17;
    public const RES_DELETED = 22;
    public const RES_VALUE = 23;
    public const RES_STAT = 24;
    public const RES_ITEM = 25;
    public const RES_FAIL_UNIX_SOCKET = 27;
    public const RES_NO_KEY_PROVIDED = 29;
    public const RES_FETCH_NOTFINISHED = 30;
    public const RES_INVALID_HOST_PROTOCOL = 34;
    public const RES_UNKNOWN_STAT_KEY = 36;
    public const RES_PARSE_ERROR = 43;
    public const RES_PARSE_USER_ERROR = 44;
    public const RES_DEPRECATED = 45;
    public const RES_IN_PROGRESS = 46;
    public const RES_MAXIMUM_RETURN = 49;
    public const HAVE_JSON = true;
    public const HAVE_SESSION = true;
    public const HAVE_ZSTD = false;
    public const HAVE_ENCODING = true;
    /** Whether the igbinary / msgpack extension was loaded with this one. */
    public const HAVE_IGBINARY = false;
    public const HAVE_MSGPACK = false;
    public const HAVE_SASL = false;
    public const GET_ERROR_RETURN_VALUE = false;

    /**
     * php-memcached's constructor, plus libfae's config in the second place.
     * @param string|null $persistent_id one shared client (servers, options, warm connections) per id per process
     * @param callable|array|null $callback php-memcached's on-new-object callback, called as
     *        $callback($memc, $persistent_id) once per new persistent id (every time without one);
     *        or libfae's $config, the config file's schema: "servers" (plus "mode", "protocol",
     *        "timeouts", "stampede" => ["lease_ttl_s" => 10, "wait_ms" => 2000,
     *        "recache_below_s" => 0, "coalesce" => true] …), or "pools" plus a "route" tree, e.g.
     *        ['pools' => ['main' => ['servers' => ['10.0.0.1:11211']], 'gutter' => ['servers' => ['10.0.0.9:11211']]],
     *         'route' => ['type' => 'failover', 'children' => ['main', ['type' => 'gutter', 'pool' => 'gutter', 'max_ttl' => 10]]]].
     *        Without servers and without a "route", calls fail with RES_NO_SERVERS until addServer()
     *        (as php-memcached); ['route' => ['type' => 'local']] is an in-process cache, no server needed.
     * @param string|null $connection_str libmemcached's configuration string; its
     *        "--SERVER=host:port[/?weight]" entries are used
     * @throws Exception on an invalid $config (the message names the key's path)
     */
    public function __construct(?string $persistent_id = null, callable|array|null $callback = null, ?string $connection_str = null) {}
    /**
     * A client from libfae's config: an array (the constructor's $config schema) or a JSON
     * config file's path.
     * @throws Exception on an invalid $config
     */
    public static function fromConfig(array|string $config, ?string $persistent_id = null): static {}
    /** getDelayed(): fetch now; results go to $value_cb($memc, $result) or wait for fetch()/fetchAll(). */
    public function getDelayed(array $keys, bool $with_cas = false, ?callable $value_cb = null): bool {}
    public function getDelayedByKey(string $server_key, array $keys, bool $with_cas = false, ?callable $value_cb = null): bool {}
    /** @return array{key: string, value: mixed, cas?: int, flags?: int}|false false and RES_END when none is left */
    public function fetch(): array|false {}
    /** @return list<array{key: string, value: mixed, cas?: int, flags?: int}> */
    public function fetchAll(): array|false {}
    /** Sends the set/delete calls OPT_BUFFER_WRITES held back (any other command, or the object's end, does too). */
    public function flushBuffers(): bool {}
    /** php-memcached's key check (1..250 bytes: printable non-space ASCII, or with OPT_BINARY_PROTOCOL anything but a newline); false sets RES_BAD_KEY_PROVIDED. */
    public function checkKey(string $key): bool {}
    /** libmemcached's virtual buckets: key → server $host_map[hash(key) & (count($host_map) - 1)] (OPT_HASH); the distribution becomes DISTRIBUTION_VIRTUAL_BUCKET. $forward_map and $replicas are kept, unused, as in libmemcached. A map naming a server the client lacks fails the next command with RES_INVALID_ARGUMENTS. */
    public function setBucket(array $host_map, ?array $forward_map, int $replicas): bool {}
    /** SASL is not supported: false with RES_NOT_SUPPORTED and php-memcached's warning. */
    public function setSaslAuthData(string $username, string $password): bool {}
    /** libmemcached's AES encryption of the stored bytes from now on (php.ini fae.encoding_scheme: libmemcached-1.1, the default, or libmemcached-1.0); php-memcached reads them and vice versa. A value that does not decrypt reads as a miss (false, RES_NOTFOUND); append/prepend/increment/decrement then fail with RES_NOT_SUPPORTED. */
    public function setEncodingKey(string $key): bool {}
    /** Key dumps are not supported: false with RES_NOT_SUPPORTED. */
    public function getAllKeys(): array|false {}
    /** The last call's result text with libfae's reason (getResultMessage() is the code's text alone). */
    public function getLastErrorMessage(): string {}
    public function getLastErrorCode(): int {}
    /** Always 0. */
    public function getLastErrorErrno(): int {}
    /** Always false: dead servers are libfae's breakers. */
    public function getLastDisconnectedServer(): array|false {}
    public function getResultCode(): int {}
    public function getResultMessage(): string {}
    public function isPersistent(): bool {}
    public function isPristine(): bool {}
    /**
     * $host may be a Unix-domain socket path ('/run/memcached/memcached.sock', port 0), as with
     * php-memcached: reported as host = path, type SOCKET, and placed as php-memcached places
     * it (port 0 is stored as 11211 by addServer, as 0 by addServers).
     */
    public function addServer(string $host, int $port, int $weight = 0): bool {}
    /** @param array<array{0: string, 1: int, 2?: int}> $servers */
    public function addServers(array $servers): bool {}
    /** @return array<array{host: string, port: int, type: string, weight: int}> */
    public function getServerList(): array {}
    public function resetServerList(): bool {}
    /** Unsupported options or values return false with RES_NOT_SUPPORTED and a message saying why. */
    public function setOption(int $option, mixed $value): bool {}
    public function setOptions(array $options): bool {}
    public function getOption(int $option): mixed {}
    /**
     * @param ?callable $cache_cb php-memcached's read-through callback, run on a miss:
     *        function (Client $memc, string $key, &$value, &$expiration): bool. True: $value is
     *        stored (with $expiration, default 0) and returned; false: get returns false with
     *        RES_NOTFOUND and nothing is stored. With GET_EXTENDED it gets ($memc, $key, &$value)
     *        and sets $value = ['value' => ...]. Runs on the core's getOrSet path: concurrent
     *        missers in every process sharing the servers call it once (see getOrSet()).
     *        An exception it throws reaches the caller.
     * @param int $get_flags GET_EXTENDED: ['value' => ..., 'cas' => int, 'flags' => int]
     */
    public function get(string $key, ?callable $cache_cb = null, int $get_flags = 0): mixed {}
    public function getByKey(string $server_key, string $key, ?callable $cache_cb = null, int $get_flags = 0): mixed {}
    /** @param int $get_flags GET_PRESERVE_ORDER | GET_EXTENDED */
    public function getMulti(array $keys, int $get_flags = 0): array|false {}
    public function getMultiByKey(string $server_key, array $keys, int $get_flags = 0): array|false {}
    public function set(string $key, mixed $value, int $expiration = 0): bool {}
    public function setByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool {}
    public function setMulti(array $items, int $expiration = 0): bool {}
    public function setMultiByKey(string $server_key, array $items, int $expiration = 0): bool {}
    public function add(string $key, mixed $value, int $expiration = 0): bool {}
    public function addByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool {}
    public function replace(string $key, mixed $value, int $expiration = 0): bool {}
    public function replaceByKey(string $server_key, string $key, mixed $value, int $expiration = 0): bool {}
    /** null (refused) while OPT_COMPRESSION is on, as php-memcached does. */
    public function append(string $key, string $value): ?bool {}
    public function appendByKey(string $server_key, string $key, string $value): ?bool {}
    public function prepend(string $key, string $value): ?bool {}
    public function prependByKey(string $server_key, string $key, string $value): ?bool {}
    public function cas(int|float|string $cas_token, string $key, mixed $value, int $expiration = 0): bool {}
    public function casByKey(int|float|string $cas_token, string $server_key, string $key, mixed $value, int $expiration = 0): bool {}
    /** $time must be 0 (memcached dropped delete hold times). */
    public function delete(string $key, int $time = 0): bool {}
    public function deleteByKey(string $server_key, string $key, int $time = 0): bool {}
    /** @return array<string, true|int> true or the RES_* code per key */
    public function deleteMulti(array $keys, int $time = 0): array {}
    public function deleteMultiByKey(string $server_key, array $keys, int $time = 0): array {}
    /**
     * With $initial_value, a missing key is created with it (and $expiry) on any protocol.
     * @throws \ValueError on a negative offset
     */
    public function increment(string $key, int $offset = 1, ?int $initial_value = null, int $expiry = 0): int|false {}
    public function decrement(string $key, int $offset = 1, ?int $initial_value = null, int $expiry = 0): int|false {}
    public function incrementByKey(string $server_key, string $key, int $offset = 1, ?int $initial_value = null, int $expiry = 0): int|false {}
    public function decrementByKey(string $server_key, string $key, int $offset = 1, ?int $initial_value = null, int $expiry = 0): int|false {}
    public function touch(string $key, int $expiration = 0): bool {}
    public function touchByKey(string $server_key, string $key, int $expiration = 0): bool {}
    /**
     * The first server a get for $server_key asks (an in-process cache is skipped; false with
     * RES_NO_SERVERS when the key lives only in one).
     * @return array{host: string, port: int, type: string, weight: int}|false
     */
    public function getServerByKey(string $server_key): array|false {}
    /**
     * Every destination a request of $op for $key could touch, each once, in route order, without
     * I/O: "host:port" per server, "local" for an in-process cache. A failover lists every child,
     * a shadowed key its shadow too, a replicated route every replica.
     * @param string $op get, set, add, replace, append, prepend, cas, delete, incr, decr, touch
     * @throws Exception on an unknown operation
     */
    public function routeFor(string $key, string $op = 'get'): array|false {}
    /**
     * For every pool placed by virtual buckets that $op for $key reaches: pool, bucket, map
     * version and server ("host:port"), plus phase and to while the bucket is on the move. No I/O.
     * @return list<array{pool: string, bucket: int, version: int, server: string, phase?: string, to?: string}>|false
     */
    public function bucketFor(string $key, string $op = 'get'): array|false {}
    /**
     * Stampede protection, step by step: a lease read. "miss" (you hold the lease: compute, then
     * setWithLease() with the token), "wait" (another client is filling: retry shortly), "hit",
     * "refresh" (a stale or near-expiry value to serve, and you won the refresh: setWithLease()),
     * "stale" (a stale value another client is refreshing: serve it). The value is decoded like
     * get()'s; the token is set for "miss" and "refresh" (0: no lease could be had, the fill is
     * an add). Plain get() never sees a lease stub or an invalidated value (RES_NOTFOUND).
     * @return array{status: 'hit'|'refresh'|'stale'|'miss'|'wait', value: mixed, token: ?int}|false
     * @throws Exception (RES_NOT_SUPPORTED) when OPT_PREFIX_KEY without OPT_HASH_WITH_PREFIX_KEY
     *         places $key on another server than the prefixed key it stores
     */
    public function getOrLease(string $key): array|false {}
    /**
     * Fill a key with getOrLease()'s token; $value is encoded like set()'s. False with
     * RES_NOTSTORED when the key was written, deleted or invalidated since the lease (the newer
     * state wins).
     * @throws \ValueError on a negative token
     */
    public function setWithLease(string $key, mixed $value, int $token, int $expiration = 0): bool {}
    /**
     * Invalidate instead of delete: the value stays readable as stale for $stale_ttl seconds (0:
     * its remaining TTL); lease readers get "refresh" (one of them) or "stale", plain get() a
     * miss, outstanding fills fail. False with RES_NOTFOUND if the key was not there.
     */
    public function invalidate(string $key, int $stale_ttl = 0): bool {}
    /**
     * Read-through with stampede protection: the cached value, or $compute($key)'s, encoded like
     * set() and stored with $expiration. Across every thread and process sharing the servers one
     * caller computes per expiry; the others wait for its value (at most stampede.wait_ms, then
     * compute themselves without storing) or are served the stale one. A cache that is down
     * does not fail it: the value is computed and returned unstored. An exception $compute throws
     * reaches the caller unchanged, nothing is stored.
     * @param callable(string): mixed $compute
     * @return mixed the value; false with the result code set on a bad key or an encode failure
     * @throws Exception (RES_NOT_SUPPORTED) as getOrLease()
     */
    public function getOrSet(string $key, callable $compute, int $expiration = 0): mixed {}
    /** memcached's stats per server: ['host:port' => [name => value]]; $type e.g. "items", "slabs", "settings". */
    public function getStats(?string $type = null): array|false {}
    /** @return array<string, string> */
    public function getVersion(): array|false {}
    public function flush(int $delay = 0): bool {}
    /** Close the connections; the next call reconnects. */
    public function quit(): bool {}
    /** @return array<string, array{open: int, idle: int}> libfae's pooled connections per server */
    public function connectionCounts(): array {}
    /**
     * Replace the configuration in force, without a restart: the same schema as the constructor's
     * $config. The new routing is built off to the side and swapped in atomically; servers that
     * stay (same address and settings) keep their warm connections and breaker state. Options set
     * with setOption() stay in force. Without "servers" or "pools", the current server list is kept.
     *
     * A persistent client's reload applies to this process's shared client only: each php-fpm
     * worker reloads its own. For fleet-wide changes use "discovery" => ["file" => ...] in $config
     * (a topology snapshot the background supervisor of every worker follows).
     *
     * @return bool false on a config that does not validate or build (getResultCode() is
     *         RES_INVALID_ARGUMENTS, getResultMessage() says why); the old config stays in force
     * @throws \TypeError when $config is not an array
     */
    public function reload(array $config): bool {}
    /**
     * libfae's own health and counters (not memcached's: see getStats()). "routes" holds the
     * route tree's counters by config path ("route", "route.children[1]" …): type, requests,
     * failovers, ttl_capped, replica_failures, shadowed, local_hits/local_misses, items, bytes …
     * "stampede": lease_hits, lease_misses, lease_waits, lease_stale, lease_refreshes, computes,
     * fills_stored, fills_lost, wait_timeouts, lease_errors, coalesced_gets, coalesced_fills.
     * @return array{pools: array, destinations: array<string, array>, routes: array<string, array>,
     *         process: array{pid: int, config_version: int, reloads: int, reload_failures: int},
     *         supervisor: array, stampede: array<string, int>}|false
     */
    public function clientStats(): array|false {}
}

/**
 * php-memcached's session handler semantics (lock key "lock.<sid>", wait/retry, prefix
 * "memc.sess.key." as an unhashed namespace) for session_set_save_handler().
 */
class SessionHandler implements \SessionHandlerInterface, \SessionUpdateTimestampHandlerInterface
{
    /**
     * @param array $options prefix, locking (true), lock_wait_min (150 ms), lock_wait_max (150 ms),
     *        lock_retries (5), lock_expire (0 = max_execution_time), consistent_hash (true),
     *        consistent_hash_type ("ketama" | "ketama_weighted")
     */
    public function __construct(?string $persistent_id = null, ?array $config = null, array $options = []) {}
    /** $path: session.save_path, "host:port[:weight],..." (used when $config has no servers). */
    public function open(string $path, string $name): bool {}
    public function close(): bool {}
    /** @throws Exception when the lock cannot be taken or the server fails */
    public function read(string $id): string {}
    public function write(string $id, string $data): bool {}
    public function destroy(string $id): bool {}
    public function gc(int $max_lifetime): int {}
    public function validateId(string $id): bool {}
    public function updateTimestamp(string $id, string $data): bool {}
    public function getLastError(): string {}
}
}

namespace {
    /**
     * Registered by the extension when php-memcached is not loaded and
     * fae.provide_memcached_classes is on (the default), so php-memcached code runs unchanged.
     */
    class Memcached extends \Fae\Client {}

    /** What this extension throws when it provides Memcached (catchable as Fae\Exception too). */
    class MemcachedException extends \Fae\Exception {}
}
