//! `local`: an in-process LRU ([`crate::lru::LocalCache`]) with item and byte limits and TTLs.
//!
//! Without `route` it **is** the cache (the default when a config lists no servers): every
//! command is answered by the process's own memory with memcached's semantics — get, gets
//! (CAS tokens of its own), gat/gats, set/add/replace/append/prepend/cas, delete, incr/decr,
//! touch. Nothing is shared between processes.
//!
//! With `route` it is a **near cache** in front of that route, with `ttl_ms` as the bound on
//! staleness (another process's write is seen at most that late):
//! - get: a local hit is the reply; misses go to `route` as one batch, and its hits are
//!   kept locally (for at most `ttl_ms`, and no longer than the item's own TTL when known).
//! - gets: straight to `route` (a CAS token must be the server's).
//! - gat/gats: straight to `route` (the new TTL must reach the server: answered from a local
//!   hit, the server's item would still expire at its old time); the local copy is dropped.
//! - set/add/replace/append/prepend/cas, incr/decr, touch, delete: to `route`, then the local
//!   copy is dropped whatever the outcome, so this process reads its own writes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::defaults;
use crate::error::{Error, Result};
use crate::item::Item;
use crate::lru::LocalCache;
use crate::op::{Op, StoreOutcome};
use crate::protocol::{Request, Response, Status};
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec, invalid_field};
use super::warm_up::copy_ttl;
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write, status, stored};

/// `{"type": "local", "max_items": 10000, "max_bytes": 67108864, "ttl_ms": 1000, "route": "main"}`
/// (every field optional).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Largest number of items.
    #[serde(default = "default_items")]
    pub max_items: usize,
    /// Largest total size, bytes (keys + values + 160 bytes of bookkeeping per item).
    #[serde(default = "default_bytes")]
    pub max_bytes: usize,
    /// Longest lifetime of an item, milliseconds (a near cache's staleness bound).
    pub ttl_ms: Option<u64>,
    /// The route behind a near cache.
    pub route: Option<Box<RouteConfig>>,
}

fn default_items() -> usize {
    defaults::LOCAL_MAX_ITEMS
}

fn default_bytes() -> usize {
    defaults::LOCAL_MAX_BYTES
}

