//! Config → route tree. Pools are built first (once each, shared by every route that names
//! them); then `route` is built depth-first with each error prefixed by its config path
//! (`route.children[1]: replicas must be on distinct hosts …`).
//!
//! On reload the previous [`Router`]'s destinations are offered back by address and settings
//! (mcrouter's `ProxyDestinationMap`): a server that stays keeps its warm connections and its
//! breaker state, whichever pool or route it moves to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, FailoverOn, ReadPolicy, RouteConfig};
use crate::error::{Error, Reason, Result};
use crate::placement::Placement;
use crate::pool::{ConnSettings, Destination};

use super::failover::FailoverRoute;
use super::gutter::GutterRoute;
use super::local::LocalRoute;
use super::migrate::MigrateRoute;
use super::negative::NegativeRoute;
use super::operation::OperationRoute;
use super::pool::{PoolReplica, PoolRoute};
use super::prefix::PrefixRoute;
use super::replicated::ReplicatedRoute;
use super::shadow::ShadowRoute;
use super::warm_up::WarmUpRoute;
use super::{Route, Router, Visit};

fn invalid(path: &str, msg: impl std::fmt::Display) -> Error {
    Error::with_detail(Reason::InvalidConfig, format!("{path}: {msg}"))
}

/// Build the router for `config`. `previous`: the router being replaced (its destinations are
/// reused where address and settings match). `placement`: a placement that replaces the mode
/// of the pool a plain `pool` route names (bindings mirroring libmemcached's option state).
pub fn build(
    config: &Config,
    previous: Option<&Router>,
    placement: Option<Placement>,
) -> Result<Router> {
    let mut claimed: Vec<*const Destination> = Vec::new();
    let mut pools: BTreeMap<String, Arc<PoolRoute>> = BTreeMap::new();
    let mut placement = placement;
    for (name, pc) in &config.pools {
        let mut reuse = |addr: &str, settings: &ConnSettings| -> Option<Arc<Destination>> {
            let prev = previous?;
            let fits = |d: &&Arc<Destination>| {
                &**d.addr() == addr
                    && d.settings() == settings
                    && !claimed.contains(&Arc::as_ptr(d))
            };
            // The same pool first, so two pools sharing a server keep their own breakers.
            let found = prev
                .pools
                .get(name)
                .and_then(|p| p.dests.iter().find(fits))
                .or_else(|| prev.dests.iter().find(fits))
                .cloned()?;
            claimed.push(Arc::as_ptr(&found));
            Some(found)
        };
        let mut pool = PoolRoute::build(name, pc, config, &mut reuse)?;
        if let RouteConfig::Pool { pool: routed } = &config.route
            && routed == name
            && let Some(p) = placement.take()
        {
            pool = pool.with_placement(p)?;
        }
        pools.insert(name.clone(), Arc::new(pool));
    }
    if placement.is_some() {
        return Err(invalid(
            "route",
            "a custom placement needs the route to be a plain pool",
        ));
    }
    let b = Builder {
        pools: &pools,
        inline: !config.health.background,
    };
    let root = b.route(&config.route, "route")?;
    let mut dests: Vec<Arc<Destination>> = Vec::new();
    for p in pools.values() {
        for d in &p.dests {
            if !dests.iter().any(|x| Arc::ptr_eq(x, d)) {
                dests.push(Arc::clone(d));
            }
        }
    }
    let binary_keys = !config.pools.is_empty() && config.pools.values().all(|p| p.binary_keys);
    Ok(Router {
        root,
        pools,
        dests,
        io_timeout: Duration::from_millis(config.timeouts.io_ms),
        max_value_size: config.max_value_size,
        binary_keys,
        background: config.health.background,
        stampede: config.stampede,
    })
}

/// What routes need while being built.
#[derive(Debug)]
pub struct Builder<'a> {
    /// Pools by name.
    pub pools: &'a BTreeMap<String, Arc<PoolRoute>>,
    /// Background work runs on the caller's thread (`health.background: false`).
    pub inline: bool,
}

