//! The route tree: mcrouter's routing model, in-process.
//!
//! A config's `route` builds into a tree of [`Route`]s ([`builder`]); the [`Router`] holding it
//! is swapped atomically on reload. Requests come in as slices of keys (a single `get` is a
//! slice of one), so a route forwards a whole multi-key call to its children in one piece and
//! the pools at the leaves pipeline it per server. One route per file:
//!
//! | route | file | in one line |
//! |---|---|---|
//! | `pool` | [`pool`] | hash the key, pick a server of the pool (leaf) |
//! | `failover` | [`failover`] | children in order; the next one on listed failures |
//! | `gutter` | [`gutter`] | a pool whose writes get a capped TTL; failover target for a dead server's keys |
//! | `replicated` | [`replicated`] | every key on distinct hosts; writes all_sync/all_majority/all_async, reads first/random/hedged |
//! | `shadow` | [`shadow`] | mirror a SipHash fraction of keys to another route, off the request path |
//! | `warm_up` | [`warm_up`] | cold miss → warm get → `add` to cold with the remaining TTL |
//! | `prefix` | [`prefix`] | longest key prefix chooses the route |
//! | `operation` | [`operation`] | the command chooses the route |
//! | `migrate` | [`migrate`] | move keys between topologies in reversible phases |
//! | `local` | [`local`] | in-process LRU: the whole cache, or a near cache in front of a route |
//! | `negative` | [`negative`] | remember a route's misses for `ttl_ms`: repeat reads of absent keys cost no I/O |
//!
//! A route file holds the whole route, top to bottom: its `Config` (the config object's
//! fields, serde with `deny_unknown_fields`) with its [`RouteSpec`] impl (children, pools it
//! names, the rules of its fields, `build`), then the route and its `Route` impl, then its
//! tests. [`schema`] holds what all routes share: the `"type"` dispatch, the path-named errors
//! and [`RouteConfig`], declared by the `routes!` table below, one row per route. Adding a
//! route is its file, its `pub mod` line and its row in that table (README, "Contributing:
//! adding a route").
//!
//! Every route states, in its module doc, what it does for get, set/add/replace/cas, delete,
//! incr/decr and touch. `route/` knows nothing about sockets: the leaves hand per-destination
//! batches to the exchange engine below them (`pool::exchange`), which drives the connections.
//!
//! A request carries one context ([`Cx`]) down the whole tree: its deadline, set once by the
//! client, bounds every child, retry, failover, warm-up read and hedge of that request. Work a
//! route does after the reply (shadow copies, `all_async` replicas, background copies) runs
//! under [`Cx::renewed`], a context of its own made when the work runs.

pub mod builder;
pub mod schema;
pub mod timed;

pub mod failover;
pub mod gutter;
pub mod local;
pub mod migrate;
pub mod negative;
pub mod operation;
pub mod pool;
pub mod prefix;
pub mod replicated;
pub mod shadow;
pub mod warm_up;

// The route types: one row each, `Variant(module::Config) = "type"` (see `schema::routes!`).
schema::routes! {
    Pool(pool::Config) = "pool",
    Failover(failover::Config) = "failover",
    Gutter(gutter::Config) = "gutter",
    Replicated(replicated::Config) = "replicated",
    Shadow(shadow::Config) = "shadow",
    WarmUp(warm_up::Config) = "warm_up",
    Prefix(prefix::Config) = "prefix",
    Operation(operation::Config) = "operation",
    Migrate(migrate::Config) = "migrate",
    Local(local::Config) = "local",
    Negative(negative::Config) = "negative",
}

#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Reason, Result};
use crate::item::{Item, OnItem};
use crate::pool::Destination;
use crate::pool::exchange::{OpsBatch, Work, exchange_many};
use crate::protocol::{Request, Response, Status};
use crate::stats::RouteCounters;

pub use crate::op::{Cx, GetOpts, Key, Op, RELATIVE_TTL_MAX, Write, cap_ttl, unix_now};
pub use pool::PoolRoute;
pub use schema::RouteSpec;

