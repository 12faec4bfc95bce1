//! Config sections and one pool's settings: plain types the layers below the route tree read
//! (`timeouts`, `health`, `stats`, `reload`, `discovery`, `stampede`, a pool's `mode`,
//! `protocol`, `on_down` …). They import nothing above them, so the pool and route code can
//! use them without reaching back to [`super::Config`], which holds the route tree.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::defaults;
use crate::placement::vbucket::BucketsSpec;
use crate::placement::{Mode, Node};
use crate::protocol::Protocol;

/// Stampede protection (config `stampede`): leases, `get_or_set`, request coalescing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StampedeConfig {
    /// Seconds a lease stub lives (meta `N`): the winner must fill within this, or the next
    /// reader wins a new lease.
    pub lease_ttl_s: u32,
    /// Longest `get_or_set` waits for another client's fill (polling with backoff) before it
    /// computes the value itself (and then does not store it), milliseconds.
    pub wait_ms: u64,
    /// Early recache (meta `R`): the first lease read that finds less than this many seconds
    /// left on an item refreshes it while everyone else keeps reading it. 0: off.
    pub recache_below_s: u32,
    /// Identical concurrent single-key `get`s (and `get_or_set`s) from threads of one
    /// process share one request.
    pub coalesce: bool,
}

impl Default for StampedeConfig {
    fn default() -> Self {
        Self {
            lease_ttl_s: defaults::LEASE_TTL_S,
            wait_ms: defaults::LEASE_WAIT_MS,
            recache_below_s: 0,
            coalesce: true,
        }
    }
}

/// Discovery (config `discovery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DiscoveryConfig {
    /// A topology snapshot (`{"pools": {"main": ["host:port", …]}}`, as `fae watch` writes it).
    /// Pools it names take their server lists from it; the config's own lists are the fallback
    /// while the file is missing. The supervisor re-reads it when it changes (checked every
    /// `reload.watch_ms`); an invalid snapshot is rejected and the last good one stays.
    pub file: Option<std::path::PathBuf>,
    /// TLS to etcd or ZooKeeper, for `fae watch --config` (the library itself reads only the
    /// snapshot file and never connects to a coordinator). Same keys as a pool's `tls`.
    pub tls: Option<crate::tls::TlsSection>,
    /// Login to etcd (user/password) or ZooKeeper (digest), for `fae watch --config`.
    pub auth: Option<crate::tls::AuthSection>,
}

/// Reloading (config `reload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReloadConfig {
    /// How often a client built from a config file checks its mtime and size, milliseconds
    /// (0: never). A changed file is parsed and swapped in; a bad one is rejected and counted.
    pub watch_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { watch_ms: 1000 }
    }
}

/// Stats export (config `stats`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StatsConfig {
    /// Serve `GET /metrics` (Prometheus) and `GET /stats.json` on this address from the
    /// supervisor thread (long-lived processes; needs `health.background`).
    pub listen: Option<String>,
    /// Write this process's snapshot into this directory every `interval_ms` (php-fpm:
    /// `fae stats --dir DIR` merges the workers' files).
    pub dir: Option<std::path::PathBuf>,
    /// How often the snapshot file is rewritten, milliseconds.
    pub interval_ms: u64,
    /// Keep a latency histogram per route node (every route with children), at two clock
    /// reads per node per call; off, routes keep counters only.
    pub route_latency: bool,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            dir: None,
            interval_ms: 1000,
            route_latency: false,
        }
    }
}

/// What happens to the keys of a server whose breaker is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDown {
    /// Its keys fail fast (`tko`); nothing rehashes, so no stale data when it returns.
    #[default]
    FailFast,
    /// Take it off the ring while open: its keys go to the other servers (twemproxy
    /// `auto_eject_hosts`, libmemcached `REMOVE_FAILED_SERVERS`). Risk: values written
    /// elsewhere meanwhile are stale or missing when it returns.
    Eject,
}

impl OnDown {
    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailFast => "fail_fast",
            Self::Eject => "eject",
        }
    }
}

