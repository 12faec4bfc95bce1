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
//! A pool with `buckets` is placed by its bucket map ([`crate::placement::vbucket`]). A
//! bucket on the move gets the `migrate` route's rules (built by the route builder) between its two
//! servers, for its keys only: every other key takes the plain path and pays nothing. While a
//! pool has moves it is not a [`Leaf`], so that no parent drives its servers past them.
//!
//! As a child of `replicated` with `pool` + `replicas`, copy `r` of a key lives on the `r`-th
//! distinct server found by re-hashing the key with a salt ([`PoolRoute::replica_dest`]); copy
//! 0 is the key's own server, so turning a plain pool into a replicated one keeps its data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::sections::{OnDown, PoolConfig, PoolShared};
use crate::error::{Error, Reason, Result};
use crate::item::{Item, ItemRef, OnItem};
use crate::op::Op;
use crate::placement::vbucket::{BucketMap, MovePhase};
use crate::placement::{Mode, Node, Placement};
use crate::pool::exchange::{self, Admission, GetBatch, Hedge, OpsBatch, Outcome, Work};
use crate::pool::health::{BreakerSettings, BreakerState, PoolHealth};
use crate::pool::{ConnSettings, Destination};
use crate::protocol::{Decoder, Protocol, Request, Response};
use crate::stats::inc;

use super::schema::{Builder, RouteSpec};
use super::{Cx, GetOpts, Key, Leaf, Route, Visit, Write};

/// `{"type": "pool", "pool": "main"}`, or just `"main"`: every key goes to that pool.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The pool's name.
    pub pool: String,
}

impl RouteSpec for Config {
    fn pools(&self) -> Vec<(&'static str, &str)> {
        vec![("pool", &self.pool)]
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        Ok(b.pool(&self.pool, path)?)
    }
}

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
    /// What the pool lets through (config `disabled`, `read_only`; who probes a breaker),
    /// handed to the exchange engine with every batch.
    pub(crate) admission: Admission,
    /// Placement by bucket map: the map, the moves, the counters.
    buckets: Option<Buckets>,
}

/// A pool's virtual buckets.
#[derive(Debug)]
struct Buckets {
    map: Arc<BucketMap>,
    /// A `migrate` route between the bucket's two servers, per moving bucket.
    moves: HashMap<u32, Arc<dyn Route>>,
    /// Keys requested per bucket state: index 0 not moving, then [`MovePhase`] order.
    requests: [AtomicU64; 5],
}

impl Buckets {
    fn count(&self, phase: Option<MovePhase>, n: usize) {
        let i = phase.map_or(0, |p| p as usize + 1);
        self.requests[i].fetch_add(n as u64, Relaxed);
    }
}

/// Builds the `migrate` route between a moving bucket's two servers (`from`, `to`, phase,
/// copies inline): the route builder passes it in, so the leaf needs no route above it.
pub(crate) type MoveRoute = fn(Arc<dyn Route>, Arc<dyn Route>, MovePhase, bool) -> Arc<dyn Route>;

/// Where a bucket-placed key goes, as [`PoolRoute::bucket_route`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRoute {
    /// The key's bucket.
    pub bucket: u32,
    /// The map's version.
    pub version: u64,
    /// The bucket's server in the map (index into the pool's servers).
    pub server: u32,
    /// The bucket's move, if it is on one.
    pub moving: Option<crate::placement::vbucket::BucketMove>,
    /// The address of `server`.
    pub server_addr: String,
    /// The address of the move's target.
    pub to_addr: Option<String>,
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
    /// The destination for `key`, whose server in the placement is `i`. With `on_down:
    /// eject`, a key whose server is open goes to the placement over the remaining servers.
    /// Keys of healthy servers never move: on a ketama ring that is exactly libmemcached's
    /// rebuilt continuum; on modula modes it avoids reshuffling every key.
    fn live_dest(&self, key: &[u8], i: usize) -> usize {
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
}

