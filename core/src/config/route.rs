//! The route tree's schema (config `route`): a serde enum tagged by `"type"`, nested freely.
//!
//! ```json
//! { "type": "failover",
//!   "children": ["main", { "type": "gutter", "pool": "gutter", "max_ttl": 10 }] }
//! ```
//!
//! A route written as a string names a pool. Errors name the path of the offending key
//! (`route.children[1].max_tries: invalid type …`); references to pools are checked by
//! [`RouteConfig::check`] (`route.children[1].pool: unknown pool "x"`). What each route does
//! per operation is documented on its implementation in `crate::route`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::error::Reason;

/// Where requests go. Written as a string, it names a pool.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RouteConfig {
    /// All keys go to one pool, placed by its mode.
    Pool {
        /// The pool's name.
        pool: String,
    },
    /// Children in order: the next one is tried when a child fails with a reason listed in
    /// `failover_on` for the operation's class. A miss is not a failure.
    Failover {
        /// The routes to try, in order.
        children: Vec<RouteConfig>,
        /// Which failure reasons move to the next child, per operation class.
        failover_on: FailoverOn,
        /// Children tried at most (default: all).
        max_tries: Option<usize>,
    },
    /// A pool whose writes have their TTL capped at `max_ttl` seconds (Facebook's gutter: a
    /// dead server's keys live briefly elsewhere and need no invalidation). With `route`, it
    /// is the failover from that route to the gutter pool.
    Gutter {
        /// The gutter pool.
        pool: String,
        /// Longest TTL stored in the gutter pool, seconds.
        max_ttl: u32,
        /// The route the gutter protects (optional: without it, use this inside a failover).
        route: Option<Box<RouteConfig>>,
        /// With `route`: which failures go to the gutter.
        failover_on: FailoverOn,
    },
    /// Replicas of every key on distinct hosts: writes to all, reads from one.
    Replicated {
        /// One route per replica (usually pools with no server in common).
        children: Vec<RouteConfig>,
        /// Or: one pool, each key on `replicas` distinct servers of it.
        pool: Option<String>,
        /// With `pool`: copies per key.
        replicas: Option<usize>,
        /// How writes are sent and which reply counts.
        write: WritePolicy,
        /// Which replica serves a read.
        read: ReadPolicy,
        /// `read: hedged`: when the second replica is asked.
        hedge_after: HedgeAfter,
        /// `read: hedged`: at most this fraction of reads may send a hedge.
        max_hedge_ratio: f64,
    },
    /// Mirror a fraction of keys to another route; its replies are dropped.
    Shadow {
        /// The route that answers.
        route: Box<RouteConfig>,
        /// The route that receives the copies.
        shadow: Box<RouteConfig>,
        /// Fraction of keys (by a SipHash of the key) that are mirrored, 0..=1.
        fraction: f64,
    },
    /// A cold route filled from a warm one: a cold miss is read from warm and added to cold.
    WarmUp {
        /// The new (cold) route that takes all writes.
        cold: Box<RouteConfig>,
        /// The route with the data.
        warm: Box<RouteConfig>,
        /// TTL of the copies when warm cannot say (text protocol), seconds (0: none).
        exptime: u32,
    },
    /// The longest matching key prefix chooses the route.
    Prefix {
        /// Prefix → route.
        routes: BTreeMap<String, RouteConfig>,
        /// Keys matching no prefix.
        default: Box<RouteConfig>,
    },
    /// The operation chooses the route.
    Operation {
        /// get, gets, gat, gats.
        get: Option<Box<RouteConfig>>,
        /// set, add, replace, append, prepend, cas.
        set: Option<Box<RouteConfig>>,
        /// delete.
        delete: Option<Box<RouteConfig>>,
        /// incr, decr.
        arith: Option<Box<RouteConfig>>,
        /// touch.
        touch: Option<Box<RouteConfig>>,
        /// Operations without a route of their own.
        default: Option<Box<RouteConfig>>,
    },
    /// Move keys from one topology to another in phases, reversibly.
    Migrate {
        /// The current topology.
        from: Box<RouteConfig>,
        /// The new topology.
        to: Box<RouteConfig>,
        /// Where the migration stands.
        phase: MigratePhase,
        /// TTL of copies forward when `from` cannot say (text protocol), seconds (0: none).
        exptime: u32,
    },
    /// An in-process LRU: the whole cache (no `route`), or a near cache in front of `route`.
    Local {
        /// Largest number of items.
        max_items: usize,
        /// Largest total size, bytes (keys + values + 160 bytes of bookkeeping per item).
        max_bytes: usize,
        /// Longest lifetime of an item, milliseconds (a near cache's staleness bound).
        ttl_ms: Option<u64>,
        /// The route behind a near cache.
        route: Option<Box<RouteConfig>>,
    },
    /// A negative cache in front of `route`: keys its plain gets found absent are answered as
    /// misses from memory for `ttl_ms`, until this process writes them.
    Negative {
        /// How long a key is remembered as absent, milliseconds (at least 1).
        ttl_ms: u64,
        /// Keys remembered at most (at least 1); the least recently used go first.
        max_keys: usize,
        /// The route whose misses are remembered.
        route: Box<RouteConfig>,
    },
}