/// Heartbeats, the circuit breaker and the supervisor (config `health`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Idle connections unused this long get a `mn`/`version` heartbeat, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Consecutive soft failures (timeouts, resets) that open a breaker.
    pub tko_soft_threshold: u32,
    /// First probe delay after a breaker opens, milliseconds (× 1.5 per failed probe).
    pub probe_initial_ms: u64,
    /// Longest probe delay, milliseconds. When a config leaves it out: the default, or
    /// `probe_initial_ms` if that is longer (a config written when the default was 10 000 ms
    /// and sets only `probe_initial_ms` stays valid).
    #[serde(default = "probe_max_unset")]
    pub probe_max_ms: u64,
    /// Trial requests a half-open breaker admits; that many successes close it.
    pub half_open_requests: u32,
    /// No breaker opens if that would leave more than this fraction of its pool open.
    pub max_tko_fraction: f64,
    /// Idle connections unused this long are closed, milliseconds (0: never).
    pub max_idle_ms: u64,
    /// Connections older than this (jittered −20 %) are closed when idle, milliseconds (0: never).
    pub max_age_ms: u64,
    /// Run probes and heartbeats on a supervisor thread (started on first use). When false,
    /// requests run due probes and sweeps inline, for environments that forbid threads.
    pub background: bool,
}

/// `probe_max_ms` left out of a config: replaced at load (see [`HealthConfig::probe_max_ms`]).
pub(crate) const PROBE_MAX_UNSET: u64 = u64::MAX;

fn probe_max_unset() -> u64 {
    PROBE_MAX_UNSET
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: defaults::HEARTBEAT_INTERVAL_MS,
            tko_soft_threshold: defaults::TKO_SOFT_THRESHOLD,
            probe_initial_ms: defaults::PROBE_INITIAL_MS,
            probe_max_ms: defaults::PROBE_MAX_MS,
            half_open_requests: defaults::HALF_OPEN_REQUESTS,
            max_tko_fraction: defaults::MAX_TKO_FRACTION,
            max_idle_ms: defaults::MAX_IDLE_MS,
            max_age_ms: defaults::MAX_AGE_MS,
            background: true,
        }
    }
}

/// One pool: servers that share a placement.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The servers, in config order (order matters for mcrouter modes).
    pub servers: Vec<Node>,
    /// Placement compatibility mode (unused when `buckets` is set).
    pub mode: Mode,
    /// Placement by a versioned bucket map instead of `mode` ([`crate::placement::vbucket`]);
    /// a discovery snapshot's map replaces it when its version is not lower.
    pub buckets: Option<BucketsSpec>,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Connections per server per process.
    pub max_connections: usize,
    /// Allow keys with spaces or control bytes (meta protocol only; sent base64-encoded).
    pub binary_keys: bool,
    /// What happens to a down server's keys.
    pub on_down: OnDown,
    /// Switched off: every request fails fast with `disabled`, without I/O (graceful degrade).
    pub disabled: bool,
    /// Writes (set/add/replace/append/prepend/cas, incr/decr, touch) are answered locally as
    /// not stored and counted; reads and deletes still go to the servers (graceful degrade).
    pub read_only: bool,
    /// TLS and login to the servers (`tls`, `auth`: the pool's own, else the top-level ones),
    /// loaded with the config.
    pub security: crate::tls::Security,
}

/// Connect and request deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP connect timeout, milliseconds.
    #[serde(default = "connect_ms")]
    pub connect_ms: u64,
    /// Deadline for one request, from the call to its complete reply, milliseconds.
    #[serde(default = "io_ms")]
    pub io_ms: u64,
}

fn connect_ms() -> u64 {
    defaults::CONNECT_MS
}
fn io_ms() -> u64 {
    defaults::IO_MS
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: defaults::CONNECT_MS,
            io_ms: defaults::IO_MS,
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Mode::from_name(&s).ok_or_else(|| {
            let names: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
            de::Error::custom(format!(
                "unknown mode \"{s}\"; expected one of {}",
                names.join(", ")
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "meta" => Ok(Protocol::Meta),
            "text" | "ascii" => Ok(Protocol::Text),
            s => Err(de::Error::custom(format!(
                "unknown protocol \"{s}\"; expected meta or text"
            ))),
        }
    }
}

/// What every pool's connections are built from besides the pool's own section: the
/// `timeouts`, `health` and `max_value_size` of the config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolShared {
    /// Connect and request deadlines.
    pub timeouts: Timeouts,
    /// Heartbeats, breaker, supervisor.
    pub health: HealthConfig,
    /// Largest value accepted.
    pub max_value_size: usize,
}
