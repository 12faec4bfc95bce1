//! The configuration schema: one schema from a JSON or TOML file, a Python dict or a PHP array.
//!
//! ```json
//! { "pools": { "main": { "servers": ["10.0.0.1:11211", "10.0.0.2:11211:2",
//!                                    { "addr": "10.0.0.3:11211", "weight": 1 }],
//!                        "mode": "libmemcached", "protocol": "meta", "max_connections": 8 } },
//!   "route": "main",
//!   "timeouts": { "connect_ms": 100, "io_ms": 250 },
//!   "max_value_size": 1048576 }
//! ```
//!
//! Shorthand: a top-level `"servers"` (plus pool fields such as `"mode"`) means one pool named
//! `default` and `"route": "default"`. Unknown keys are errors naming the key's path
//! (`pools.main.severs: unknown field …`). Field names are the contract: add fields, never
//! rename them. Defaults live in [`defaults`], in one place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::addr::{Node, parse_server};
use crate::dist::Mode;
use crate::error::{Error, Reason, Result};
use crate::protocol::Protocol;

mod route;
pub use route::{FailoverOn, HedgeAfter, MigratePhase, ReadPolicy, RouteConfig, WritePolicy};

/// Every default, with its unit, in one place.
pub mod defaults {
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
    /// Longest probe delay, milliseconds.
    pub const PROBE_MAX_MS: u64 = 10_000;
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
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Named pools of servers.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Where requests go.
    pub route: RouteConfig,
    /// Connect and request deadlines.
    pub timeouts: Timeouts,
    /// Largest value accepted, in bytes; larger values fail before any I/O.
    pub max_value_size: usize,
    /// Heartbeats, the circuit breaker and the supervisor.
    pub health: HealthConfig,
    /// Where stats are exported.
    pub stats: StatsConfig,
    /// Reloading from the config file.
    pub reload: ReloadConfig,
    /// Server lists from a topology snapshot file (`fae watch` writes one).
    pub discovery: DiscoveryConfig,
    /// Leases, `get_or_set` and request coalescing.
    pub stampede: StampedeConfig,
    /// The file this config was read from ([`Config::from_file`]); a client built from it
    /// watches it for changes. Not a config key.
    pub source: Option<std::path::PathBuf>,
}

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
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            dir: None,
            interval_ms: 1000,
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
    /// Longest probe delay, milliseconds.
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
    /// Placement compatibility mode.
    pub mode: Mode,
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

/// A server entry: `"host:port"`, `"host:port:weight"`, `"host"` (port 11211), `"[::1]:11211"`,
/// a Unix-domain socket path `"/run/memcached.sock"`, or `{ "addr": "host:port", "weight": 2 }`
/// (the way to weight a socket server: `{ "addr": "/run/memcached.sock", "weight": 2 }`; its
/// optional `"port"` is the port the replaced client hashes for it, see [`Node`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServerEntry(Node);

impl<'de> Deserialize<'de> for ServerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Obj(Obj),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Obj {
            addr: String,
            weight: Option<u32>,
            port: Option<u16>,
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected \"host:port[:weight]\", \"/socket/path\" or {\"addr\": \"host:port\", \"weight\": n}",
            )
        })?;
        let node = match raw {
            Raw::Str(s) => parse_server(&s),
            Raw::Obj(o) => {
                let plain = !o.addr.starts_with('[') && !o.addr.starts_with('/');
                if plain && o.addr.matches(':').count() > 1 {
                    return Err(de::Error::custom(
                        "\"addr\" takes host:port; give the weight in \"weight\"",
                    ));
                }
                parse_server(&o.addr).and_then(|mut n| {
                    n.weight = o.weight.unwrap_or(1).max(1);
                    if let Some(port) = o.port {
                        // A socket server's port is only hashed (see `addr::Node`); a TCP
                        // server's port belongs in "addr".
                        if n.unix_path().is_none() {
                            return Err("\"port\" is for a socket path's placement; give a TCP port in \"addr\"".to_string());
                        }
                        n.port = port;
                    }
                    Ok(n)
                })
            }
        }
        .map_err(de::Error::custom)?;
        Ok(ServerEntry(node))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    servers: Vec<ServerEntry>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default = "max_connections")]
    max_connections: usize,
    #[serde(default)]
    binary_keys: bool,
    #[serde(default)]
    on_down: OnDown,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    read_only: bool,
}