/// Failure reasons that move a failover to its next child, per operation class. A missing
/// class keeps the default: every reason for which [`crate::Error::should_failover`] holds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FailoverOn {
    /// get, gets, gat, gats.
    pub gets: Option<Vec<Reason>>,
    /// set, add, replace, append, prepend, cas, incr, decr, touch.
    pub updates: Option<Vec<Reason>>,
    /// delete.
    pub deletes: Option<Vec<Reason>>,
}

/// How a replicated route writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Every replica, waiting for all; any failure is the reply (mcrouter AllSyncRoute).
    #[default]
    AllSync,
    /// Every replica, waiting for all; the reply a majority gave (mcrouter AllMajorityRoute).
    AllMajority,
    /// The first replica answers; the others are written in the background.
    AllAsync,
}

impl WritePolicy {
    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllSync => "all_sync",
            Self::AllMajority => "all_majority",
            Self::AllAsync => "all_async",
        }
    }
}

/// Which replica a replicated route reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicy {
    /// The first replica; the next ones on failure.
    #[default]
    First,
    /// A random replica; the next ones on failure.
    Random,
    /// The first replica; a second one after `hedge_after` without a reply.
    Hedged,
}

impl ReadPolicy {
    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Random => "random",
            Self::Hedged => "hedged",
        }
    }
}

/// When a hedged read asks the second replica.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum HedgeAfter {
    /// The primary destination's observed p95 latency (at least 1 ms).
    #[default]
    P95,
    /// A fixed delay, milliseconds.
    Ms(u64),
}

/// Where a migration stands. Deletes go to both topologies in every phase, so moving back
/// one phase (a config change) never exposes a value that was invalidated meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigratePhase {
    /// Reads and writes on `from` (deletes on both).
    FromOnly,
    /// Writes on both, reads from `from`.
    DualWrite,
    /// Writes on both, reads from `to`; a miss there is read from `from` and copied forward.
    DualWriteReadNew,
    /// Reads and writes on `to` (deletes on both).
    ToOnly,
}

impl MigratePhase {
    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FromOnly => "from_only",
            Self::DualWrite => "dual_write",
            Self::DualWriteReadNew => "dual_write_read_new",
            Self::ToOnly => "to_only",
        }
    }
}