impl Builder<'_> {
    fn pool(&self, name: &str, path: &str) -> Result<Arc<PoolRoute>> {
        self.pools
            .get(name)
            .cloned()
            .ok_or_else(|| invalid(&format!("{path}.pool"), format!("unknown pool \"{name}\"")))
    }

    /// Build `cfg`, found at `path`.
    pub fn route(&self, cfg: &RouteConfig, path: &str) -> Result<Arc<dyn Route>> {
        let child = |c: &RouteConfig, suffix: &str| self.route(c, &format!("{path}{suffix}"));
        Ok(match cfg {
            RouteConfig::Pool { pool } => self.pool(pool, path)?,
            RouteConfig::Failover {
                children,
                failover_on,
                max_tries,
            } => {
                let kids = children
                    .iter()
                    .enumerate()
                    .map(|(i, c)| child(c, &format!(".children[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                let tries = max_tries.unwrap_or(kids.len()).min(kids.len());
                Arc::new(FailoverRoute::new(kids, failover_on, tries))
            }
            RouteConfig::Gutter {
                pool,
                max_ttl,
                route,
                failover_on,
            } => {
                let gutter: Arc<dyn Route> =
                    Arc::new(GutterRoute::new(self.pool(pool, path)?, *max_ttl));
                match route {
                    None => gutter,
                    Some(r) => {
                        let main = child(r, ".route")?;
                        let on = if *failover_on == FailoverOn::default() {
                            gutter_default()
                        } else {
                            failover_on.clone()
                        };
                        Arc::new(FailoverRoute::new(vec![main, gutter], &on, 2))
                    }
                }
            }
            RouteConfig::Replicated {
                children,
                pool,
                replicas,
                write,
                read,
                hedge_after,
                max_hedge_ratio,
            } => {
                let kids: Vec<Arc<dyn Route>> = match pool {
                    Some(name) => {
                        let p = self.pool(name, path)?;
                        let n = replicas.unwrap_or(1);
                        if n > p.dests.len() {
                            return Err(invalid(
                                &format!("{path}.replicas"),
                                format!(
                                    "{n} copies need {n} servers; pool \"{name}\" has {}",
                                    p.dests.len()
                                ),
                            ));
                        }
                        (0..n)
                            .map(|r| Arc::new(PoolReplica::new(Arc::clone(&p), r)) as _)
                            .collect()
                    }
                    None => {
                        let kids = children
                            .iter()
                            .enumerate()
                            .map(|(i, c)| child(c, &format!(".children[{i}]")))
                            .collect::<Result<Vec<_>>>()?;
                        distinct_hosts(&kids, path)?;
                        kids
                    }
                };
                if *read == ReadPolicy::Hedged && kids.iter().any(|k| k.leaf().is_none()) {
                    return Err(invalid(
                        &format!("{path}.read"),
                        "hedged reads race two servers: the replicas must be pools",
                    ));
                }
                Arc::new(ReplicatedRoute::new(
                    kids,
                    *write,
                    *read,
                    *hedge_after,
                    *max_hedge_ratio,
                    self.inline,
                ))
            }
            RouteConfig::Shadow {
                route,
                shadow,
                fraction,
            } => Arc::new(ShadowRoute::new(
                child(route, ".route")?,
                child(shadow, ".shadow")?,
                *fraction,
                self.inline,
            )),
            RouteConfig::WarmUp {
                cold,
                warm,
                exptime,
            } => Arc::new(WarmUpRoute::new(
                child(cold, ".cold")?,
                child(warm, ".warm")?,
                *exptime,
                self.inline,
            )),
            RouteConfig::Prefix { routes, default } => {
                let mut table = Vec::with_capacity(routes.len());
                for (prefix, r) in routes {
                    table.push((prefix.clone(), child(r, &format!(".routes.{prefix}"))?));
                }
                Arc::new(PrefixRoute::new(table, child(default, ".default")?))
            }
            RouteConfig::Operation {
                get,
                set,
                delete,
                arith,
                touch,
                default,
            } => {
                let opt =
                    |r: &Option<Box<RouteConfig>>, name: &str| -> Result<Option<Arc<dyn Route>>> {
                        r.as_deref()
                            .map(|c| child(c, &format!(".{name}")))
                            .transpose()
                    };
                Arc::new(OperationRoute::new(
                    opt(get, "get")?,
                    opt(set, "set")?,
                    opt(delete, "delete")?,
                    opt(arith, "arith")?,
                    opt(touch, "touch")?,
                    opt(default, "default")?,
                ))
            }
            RouteConfig::Migrate {
                from,
                to,
                phase,
                exptime,
            } => Arc::new(MigrateRoute::new(
                child(from, ".from")?,
                child(to, ".to")?,
                *phase,
                *exptime,
                self.inline,
            )),
            RouteConfig::Local {
                max_items,
                max_bytes,
                ttl_ms,
                route,
            } => {
                let next = route.as_deref().map(|r| child(r, ".route")).transpose()?;
                Arc::new(LocalRoute::new(
                    *max_items,
                    *max_bytes,
                    ttl_ms.map(Duration::from_millis),
                    next,
                ))
            }
            RouteConfig::Negative {
                ttl_ms,
                max_keys,
                route,
            } => Arc::new(NegativeRoute::new(
                child(route, ".route")?,
                Duration::from_millis(*ttl_ms),
                *max_keys,
            )),
        })
    }
}

/// A gutter takes what a dead or unreachable server leaves: connection failures, timeouts and
/// open breakers (Facebook: "when a get gets no response"), not server replies.
fn gutter_default() -> FailoverOn {
    use Reason::*;
    let dead = vec![
        Timeout,
        ConnectTimeout,
        ConnectRefused,
        ConnectFailed,
        Reset,
        Io,
        Tko,
    ];
    FailoverOn {
        gets: Some(dead.clone()),
        updates: Some(dead.clone()),
        deletes: Some(dead),
    }
}

/// Replicas given as routes must not share a server: two copies on one host are one copy.
fn distinct_hosts(kids: &[Arc<dyn Route>], path: &str) -> Result<()> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, k) in kids.iter().enumerate() {
        let Some(leaf) = k.leaf() else { continue };
        for d in &leaf.pool.dests {
            if let Some((_, j)) = seen.iter().find(|(a, j)| **a == **d.addr() && *j != i) {
                return Err(invalid(
                    &format!("{path}.children[{i}]"),
                    format!(
                        "server {} is also in children[{j}]; replicas must be on distinct hosts",
                        d.addr()
                    ),
                ));
            }
            seen.push((d.addr().to_string(), i));
        }
    }
    Ok(())
}

/// Every destination of `route` for `op` and `key` (see [`Route::traverse`]), for tests.
pub fn destinations(route: &dyn Route, op: crate::op::Op, key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    route.traverse(op, key, &mut |v: Visit<'_>| {
        out.push(format!("{}/{}", v.pool, v.addr));
    });
    out
}
