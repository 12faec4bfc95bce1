//! `pool`: the leaf. Hashes the key with the pool's placement mode and sends the request to
//! that server. Every operation (get, set/add/replace/cas, delete, incr/decr, touch) goes to
//! the key's one server; multi-key calls are grouped per server and pipelined.
//!
//! - `on_down: fail_fast` (default): a server whose breaker is open fails its keys fast with
//!   `tko`; nothing moves.
//! - `on_down: eject`: its keys go to the placement over the remaining servers while it is
//!   open; keys of healthy servers never move.
//! - `disabled`: every request fails fast with `disabled`; `read_only`: writes are answered
//!   locally as not stored (deletes still go out).
//!
//! As a child of `replicated` with `pool` + `replicas`, copy `r` of a key lives on the `r`-th
//! distinct server found by re-hashing the key with a salt ([`PoolRoute::replica_dest`]); copy
//! 0 is the key's own server, so turning a plain pool into a replicated one keeps its data.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::config::{Config, OnDown, PoolConfig};
use crate::error::{Error, Reason, Result};
use crate::item::Item;
use crate::op::Op;
use crate::placement::{Mode, Node, Placement};
use crate::pool::health::{BreakerSettings, BreakerState, PoolHealth};
use crate::pool::{ConnSettings, Destination};
use crate::process::supervisor;
use crate::protocol::{Decoder, Protocol, Response};
use crate::stats::inc;

use super::exchange::{self, Batch};
use super::{Cx, GetOpts, Key, Leaf, Route, Visit, Write};

/// A pool of servers with its placement: the leaf of every route tree.
#[derive(Debug)]
pub struct PoolRoute {
    pub(crate) name: String,
    pub(crate) placement: Placement,
    nodes: Vec<Node>,
    mode: Mode,
    pub(crate) dests: Vec<Arc<Destination>>,
    pub(crate) protocol: Protocol,
    on_down: OnDown,
    health: Arc<PoolHealth>,
    /// `on_down: eject`: the placement over the servers whose breaker is not open, rebuilt
    /// when the pool's breaker epoch moves.
    live: ArcSwap<LiveView>,
    /// Probes and sweeps run on the supervisor thread (config `health.background`).
    background: bool,
    /// Graceful degrade switches (config `disabled`, `read_only`).
    disabled: bool,
    pub(crate) read_only: bool,
}

/// The ring without the ejected servers.
#[derive(Debug)]
struct LiveView {
    epoch: u64,
    /// `None` when every server is open (nothing to rehash to) or none is.
    placement: Option<Placement>,
    /// Index in `placement` → index in `dests`.
    map: Vec<usize>,
}

impl PoolRoute {
    /// The destination for `key`. With `on_down: eject`, a key whose server is open goes to the
    /// placement over the remaining servers. Keys of healthy servers never move: on a ketama
    /// ring that is exactly libmemcached's rebuilt continuum; on modula modes it avoids
    /// reshuffling every key.
    pub(crate) fn dest_index(&self, key: &[u8]) -> usize {
        let i = self.placement.pick(key);
        if self.on_down == OnDown::FailFast || self.dests[i].health.state() != BreakerState::Open {
            return i;
        }
        let view = self.live_view();
        match &view.placement {
            Some(p) => {
                inc(&self.dests[i].counters.ejected_lookups);
                view.map[p.pick(key)]
            }
            None => i,
        }
    }

    fn live_view(&self) -> Arc<LiveView> {
        let epoch = self.health.epoch();
        let view = self.live.load_full();
        if view.epoch == epoch {
            return view;
        }
        let map: Vec<usize> = (0..self.dests.len())
            .filter(|&i| self.dests[i].health.state() != BreakerState::Open)
            .collect();
        let placement = if map.is_empty() || map.len() == self.dests.len() {
            None
        } else {
            let nodes: Vec<Node> = map.iter().map(|&i| self.nodes[i].clone()).collect();
            Placement::new(self.mode, &nodes).ok()
        };
        let fresh = Arc::new(LiveView {
            epoch,
            placement,
            map,
        });
        self.live.store(Arc::clone(&fresh));
        fresh
    }

    /// Admit a request to `dest`: not when the pool is disabled, nor while its breaker is
    /// open (probing inline when no supervisor does it).
    pub(crate) fn admit(&self, dest: &Destination) -> Result<()> {
        if self.disabled {
            dest.errors.add(Reason::Disabled);
            let e = Error::with_detail(
                Reason::Disabled,
                format!("pool \"{}\" is disabled", self.name),
            );
            return Err(e.at(dest.addr()));
        }
        dest.admit(self.background && supervisor::is_running())
    }