impl RouteConfig {
    /// The route's `"type"` name.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Pool { .. } => "pool",
            Self::Failover { .. } => "failover",
            Self::Gutter { .. } => "gutter",
            Self::Replicated { .. } => "replicated",
            Self::Shadow { .. } => "shadow",
            Self::WarmUp { .. } => "warm_up",
            Self::Prefix { .. } => "prefix",
            Self::Operation { .. } => "operation",
            Self::Migrate { .. } => "migrate",
            Self::Local { .. } => "local",
            Self::Negative { .. } => "negative",
        }
    }

    /// The direct children with their path suffixes (`.children[1]`, `.cold`, …).
    pub fn children(&self) -> Vec<(String, &RouteConfig)> {
        fn b<'r>(name: &str, r: &'r RouteConfig) -> (String, &'r RouteConfig) {
            (format!(".{name}"), r)
        }
        match self {
            Self::Pool { .. } => Vec::new(),
            Self::Failover { children, .. } | Self::Replicated { children, .. } => children
                .iter()
                .enumerate()
                .map(|(i, c)| (format!(".children[{i}]"), c))
                .collect(),
            Self::Gutter { route, .. } | Self::Local { route, .. } => {
                route.iter().map(|r| b("route", r)).collect()
            }
            Self::Shadow { route, shadow, .. } => vec![b("route", route), b("shadow", shadow)],
            Self::WarmUp { cold, warm, .. } => vec![b("cold", cold), b("warm", warm)],
            Self::Prefix { routes, default } => routes
                .iter()
                .map(|(p, r)| (format!(".routes.{p}"), r))
                .chain(std::iter::once(b("default", default)))
                .collect(),
            Self::Operation {
                get,
                set,
                delete,
                arith,
                touch,
                default,
            } => [
                ("get", get),
                ("set", set),
                ("delete", delete),
                ("arith", arith),
                ("touch", touch),
                ("default", default),
            ]
            .into_iter()
            .filter_map(|(n, r)| r.as_deref().map(|r| b(n, r)))
            .collect(),
            Self::Migrate { from, to, .. } => vec![b("from", from), b("to", to)],
            Self::Negative { route, .. } => vec![b("route", route)],
        }
    }

    /// Pools this route names directly (not through children), with the key that names them.
    fn own_pools(&self) -> Vec<(&'static str, &str)> {
        match self {
            Self::Pool { pool } | Self::Gutter { pool, .. } => vec![("pool", pool)],
            Self::Replicated { pool: Some(p), .. } => vec![("pool", p)],
            _ => Vec::new(),
        }
    }

    /// Check pool references and cross-field rules of the whole tree; errors start with
    /// `path` (`route.children[1].pool: unknown pool "x"`).
    pub fn check(&self, path: &str, pool_exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
        for (key, pool) in self.own_pools() {
            if !pool_exists(pool) {
                return Err(format!("{path}.{key}: unknown pool \"{pool}\""));
            }
        }
        let fail = |key: &str, why: &str| Err(format!("{path}.{key}: {why}"));
        match self {
            Self::Failover {
                children,
                max_tries,
                ..
            } => {
                if children.is_empty() {
                    return fail("children", "a failover needs at least one child");
                }
                if *max_tries == Some(0) {
                    return fail("max_tries", "must be at least 1");
                }
            }
            Self::Replicated {
                children,
                pool,
                replicas,
                max_hedge_ratio,
                ..
            } => match (children.is_empty(), pool) {
                (true, None) => {
                    return fail(
                        "children",
                        "give the replicas as \"children\" or as \"pool\" + \"replicas\"",
                    );
                }
                (false, Some(_)) => {
                    return fail("pool", "give either \"children\" or \"pool\", not both");
                }
                _ if pool.is_some() && replicas.is_none_or(|r| r < 1) => {
                    return fail("replicas", "with \"pool\", give \"replicas\" (at least 1)");
                }
                _ if pool.is_none() && replicas.is_some() => {
                    return fail("replicas", "\"replicas\" goes with \"pool\"");
                }
                _ if !(0.0..=1.0).contains(max_hedge_ratio) => {
                    return fail("max_hedge_ratio", "must be between 0 and 1");
                }
                _ => {}
            },
            Self::Shadow { fraction, .. } if !(0.0..=1.0).contains(fraction) => {
                return fail("fraction", "must be between 0 and 1");
            }
            Self::Operation { .. } => {
                let Self::Operation {
                    get,
                    set,
                    delete,
                    arith,
                    touch,
                    default,
                } = self
                else {
                    unreachable!()
                };
                let all = [get, set, delete, arith, touch].iter().all(|r| r.is_some());
                if default.is_none() && !all {
                    return fail(
                        "default",
                        "give \"default\" unless get, set, delete, arith and touch all have a route",
                    );
                }
            }
            Self::Local {
                max_items,
                max_bytes,
                ..
            } if *max_items == 0 && *max_bytes == 0 => {
                return fail("max_items", "give max_items or max_bytes (at least 1)");
            }
            Self::Negative { ttl_ms: 0, .. } => return fail("ttl_ms", "must be at least 1"),
            Self::Negative { max_keys: 0, .. } => return fail("max_keys", "must be at least 1"),
            Self::Prefix { routes, .. } if routes.keys().any(|p| p.is_empty()) => {
                return fail(
                    "routes",
                    "an empty prefix matches everything; use \"default\"",
                );
            }
            _ => {}
        }
        for (suffix, child) in self.children() {
            child.check(&format!("{path}{suffix}"), pool_exists)?;
        }
        Ok(())
    }

    /// Every pool named anywhere in the tree.
    pub fn pools(&self, out: &mut Vec<String>) {
        for (_, p) in self.own_pools() {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
        for (_, c) in self.children() {
            c.pools(out);
        }
    }
}

