//! Every default, with its unit, in one place.

/// Largest value accepted before any I/O (memcached's default item size limit is 1 MiB).
pub const MAX_VALUE_SIZE: usize = 1024 * 1024;
/// Connections per server per process.
pub const MAX_CONNECTIONS: usize = 8;
/// TCP connect timeout, milliseconds.
pub const CONNECT_MS: u64 = 100;
/// Deadline for one request (send + complete reply), milliseconds.
pub const IO_MS: u64 = 250;
/// memcached's port, assumed when a server string has none.
pub const PORT: u16 = crate::addr::DEFAULT_PORT;
/// Name of the pool the `servers` shorthand creates.
pub const POOL: &str = "default";
/// Idle connections unused this long get a heartbeat, milliseconds.
pub const HEARTBEAT_INTERVAL_MS: u64 = 5000;
/// Consecutive soft failures (timeouts) that open a breaker.
pub const TKO_SOFT_THRESHOLD: u32 = 3;
/// First probe delay after a breaker opens, milliseconds.
pub const PROBE_INITIAL_MS: u64 = 250;
/// Longest probe delay, milliseconds. Probes run off the request path, so a short cap costs
/// one dial a second per stopped server; with 10 s a server resumed after a 10 s outage waited
/// up to 4 s for its next probe, where libmemcached (`RETRY_TIMEOUT` 1 s) was back within 1 s.
pub const PROBE_MAX_MS: u64 = 1_000;
/// Trial requests a half-open breaker admits.
pub const HALF_OPEN_REQUESTS: u32 = 3;
/// Largest fraction of a pool whose breakers may be open at once.
pub const MAX_TKO_FRACTION: f64 = 0.5;
/// Idle connections unused this long are closed, milliseconds (0: never).
pub const MAX_IDLE_MS: u64 = 60_000;
/// Connections older than this are closed when idle, milliseconds (0: never).
pub const MAX_AGE_MS: u64 = 0;
/// Items of a `local` route (and of the embedded cache a config without servers gets).
pub const LOCAL_MAX_ITEMS: usize = 10_000;
/// Bytes of a `local` route: keys + values + 160 bytes of bookkeeping per item.
pub const LOCAL_MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long a `negative` route remembers a key as absent, milliseconds: the longest
/// another process's write of that key can stay unseen by this one.
pub const NEGATIVE_TTL_MS: u64 = 500;
/// Keys a `negative` route remembers at most (each costs the key plus 160 bytes).
pub const NEGATIVE_MAX_KEYS: usize = 10_000;
/// Lifetime of a lease stub, seconds: if the winner dies, the next lease is handed out
/// after this (Facebook: one token per key per 10 s).
pub const LEASE_TTL_S: u32 = 10;
/// How long `get_or_set` waits for another client's fill before computing itself,
/// milliseconds.
pub const LEASE_WAIT_MS: u64 = 2000;