impl PoolRoute {
    /// This pool's entry in [`crate::Client::stats`] (`pools.<name>`). A bucket-placed pool
    /// reports its map's version (what `fae vbucket apply` waits for), its moves and the
    /// keys requested per bucket phase.
    pub(crate) fn stats(&self) -> Value {
        let buckets = self.buckets.as_ref().map(|b| {
            let mut requests = serde_json::Map::new();
            requests.insert("stable".into(), b.requests[0].load(Relaxed).into());
            for p in MovePhase::ALL {
                requests.insert(
                    p.as_str().into(),
                    b.requests[p as usize + 1].load(Relaxed).into(),
                );
            }
            let sum = |f: fn(&crate::stats::RouteCounters) -> &AtomicU64| -> u64 {
                b.moves
                    .values()
                    .filter_map(|m| m.counters())
                    .map(|c| f(c).load(Relaxed))
                    .sum()
            };
            json!({
                "count": b.map.count(),
                "version": b.map.version(),
                "hash": b.map.hash().as_str(),
                "moving": b.moves.len(),
                "requests": requests,
                "read_fallbacks": sum(|c| &c.read_fallbacks),
                "copied_forward": sum(|c| &c.copied_forward),
                "replica_failures": sum(|c| &c.replica_failures),
            })
        });
        json!({
            "servers": self.dests.len(),
            "buckets": buckets,
            "mode": if self.buckets.is_some() { "buckets" } else { self.mode.as_str() },
            "protocol": self.protocol.as_str(),
            "on_down": self.on_down.as_str(),
            "breakers_not_closed": self.health.not_closed(),
            "disabled": self.admission.disabled,
            "read_only": self.admission.read_only,
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
        config: &PoolShared,
        previous: &mut dyn FnMut(&str, &ConnSettings) -> Option<Arc<Destination>>,
        move_route: MoveRoute,
    ) -> Result<PoolRoute> {
        let bad =
            |e: String| Error::with_detail(Reason::InvalidConfig, format!("pools.{pool}: {e}"));
        let map = match &pc.buckets {
            Some(spec) => Some(Arc::new(
                BucketMap::from_spec(spec, &pc.servers).map_err(|e| bad(format!("buckets.{e}")))?,
            )),
            None => None,
        };
        let placement = match &map {
            Some(m) => Placement::buckets(Arc::clone(m), &pc.servers),
            None => Placement::new(pc.mode, &pc.servers),
        }
        .map_err(bad)?;
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
            security: pc.security.clone(),
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
                        settings.clone(),
                        Arc::clone(&health),
                    )),
                }
            })
            .collect();
        let mut route = PoolRoute {
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
            admission: Admission {
                pool: pool.to_string(),
                disabled: pc.disabled,
                read_only: pc.read_only,
                background: h.background,
            },
            buckets: None,
        };
        if let Some(map) = map {
            // Copies forward keep the old item's TTL when the server tells it (meta); a text
            // pool's copies get none, like a `migrate` route's default.
            let moves = map
                .moves()
                .iter()
                .map(|(&b, mv)| {
                    let from = Arc::new(route.single(map.master(b) as usize)) as Arc<dyn Route>;
                    let to = Arc::new(route.single(mv.to as usize)) as Arc<dyn Route>;
                    (b, move_route(from, to, mv.phase, !h.background))
                })
                .collect();
            route.buckets = Some(Buckets {
                map,
                moves,
                requests: Default::default(),
            });
        }
        Ok(route)
    }

    /// A pool of server `i` alone (same destination, breaker and admission): one side of a
    /// bucket's move.
    fn single(&self, i: usize) -> PoolRoute {
        let node = self.nodes[i].clone();
        PoolRoute {
            name: self.name.clone(),
            placement: Placement::new(Mode::Jump, std::slice::from_ref(&node))
                .unwrap_or_else(|_| self.placement.clone()),
            nodes: vec![node],
            mode: self.mode,
            dests: vec![Arc::clone(&self.dests[i])],
            protocol: self.protocol,
            on_down: OnDown::FailFast,
            health: Arc::clone(&self.health),
            live: ArcSwap::from_pointee(LiveView {
                epoch: u64::MAX,
                placement: None,
                map: Vec::new(),
            }),
            admission: self.admission.clone(),
            buckets: None,
        }
    }

    /// The bucket map, when this pool is placed by one.
    pub fn bucket_map(&self) -> Option<&Arc<BucketMap>> {
        self.buckets.as_ref().map(|b| &b.map)
    }

    /// Where `key` goes in a bucket-placed pool: its bucket, the bucket's server, its move.
    pub fn bucket_route(&self, key: &[u8]) -> Option<BucketRoute> {
        let b = self.buckets.as_ref()?;
        let bucket = b.map.bucket(key);
        let server = b.map.master(bucket);
        let moving = b.map.moving(bucket);
        let addr = |i: u32| self.dests.get(i as usize).map(|d| d.addr().to_string());
        Some(BucketRoute {
            bucket,
            version: b.map.version(),
            server,
            moving,
            server_addr: addr(server).unwrap_or_default(),
            to_addr: moving.and_then(|m| addr(m.to)),
        })
    }

    /// Whether some bucket is on the move (the pool is then not a [`Leaf`]).
    pub fn has_moves(&self) -> bool {
        self.buckets.as_ref().is_some_and(|b| !b.moves.is_empty())
    }

    /// Run `n` requests whose placing keys `place(i)` gives: a moving bucket's requests through
    /// its move, all the others through `plain` in one piece. Results aligned with the input.
    fn by_bucket<'k, T: FromError>(
        &self,
        n: usize,
        place: impl Fn(usize) -> &'k [u8],
        plain: impl FnOnce(&[usize]) -> Vec<T>,
        mut moving: impl FnMut(&dyn Route, &[usize]) -> Vec<T>,
    ) -> Vec<T> {
        let all = || -> Vec<usize> { (0..n).collect() };
        let Some(b) = &self.buckets else {
            return plain(&all());
        };
        if b.moves.is_empty() {
            // Nothing on the move: no key needs its bucket (placement hashes it anyway).
            b.count(None, n);
            return plain(&all());
        }
        let mut stable: Vec<usize> = Vec::with_capacity(n);
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let bucket = b.map.bucket(place(i));
            if b.moves.contains_key(&bucket) {
                groups.entry(bucket).or_default().push(i);
            } else {
                stable.push(i);
            }
        }
        b.count(None, stable.len());
        if groups.is_empty() {
            return plain(&stable);
        }
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        if !stable.is_empty() {
            for (&i, r) in stable.iter().zip(plain(&stable)) {
                out[i] = Some(r);
            }
        }
        for (bucket, idx) in &groups {
            let Some(m) = b.moves.get(bucket) else {
                continue;
            };
            b.count(b.map.moving(*bucket).map(|mv| mv.phase), idx.len());
            for (&i, r) in idx.iter().zip(moving(&**m, idx)) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| unreachable_result()))
            .collect()
    }
}