impl fmt::Display for RouteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteConfig::Pool { pool } => write!(f, "pool \"{pool}\""),
            other => {
                write!(f, "{}(", other.type_name())?;
                let children = other.children();
                let pools = other.own_pools();
                let mut first = true;
                for (k, p) in pools {
                    write!(f, "{k}=\"{p}\"")?;
                    first = false;
                }
                for (suffix, c) in children {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{}={c}", suffix.trim_start_matches('.'))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Marks an error message that carries the path inside a nested route, so the outer path
/// and the inner one join into one (`route.children[1].max_tries: …`); see `config::path_error`.
pub(crate) const NESTED: char = '\u{1}';

/// `path` + `msg` as a nested-route error message.
fn nested(path: &str, msg: &str) -> String {
    // The inner message may itself be nested (a route inside a route): join the paths.
    let (inner_path, inner_msg) = split_nested(msg);
    let joined = match (path, inner_path) {
        ("" | ".", p) => p.to_string(),
        (p, "") => p.to_string(),
        (p, q) if q.starts_with('[') => format!("{p}{q}"),
        (p, q) => format!("{p}.{q}"),
    };
    format!("{NESTED}{joined}{NESTED}{inner_msg}")
}

/// Split a nested message into (path, message); ("", msg) when it is not nested.
pub(crate) fn split_nested(msg: &str) -> (&str, &str) {
    if let Some(rest) = msg.strip_prefix(NESTED)
        && let Some((p, m)) = rest.split_once(NESTED)
    {
        return (p, m);
    }
    ("", msg)
}

/// Deserialize `T` from a buffered JSON value, keeping the path of the error.
fn typed<T: for<'de> Deserialize<'de>, E: de::Error>(v: Value) -> Result<T, E> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        E::custom(nested(&path, &msg))
    })
}

fn default_fraction() -> f64 {
    1.0
}

fn default_hedge_ratio() -> f64 {
    0.05
}

fn default_local_items() -> usize {
    super::defaults::LOCAL_MAX_ITEMS
}

fn default_local_bytes() -> usize {
    super::defaults::LOCAL_MAX_BYTES
}

fn default_negative_ttl_ms() -> u64 {
    super::defaults::NEGATIVE_TTL_MS
}