fn max_connections() -> usize {
    defaults::MAX_CONNECTIONS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    pools: Option<BTreeMap<String, RawPool>>,
    route: Option<RouteConfig>,
    // The `servers` shorthand and the pool fields that may accompany it.
    servers: Option<Vec<ServerEntry>>,
    mode: Option<Mode>,
    protocol: Option<Protocol>,
    max_connections: Option<usize>,
    binary_keys: Option<bool>,
    on_down: Option<OnDown>,
    disabled: Option<bool>,
    read_only: Option<bool>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    stats: StatsConfig,
    #[serde(default)]
    reload: ReloadConfig,
    #[serde(default)]
    discovery: DiscoveryConfig,
    #[serde(default)]
    stampede: StampedeConfig,
    #[serde(default = "max_value_size")]
    max_value_size: usize,
}

fn max_value_size() -> usize {
    defaults::MAX_VALUE_SIZE
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::with_detail(Reason::InvalidConfig, msg)
}

impl Config {
    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Config> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Config> {
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Build from an in-memory value (what the Python and PHP bindings convert dicts and
    /// arrays into).
    pub fn from_value(value: serde_json::Value) -> Result<Config> {
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Read a file: TOML if its name ends in `.toml`, JSON otherwise.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            Self::from_toml(&text)
        } else {
            Self::from_json(&text)
        };
        let mut cfg = parsed
            .map_err(|e| invalid(format!("{}: {}", path.display(), e.detail().unwrap_or(""))))?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// One pool named `default` with these servers (`host:port[:weight]`) and mode.
    pub fn with_servers<S: AsRef<str>>(servers: &[S], mode: Mode) -> Result<Config> {
        let servers = servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_server(s.as_ref()).map_err(|e| invalid(format!("servers[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let pool = PoolConfig {
            servers,
            mode,
            protocol: Protocol::default(),
            max_connections: defaults::MAX_CONNECTIONS,
            binary_keys: false,
            on_down: OnDown::default(),
            disabled: false,
            read_only: false,
        };
        let cfg = Config {
            pools: BTreeMap::from([(defaults::POOL.to_string(), pool)]),
            route: RouteConfig::Pool {
                pool: defaults::POOL.to_string(),
            },
            timeouts: Timeouts::default(),
            max_value_size: defaults::MAX_VALUE_SIZE,
            health: HealthConfig::default(),
            stats: StatsConfig::default(),
            reload: ReloadConfig::default(),
            discovery: DiscoveryConfig::default(),
            stampede: StampedeConfig::default(),
            source: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_raw(raw: RawConfig) -> Result<Config> {
        let mut pools = BTreeMap::new();
        match (raw.servers, raw.pools) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "servers: give either top-level \"servers\" or \"pools\", not both",
                ));
            }
            // No server at all: the route alone (`local`), or the embedded in-process cache.
            (None, None) => {}
            (Some(servers), None) => {
                let pool = RawPool {
                    servers,
                    mode: raw.mode.unwrap_or_default(),
                    protocol: raw.protocol.unwrap_or_default(),
                    max_connections: raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
                    binary_keys: raw.binary_keys.unwrap_or(false),
                    on_down: raw.on_down.unwrap_or_default(),
                    disabled: raw.disabled.unwrap_or(false),
                    read_only: raw.read_only.unwrap_or(false),
                };
                pools.insert(defaults::POOL.to_string(), pool);
            }
            (None, Some(p)) => {
                for (field, given) in [
                    ("mode", raw.mode.is_some()),
                    ("protocol", raw.protocol.is_some()),
                    ("max_connections", raw.max_connections.is_some()),
                    ("binary_keys", raw.binary_keys.is_some()),
                    ("on_down", raw.on_down.is_some()),
                    ("disabled", raw.disabled.is_some()),
                    ("read_only", raw.read_only.is_some()),
                ] {
                    if given {
                        return Err(invalid(format!(
                            "{field}: top-level pool fields go with \"servers\"; with \"pools\", set pools.<name>.{field}"
                        )));
                    }
                }
                pools = p;
            }
        }
        let route = match raw.route {
            Some(r) => r,
            None if pools.is_empty() => RouteConfig::Local {
                max_items: defaults::LOCAL_MAX_ITEMS,
                max_bytes: defaults::LOCAL_MAX_BYTES,
                ttl_ms: None,
                route: None,
            },
            None if pools.len() == 1 => RouteConfig::Pool {
                pool: pools.keys().next().cloned().unwrap_or_default(),
            },
            None => {
                return Err(invalid(
                    "route: several pools are configured; say which one requests go to",
                ));
            }
        };
        let pools = pools
            .into_iter()
            .map(|(name, p)| {
                let pool = PoolConfig {
                    servers: p.servers.into_iter().map(|s| s.0).collect(),
                    mode: p.mode,
                    protocol: p.protocol,
                    max_connections: p.max_connections,
                    binary_keys: p.binary_keys,
                    on_down: p.on_down,
                    disabled: p.disabled,
                    read_only: p.read_only,
                };
                (name, pool)
            })
            .collect();
        let cfg = Config {
            pools,
            route,
            timeouts: raw.timeouts,
            max_value_size: raw.max_value_size,
            health: raw.health,
            stats: raw.stats,
            reload: raw.reload,
            discovery: raw.discovery,
            stampede: raw.stampede,
            source: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// This config with the server lists of `topology` for the pools it names (pools the
    /// config does not have are ignored). Errors name the snapshot's pool and server.
    pub fn with_topology(&self, topology: &crate::discovery::Topology) -> Result<Config> {
        let mut cfg = self.clone();
        for (name, servers) in &topology.pools {
            let Some(pool) = cfg.pools.get_mut(name) else {
                log::debug!(target: "fae", "discovery: pool \"{name}\" is not in the config; ignored");
                continue;
            };
            pool.servers = servers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    parse_server(s)
                        .map_err(|e| invalid(format!("discovery: pools.{name}[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check cross-field rules; errors name the path.
    fn validate(&self) -> Result<()> {
        for (name, p) in &self.pools {
            if p.servers.is_empty() {
                return Err(invalid(format!(
                    "pools.{name}.servers: a pool needs at least one server"
                )));
            }
            if p.max_connections == 0 {
                return Err(invalid(format!(
                    "pools.{name}.max_connections: must be at least 1"
                )));
            }
            if p.binary_keys && p.protocol == Protocol::Text {
                return Err(invalid(format!(
                    "pools.{name}.binary_keys: binary keys need the meta protocol (\"protocol\": \"meta\")"
                )));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, s) in p.servers.iter().enumerate() {
                // By address: a socket path is one server whatever port it is hashed with.
                if !seen.insert(s.addr()) {
                    return Err(invalid(format!(
                        "pools.{name}.servers[{i}]: {} is listed twice",
                        s.addr()
                    )));
                }
            }
        }
        self.route
            .check("route", &|p| self.pools.contains_key(p))
            .map_err(invalid)?;
        if self.timeouts.io_ms == 0 || self.timeouts.connect_ms == 0 {
            return Err(invalid("timeouts: connect_ms and io_ms must be at least 1"));
        }
        if self.max_value_size == 0 {
            return Err(invalid("max_value_size: must be at least 1"));
        }
        let st = &self.stampede;
        if st.lease_ttl_s == 0 || st.lease_ttl_s > crate::route::RELATIVE_TTL_MAX {
            // 0 would make the stub never expire: a dead winner would block the key forever.
            return Err(invalid(
                "stampede.lease_ttl_s: must be 1 .. 2592000 (30 days) seconds",
            ));
        }
        let h = &self.health;
        let checks = [
            (
                h.heartbeat_interval_ms >= 1,
                "health.heartbeat_interval_ms: must be at least 1",
            ),
            (
                h.tko_soft_threshold >= 1,
                "health.tko_soft_threshold: must be at least 1",
            ),
            (
                h.probe_max_ms >= 1,
                "health.probe_max_ms: must be at least 1",
            ),
            (
                h.probe_initial_ms <= h.probe_max_ms,
                "health.probe_initial_ms: must not exceed probe_max_ms",
            ),
            (
                h.half_open_requests >= 1,
                "health.half_open_requests: must be at least 1",
            ),
            (
                (0.0..=1.0).contains(&h.max_tko_fraction),
                "health.max_tko_fraction: must be between 0 and 1",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(invalid(*msg));
        }
        if let Some(l) = &self.stats.listen {
            if !self.health.background {
                return Err(invalid(
                    "stats.listen: needs health.background (the supervisor thread serves it)",
                ));
            }
            if l.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(invalid(format!(
                    "stats.listen: expected host:port, got \"{l}\""
                )));
            }
        }
        if self.stats.interval_ms == 0 {
            return Err(invalid("stats.interval_ms: must be at least 1"));
        }
        Ok(())
    }
}

fn path_error<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> Error {
    let outer = e.path().to_string();
    let inner = e.into_inner().to_string();
    // A nested route reports the path inside it (see `route::NESTED`): join the two.
    let (sub, msg) = route::split_nested(&inner);
    let path = match (outer.as_str(), sub) {
        (p, "") => p.to_string(),
        ("." | "", q) => q.to_string(),
        (p, q) if q.starts_with('[') => format!("{p}{q}"),
        (p, q) => format!("{p}.{q}"),
    };
    let inner = msg.to_string();
    if path == "." || path.is_empty() {
        invalid(inner)
    } else {
        invalid(format!("{path}: {inner}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::from_json(json)
            .unwrap_err()
            .detail()
            .unwrap()
            .to_string()
    }

    #[test]
    fn shorthand_makes_one_default_pool() {
        let c = Config::from_json(
            r#"{"servers": ["a:1", "b:2:3", {"addr": "c:4", "weight": 5}], "mode": "jump"}"#,
        )
        .unwrap();
        let p = &c.pools["default"];
        assert_eq!(p.mode, Mode::Jump);
        assert_eq!(
            p.servers[1],
            Node {
                host: "b".into(),
                port: 2,
                weight: 3
            }
        );
        assert_eq!(p.servers[2].weight, 5);
        assert_eq!(
            c.route,
            RouteConfig::Pool {
                pool: "default".into()
            }
        );
        assert_eq!(c.timeouts, Timeouts::default());
    }

    #[test]
    fn health_section_and_on_down() {
        let c = Config::from_json(
            r#"{"servers": ["a:1", "b:2"], "on_down": "eject",
                "health": {"tko_soft_threshold": 5, "probe_initial_ms": 10, "background": false}}"#,
        )
        .unwrap();
        assert_eq!(c.pools["default"].on_down, OnDown::Eject);
        assert_eq!(c.health.tko_soft_threshold, 5);
        assert_eq!(c.health.probe_initial_ms, 10);
        assert!(!c.health.background);
        assert_eq!(
            c.health.probe_max_ms,
            defaults::PROBE_MAX_MS,
            "unset fields keep defaults"
        );
        assert!(
            err(r#"{"servers": ["a:1"], "on_down": "rehash"}"#)
                .starts_with("on_down: unknown variant")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "health": {"probe_initial_ms": 9, "probe_max_ms": 5}}"#)
                .starts_with("health.probe_initial_ms")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "health": {"max_tko_fraction": 2}}"#)
                .starts_with("health.max_tko_fraction")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "health": {"tko": 1}}"#)
                .starts_with("health.tko: unknown field")
        );
    }

    #[test]
    fn pools_and_route() {
        let c = Config::from_json(
            r#"{"pools": {"main": {"servers": ["10.0.0.1:11211"], "protocol": "text"}},
                "route": {"type": "pool", "pool": "main"}, "timeouts": {"io_ms": 50}}"#,
        )
        .unwrap();
        assert_eq!(c.pools["main"].protocol, Protocol::Text);
        assert_eq!(c.timeouts.io_ms, 50);
        assert_eq!(c.timeouts.connect_ms, defaults::CONNECT_MS);
    }

    #[test]
    fn toml_reads_the_same_schema() {
        let c = Config::from_toml(
            "servers = [\"127.0.0.1:11211\"]\nmode = \"pymemcache\"\n[timeouts]\nio_ms = 9\n",
        )
        .unwrap();
        assert_eq!(c.pools["default"].mode, Mode::Pymemcache);
        assert_eq!(c.timeouts.io_ms, 9);
    }

    #[test]
    fn unknown_keys_name_their_path() {
        assert!(
            err(r#"{"pools": {"main": {"severs": []}}}"#)
                .starts_with("pools.main.severs: unknown field `severs`")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "timeouts": {"io": 1}}"#)
                .starts_with("timeouts.io: unknown field `io`")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "mode": "ketama"}"#)
                .starts_with("mode: unknown mode \"ketama\"")
        );
        assert_eq!(
            err(r#"{"servers": ["a:1"], "route": "x"}"#),
            "route.pool: unknown pool \"x\""
        );
        assert!(err(r#"{"servers": ["a:0"]}"#).starts_with("servers[0]: bad server \"a:0\""));
        assert!(err(r#"{"servers": ["a:1", "a:1"]}"#).contains("listed twice"));
        assert!(err(r#"{"servers": []}"#).contains("at least one server"));
        assert!(
            err(r#"{"pools": {"a": {"servers": ["x:1"]}}, "mode": "jump"}"#).starts_with("mode:")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "protocol": "text", "binary_keys": true}"#)
                .contains("meta")
        );
    }

    #[test]
    fn socket_servers() {
        let c = Config::from_json(
            r#"{"servers": ["/tmp/a.sock", {"addr": "/tmp/b.sock", "weight": 2, "port": 11211}, "h:1"]}"#,
        )
        .unwrap();
        let s = &c.pools["default"].servers;
        assert_eq!(s[0], Node::unix("/tmp/a.sock"));
        assert_eq!(
            (s[1].host.as_str(), s[1].port, s[1].weight),
            ("/tmp/b.sock", 11211, 2)
        );
        assert_eq!(s[1].addr(), "/tmp/b.sock");
        assert!(
            err(r#"{"servers": [{"addr": "h:1", "port": 2}]}"#)
                .contains("\"port\" is for a socket")
        );
        assert!(
            err(r#"{"servers": ["/tmp/a.sock", {"addr": "/tmp/a.sock", "port": 11211}]}"#)
                .contains("listed twice")
        );
        assert!(err(r#"{"servers": ["unix:relative"]}"#).contains("absolute"));
    }
}