/// A reply slot nothing filled: impossible (every index is in exactly one group), so it is a
/// protocol error rather than a panic.
fn unreachable_result<T: FromError>() -> T {
    T::from_error(Error::new(Reason::Protocol))
}

/// A per-key result made from an error.
trait FromError {
    fn from_error(e: Error) -> Self;
}

impl<T> FromError for Result<T> {
    fn from_error(e: Error) -> Self {
        Err(e)
    }
}

impl PoolRoute {
    /// The destination of copy `replica` of `place`: copy 0 is the key's own server;
    /// copy r is the first server, re-hashing `place` salted with 1, 2, …, that none of the
    /// copies before it uses. Deterministic, so every process agrees; a pool with fewer
    /// servers than copies wraps around (checked at build time).
    pub fn replica_dest(&self, place: &[u8], replica: usize) -> usize {
        self.replica_dest_picked(place, replica, self.placement.pick(place))
    }

    /// [`PoolRoute::replica_dest`] of every place, in order: the placement picks for all of
    /// them at once ([`Placement::pick_many`], which hashes MD5 keys several per pass), then
    /// each gets the per-key ejection and replica steps.
    pub(crate) fn replica_dests(&self, places: &[&[u8]], replica: usize) -> Vec<usize> {
        let mut dests = Vec::with_capacity(places.len());
        self.placement.pick_many(places, &mut dests);
        for (d, place) in dests.iter_mut().zip(places) {
            *d = self.replica_dest_picked(place, replica, *d);
        }
        dests
    }