fn default_negative_keys() -> usize {
    super::defaults::NEGATIVE_MAX_KEYS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverRaw {
    children: Vec<RouteConfig>,
    #[serde(default)]
    failover_on: FailoverOn,
    max_tries: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GutterRaw {
    pool: String,
    max_ttl: u32,
    route: Option<Box<RouteConfig>>,
    #[serde(default)]
    failover_on: FailoverOn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicatedRaw {
    #[serde(default)]
    children: Vec<RouteConfig>,
    pool: Option<String>,
    replicas: Option<usize>,
    #[serde(default)]
    write: WritePolicy,
    #[serde(default)]
    read: ReadPolicy,
    #[serde(default)]
    hedge_after_ms: HedgeAfter,
    #[serde(default = "default_hedge_ratio")]
    max_hedge_ratio: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowRaw {
    route: Box<RouteConfig>,
    shadow: Box<RouteConfig>,
    #[serde(default = "default_fraction")]
    fraction: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmUpRaw {
    cold: Box<RouteConfig>,
    warm: Box<RouteConfig>,
    #[serde(default)]
    exptime: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixRaw {
    routes: BTreeMap<String, RouteConfig>,
    default: Box<RouteConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationRaw {
    get: Option<Box<RouteConfig>>,
    set: Option<Box<RouteConfig>>,
    delete: Option<Box<RouteConfig>>,
    arith: Option<Box<RouteConfig>>,
    touch: Option<Box<RouteConfig>>,
    default: Option<Box<RouteConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateRaw {
    from: Box<RouteConfig>,
    to: Box<RouteConfig>,
    phase: MigratePhase,
    #[serde(default)]
    exptime: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalRaw {
    #[serde(default = "default_local_items")]
    max_items: usize,
    #[serde(default = "default_local_bytes")]
    max_bytes: usize,
    ttl_ms: Option<u64>,
    route: Option<Box<RouteConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NegativeRaw {
    #[serde(default = "default_negative_ttl_ms")]
    ttl_ms: u64,
    #[serde(default = "default_negative_keys")]
    max_keys: usize,
    route: Box<RouteConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolRaw {
    pool: String,
}

const TYPES: &[&str] = &[
    "pool",
    "failover",
    "gutter",
    "replicated",
    "shadow",
    "warm_up",
    "prefix",
    "operation",
    "migrate",
    "local",
    "negative",
];

impl<'de> Deserialize<'de> for RouteConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RouteConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pool name or a route object such as {\"type\": \"pool\", \"pool\": \"main\"}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RouteConfig, E> {
                Ok(RouteConfig::Pool {
                    pool: s.to_string(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RouteConfig, A::Error> {
                // Buffer the object: "type" may come after the fields it governs.
                let mut fields = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.insert(k, v);
                }
                let ty = match fields.remove("type") {
                    Some(Value::String(t)) => t,
                    Some(_) => return Err(de::Error::custom(nested("type", "expected a string"))),
                    None => {
                        return Err(de::Error::custom(format!(
                            "a route object needs \"type\": one of {}",
                            TYPES.join(", ")
                        )));
                    }
                };
                let v = Value::Object(fields);
                Ok(match ty.as_str() {
                    "pool" => {
                        let r: PoolRaw = typed(v)?;
                        RouteConfig::Pool { pool: r.pool }
                    }
                    "failover" => {
                        let r: FailoverRaw = typed(v)?;
                        RouteConfig::Failover {
                            children: r.children,
                            failover_on: r.failover_on,
                            max_tries: r.max_tries,
                        }
                    }
                    "gutter" => {
                        let r: GutterRaw = typed(v)?;
                        RouteConfig::Gutter {
                            pool: r.pool,
                            max_ttl: r.max_ttl,
                            route: r.route,
                            failover_on: r.failover_on,
                        }
                    }
                    "replicated" => {
                        let r: ReplicatedRaw = typed(v)?;
                        RouteConfig::Replicated {
                            children: r.children,
                            pool: r.pool,
                            replicas: r.replicas,
                            write: r.write,
                            read: r.read,
                            hedge_after: r.hedge_after_ms,
                            max_hedge_ratio: r.max_hedge_ratio,
                        }
                    }
                    "shadow" => {
                        let r: ShadowRaw = typed(v)?;
                        RouteConfig::Shadow {
                            route: r.route,
                            shadow: r.shadow,
                            fraction: r.fraction,
                        }
                    }
                    "warm_up" => {
                        let r: WarmUpRaw = typed(v)?;
                        RouteConfig::WarmUp {
                            cold: r.cold,
                            warm: r.warm,
                            exptime: r.exptime,
                        }
                    }
                    "prefix" => {
                        let r: PrefixRaw = typed(v)?;
                        RouteConfig::Prefix {
                            routes: r.routes,
                            default: r.default,
                        }
                    }
                    "operation" => {
                        let r: OperationRaw = typed(v)?;
                        RouteConfig::Operation {
                            get: r.get,
                            set: r.set,
                            delete: r.delete,
                            arith: r.arith,
                            touch: r.touch,
                            default: r.default,
                        }
                    }
                    "migrate" => {
                        let r: MigrateRaw = typed(v)?;
                        RouteConfig::Migrate {
                            from: r.from,
                            to: r.to,
                            phase: r.phase,
                            exptime: r.exptime,
                        }
                    }
                    "local" => {
                        let r: LocalRaw = typed(v)?;
                        RouteConfig::Local {
                            max_items: r.max_items,
                            max_bytes: r.max_bytes,
                            ttl_ms: r.ttl_ms,
                            route: r.route,
                        }
                    }
                    "negative" => {
                        let r: NegativeRaw = typed(v)?;
                        RouteConfig::Negative {
                            ttl_ms: r.ttl_ms,
                            max_keys: r.max_keys,
                            route: r.route,
                        }
                    }
                    other => {
                        return Err(de::Error::custom(nested(
                            "type",
                            &format!(
                                "unknown route type \"{other}\"; expected one of {}",
                                TYPES.join(", ")
                            ),
                        )));
                    }
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Name(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected milliseconds or \"p95\""))?
        {
            Raw::Ms(ms) => Ok(HedgeAfter::Ms(ms.max(1))),
            Raw::Name(s) if s == "p95" => Ok(HedgeAfter::P95),
            Raw::Name(s) => Err(de::Error::custom(format!(
                "expected milliseconds or \"p95\", got \"{s}\""
            ))),
        }
    }
}

/// Reason names, as in errors and stats (`timeout`, `connect_refused`, `tko`, …).
fn reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Reason>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            Reason::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == n)
                .ok_or_else(|| {
                    let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                    de::Error::custom(format!(
                        "unknown reason \"{n}\"; expected one of {}",
                        all.join(", ")
                    ))
                })
        })
        .collect()
}

impl<'de> Deserialize<'de> for FailoverOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PerClass {
            #[serde(default, deserialize_with = "opt_reasons")]
            gets: Option<Vec<Reason>>,
            #[serde(default, deserialize_with = "opt_reasons")]
            updates: Option<Vec<Reason>>,
            #[serde(default, deserialize_with = "opt_reasons")]
            deletes: Option<Vec<Reason>>,
        }
        fn opt_reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Reason>>, D::Error> {
            reasons(d).map(Some)
        }
        #[derive(Deserialize)]
        struct All(#[serde(deserialize_with = "reasons")] Vec<Reason>);
        // An array applies to every class; an object sets classes one by one.
        let v = Value::deserialize(d)?;
        if v.is_array() {
            let All(list) = typed(v)?;
            return Ok(FailoverOn {
                gets: Some(list.clone()),
                updates: Some(list.clone()),
                deletes: Some(list),
            });
        }
        let p: PerClass = typed(v)?;
        Ok(FailoverOn {
            gets: p.gets,
            updates: p.updates,
            deletes: p.deletes,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(json: &str) -> String {
        Config::from_json(json)
            .unwrap_err()
            .detail()
            .unwrap_or("")
            .to_string()
    }

    const POOLS: &str =
        r#""pools": {"a": {"servers": ["127.0.0.1:1"]}, "b": {"servers": ["127.0.0.1:2"]}}"#;

    fn with_route(route: &str) -> String {
        format!("{{{POOLS}, \"route\": {route}}}")
    }

    #[test]
    fn nested_routes_parse() {
        let c = Config::from_json(&with_route(
            r#"{"type": "failover", "max_tries": 2, "failover_on": ["timeout", "tko"],
                "children": ["a", {"type": "gutter", "pool": "b", "max_ttl": 10}]}"#,
        ))
        .unwrap();
        assert_eq!(c.route.type_name(), "failover");
        assert_eq!(c.route.children().len(), 2);
        let c = Config::from_json(&with_route(
            r#"{"type": "prefix", "routes": {"user:": {"type": "replicated", "pool": "a", "replicas": 1,
                "read": "hedged", "hedge_after_ms": 5}}, "default": {"children": ["a", "b"], "type": "replicated"}}"#,
        ))
        .unwrap();
        assert_eq!(c.route.type_name(), "prefix");
    }

    #[test]
    fn errors_name_the_nested_path() {
        assert_eq!(
            err(&with_route(
                r#"{"type": "failover", "children": ["a", {"type": "pool", "pool": "x"}]}"#
            )),
            "route.children[1].pool: unknown pool \"x\""
        );
        let e = err(&with_route(
            r#"{"type": "failover", "children": ["a", {"type": "failover", "children": ["b"], "max_tries": "two"}]}"#,
        ));
        assert!(
            e.starts_with("route.children[1].max_tries: invalid type"),
            "{e}"
        );
        let e = err(&with_route(
            r#"{"type": "shadow", "route": "a", "shadow": "b", "fractoin": 1}"#,
        ));
        assert!(
            e.starts_with("route.fractoin: unknown field `fractoin`"),
            "{e}"
        );
        let e = err(&with_route(r#"{"type": "nope"}"#));
        assert!(
            e.starts_with("route.type: unknown route type \"nope\""),
            "{e}"
        );
        let e = err(&with_route(
            r#"{"type": "failover", "children": ["a"], "failover_on": ["slow"]}"#,
        ));
        assert!(
            e.starts_with("route.failover_on: unknown reason \"slow\""),
            "{e}"
        );
        let e = err(&with_route(r#"{"type": "replicated", "pool": "a"}"#));
        assert_eq!(
            e,
            "route.replicas: with \"pool\", give \"replicas\" (at least 1)"
        );
        let e = err(&with_route(r#"{"type": "operation", "get": "a"}"#));
        assert!(e.starts_with("route.default: give \"default\""), "{e}");
        let e = err(&with_route(
            r#"{"type": "migrate", "from": "a", "to": "b", "phase": "halfway"}"#,
        ));
        assert!(
            e.starts_with("route.phase: unknown variant `halfway`"),
            "{e}"
        );
    }

    #[test]
    fn negative_route_parses_with_defaults_and_checks_its_bounds() {
        use crate::config::{RouteConfig, defaults};
        let c = Config::from_json(&with_route(r#"{"type": "negative", "route": "a"}"#)).unwrap();
        assert_eq!(
            c.route,
            RouteConfig::Negative {
                ttl_ms: defaults::NEGATIVE_TTL_MS,
                max_keys: defaults::NEGATIVE_MAX_KEYS,
                route: Box::new(RouteConfig::Pool { pool: "a".into() }),
            }
        );
        assert_eq!(c.route.children()[0].0, ".route");
        let c = Config::from_json(&with_route(
            r#"{"type": "negative", "ttl_ms": 50, "max_keys": 7, "route": {"type": "failover", "children": ["a", "b"]}}"#,
        ))
        .unwrap();
        assert!(matches!(
            c.route,
            RouteConfig::Negative {
                ttl_ms: 50,
                max_keys: 7,
                ..
            }
        ));
        assert_eq!(
            err(&with_route(
                r#"{"type": "negative", "ttl_ms": 0, "route": "a"}"#
            )),
            "route.ttl_ms: must be at least 1"
        );
        assert_eq!(
            err(&with_route(
                r#"{"type": "failover", "children": ["a", {"type": "negative", "max_keys": 0, "route": "b"}]}"#
            )),
            "route.children[1].max_keys: must be at least 1"
        );
        assert_eq!(
            err(&with_route(r#"{"type": "negative", "route": "x"}"#)),
            "route.route.pool: unknown pool \"x\""
        );
        let e = err(&with_route(
            r#"{"type": "negative", "ttl_ms": -1, "route": "a"}"#,
        ));
        assert!(e.starts_with("route.ttl_ms: invalid value"), "{e}");
        let e = err(&with_route(r#"{"type": "negative", "ttl_ms": 5}"#));
        assert!(e.starts_with("route: missing field `route`"), "{e}");
        let e = err(&with_route(
            r#"{"type": "negative", "route": "a", "ttl": 5}"#,
        ));
        assert!(e.starts_with("route.ttl: unknown field `ttl`"), "{e}");
    }

    #[test]
    fn toml_routes_parse() {
        let c = Config::from_toml(
            "[pools.a]\nservers = [\"127.0.0.1:1\"]\n[pools.b]\nservers = [\"127.0.0.1:2\"]\n\
             [route]\ntype = \"migrate\"\nfrom = \"a\"\nto = \"b\"\nphase = \"dual_write\"\n",
        )
        .unwrap();
        assert_eq!(c.route.type_name(), "migrate");
    }
}