/// A destination a request could touch, as [`Route::traverse`] reports it.
#[derive(Clone, Copy, Debug)]
pub struct Visit<'a> {
    /// The pool (or `local`).
    pub pool: &'a str,
    /// `host:port` (or `local`).
    pub addr: &'a str,
}

/// A pool leaf a parent may drive directly: several leaves' batches then share one `poll(2)`
/// loop (a replicated write is as fast as its slowest replica, not the sum), and a hedged read
/// can race two of them.
#[derive(Clone, Copy, Debug)]
pub struct Leaf<'a> {
    /// The pool.
    pub pool: &'a PoolRoute,
    /// Which copy of a key: 0 is the key's own server, 1.. are further distinct servers.
    pub replica: usize,
}

impl Leaf<'_> {
    /// The destination (index in the pool) of `place` for this leaf.
    pub fn dest(&self, place: &[u8]) -> usize {
        self.pool.replica_dest(place, self.replica)
    }

    /// [`Leaf::dest`] of every place, in order, the placement hashing them all at once.
    pub fn dests<'k>(&self, places: impl Iterator<Item = &'k [u8]>) -> Vec<usize> {
        let places: Vec<&[u8]> = places.collect();
        self.pool.replica_dests(&places, self.replica)
    }
}

/// A node of the route tree. Implementations are immutable after construction (a reload
/// builds a new tree), `Send + Sync`, and never block on a lock across I/O.
pub trait Route: Send + Sync + fmt::Debug {
    /// Stable name (`"failover"`, `"warm_up"` …), used in stats and `route_for`.
    fn name(&self) -> &'static str;

    /// Read `keys`; the result is aligned with them: `Ok(Some)` hit, `Ok(None)` miss, `Err`
    /// that key failed. Everything the read does, children and retries included, ends by
    /// `cx.deadline`.
    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>>;

    /// [`Route::get`], each key's result handed to `on` (every index once, in no particular
    /// order) instead of collected. A pool leaf hands its values out of the connection's
    /// buffer; other routes hand their [`Route::get`] list.
    fn get_each(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts, on: &mut OnItem<'_>) {
        for (i, r) in self.get(cx, keys, opts).into_iter().enumerate() {
            crate::item::hand_owned(on, i, r);
        }
    }

    /// Run `reqs` (stores, deletes, incr/decr, touch); one reply per request, aligned. Ends by
    /// `cx.deadline`, like [`Route::get`].
    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>>;

    /// Report every destination a request of `op` for `key` could touch (failover targets and
    /// shadows included), without I/O.
    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>));

    /// The direct children with their config path suffix (`.children[0]`, `.cold` …), for
    /// stats and the route dump.
    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        Vec::new()
    }

    /// This route's counters, if it keeps any (leaf pools count per destination instead).
    fn counters(&self) -> Option<&RouteCounters> {
        None
    }

    /// Set when this route is a pool leaf (see [`Leaf`]).
    fn leaf(&self) -> Option<Leaf<'_>> {
        None
    }

    /// Extra stats (gauges such as a local cache's size).
    fn extra_stats(&self) -> Option<Value> {
        None
    }

    /// This node's latency histogram, when it is timed ([`timed::Timed`]).
    fn latency(&self) -> Option<&crate::stats::Histogram> {
        None
    }

    /// Empty every in-process cache under this route (`flush_all` also empties them).
    fn flush_local(&self) {
        for (_, c) in self.children() {
            c.flush_local();
        }
    }
}

