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
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::addr::{Node, parse_server};
use crate::error::{Error, Reason, Result};
use crate::placement::Mode;
use crate::placement::vbucket::{BucketMap, BucketsSpec};
use crate::protocol::Protocol;
use crate::route::schema::split_nested;
use crate::tls::{Auth, AuthSection, Security, Tls, TlsSection};

pub use crate::route::RouteConfig;
pub use crate::route::failover::FailoverOn;
pub use crate::route::migrate::MigratePhase;
pub use crate::route::replicated::{HedgeAfter, ReadPolicy, WritePolicy};

/// The upper bounds of numeric settings (checked by `Config::validate`; README "Configuration").
pub mod limits {
    /// Connections per server per process.
    pub const MAX_CONNECTIONS: u64 = 1024;
    /// Any `_ms` duration: one day.
    pub const MAX_DURATION_MS: u64 = 86_400_000;
    /// The largest value memcached itself can store (`-I 1024m`).
    pub const MAX_VALUE_SIZE: u64 = 1 << 30;
    /// Counts such as `tko_soft_threshold` and `half_open_requests`.
    pub const MAX_COUNT: u64 = 1_000_000;
    /// Nesting of objects and arrays in a config document, counted the same from JSON, TOML,
    /// a Python dict or a PHP array (about 30 levels of routes: each adds an object and a
    /// `children` array). Deeper documents are `invalid_config` before anything recurses.
    pub const MAX_DEPTH: usize = 64;
}

fn too_deep() -> Error {
    invalid(format!(
        "config nests objects and arrays deeper than {} levels",
        limits::MAX_DEPTH
    ))
}

/// Depth of `{`/`[` nesting in JSON (or TOML inline) text, outside strings: checked before
/// the parser recurses into it.
fn check_text_depth(text: &str) -> Result<()> {
    let (mut depth, mut in_str, mut quote, mut escaped) = (0usize, false, b'"', false);
    for &b in text.as_bytes() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' && quote == b'"' {
                escaped = true;
            } else if b == quote {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' | b'\'' => (in_str, quote) = (true, b),
            b'{' | b'[' => {
                depth += 1;
                if depth > limits::MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The same limit over an in-memory value (what the bindings build), without recursion.
pub fn check_value_depth(value: &serde_json::Value) -> Result<()> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        let kids: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(a) => Box::new(a.iter()),
            serde_json::Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if d > limits::MAX_DEPTH {
            return Err(too_deep());
        }
        stack.extend(kids.map(|k| (k, d + 1)));
    }
    Ok(())
}

