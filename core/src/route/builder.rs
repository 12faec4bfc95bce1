//! Config → route tree. Pools are built first (once each, shared by every route that names
//! them); then `route` is built depth-first, each node by its route file's
//! [`RouteSpec::build`](super::RouteSpec::build) through [`Builder`], with each error prefixed by its config path
//! (`route.children[1]: replicas must be on distinct hosts …`).
//!
//! On reload the previous [`Router`]'s destinations are offered back by address and settings
//! (mcrouter's `ProxyDestinationMap`): a server that stays keeps its warm connections and its
//! breaker state, whichever pool or route it moves to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::Result;
use crate::placement::Placement;
use crate::pool::{ConnSettings, Destination};

use super::pool::PoolRoute;
use super::schema::{Builder, invalid};
use super::{Route, RouteConfig, Router, Visit};

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
        let mut pool = PoolRoute::build(
            name,
            pc,
            &config.pool_shared(),
            &mut reuse,
            super::migrate::bucket_move,
        )?;
        if let RouteConfig::Pool(routed) = &config.route
            && routed.pool == *name
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
    let mut b = Builder {
        pools: &pools,
        inline: !config.health.background,
        timed: config.stats.route_latency,
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

/// Every destination of `route` for `op` and `key` (see [`Route::traverse`]), for tests.
pub fn destinations(route: &dyn Route, op: crate::op::Op, key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    route.traverse(op, key, &mut |v: Visit<'_>| {
        out.push(format!("{}/{}", v.pool, v.addr));
    });
    out
}