/// Read `keys` from several children at once: `parts[i]` = (child, positions in `keys`).
/// When every child is a pool leaf, all their batches run in one `poll(2)` loop; otherwise the
/// children run one after another. Results are aligned with each part's positions.
pub fn get_parts(
    cx: &Cx,
    parts: &[(&Arc<dyn Route>, Vec<usize>)],
    keys: &[Key<'_>],
    opts: GetOpts,
) -> Vec<Vec<Result<Option<Item>>>> {
    let leaves: Option<Vec<Leaf<'_>>> = parts.iter().map(|(r, _)| r.leaf()).collect();
    if let Some(leaves) = leaves
        && parts.len() > 1
    {
        let with: Vec<(Leaf<'_>, &[usize])> = leaves
            .into_iter()
            .zip(parts)
            .map(|(l, (_, pos))| (l, pos.as_slice()))
            .collect();
        return pool::get_leaves(cx, &with, keys, opts);
    }
    parts
        .iter()
        .map(|(r, pos)| {
            if pos.len() == keys.len() {
                r.get(cx, keys, opts)
            } else {
                let sub: Vec<Key<'_>> = pos.iter().map(|&p| keys[p]).collect();
                r.get(cx, &sub, opts)
            }
        })
        .collect()
}

/// Run `reqs` on several children at once (see [`get_parts`]).
pub fn write_parts(
    cx: &Cx,
    parts: &[(&Arc<dyn Route>, Vec<usize>)],
    reqs: &[Write<'_>],
) -> Vec<Vec<Result<Response>>> {
    let leaves: Option<Vec<Leaf<'_>>> = parts.iter().map(|(r, _)| r.leaf()).collect();
    if let Some(leaves) = leaves
        && parts.len() > 1
    {
        let with: Vec<(Leaf<'_>, &[usize])> = leaves
            .into_iter()
            .zip(parts)
            .map(|(l, (_, pos))| (l, pos.as_slice()))
            .collect();
        return pool::write_leaves(cx, &with, reqs);
    }
    parts
        .iter()
        .map(|(r, pos)| {
            if pos.len() == reqs.len() {
                r.write(cx, reqs)
            } else {
                let sub: Vec<Write<'_>> = pos.iter().map(|&p| reqs[p]).collect();
                r.write(cx, &sub)
            }
        })
        .collect()
}

/// Put each part's results (see [`get_parts`]) back in the caller's order; every position of
/// `0..n` must be in exactly one part.
pub fn merge_parts<T>(
    n: usize,
    parts: &[(&Arc<dyn Route>, Vec<usize>)],
    results: Vec<Vec<T>>,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for ((_, pos), res) in parts.iter().zip(results) {
        for (p, r) in pos.iter().zip(res) {
            out[*p] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.expect("every position is in one part"))
        .collect()
}

/// `reqs` on every child of `children`, at once where possible: one reply list per child.
pub fn write_all(
    cx: &Cx,
    children: &[Arc<dyn Route>],
    reqs: &[Write<'_>],
) -> Vec<Vec<Result<Response>>> {
    let all: Vec<usize> = (0..reqs.len()).collect();
    let parts: Vec<(&Arc<dyn Route>, Vec<usize>)> =
        children.iter().map(|c| (c, all.clone())).collect();
    write_parts(cx, &parts, reqs)
}

/// An owned copy of a batch of writes, for work done after the reply (shadows, async
/// replicas, copies forward): the caller's buffers are gone by then.
#[derive(Debug, Clone)]
pub struct OwnedWrites {
    data: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    reqs: Vec<OwnedReq>,
}

#[derive(Debug, Clone, Copy)]
enum OwnedReq {
    Store {
        op: crate::protocol::StoreOp,
        flags: u32,
        exptime: u32,
    },
    Delete {
        invalidate: Option<u32>,
        cas: Option<u64>,
    },
    Arith {
        incr: bool,
        delta: u64,
    },
    Touch {
        exptime: u32,
    },
}

impl OwnedWrites {
    /// Copy `reqs` (flush/version/noop are skipped: routes never see them).
    pub fn copy(reqs: &[Write<'_>]) -> OwnedWrites {
        let mut data = Vec::with_capacity(reqs.len());
        let mut out = Vec::with_capacity(reqs.len());
        for w in reqs {
            let (r, value) = match w.req {
                Request::Store {
                    op,
                    value,
                    flags,
                    exptime,
                    ..
                } => (OwnedReq::Store { op, flags, exptime }, value),
                Request::Delete {
                    invalidate, cas, ..
                } => (OwnedReq::Delete { invalidate, cas }, &[][..]),
                Request::Arith { incr, delta, .. } => (OwnedReq::Arith { incr, delta }, &[][..]),
                Request::Touch { exptime, .. } => (OwnedReq::Touch { exptime }, &[][..]),
                _ => continue,
            };
            data.push((w.key().to_vec(), w.place.to_vec(), value.to_vec()));
            out.push(r);
        }
        OwnedWrites { data, reqs: out }
    }

    /// Borrow back as writes.
    pub fn writes(&self) -> Vec<Write<'_>> {
        self.data
            .iter()
            .zip(&self.reqs)
            .map(|((key, place, value), r)| {
                let req = match *r {
                    OwnedReq::Store { op, flags, exptime } => Request::Store {
                        op,
                        key,
                        value,
                        flags,
                        exptime,
                        noreply: false,
                    },
                    OwnedReq::Delete { invalidate, cas } => Request::Delete {
                        key,
                        noreply: false,
                        invalidate,
                        cas,
                    },
                    OwnedReq::Arith { incr, delta } => Request::Arith {
                        key,
                        incr,
                        delta,
                        noreply: false,
                    },
                    OwnedReq::Touch { exptime } => Request::Touch {
                        key,
                        exptime,
                        noreply: false,
                    },
                };
                Write { place, req }
            })
            .collect()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.reqs.len()
    }

    /// No writes?
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// The reply of a successful store (`STORED` / `HD`).
pub fn stored() -> Response {
    Response::Status {
        status: Status::Success,
        cas: None,
        opaque: None,
    }
}

/// A status reply.
pub fn status(status: Status) -> Response {
    Response::Status {
        status,
        cas: None,
        opaque: None,
    }
}

/// The route tree of one config, with the pools and destinations under it.
#[derive(Debug)]
pub struct Router {
    /// The root route.
    pub root: Arc<dyn Route>,
    /// Pools by name (every pool the config declares).
    pub pools: BTreeMap<String, Arc<PoolRoute>>,
    /// Every destination once, pools in name order, servers in config order.
    pub dests: Vec<Arc<Destination>>,
    /// The budget of one request (`timeouts.io_ms`): see [`Router::cx`].
    pub io_timeout: Duration,
    /// Largest value accepted.
    pub max_value_size: usize,
    /// Keys may contain any byte (every pool is meta with `binary_keys`).
    pub binary_keys: bool,
    /// Probes and sweeps run on the supervisor thread.
    pub background: bool,
    /// Leases, `get_or_set` and coalescing.
    pub stampede: crate::config::sections::StampedeConfig,
}

impl Router {
    /// The context of a request starting now: its deadline is `io_ms` away, for the whole
    /// tree.
    pub fn cx(&self) -> Cx {
        Cx::within(self.io_timeout)
    }

    /// Reject a bad key before any I/O.
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        crate::key::check(key, self.binary_keys)
    }

    /// Read `keys` through the tree by `cx.deadline`, after checking them (and their placing
    /// keys, which are only hashed: [`crate::key::check_place`]): a bad key fails the whole
    /// call before any I/O.
    pub fn read(
        &self,
        cx: &Cx,
        keys: &[Key<'_>],
        opts: GetOpts,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.check_keys(keys)?;
        Ok(self.root.get(cx, keys, opts))
    }

    fn check_keys(&self, keys: &[Key<'_>]) -> Result<()> {
        for k in keys {
            self.check_key(k.key)?;
            if !std::ptr::eq(k.key, k.place) {
                crate::key::check_place(k.place)?;
            }
        }
        Ok(())
    }

    /// [`Router::read`], each result handed to `on` ([`Route::get_each`]).
    pub fn read_each(
        &self,
        cx: &Cx,
        keys: &[Key<'_>],
        opts: GetOpts,
        on: &mut OnItem<'_>,
    ) -> Result<()> {
        self.check_keys(keys)?;
        self.root.get_each(cx, keys, opts, on);
        Ok(())
    }

    /// Run `reqs` through the tree by `cx.deadline`, after checking keys and values: a bad
    /// one fails the whole call before any I/O.
    pub fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Result<Vec<Result<Response>>> {
        for w in reqs {
            self.check_key(w.key())?;
            if !std::ptr::eq(w.key(), w.place) {
                crate::key::check_place(w.place)?;
            }
            if let Request::Store { value, .. } = w.req {
                self.check_value(value)?;
            }
        }
        Ok(self.root.write(cx, reqs))
    }

    /// Reject an oversized value before any I/O.
    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_size {
            return Err(Error::with_detail(
                Reason::ValueTooLarge,
                format!(
                    "value is {} bytes; max_value_size is {}",
                    value.len(),
                    self.max_value_size
                ),
            ));
        }
        Ok(())
    }

    /// `req` (flush_all, version) on every server of every pool, each server once, all at
    /// once, by `cx.deadline`: `(addr, reply)` in pool-name and config order.
    pub(crate) fn all_servers(&self, cx: &Cx, req: Request<'_>) -> Vec<(String, Result<Response>)> {
        let mut work: Vec<Work<'_, OpsBatch<'_>>> = Vec::new();
        for pool in self.pools.values() {
            for dest in &pool.dests {
                if work.iter().any(|w| std::ptr::eq(w.dest, &**dest)) {
                    continue;
                }
                work.push(Work {
                    dest,
                    admission: &pool.admission,
                    batch: OpsBatch::one(req),
                });
            }
        }
        exchange_many(&mut work, cx.deadline);
        work.into_iter()
            .map(|mut w| {
                let addr = w.dest.addr();
                let r = w
                    .batch
                    .replies
                    .pop()
                    .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
                (addr.to_string(), r.map_err(|e| e.or_at(addr)))
            })
            .collect()
    }

    /// Every destination `op` on `key` could touch, in tree order, each once.
    pub fn route_for(&self, op: Op, key: &[u8]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        self.root.traverse(op, key, &mut |v| {
            if !out.iter().any(|(p, a)| p == v.pool && a == v.addr) {
                out.push((v.pool.to_string(), v.addr.to_string()));
            }
        });
        out
    }

    /// The tree as `(path, route)` pairs, root first (`route`, `route.children[0]`, …).
    pub fn nodes(&self) -> Vec<(String, &Arc<dyn Route>)> {
        fn walk<'a>(
            path: String,
            r: &'a Arc<dyn Route>,
            out: &mut Vec<(String, &'a Arc<dyn Route>)>,
        ) {
            let kids = r.children();
            out.push((path.clone(), r));
            for (suffix, c) in kids {
                walk(format!("{path}{suffix}"), c, out);
            }
        }
        let mut out = Vec::new();
        walk("route".to_string(), &self.root, &mut out);
        out
    }

    /// Route counters as JSON: `{"route.children[0]": {"type": "failover", "failovers": n, …}}`.
    pub fn route_stats(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (path, r) in self.nodes() {
            let mut v = json!({ "type": r.name() });
            if let (Some(c), Value::Object(o)) = (r.counters(), &mut v) {
                c.insert_into(o);
            }
            if let Some(Value::Object(extra)) = r.extra_stats() {
                for (k, x) in extra {
                    v[k] = x;
                }
            }
            if let Some(h) = r.latency() {
                v["latency"] = h.to_json();
            }
            if r.counters().is_some() || r.extra_stats().is_some() || r.latency().is_some() {
                m.insert(path, v);
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A multi-key request's batch ([`Leaf::dests`]) sends every key where [`Leaf::dest`]
    /// does: all servers up, one ejected (`on_down: eject` rehashes its keys), every copy.
    #[test]
    fn leaf_dests_equal_dest_per_key() {
        let servers: Vec<String> = (1..=5).map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
        let places = || keys.iter().map(|k| k.as_bytes());
        for mode in ["libmemcached", "php-memcached-default", "pymemcache"] {
            let json = format!(
                r#"{{"servers": [{}], "mode": "{mode}", "on_down": "eject"}}"#,
                servers.join(",")
            );
            let router = builder::build(&Config::from_json(&json).unwrap(), None, None).unwrap();
            let pool = router.pools.values().next().unwrap();
            for down in [false, true] {
                if down {
                    pool.destinations()[2]
                        .health
                        .record_failure(Reason::ConnectRefused);
                }
                for replica in 0..3 {
                    let leaf = Leaf { pool, replica };
                    let want: Vec<usize> = places().map(|p| leaf.dest(p)).collect();
                    assert_eq!(leaf.dests(places()), want, "{mode} {down} {replica}");
                    if down && replica == 0 {
                        assert!(!want.contains(&2), "{mode}: the ejected server gets no key");
                    }
                }
            }
        }
    }
}