pub mod defaults;
pub(crate) mod sections;
pub use sections::{
    DiscoveryConfig, HealthConfig, OnDown, PoolConfig, PoolShared, ReloadConfig, StampedeConfig,
    StatsConfig, Timeouts,
};

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
    mode: Option<Mode>,
    #[serde(default)]
    buckets: Option<BucketsSpec>,
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
    tls: Option<TlsSection>,
    auth: Option<AuthSection>,
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
    buckets: Option<BucketsSpec>,
    protocol: Option<Protocol>,
    max_connections: Option<usize>,
    binary_keys: Option<bool>,
    on_down: Option<OnDown>,
    disabled: Option<bool>,
    read_only: Option<bool>,
    // TLS and login: for every pool that does not give its own.
    tls: Option<TlsSection>,
    auth: Option<AuthSection>,
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
    /// The sections every pool is built from besides its own (see [`PoolShared`]).
    pub fn pool_shared(&self) -> PoolShared {
        PoolShared {
            timeouts: self.timeouts,
            health: self.health,
            max_value_size: self.max_value_size,
        }
    }

    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Config> {
        check_text_depth(text)?;
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Config> {
        check_text_depth(text)?;
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Build from an in-memory value (what the Python and PHP bindings convert dicts and
    /// arrays into).
    pub fn from_value(value: serde_json::Value) -> Result<Config> {
        check_value_depth(&value)?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(path_error)?;
        Self::from_raw(raw)
    }

    /// Read a file: TOML if its name ends in `.toml`, JSON otherwise.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = crate::textfile::read(path)
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
            buckets: None,
            protocol: Protocol::default(),
            max_connections: defaults::MAX_CONNECTIONS,
            binary_keys: false,
            on_down: OnDown::default(),
            disabled: false,
            read_only: false,
            security: Security::default(),
        };
        let cfg = Config {
            pools: BTreeMap::from([(defaults::POOL.to_string(), pool)]),
            route: RouteConfig::pool(defaults::POOL),
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
                    mode: raw.mode,
                    buckets: raw.buckets,
                    protocol: raw.protocol.unwrap_or_default(),
                    max_connections: raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
                    binary_keys: raw.binary_keys.unwrap_or(false),
                    on_down: raw.on_down.unwrap_or_default(),
                    disabled: raw.disabled.unwrap_or(false),
                    read_only: raw.read_only.unwrap_or(false),
                    tls: None,
                    auth: None,
                };
                pools.insert(defaults::POOL.to_string(), pool);
            }
            (None, Some(p)) => {
                for (field, given) in [
                    ("mode", raw.mode.is_some()),
                    ("buckets", raw.buckets.is_some()),
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
            None if pools.is_empty() => RouteConfig::Local(Default::default()),
            None if pools.len() == 1 => {
                RouteConfig::pool(pools.keys().next().cloned().unwrap_or_default())
            }
            None => {
                return Err(invalid(
                    "route: several pools are configured; say which one requests go to",
                ));
            }
        };
        // `fae watch` reads these files when it connects; the config only checks the keys.
        if let Some(t) = &raw.discovery.tls {
            crate::discovery::check_tls(t, "discovery.tls")?;
        }
        if let Some(a) = &raw.discovery.auth {
            a.check("discovery.auth")?;
        }
        // Loaded once per section (so pools sharing the top-level `tls` share one TLS session
        // store); every load reads the files again, which is how a reload picks up new ones.
        let top = Security {
            tls: raw
                .tls
                .as_ref()
                .map(|t| Tls::load(t, "tls").map(Arc::new))
                .transpose()?,
            auth: raw
                .auth
                .as_ref()
                .map(|a| Auth::load(a, "auth").map(Arc::new))
                .transpose()?,
        };
        let pools = pools
            .into_iter()
            .map(|(name, p)| {
                let tls = match &p.tls {
                    Some(t) => Some(Arc::new(Tls::load(t, &format!("pools.{name}.tls"))?)),
                    None => top.tls.clone(),
                };
                let auth = match &p.auth {
                    Some(a) => Some(Arc::new(Auth::load(a, &format!("pools.{name}.auth"))?)),
                    None => top.auth.clone(),
                };
                if p.buckets.is_some() && p.mode.is_some() {
                    return Err(invalid(format!(
                        "pools.{name}.mode: a pool with \"buckets\" is placed by its bucket map; remove \"mode\" (the map's \"hash\" chooses the key hash)"
                    )));
                }
                let pool = PoolConfig {
                    servers: p.servers.into_iter().map(|s| s.0).collect(),
                    mode: p.mode.unwrap_or_default(),
                    buckets: p.buckets,
                    protocol: p.protocol,
                    max_connections: p.max_connections,
                    binary_keys: p.binary_keys,
                    on_down: p.on_down,
                    disabled: p.disabled,
                    read_only: p.read_only,
                    security: Security { tls, auth },
                };
                Ok((name, pool))
            })
            .collect::<Result<_>>()?;
        let cfg = Config {
            pools,
            route,
            timeouts: raw.timeouts,
            max_value_size: raw.max_value_size,
            health: HealthConfig {
                probe_max_ms: match raw.health.probe_max_ms {
                    sections::PROBE_MAX_UNSET => {
                        defaults::PROBE_MAX_MS.max(raw.health.probe_initial_ms)
                    }
                    ms => ms,
                },
                ..raw.health
            },
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
        for (name, spec) in &topology.buckets {
            let Some(pool) = cfg.pools.get_mut(name) else {
                log::debug!(target: "fae", "discovery: buckets of pool \"{name}\" not in the config; ignored");
                continue;
            };
            // A map never goes back: the config's own map wins when it is newer.
            if pool
                .buckets
                .as_ref()
                .is_none_or(|own| own.version <= spec.version)
            {
                pool.buckets = Some(spec.clone());
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check cross-field rules; errors name the path.
    /// Every number has a documented range (README "Configuration"), checked at load: a huge
    /// `max_connections` would size queues at startup, and a huge duration would overflow the
    /// deadline arithmetic of the first request.
    fn check_ranges(&self) -> Result<()> {
        let mut nums: Vec<(String, u64, u64, u64)> = Vec::new();
        for (name, p) in &self.pools {
            nums.push((
                format!("pools.{name}.max_connections"),
                p.max_connections as u64,
                1,
                limits::MAX_CONNECTIONS,
            ));
        }
        let h = &self.health;
        let st = &self.stampede;
        let day = limits::MAX_DURATION_MS;
        nums.extend([
            (
                "timeouts.connect_ms".into(),
                self.timeouts.connect_ms,
                1,
                day,
            ),
            ("timeouts.io_ms".into(), self.timeouts.io_ms, 1, day),
            (
                "max_value_size".into(),
                self.max_value_size as u64,
                1,
                limits::MAX_VALUE_SIZE,
            ),
            ("stampede.wait_ms".into(), st.wait_ms, 0, day),
            (
                "stampede.recache_below_s".into(),
                u64::from(st.recache_below_s),
                0,
                u64::from(crate::op::RELATIVE_TTL_MAX),
            ),
            ("reload.watch_ms".into(), self.reload.watch_ms, 0, day),
            ("stats.interval_ms".into(), self.stats.interval_ms, 1, day),
            (
                "health.heartbeat_interval_ms".into(),
                h.heartbeat_interval_ms,
                1,
                day,
            ),
            (
                "health.tko_soft_threshold".into(),
                u64::from(h.tko_soft_threshold),
                1,
                limits::MAX_COUNT,
            ),
            ("health.probe_initial_ms".into(), h.probe_initial_ms, 0, day),
            ("health.probe_max_ms".into(), h.probe_max_ms, 1, day),
            (
                "health.half_open_requests".into(),
                u64::from(h.half_open_requests),
                1,
                limits::MAX_COUNT,
            ),
            ("health.max_idle_ms".into(), h.max_idle_ms, 0, day),
            ("health.max_age_ms".into(), h.max_age_ms, 0, day),
        ]);
        match nums.into_iter().find(|(_, v, lo, hi)| v < lo || v > hi) {
            Some((name, v, lo, hi)) => Err(invalid(format!(
                "{name}: {v} is out of range ({lo} ..= {hi})"
            ))),
            None => Ok(()),
        }
    }

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
            if let Some(spec) = &p.buckets {
                BucketMap::from_spec(spec, &p.servers)
                    .map_err(|e| invalid(format!("pools.{name}.buckets.{e}")))?;
                if p.on_down == OnDown::Eject {
                    return Err(invalid(format!(
                        "pools.{name}.on_down: a pool placed by buckets never serves a key from another server; \"eject\" is not available (use fail_fast or a failover route)"
                    )));
                }
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(tls) = &p.security.tls
                && !tls.has_server_name()
                && let Some(i) = p.servers.iter().position(|s| s.unix_path().is_some())
            {
                return Err(invalid(format!(
                    "pools.{name}.servers[{i}]: TLS to a socket path needs tls.server_name (the name its certificate carries)"
                )));
            }
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
        if st.lease_ttl_s == 0 || st.lease_ttl_s > crate::op::RELATIVE_TTL_MAX {
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
        self.check_ranges()?;
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
    // A nested route reports the path inside it (see `route::schema::NESTED`): join the two.
    let (sub, msg) = split_nested(&inner);
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
            RouteConfig::Pool(crate::route::pool::Config {
                pool: "default".into()
            })
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
        // probe_max_ms left out with a longer probe_initial_ms (valid when the default was
        // 10 000 ms): the first delay is the longest.
        let c = Config::from_json(r#"{"servers": ["a:1"], "health": {"probe_initial_ms": 5000}}"#)
            .unwrap();
        assert_eq!(c.health.probe_max_ms, 5000);
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

    /// One nesting limit for every entry point: JSON and TOML text, and in-memory values.
    #[test]
    fn depth_is_limited_everywhere_alike() {
        let nest = |levels: usize| -> String {
            let mut route = String::from("\"default\"");
            for _ in 0..levels {
                route = format!(r#"{{"type": "failover", "children": [{route}]}}"#);
            }
            format!(r#"{{"servers": ["a:1"], "route": {route}}}"#)
        };
        // 1 (top) + 1 (route object) + 2 per further failover level.
        assert!(Config::from_json(&nest(31)).is_ok());
        let e = err(&nest(32));
        assert_eq!(e, "config nests objects and arrays deeper than 64 levels");
        let value: serde_json::Value = serde_json::from_str(&nest(31)).unwrap();
        assert!(Config::from_value(value).is_ok());
        let value: serde_json::Value = serde_json::from_str(&nest(32)).unwrap();
        let e = Config::from_value(value).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidConfig);
        // Far deeper than any parser recursion: refused before parsing, no stack overflow.
        let e = err(&"[".repeat(1_000_000));
        assert!(e.contains("deeper than 64"), "{e}");
        assert!(Config::from_toml(&format!("x = {}", "[".repeat(100_000))).is_err());
        // Brackets inside strings do not count.
        let s = format!(r#"{{"servers": ["a:1"], "mode": "{}"}}"#, "[".repeat(200));
        assert!(!err(&s).contains("deeper"));
    }

    /// Numbers out of their documented range are config errors naming the key, never an abort
    /// (a 2^32 `max_connections` used to size queues up front) or an overflow on first use.
    #[test]
    fn numbers_have_ranges() {
        let e = err(r#"{"servers": ["a:1"], "max_connections": 4294967296}"#);
        assert_eq!(
            e,
            "pools.default.max_connections: 4294967296 is out of range (1 ..= 1024)"
        );
        assert!(
            err(r#"{"servers": ["a:1"], "max_connections": 18446744073709551615}"#)
                .starts_with("pools.default.max_connections: 18446744073709551615 is out of range")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "timeouts": {"io_ms": 18446744073709551615}}"#)
                .starts_with("timeouts.io_ms: ")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "health": {"probe_max_ms": 9223372036854775808}}"#)
                .starts_with("health.probe_max_ms: ")
        );
        assert!(
            err(r#"{"servers": ["a:1"], "max_value_size": 1099511627776}"#)
                .starts_with("max_value_size: ")
        );
        assert!(Config::from_json(r#"{"servers": ["a:1"], "max_connections": 1024}"#).is_ok());
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