    /// A `read_only` pool answers writes locally (counted per destination).
    pub(crate) fn dropped<B: Batch>(&self, dest: &Destination, batch: &mut B) -> bool {
        if self.read_only && batch.drop_writes() {
            inc(&dest.counters.writes_dropped);
            return true;
        }
        false
    }
}

impl PoolRoute {
    /// This pool's entry in [`crate::Client::stats`] (`pools.<name>`).
    pub(crate) fn stats(&self) -> Value {
        json!({
            "servers": self.dests.len(),
            "mode": self.mode.as_str(),
            "protocol": self.protocol.as_str(),
            "on_down": self.on_down.as_str(),
            "breakers_not_closed": self.health.not_closed(),
            "disabled": self.disabled,
            "read_only": self.read_only,
        })
    }
}

impl PoolRoute {
    /// Build the route for `config`. Destinations of `previous` whose address and settings are
    /// unchanged are kept, with their warm connections and breaker state; their breakers are
    /// re-linked to the new pool's bookkeeping. Nothing is dialled.
    pub(crate) fn build(
        pool: &str,
        pc: &PoolConfig,
        config: &Config,
        previous: &mut dyn FnMut(&str, &ConnSettings) -> Option<Arc<Destination>>,
    ) -> Result<PoolRoute> {
        let placement = Placement::new(pc.mode, &pc.servers)
            .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("pools.{pool}: {e}")))?;
        let h = &config.health;
        let ms = Duration::from_millis;
        let settings = ConnSettings {
            protocol: pc.protocol,
            connect_timeout: ms(config.timeouts.connect_ms),
            io_timeout: ms(config.timeouts.io_ms),
            max_connections: pc.max_connections,
            // Replies carry at most one value; leave room for memcached's own item overhead.
            decoder: Decoder {
                max_value_size: config.max_value_size.max(1024 * 1024),
            },
            heartbeat_interval: ms(h.heartbeat_interval_ms),
            max_idle: (h.max_idle_ms > 0).then(|| ms(h.max_idle_ms)),
            max_age: (h.max_age_ms > 0).then(|| ms(h.max_age_ms)),
            background: h.background,
            breaker: BreakerSettings {
                tko_soft_threshold: h.tko_soft_threshold,
                probe_initial: ms(h.probe_initial_ms),
                probe_max: ms(h.probe_max_ms),
                half_open_requests: h.half_open_requests,
                max_tko_fraction: h.max_tko_fraction,
            },
        };
        let health = PoolHealth::new(pc.servers.len(), h.max_tko_fraction);
        let dests = pc
            .servers
            .iter()
            .map(|n| {
                let addr = n.addr();
                match previous(&addr, &settings) {
                    Some(d) => {
                        d.health.rebind(Arc::clone(&health));
                        d
                    }
                    None => Arc::new(Destination::new(
                        &n.host,
                        n.port,
                        settings,
                        Arc::clone(&health),
                    )),
                }
            })
            .collect();
        Ok(PoolRoute {
            name: pool.to_string(),
            placement,
            nodes: pc.servers.clone(),
            mode: pc.mode,
            dests,
            protocol: pc.protocol,
            on_down: pc.on_down,
            live: ArcSwap::from_pointee(LiveView {
                epoch: u64::MAX,
                placement: None,
                map: Vec::new(),
            }),
            health,
            background: h.background,
            disabled: pc.disabled,
            read_only: pc.read_only,
        })
    }
}

impl PoolRoute {
    /// The destination of copy `replica` of `place`: copy 0 is the key's own server;
    /// copy r is the first server, re-hashing `place` salted with 1, 2, …, that none of the
    /// copies before it uses. Deterministic, so every process agrees; a pool with fewer
    /// servers than copies wraps around (checked at build time).
    pub fn replica_dest(&self, place: &[u8], replica: usize) -> usize {
        let first = self.dest_index(place);
        if replica == 0 {
            return first;
        }
        let n = self.dests.len();
        let mut taken: Vec<usize> = Vec::with_capacity(replica + 1);
        taken.push(first);
        let mut salted: Vec<u8> = Vec::with_capacity(place.len() + 4);
        let mut salt = 0u32;
        while taken.len() <= replica {
            let d = if taken.len() >= n {
                // More copies than servers: wrap around (the builder refuses this).
                taken[taken.len() % n]
            } else {
                let mut found = None;
                // Re-hash up to 32 times, then take the next free server in config order.
                for _ in 0..32 {
                    salt += 1;
                    salted.clear();
                    salted.extend_from_slice(place);
                    salted.push(b'#');
                    salted.extend_from_slice(salt.to_string().as_bytes());
                    let d = self.placement.pick(&salted);
                    if !taken.contains(&d) {
                        found = Some(d);
                        break;
                    }
                }
                found.unwrap_or_else(|| {
                    (0..n)
                        .map(|i| (first + i) % n)
                        .find(|d| !taken.contains(d))
                        .unwrap_or(first)
                })
            };
            taken.push(d);
        }
        taken[replica]
    }