    /// [`PoolRoute::replica_dest`] given `picked`, the placement's pick for `place`.
    fn replica_dest_picked(&self, place: &[u8], replica: usize, picked: usize) -> usize {
        let first = self.live_dest(place, picked);
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

/// The wire of a read of `keys` on a pool speaking `protocol`. A meta pool still sends a
/// multi-key read of printable keys as one text `get k1 k2 …` line (memcached ≥ 1.6 takes both
/// on one connection): one command to parse instead of one `mg` per key plus `mn`, which
/// measured 1.4–1.6× slower for 100 keys over 4 servers (docs/BENCHMARKS.md) and made
/// memcached yield mid batch past its 20-requests-per-event limit. Single keys, base64 keys,
/// TTL and lease reads use `mg`. Text cannot tell a lease stub from an empty value: [`settle`]
/// re-reads those.
fn read_wire<'k>(
    protocol: Protocol,
    mut keys: impl ExactSizeIterator<Item = &'k [u8]>,
    opts: GetOpts,
) -> Protocol {
    if protocol == Protocol::Meta
        && (keys.len() == 1 || opts.ttl || opts.leased() || keys.any(crate::key::needs_base64))
    {
        Protocol::Meta
    } else {
        Protocol::Text
    }
}

/// One server's read of `keys` (with the caller's positions), on the wire [`read_wire`] picks.
/// Over meta it always asks the CAS (a few bytes), needed to hand back a refresh win a plain
/// read took; [`settle`] drops it when the caller did not ask.
fn read_batch<'k>(
    protocol: Protocol,
    opts: GetOpts,
    keys: impl ExactSizeIterator<Item = (&'k [u8], usize)> + Clone,
    in_place: bool,
) -> GetBatch<'k> {
    let wire = read_wire(protocol, keys.clone().map(|(k, _)| k), opts);
    let asked = GetOpts {
        cas: opts.cas || wire == Protocol::Meta,
        ..opts
    };
    let mut b = GetBatch::new(wire, asked);
    if in_place {
        b = b.in_place();
    }
    b.reserve(keys.len());
    for (k, s) in keys {
        b.push(k, s);
    }
    b
}

/// A pool read's reply is complete: make it what the caller asked for. Every read of a pool
/// leaf ends here.
/// - A text read on a meta pool shows a lease stub as an empty value with flags 0: such values
///   are read again over `mg`, which tells a stub from a real empty value (a round trip only
///   when a multi-get returns empty values with flags 0; a failure keeps the first answer).
/// - A read that does not take part in leases sees a lease stub (someone is filling it) and an
///   invalidated item as misses: for it they are deleted values. A refresh win such a read
///   took is handed back ([`give_back`]).
/// - The CAS is dropped unless asked; hits and misses are counted on the destination.
fn settle(pool: &PoolRoute, dest: &Destination, cx: &Cx, opts: GetOpts, b: &mut GetBatch<'_>) {
    if b.wire() == Protocol::Text && pool.protocol == Protocol::Meta {
        let empty = |r: &Option<Result<Option<Item>>>| matches!(r, Some(Ok(Some(it))) if it.value.is_empty() && it.flags == 0);
        let again: Vec<usize> = (0..b.keys.len())
            .filter(|&i| empty(&b.results[i]))
            .collect();
        if !again.is_empty() {
            let mut meta = GetBatch::new(Protocol::Meta, GetOpts { cas: true, ..opts });
            for (j, &i) in again.iter().enumerate() {
                meta.push(b.keys[i], j);
            }
            let _ = exchange::exchange(&pool.admission, dest, &mut meta, cx.deadline);
            for (&i, r) in again.iter().zip(meta.results) {
                if let Some(r @ Ok(_)) = r {
                    b.results[i] = Some(r);
                }
            }
        }
    }
    let mut won: Vec<(usize, u64)> = Vec::new();
    let (mut hits, mut misses) = (0, 0);
    for (i, r) in b.results.iter_mut().enumerate() {
        if let Some(Ok(found)) = r {
            if let Some(item) = found {
                let hidden = !opts.leased() && (item.stale || item.is_lease_stub());
                if hidden && item.stale && item.win {
                    // memcached hands the refresh of a stale item to any `mg`, ours included;
                    // a plain read will not refresh, so it must give the win back.
                    won.push((i, item.cas));
                }
                if hidden {
                    *found = None;
                } else if !opts.cas {
                    item.cas = 0;
                }
            }
            match found {
                Some(_) => hits += 1,
                None => misses += 1,
            }
        }
    }
    count_reads(dest, hits, misses);
    let won: Vec<(&[u8], u64)> = won.iter().map(|&(i, cas)| (b.keys[i], cas)).collect();
    give_back(pool, dest, cx, &won);
}

