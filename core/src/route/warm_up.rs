//! `warm_up`: bring a new (cold) cluster up without a cold cache (mcrouter WarmUpRoute;
//! Facebook "Scaling Memcache" §4.3 cold cluster warmup).
//!
//! - get/gat: cold first; a cold miss is read from warm; a warm hit is the reply and is
//!   `add`ed to cold in the background with the warm item's **remaining TTL** (asked with the
//!   meta `t` flag; `exptime` when warm speaks text and cannot say; a gat's new TTL wins).
//!   `add`, not `set`: a value written to cold meanwhile is newer and must win.
//! - gets/gats: the same, but the `add` is synchronous and cold is read again, so the CAS
//!   token handed out belongs to cold, where the following `cas` goes.
//! - lease reads (`get_or_lease`): cold's stub counts as a miss. A warm hit fills a stub this
//!   read won with a `cas` of its token (then cold is read again: a hit); a stub another
//!   client holds is left to it, and the warm value is served.
//! - set/add/replace/append/prepend/cas, incr/decr, touch: cold only.
//! - delete: **both**, cold's reply. mcrouter sends deletes to cold only; but a value left in
//!   warm after an invalidation would be copied back into cold by the next cold miss, so the
//!   invalidation goes to warm too (Facebook used a 2 s delete hold-off on cold for this).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::protocol::{Request, Response, StoreOp};
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec};
use super::{Cx, GetOpts, Key, OwnedWrites, Route, RouteConfig, Visit, Write, write_parts};
use crate::process::background;

/// `{"type": "warm_up", "cold": "new", "warm": "old", "exptime": 0}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The new (cold) route that takes all writes.
    pub cold: Box<RouteConfig>,
    /// The route with the data.
    pub warm: Box<RouteConfig>,
    /// TTL of the copies when warm cannot say (text protocol), seconds (0: none).
    #[serde(default)]
    pub exptime: u32,
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        vec![
            (".cold".to_string(), &self.cold),
            (".warm".to_string(), &self.warm),
        ]
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        Ok(Arc::new(WarmUpRoute::new(
            b.child(&self.cold, path, ".cold")?,
            b.child(&self.warm, path, ".warm")?,
            self.exptime,
            b.inline,
        )))
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct WarmUpRoute {
    cold: Arc<dyn Route>,
    warm: Arc<dyn Route>,
    exptime: u32,
    inline: bool,
    counters: Arc<RouteCounters>,
    both: [Arc<dyn Route>; 2],
}

/// The TTL a copy of `item` gets: its remaining TTL, or `fallback` when unknown; `None` when
/// it is about to expire anyway.
pub(crate) fn copy_ttl(item: &Item, fallback: u32) -> Option<u32> {
    match item.ttl {
        Some(-1) => Some(0),
        Some(t) if t > 0 => Some(t.min(i64::from(super::RELATIVE_TTL_MAX)) as u32),
        Some(_) => None,
        None => Some(fallback),
    }
}

/// Read-through of a target's misses from a source, with copies added to the target: the
/// warm-up of a cold route, and a migration's fallback to the old topology.
pub(crate) struct Fill<'a> {
    pub(crate) source: &'a Arc<dyn Route>,
    pub(crate) target: &'a Arc<dyn Route>,
    /// TTL of copies when the source cannot tell.
    pub(crate) exptime: u32,
    pub(crate) inline: bool,
    pub(crate) found: &'a std::sync::atomic::AtomicU64,
    pub(crate) copied: &'a std::sync::atomic::AtomicU64,
    pub(crate) dropped: &'a std::sync::atomic::AtomicU64,
}