    /// Replace the placement (a binding mirroring libmemcached's option state); `placement`
    /// must cover this pool's servers in config order.
    pub(crate) fn with_placement(mut self, placement: Placement) -> Result<PoolRoute> {
        if placement.len() != self.dests.len() {
            return Err(Error::with_detail(
                Reason::InvalidConfig,
                format!(
                    "placement has {} servers; the pool has {}",
                    placement.len(),
                    self.dests.len()
                ),
            ));
        }
        self.placement = placement;
        Ok(self)
    }

    /// Every server, in config order.
    pub fn destinations(&self) -> &[Arc<Destination>] {
        &self.dests
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A leaf's requests: what both [`PoolRoute`] and [`PoolReplica`] do, on their copy of a key.
impl Leaf<'_> {
    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        if let [k] = keys {
            // The common case without the grouping machinery: one batch, one exchange.
            let pool = self.pool;
            let dest = &*pool.dests[self.dest(k.place)];
            let mut b = exchange::GetBatch::new(pool.protocol, opts);
            b.push(k.key, 0);
            let _ = exchange::exchange(pool, dest, &mut b, cx.deadline);
            b.settle(pool, dest, cx.deadline);
            let r = b.results.pop().flatten();
            return vec![r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)))];
        }
        let all: Vec<usize> = (0..keys.len()).collect();
        exchange::get_leaves(cx, &[(*self, &all)], keys, opts)
            .pop()
            .unwrap_or_default()
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        if let [w] = reqs {
            let pool = self.pool;
            let dest = &*pool.dests[self.dest(w.place)];
            let mut b = exchange::OpsBatch::one(w.req);
            let _ = exchange::exchange(pool, dest, &mut b, cx.deadline);
            let r = b.replies.pop();
            return vec![
                r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
                    .map_err(|e| e.or_at(dest.addr())),
            ];
        }
        let all: Vec<usize> = (0..reqs.len()).collect();
        exchange::write_leaves(cx, &[(*self, &all)], reqs)
            .pop()
            .unwrap_or_default()
    }

    fn traverse(&self, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        visit(Visit {
            pool: &self.pool.name,
            addr: self.pool.dests[self.dest(key)].addr(),
        });
    }
}

impl Route for PoolRoute {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.leaf_ref().get(cx, keys, opts)
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.leaf_ref().write(cx, reqs)
    }

    fn traverse(&self, _op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.leaf_ref().traverse(key, visit);
    }

    fn leaf(&self) -> Option<Leaf<'_>> {
        Some(self.leaf_ref())
    }
}

impl PoolRoute {
    fn leaf_ref(&self) -> Leaf<'_> {
        Leaf {
            pool: self,
            replica: 0,
        }
    }
}

/// Copy `replica` of a replicated pool: a view of the pool that places each key on its
/// `replica`-th distinct server.
#[derive(Debug)]
pub struct PoolReplica {
    pool: Arc<PoolRoute>,
    replica: usize,
}

impl PoolReplica {
    /// Copy `replica` of `pool`.
    pub fn new(pool: Arc<PoolRoute>, replica: usize) -> PoolReplica {
        PoolReplica { pool, replica }
    }
}

impl Route for PoolReplica {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.leaf_ref().get(cx, keys, opts)
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.leaf_ref().write(cx, reqs)
    }

    fn traverse(&self, _op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.leaf_ref().traverse(key, visit);
    }

    fn leaf(&self) -> Option<Leaf<'_>> {
        Some(self.leaf_ref())
    }
}

impl PoolReplica {
    fn leaf_ref(&self) -> Leaf<'_> {
        Leaf {
            pool: &self.pool,
            replica: self.replica,
        }
    }
}