impl Default for Config {
    /// The whole cache, with the default bounds (what a config without servers gets).
    fn default() -> Config {
        Config {
            max_items: default_items(),
            max_bytes: default_bytes(),
            ttl_ms: None,
            route: None,
        }
    }
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        self.route
            .iter()
            .map(|r| (".route".to_string(), &**r))
            .collect()
    }

    fn check(&self, path: &str) -> Result<(), String> {
        if self.max_items == 0 && self.max_bytes == 0 {
            return invalid_field(
                path,
                "max_items",
                "give max_items or max_bytes (at least 1)",
            );
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let next = self
            .route
            .as_deref()
            .map(|r| b.child(r, path, ".route"))
            .transpose()?;
        Ok(Arc::new(LocalRoute::new(
            self.max_items,
            self.max_bytes,
            self.ttl_ms.map(Duration::from_millis),
            next,
        )))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct LocalRoute {
    cache: LocalCache,
    next: Option<Arc<dyn Route>>,
    counters: RouteCounters,
}

impl LocalRoute {
    /// A cache of at most `max_items` and `max_bytes` (0: that bound is off), entries living at
    /// most `ttl`; in front of `next` when given.
    pub fn new(
        max_items: usize,
        max_bytes: usize,
        ttl: Option<Duration>,
        next: Option<Arc<dyn Route>>,
    ) -> LocalRoute {
        LocalRoute {
            cache: LocalCache::new(max_items, max_bytes, ttl),
            next,
            counters: RouteCounters::default(),
        }
    }

    fn lookup(&self, key: &[u8], opts: GetOpts) -> Option<Item> {
        let mut item = match opts.touch {
            Some(t) => self.cache.get_and_touch(key, t),
            None => self.cache.get(key),
        }?;
        if !opts.cas {
            item.cas = 0;
        }
        if opts.ttl {
            item.ttl = match self.cache.remaining_ttl(key) {
                Some(Some(d)) => Some(d.as_secs() as i64),
                _ => Some(-1),
            };
        }
        Some(item)
    }

    /// Answer one write from the cache itself.
    fn apply(&self, w: &Write<'_>) -> Result<Response> {
        Ok(match w.req {
            Request::Store {
                op,
                key,
                value,
                flags,
                exptime,
                ..
            } => match self.cache.store(op, key, value, flags, exptime) {
                StoreOutcome::Stored => stored(),
                StoreOutcome::NotStored => status(Status::NotStored),
                StoreOutcome::Exists => status(Status::Exists),
                StoreOutcome::NotFound => status(Status::NotFound),
            },
            Request::Delete { key, .. } => match self.cache.delete(key) {
                true => status(Status::Success),
                false => status(Status::NotFound),
            },
            Request::Arith {
                key, incr, delta, ..
            } => match self.cache.arith(key, incr, delta).map_err(Error::from)? {
                Some(n) => Response::Number(n),
                None => status(Status::NotFound),
            },
            Request::Touch { key, exptime, .. } => match self.cache.touch(key, exptime) {
                true => status(Status::Success),
                false => status(Status::NotFound),
            },
            _ => status(Status::NotStored),
        })
    }
}

impl Route for LocalRoute {
    fn name(&self) -> &'static str {
        "local"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        let Some(next) = &self.next else {
            return keys
                .iter()
                .map(|k| {
                    let hit = self.lookup(k.key, opts);
                    let c = match hit {
                        Some(_) => &self.counters.local_hits,
                        None => &self.counters.local_misses,
                    };
                    c.fetch_add(1, Relaxed);
                    Ok(hit)
                })
                .collect();
        };
        // A gat used to be answered by a local hit, touching only the local copy: the server's
        // item kept its old expiry (found by core/tests/e2e_routes.rs). Touches go out.
        if opts.cas || opts.touch.is_some() {
            if opts.touch.is_some() {
                for k in keys {
                    self.cache.delete(k.key);
                }
            }
            return next.get(cx, keys, opts);
        }
        let mut out: Vec<Result<Option<Item>>> = Vec::with_capacity(keys.len());
        let mut misses: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.lookup(k.key, opts) {
                Some(item) => {
                    self.counters.local_hits.fetch_add(1, Relaxed);
                    out.push(Ok(Some(item)));
                }
                None => {
                    self.counters.local_misses.fetch_add(1, Relaxed);
                    misses.push(i);
                    out.push(Ok(None));
                }
            }
        }
        if misses.is_empty() {
            return out;
        }
        let sub: Vec<Key<'_>> = misses.iter().map(|&i| keys[i]).collect();
        // Ask for each item's TTL (meta `t`) so that no copy outlives the item itself: a 2 s
        // item must not be served for the whole ttl_ms. Costs an `mg` per key instead of one
        // text `get` line on meta pools; text pools cannot say and ttl_ms alone bounds them.
        let fetch = GetOpts { ttl: true, ..opts };
        for (&i, mut r) in misses.iter().zip(next.get(cx, &sub, fetch)) {
            if let Ok(Some(item)) = &mut r {
                // The item's own TTL bounds the copy when the server told it (gat, or `t`).
                // None: it expires this second, not worth keeping; unknown (text): ttl_ms alone.
                let exptime = opts.touch.or_else(|| copy_ttl(item, 0));
                if let Some(exptime) = exptime {
                    let op = crate::protocol::StoreOp::Set;
                    self.cache
                        .store(op, keys[i].key, &item.value, item.flags, exptime);
                }
                if !opts.ttl {
                    item.ttl = None;
                }
            }
            out[i] = r;
        }
        out
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        match &self.next {
            None => reqs.iter().map(|w| self.apply(w)).collect(),
            Some(next) => {
                let out = next.write(cx, reqs);
                for w in reqs {
                    self.cache.delete(w.key());
                }
                out
            }
        }
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        visit(Visit {
            pool: "local",
            addr: "local",
        });
        if let Some(n) = &self.next {
            n.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        self.next
            .iter()
            .map(|n| (".route".to_string(), n))
            .collect()
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }

    fn extra_stats(&self) -> Option<Value> {
        let s = self.cache.stats();
        Some(json!({
            "items": s.items,
            "bytes": s.bytes,
            "evictions": s.evictions,
            "expired": s.expired,
        }))
    }

    fn flush_local(&self) {
        self.cache.flush();
        if let Some(n) = &self.next {
            n.flush_local();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::testing::{Recorder, cx, delete_req, get_keys, set_req};

    #[test]
    fn standalone_answers_like_memcached() {
        let r = LocalRoute::new(100, 0, None, None);
        assert!(get_keys(&r, &[b"k"])[0].as_ref().unwrap().is_none());
        r.write(&cx(), &[set_req(b"k", b"v")]);
        assert_eq!(
            get_keys(&r, &[b"k"])[0]
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap()
                .value,
            b"v"
        );
        let d = r.write(&cx(), &[delete_req(b"k"), delete_req(b"k")]);
        assert_eq!(d[0].as_ref().unwrap(), &status(Status::Success));
        assert_eq!(d[1].as_ref().unwrap(), &status(Status::NotFound));
        assert_eq!(r.counters.local_hits.load(Relaxed), 1);
        assert_eq!(r.counters.local_misses.load(Relaxed), 1);
    }

    #[test]
    fn near_cache_serves_hits_locally_and_drops_on_write() {
        let far = Recorder::new("far");
        let r = LocalRoute::new(100, 0, Some(Duration::from_secs(5)), Some(far.route()));
        let first = get_keys(&r, &[b"a", b"b"]);
        assert_eq!(first[0].as_ref().unwrap().as_ref().unwrap().value, b"far:a");
        assert_eq!(far.saw_keys(), ["a", "b"]);
        get_keys(&r, &[b"a", b"b", b"c"]);
        assert_eq!(
            far.saw_keys(),
            ["a", "b", "c"],
            "only the local miss goes out"
        );
        r.write(&cx(), &[set_req(b"a", b"new")]);
        get_keys(&r, &[b"a"]);
        assert_eq!(
            far.saw_keys(),
            ["a", "b", "c", "a", "a"],
            "a write drops the copy"
        );
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Get, b"a"),
            ["local/local", "far/far"]
        );
    }

    #[test]
    fn near_cache_sends_gat_to_the_route_even_on_a_local_hit() {
        let far = Recorder::new("far");
        let r = LocalRoute::new(100, 0, Some(Duration::from_secs(5)), Some(far.route()));
        get_keys(&r, &[b"a"]);
        let gat = GetOpts {
            touch: Some(100),
            ..GetOpts::default()
        };
        let out = r.get(&cx(), &[Key::new(b"a")], gat);
        assert_eq!(out[0].as_ref().unwrap().as_ref().unwrap().value, b"far:a");
        assert_eq!(far.saw_keys(), ["a", "a"], "the touch reached the route");
        get_keys(&r, &[b"a"]);
        assert_eq!(
            far.saw_keys(),
            ["a", "a", "a"],
            "the local copy was dropped"
        );
    }
}