impl Fill<'_> {
    /// Replace the misses in `out` (the target's answers for `keys`) with the source's hits,
    /// and `add` those to the target: in the background, or first and then read back from the
    /// target for gets/gats (so the CAS token is the target's). The source's read and the
    /// synchronous adds share the request's `cx`; background adds get their own when they run.
    pub(crate) fn misses(
        &self,
        cx: &Cx,
        out: &mut [Result<Option<Item>>],
        keys: &[Key<'_>],
        opts: GetOpts,
    ) {
        // A lease read's miss is a stub (see `crate::lease`): read through it too.
        let missing = |r: &Result<Option<Item>>| match r {
            Ok(None) => true,
            Ok(Some(it)) => it.is_lease_stub(),
            Err(_) => false,
        };
        let misses: Vec<usize> = (0..keys.len()).filter(|&i| missing(&out[i])).collect();
        if misses.is_empty() {
            return;
        }
        let sub: Vec<Key<'_>> = misses.iter().map(|&i| keys[i]).collect();
        let source_opts = GetOpts {
            ttl: true,
            ..GetOpts::default()
        };
        let found = self.source.get(cx, &sub, source_opts);
        let mut copies: Vec<(usize, Item, u32, StoreOp)> = Vec::new();
        for (&i, r) in misses.iter().zip(found) {
            if let Ok(Some(mut item)) = r {
                self.found.fetch_add(1, Relaxed);
                let ttl = opts.touch.or_else(|| copy_ttl(&item, self.exptime));
                // `add` where the target has nothing; into a stub this lease read won, a
                // `cas` with its token (an `add` would fail on the stub); a stub someone else
                // holds is theirs to fill.
                let op = match &out[i] {
                    Ok(Some(stub)) if stub.win => Some(StoreOp::Cas(stub.cas)),
                    Ok(Some(_)) => None,
                    _ => Some(StoreOp::Add),
                };
                if let (Some(ttl), Some(op)) = (ttl, op) {
                    copies.push((i, item.clone(), ttl, op));
                }
                if !opts.ttl {
                    item.ttl = None;
                }
                out[i] = Ok(Some(item));
            }
        }
        if copies.is_empty() {
            return;
        }
        self.copied.fetch_add(copies.len() as u64, Relaxed);
        let adds: Vec<Write<'_>> = copies
            .iter()
            .map(|(i, item, ttl, op)| Write {
                place: keys[*i].place,
                req: Request::Store {
                    op: *op,
                    key: keys[*i].key,
                    value: &item.value,
                    flags: item.flags,
                    exptime: *ttl,
                    noreply: false,
                },
            })
            .collect();
        if opts.cas {
            self.target.write(cx, &adds);
            let again: Vec<Key<'_>> = copies.iter().map(|(i, _, _, _)| keys[*i]).collect();
            for ((i, _, _, _), r) in copies.iter().zip(self.target.get(cx, &again, opts)) {
                if let Ok(Some(item)) = r {
                    out[*i] = Ok(Some(item));
                }
            }
        } else {
            let owned = OwnedWrites::copy(&adds);
            let target = Arc::clone(self.target);
            let cx = *cx;
            let job = Box::new(move || drop(target.write(&cx.renewed(), &owned.writes())));
            if !background::spawn(job, self.inline) {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

impl WarmUpRoute {
    /// Fill `cold` from `warm`; `exptime` for copies whose TTL warm cannot tell.
    pub fn new(
        cold: Arc<dyn Route>,
        warm: Arc<dyn Route>,
        exptime: u32,
        inline: bool,
    ) -> WarmUpRoute {
        WarmUpRoute {
            both: [Arc::clone(&cold), Arc::clone(&warm)],
            cold,
            warm,
            exptime,
            inline,
            counters: Arc::default(),
        }
    }
}

impl Route for WarmUpRoute {
    fn name(&self) -> &'static str {
        "warm_up"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        let mut out = self.cold.get(cx, keys, opts);
        let fill = Fill {
            source: &self.warm,
            target: &self.cold,
            exptime: self.exptime,
            inline: self.inline,
            found: &self.counters.warm_hits,
            copied: &self.counters.warm_adds,
            dropped: &self.counters.background_dropped,
        };
        fill.misses(cx, &mut out, keys, opts);
        out
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        if reqs.iter().all(|w| w.op() != Op::Delete) {
            return self.cold.write(cx, reqs);
        }
        // Deletes go to both (in one poll loop when both are pools), nothing else to warm;
        // cold answers.
        let deletes: Vec<usize> = (0..reqs.len())
            .filter(|&i| reqs[i].op() == Op::Delete)
            .collect();
        let parts = [
            (&self.both[0], (0..reqs.len()).collect()),
            (&self.both[1], deletes),
        ];
        let mut per = write_parts(cx, &parts, reqs);
        per.swap_remove(0)
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.cold.traverse(op, key, visit);
        if matches!(op, Op::Get | Op::Delete) {
            self.warm.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        vec![
            (".cold".to_string(), &self.cold),
            (".warm".to_string(), &self.warm),
        ]
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::testing::{Recorder, cx, delete_req, get_keys, set_req};

    #[test]
    fn cold_miss_reads_warm_and_adds_with_remaining_ttl() {
        let cold = Recorder::new("cold").store_values();
        let warm = Recorder::new("warm").store_values();
        let w = warm.route();
        w.write(
            &cx(),
            &[Write::new(Request::Store {
                op: StoreOp::Set,
                key: b"k",
                value: b"warm-value",
                flags: 7,
                exptime: 300,
                noreply: false,
            })],
        );
        let r = WarmUpRoute::new(cold.route(), w, 60, true);
        let out = get_keys(&r, &[b"k", b"absent"]);
        let item = out[0].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(item.value, b"warm-value");
        assert_eq!(item.ttl, None, "ttl only when asked");
        assert_eq!(cold.saw_ops(), ["get", "get", "add"]);
        assert_eq!(cold.saw_exptimes(), [300], "the warm item's remaining TTL");
        assert_eq!(cold.value(b"k").unwrap(), b"warm-value");
        assert!(
            warm.saw_opts().last().unwrap().ttl,
            "warm is asked for the TTL"
        );
        assert!(out[1].as_ref().unwrap().is_none());
        // Now cold hits: warm is not asked again.
        let before = warm.saw_keys().len();
        get_keys(&r, &[b"k"]);
        assert_eq!(warm.saw_keys().len(), before);
    }

    #[test]
    fn writes_go_to_cold_and_deletes_to_both() {
        let cold = Recorder::new("cold");
        let warm = Recorder::new("warm");
        let r = WarmUpRoute::new(cold.route(), warm.route(), 0, true);
        r.write(&cx(), &[set_req(b"a", b"v")]);
        r.write(&cx(), &[delete_req(b"a")]);
        // A batch mixing both: only the delete reaches warm.
        r.write(&cx(), &[set_req(b"b", b"v"), delete_req(b"a")]);
        assert_eq!(cold.saw_ops(), ["set", "delete", "set", "delete"]);
        assert_eq!(warm.saw_ops(), ["delete", "delete"]);
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Set, b"a"),
            ["cold/cold"]
        );
    }

    #[test]
    fn unknown_ttl_uses_exptime_and_never_means_never() {
        let mut item = Item::default();
        assert_eq!(copy_ttl(&item, 42), Some(42));
        item.ttl = Some(-1);
        assert_eq!(copy_ttl(&item, 42), Some(0));
        item.ttl = Some(0);
        assert_eq!(copy_ttl(&item, 42), None);
    }
}