/// Hand back the refresh wins a plain read took (memcached gives the win of a stale item to
/// the first `mg` of any kind): `md <key> C<cas> I` marks the item stale again and clears the
/// win, so the next lease reader refreshes it instead of everyone being served the stale value
/// until its stale TTL ends. Only if the CAS still matches (nobody wrote meanwhile). One extra
/// round trip, only after reading an invalidated key plainly, by the read's deadline.
fn give_back(pool: &PoolRoute, dest: &Destination, cx: &Cx, won: &[(&[u8], u64)]) {
    if won.is_empty() {
        return;
    }
    let mut ops = OpsBatch::new();
    for (slot, &(key, cas)) in won.iter().enumerate() {
        let req = Request::Delete {
            key,
            noreply: false,
            invalidate: Some(0),
            cas: Some(cas),
        };
        ops.push(req, slot);
    }
    let _ = exchange::exchange(&pool.admission, dest, &mut ops, cx.deadline);
}

/// `positions` grouped by destination: `(destination, indexes into positions)`.
fn group(n_dests: usize, dests: impl Iterator<Item = usize>) -> Vec<(usize, Vec<usize>)> {
    let mut by_dest: Vec<Vec<usize>> = vec![Vec::new(); n_dests];
    // A server's list starts with room for twice an even share: one allocation instead of a
    // doubling series, and none for a server no key goes to.
    let share = dests.size_hint().0 / n_dests.max(1) * 2 + 4;
    for (j, d) in dests.enumerate() {
        let v = &mut by_dest[d];
        if v.capacity() == 0 {
            v.reserve_exact(share);
        }
        v.push(j);
    }
    by_dest
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Read, for each `(leaf, positions)`, the keys at `positions` from that leaf, all leaves and
/// servers at once, by `cx.deadline`. Results are aligned with each part's positions.
pub(crate) fn get_leaves(
    cx: &Cx,
    parts: &[(Leaf<'_>, &[usize])],
    keys: &[Key<'_>],
    opts: GetOpts,
) -> Vec<Vec<Result<Option<Item>>>> {
    let mut work: Vec<Work<'_, GetBatch<'_>>> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (pi, (leaf, positions)) in parts.iter().enumerate() {
        let dests = leaf.dests(positions.iter().map(|&p| keys[p].place));
        for (d, js) in group(leaf.pool.dests.len(), dests.into_iter()) {
            let batch = read_batch(
                leaf.pool.protocol,
                opts,
                js.iter().map(|&j| (keys[positions[j]].key, j)),
                false,
            );
            work.push(Work {
                dest: &leaf.pool.dests[d],
                admission: &leaf.pool.admission,
                batch,
            });
            owner.push(pi);
        }
    }
    exchange::exchange_many(&mut work, cx.deadline);
    let mut out: Vec<Vec<Result<Option<Item>>>> = parts
        .iter()
        .map(|(_, pos)| (0..pos.len()).map(|_| Ok(None)).collect())
        .collect();
    for (mut w, pi) in work.into_iter().zip(owner) {
        settle(parts[pi].0.pool, w.dest, cx, opts, &mut w.batch);
        for (slot, r) in w.batch.slots.into_iter().zip(w.batch.results) {
            out[pi][slot] = r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
        }
    }
    out
}

/// What an in-place read ([`Leaf::get_each`]) leaves for after its exchange: keys to read again
/// over meta and refresh wins to hand back ([`settle`]'s rare cases), as (destination, slot,
/// key) and (destination, key, CAS).
#[derive(Default)]
struct Later<'k> {
    again: Vec<(usize, usize, &'k [u8], u64)>,
    won: Vec<(usize, &'k [u8], u64)>,
}

impl<'k> Later<'k> {
    fn finish(mut self, pool: &PoolRoute, cx: &Cx, opts: GetOpts, on: &mut OnItem<'_>) {
        if self.again.is_empty() && self.won.is_empty() {
            return; // the common case: nothing left
        }
        self.again.sort_by_key(|a| a.0);
        for run in self.again.chunk_by(|a, b| a.0 == b.0) {
            let d = run[0].0;
            let dest = &*pool.dests[d];
            let mut meta = GetBatch::new(Protocol::Meta, GetOpts { cas: true, ..opts });
            for (j, a) in run.iter().enumerate() {
                meta.push(a.2, j);
            }
            let _ = exchange::exchange(&pool.admission, dest, &mut meta, cx.deadline);
            let (mut hits, mut misses) = (0, 0);
            for (j, a) in run.iter().enumerate() {
                // A failure keeps the first answer: an empty value with flags 0.
                let first = Item {
                    cas: a.3,
                    ..Item::default()
                };
                let item = match meta.results.get_mut(j).and_then(Option::take) {
                    Some(Ok(found)) => found,
                    _ => Some(first),
                };
                let hit = match item {
                    Some(it) => hand_hit(d, a.1, a.2, it.borrowed(), opts, on, &mut self.won),
                    None => {
                        on(a.1, Ok(None));
                        false
                    }
                };
                if hit {
                    hits += 1;
                } else {
                    misses += 1;
                }
            }
            count_reads(dest, hits, misses);
        }
        self.won.sort_by_key(|w| w.0);
        for run in self.won.chunk_by(|a, b| a.0 == b.0) {
            let won: Vec<(&[u8], u64)> = run.iter().map(|w| (w.1, w.2)).collect();
            give_back(pool, &pool.dests[run[0].0], cx, &won);
        }
    }
}

/// Hand out a read batch of destination `d` ([`Leaf::get_each`]), its values in `held`, as
/// [`settle`] would leave them; the batch is left empty (handed out once).
fn hand_batch<'k>(
    pool: &PoolRoute,
    d: usize,
    opts: GetOpts,
    b: &mut GetBatch<'k>,
    held: &[u8],
    on: &mut OnItem<'_>,
    later: &mut Later<'k>,
) {
    let recheck = b.wire() == Protocol::Text && pool.protocol == Protocol::Meta;
    let (mut hits, mut misses) = (0, 0);
    let outcomes = b.held.take().unwrap_or_default();
    let err = b.held_err.take();
    let failed = || err.clone().unwrap_or_else(|| Error::new(Reason::Protocol));
    for ((h, &slot), &key) in outcomes.iter().zip(&b.slots).zip(&b.keys) {
        match h.outcome {
            Outcome::Hit => {
                let Some(data) = held.get(h.start..h.start + h.len) else {
                    on(slot, Err(Error::new(Reason::Protocol)));
                    continue;
                };
                let it = ItemRef {
                    value: data,
                    flags: h.flags,
                    cas: h.cas,
                    ttl: h.ttl,
                    win: h.win,
                    stale: h.stale,
                    win_taken: h.win_taken,
                };
                if recheck && data.is_empty() && it.flags == 0 {
                    // Maybe a lease stub, which text shows as an empty value: asked again
                    // over meta.
                    later.again.push((d, slot, key, it.cas));
                } else if hand_hit(d, slot, key, it, opts, on, &mut later.won) {
                    hits += 1;
                } else {
                    misses += 1;
                }
            }
            Outcome::Miss => {
                misses += 1;
                on(slot, Ok(None));
            }
            Outcome::Failed | Outcome::Pending => on(slot, Err(failed())),
        }
    }
    b.keys.clear();
    b.slots.clear();
    count_reads(&pool.dests[d], hits, misses);
}

/// Add a read's hits and misses to its destination's counters. A locked add costs ~7 ns
/// here: a single get, called twice per read, skips the three that would add zero.
fn count_reads(dest: &Destination, hits: u64, misses: u64) {
    if hits != 0 {
        dest.counters.hits.fetch_add(hits, Relaxed);
    }
    if misses != 0 {
        dest.counters.misses.fetch_add(misses, Relaxed);
    }
}

/// Hand out hit `it` of key `key` at `slot` as [`settle`] would: a lease stub or an
/// invalidated item is a miss to a read outside leases (a refresh win it took is recorded in
/// `won`, to be handed back), and the CAS is dropped unless asked. `true` if it was handed
/// out as a hit.
fn hand_hit<'k>(
    d: usize,
    slot: usize,
    key: &'k [u8],
    it: ItemRef<'_>,
    opts: GetOpts,
    on: &mut OnItem<'_>,
    won: &mut Vec<(usize, &'k [u8], u64)>,
) -> bool {
    let stub = it.value.is_empty() && it.flags == 0 && (it.win || it.win_taken);
    let hidden = !opts.leased() && (it.stale || stub);
    if hidden {
        if it.stale && it.win {
            won.push((d, key, it.cas));
        }
        on(slot, Ok(None));
        return false;
    }
    let cas = if opts.cas { it.cas } else { 0 };
    on(slot, Ok(Some(ItemRef { cas, ..it })));
    true
}

/// Run, for each `(leaf, positions)`, the writes at `positions` on that leaf, all at once.
/// Replies are aligned with each part's positions; errors name their destination.
pub(crate) fn write_leaves(
    cx: &Cx,
    parts: &[(Leaf<'_>, &[usize])],
    reqs: &[Write<'_>],
) -> Vec<Vec<Result<Response>>> {
    let mut work: Vec<Work<'_, OpsBatch<'_>>> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (pi, (leaf, positions)) in parts.iter().enumerate() {
        let dests = leaf.dests(positions.iter().map(|&p| reqs[p].place));
        for (d, js) in group(leaf.pool.dests.len(), dests.into_iter()) {
            let mut b = OpsBatch::new();
            for j in js {
                b.push(reqs[positions[j]].req, j);
            }
            work.push(Work {
                dest: &leaf.pool.dests[d],
                admission: &leaf.pool.admission,
                batch: b,
            });
            owner.push(pi);
        }
    }
    exchange::exchange_many(&mut work, cx.deadline);
    let mut out: Vec<Vec<Option<Result<Response>>>> = parts
        .iter()
        .map(|(_, pos)| (0..pos.len()).map(|_| None).collect())
        .collect();
    for (w, pi) in work.into_iter().zip(owner) {
        let addr = w.dest.addr();
        for (slot, r) in w.batch.slots.into_iter().zip(w.batch.replies) {
            out[pi][slot] = Some(r.map_err(|e| e.or_at(addr)));
        }
    }
    out.into_iter()
        .map(|v| {
            v.into_iter()
                .map(|r| r.unwrap_or_else(|| Err(Error::new(Reason::Protocol))))
                .collect()
        })
        .collect()
}

/// A hedged read of `key` ([`exchange::get_hedged`]): from `primary` (a leaf and the key's
/// destination in it), and from `secondary` too if the primary is slower than `hedge_after`
/// and `may_hedge()` agrees. The winner's reply is settled like any pool read.
pub(crate) fn get_hedged<'p>(
    cx: &Cx,
    primary: (Leaf<'p>, usize),
    secondary: (Leaf<'p>, usize),
    key: Key<'_>,
    opts: GetOpts,
    hedge_after: Duration,
    may_hedge: &dyn Fn() -> bool,
) -> (Result<Option<Item>>, Hedge) {
    let racer = |pool: &'p PoolRoute, d: usize| {
        let batch = read_batch(pool.protocol, opts, [(key.key, 0)].into_iter(), false);
        (&pool.dests[d], &pool.admission, batch)
    };
    let (raced, how) = exchange::get_hedged(
        racer(primary.0.pool, primary.1),
        racer(secondary.0.pool, secondary.1),
        cx.deadline,
        hedge_after,
        may_hedge,
    );
    let r = raced.and_then(|mut b| {
        let (leaf, d) = if how == Hedge::Won {
            secondary
        } else {
            primary
        };
        settle(leaf.pool, &leaf.pool.dests[d], cx, opts, &mut b);
        b.results
            .pop()
            .flatten()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
    });
    (r, how)
}

/// A leaf's requests: what both [`PoolRoute`] and [`PoolReplica`] do, on their copy of a key.
impl Leaf<'_> {
    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        if let [k] = keys {
            // The common case without the grouping machinery: one batch, one exchange.
            let pool = self.pool;
            let dest = &*pool.dests[self.dest(k.place)];
            let mut b = read_batch(pool.protocol, opts, [(k.key, 0)].into_iter(), false);
            let _ = exchange::exchange(&pool.admission, dest, &mut b, cx.deadline);
            settle(pool, dest, cx, opts, &mut b);
            let r = b.results.pop().flatten();
            return vec![r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)))];
        }
        let all: Vec<usize> = (0..keys.len()).collect();
        get_leaves(cx, &[(*self, &all)], keys, opts)
            .pop()
            .unwrap_or_default()
    }

    /// [`Leaf::get`], each result handed to `on`: a hit's value straight from the
    /// connection's buffer once its server's whole reply is read and checked ([`GetBatch::in_place`]), so
    /// no list of results and no copy per value. What [`settle`] does to a reply is done per
    /// key as it is handed out.
    fn get_each(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts, on: &mut OnItem<'_>) {
        let pool = self.pool;
        if let [k] = keys {
            // One key, one server: no grouping, and the batch's lists are inline, so a hit
            // goes from the read buffer to `on` without an allocation on the way.
            let d = self.dest(k.place);
            let dest = &*pool.dests[d];
            let mut b = read_batch(pool.protocol, opts, [(k.key, 0)].into_iter(), true);
            let mut later = Later::default();
            let _ = exchange::exchange_with(
                &pool.admission,
                dest,
                &mut b,
                cx.deadline,
                &mut |b, held| hand_batch(pool, d, opts, b, held, on, &mut later),
            );
            // A batch that never had a connection: its error.
            hand_batch(pool, d, opts, &mut b, &[], on, &mut later);
            later.finish(pool, cx, opts, on);
            return;
        }
        if keys.is_empty() {
            return;
        }
        let mut work: Vec<Work<'_, GetBatch<'_>>> = Vec::new();
        let mut at: Vec<usize> = Vec::new();
        let dests = self.dests(keys.iter().map(|k| k.place));
        for (d, js) in group(pool.dests.len(), dests.into_iter()) {
            let batch = read_batch(
                pool.protocol,
                opts,
                js.iter().map(|&j| (keys[j].key, j)),
                true,
            );
            work.push(Work {
                dest: &pool.dests[d],
                admission: &pool.admission,
                batch,
            });
            at.push(d);
        }
        let mut later = Later::default();
        exchange::exchange_many_with(&mut work, cx.deadline, &mut |w, b, held| {
            hand_batch(pool, at[w], opts, b, held, on, &mut later);
        });
        // Batches that never had a connection (refused, expired, no dial): their errors.
        for (w, d) in work.iter_mut().zip(&at) {
            hand_batch(pool, *d, opts, &mut w.batch, &[], on, &mut later);
        }
        later.finish(pool, cx, opts, on);
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        if let [w] = reqs {
            let pool = self.pool;
            let dest = &*pool.dests[self.dest(w.place)];
            let mut b = OpsBatch::one(w.req);
            let _ = exchange::exchange(&pool.admission, dest, &mut b, cx.deadline);
            let r = b.replies.pop();
            return vec![
                r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
                    .map_err(|e| e.or_at(dest.addr())),
            ];
        }
        let all: Vec<usize> = (0..reqs.len()).collect();
        write_leaves(cx, &[(*self, &all)], reqs)
            .pop()
            .unwrap_or_default()
    }

    fn traverse(&self, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        visit(Visit {
            pool: &self.pool.name,
            addr: self.addr_of(self.dest(key)),
        });
    }

    /// `host:port` of destination `dest` (an index from [`Leaf::dest`] or [`Leaf::dests`]).
    pub(crate) fn addr_of(&self, dest: usize) -> &str {
        self.pool.dests[dest].addr()
    }
}

impl Route for PoolRoute {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        if self.buckets.is_none() {
            return self.leaf_ref().get(cx, keys, opts);
        }
        let pick = |idx: &[usize]| -> Vec<Key<'_>> { idx.iter().map(|&i| keys[i]).collect() };
        self.by_bucket(
            keys.len(),
            |i| keys[i].place,
            |idx| {
                if idx.len() == keys.len() {
                    self.leaf_ref().get(cx, keys, opts)
                } else {
                    self.leaf_ref().get(cx, &pick(idx), opts)
                }
            },
            |m, idx| m.get(cx, &pick(idx), opts),
        )
    }

    fn get_each(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts, on: &mut OnItem<'_>) {
        if self.buckets.is_none() {
            return self.leaf_ref().get_each(cx, keys, opts, on);
        }
        for (i, r) in self.get(cx, keys, opts).into_iter().enumerate() {
            crate::item::hand_owned(on, i, r);
        }
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        if self.buckets.is_none() {
            return self.leaf_ref().write(cx, reqs);
        }
        let pick = |idx: &[usize]| -> Vec<Write<'_>> { idx.iter().map(|&i| reqs[i]).collect() };
        self.by_bucket(
            reqs.len(),
            |i| reqs[i].place,
            |idx| {
                if idx.len() == reqs.len() {
                    self.leaf_ref().write(cx, reqs)
                } else {
                    self.leaf_ref().write(cx, &pick(idx))
                }
            },
            |m, idx| m.write(cx, &pick(idx)),
        )
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        if let Some(b) = &self.buckets
            && let Some(m) = b.moves.get(&b.map.bucket(key))
        {
            return m.traverse(op, key, visit);
        }
        self.leaf_ref().traverse(key, visit);
    }

    fn leaf(&self) -> Option<Leaf<'_>> {
        // A moving bucket's keys need the move's rules: no parent may drive the servers.
        (!self.has_moves()).then(|| self.leaf_ref())
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

    fn get_each(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts, on: &mut OnItem<'_>) {
        self.leaf_ref().get_each(cx, keys, opts, on);
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
