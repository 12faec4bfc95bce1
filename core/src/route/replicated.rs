//! `replicated`: every key on several replicas, on distinct hosts (Facebook "Scaling
//! Memcache" §3.2.3; mcrouter AllSync/AllMajority/AllAsync for writes). Replicas are either
//! `children` (routes, usually pools with no server in common — checked at build time) or
//! `pool` + `replicas` (copy r of a key on the r-th distinct server of one pool, copy 0 on the
//! key's own server).
//!
//! Writes — set/add/replace/append/prepend/cas, incr/decr, touch and delete alike — go to
//! every replica at once (one `poll(2)` loop when the replicas are pools). The reply:
//! - `all_sync` (default): wait for all; a failure anywhere is the reply (the "worst" reply:
//!   an error, else a NOT_STORED/EXISTS/NOT_FOUND, else success), so the caller knows a copy
//!   may be missing and can retry or delete.
//! - `all_majority`: wait for all; the reply that ⌊n/2⌋+1 replicas agree on (equal status or
//!   number). Without a majority: the first error (`majority_failed` counts it), or the worst
//!   reply when replicas answered differently.
//! - `all_async`: the first replica's reply; the others are written in the background and
//!   their replies dropped.
//!
//! `cas` is the exception: its token belongs to one server, so it goes to replica 0 (the next
//! one if that fails over), and when it stored, the other replicas get a plain `set` of the
//! same value under the write policy. gets/gats therefore read replica 0 first whatever the
//! read policy.
//!
//! Reads — get/gets/gat/gats — go to one replica; keys that fail there (a reason for which
//! [`crate::Error::should_failover`] holds) go to the next replica, up to every replica.
//! - `first`: replica 0 first (predictable; hot keys load one copy).
//! - `random`: a random first replica per call (spreads the read load).
//! - `hedged` (single-key reads; multi-key reads behave as `first`): replica 0, and if it has
//!   not answered after `hedge_after_ms` (fixed, in milliseconds with fractions: `0.3` is
//!   300 µs; or `"p95"`: the p95 of that server's recent requests,
//!   [`crate::pool::Destination::p95`]) the same read goes to replica 1; the
//!   first answer wins. The other request's reply is read to its end by the background
//!   worker, which records its latency and returns its connection to the pool (with
//!   `health.background: false` the connection is closed instead). Hedges are budgeted: at most
//!   `max_hedge_ratio` (default 0.05) of reads, with a burst of 10 ("The Tail at Scale":
//!   hedging after the p95 costs about 5 % extra load).
//!
//! gat/gats also touch the replicas that did not answer, in the background.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::error::Result;
use crate::item::Item;
use crate::op::Op;
use crate::protocol::{Request, Response, Status, StoreOp};
use crate::stats::RouteCounters;

use super::failover::indexed;
use super::pool::PoolReplica;
use super::pool::get_hedged;
use super::schema::{Builder, RouteSpec, invalid, invalid_field};
use super::{Cx, GetOpts, Key, OwnedWrites, Route, RouteConfig, Visit, Write, write_all};
use crate::pool::exchange::Hedge;
use crate::process::background;

/// `{"type": "replicated", "children": [...]}` or `{"type": "replicated", "pool": "main",
/// "replicas": 2}`, with `write`, `read`, `hedge_after_ms` and `max_hedge_ratio`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// One route per replica (usually pools with no server in common).
    #[serde(default)]
    pub children: Vec<RouteConfig>,
    /// Or: one pool, each key on `replicas` distinct servers of it.
    pub pool: Option<String>,
    /// With `pool`: copies per key.
    pub replicas: Option<usize>,
    /// How writes are sent and which reply counts.
    #[serde(default)]
    pub write: WritePolicy,
    /// Which replica serves a read.
    #[serde(default)]
    pub read: ReadPolicy,
    /// `read: hedged`: when the second replica is asked.
    #[serde(default, rename = "hedge_after_ms")]
    pub hedge_after: HedgeAfter,
    /// `read: hedged`: at most this fraction of reads may send a hedge.
    #[serde(default = "default_hedge_ratio")]
    pub max_hedge_ratio: f64,
}

fn default_hedge_ratio() -> f64 {
    0.05
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        indexed(&self.children)
    }

    fn pools(&self) -> Vec<(&'static str, &str)> {
        self.pool.iter().map(|p| ("pool", p.as_str())).collect()
    }

    fn check(&self, path: &str) -> Result<(), String> {
        let fail = |key: &str, why: &str| invalid_field(path, key, why);
        match (self.children.is_empty(), &self.pool) {
            (true, None) => fail(
                "children",
                "give the replicas as \"children\" or as \"pool\" + \"replicas\"",
            ),
            (false, Some(_)) => fail("pool", "give either \"children\" or \"pool\", not both"),
            (_, Some(_)) if self.replicas.is_none_or(|r| r < 1) => {
                fail("replicas", "with \"pool\", give \"replicas\" (at least 1)")
            }
            (_, None) if self.replicas.is_some() => {
                fail("replicas", "\"replicas\" goes with \"pool\"")
            }
            _ if !(0.0..=1.0).contains(&self.max_hedge_ratio) => {
                fail("max_hedge_ratio", "must be between 0 and 1")
            }
            _ => Ok(()),
        }
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        let kids: Vec<Arc<dyn Route>> = match &self.pool {
            Some(name) => {
                let p = b.pool(name, path)?;
                if p.has_moves() {
                    return Err(invalid(
                        &format!("{path}.pool"),
                        format!(
                            "pool \"{name}\" has buckets on the move; copies placed by \"replicas\" would skip the move's rules"
                        ),
                    ));
                }
                let n = self.replicas.unwrap_or(1);
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
                let kids = b.children(self, path)?;
                distinct_hosts(&kids, path)?;
                kids
            }
        };
        if self.read == ReadPolicy::Hedged && kids.iter().any(|k| k.leaf().is_none()) {
            return Err(invalid(
                &format!("{path}.read"),
                "hedged reads race two servers: the replicas must be pools",
            ));
        }
        Ok(Arc::new(ReplicatedRoute::new(
            kids,
            self.write,
            self.read,
            self.hedge_after,
            self.max_hedge_ratio,
            b.inline,
        )))
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
    /// The primary destination's observed p95 latency (at least [`HEDGE_AFTER_MIN`]).
    #[default]
    P95,
    /// A fixed delay: `hedge_after_ms` as a number of milliseconds, fractions allowed (`0.3`
    /// is 300 µs), kept to the microsecond.
    Fixed(Duration),
}

/// The shortest hedge delay: 10 µs (a timer cannot do better, and a read never answers sooner).
pub const HEDGE_AFTER_MIN: Duration = Duration::from_micros(10);
/// The longest fixed hedge delay: 60 s.
const HEDGE_AFTER_MAX_MS: f64 = 60_000.0;

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(f64),
            Name(String),
        }
        const EXPECTED: &str =
            "expected milliseconds (0 to 60000, fractions allowed: 0.3 is 300 µs) or \"p95\"";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(EXPECTED))? {
            Raw::Ms(ms) if ms.is_finite() && (0.0..=HEDGE_AFTER_MAX_MS).contains(&ms) => {
                // Whole milliseconds mean what they always did; 0 asks for the minimum.
                let us = (ms * 1000.0).round() as u64;
                Ok(HedgeAfter::Fixed(
                    Duration::from_micros(us).max(HEDGE_AFTER_MIN),
                ))
            }
            Raw::Ms(ms) => Err(de::Error::custom(format!("{EXPECTED}, got {ms}"))),
            Raw::Name(s) if s == "p95" => Ok(HedgeAfter::P95),
            Raw::Name(s) => Err(de::Error::custom(format!("{EXPECTED}, got \"{s}\""))),
        }
    }
}

/// `touch key exptime` for each key (a gat's new TTL for the replicas that did not answer).
fn touches<'a>(keys: &[Key<'a>], exptime: u32) -> Vec<Write<'a>> {
    keys.iter()
        .map(|k| Write {
            place: k.place,
            req: Request::Touch {
                key: k.key,
                exptime,
                noreply: false,
            },
        })
        .collect()
}

/// Hedge credits are kept in millionths of a hedge.
const UNIT: u64 = 1_000_000;
/// Hedges that may be sent back to back.
const BURST: u64 = 10 * UNIT;
/// The hedge delay before a destination has enough samples for a p95.
const P95_DEFAULT: Duration = Duration::from_millis(10);

/// See the module docs.
#[derive(Debug)]
pub struct ReplicatedRoute {
    children: Vec<Arc<dyn Route>>,
    write: WritePolicy,
    read: ReadPolicy,
    hedge_after: HedgeAfter,
    /// Credit per read, in millionths of a hedge.
    hedge_credit: u64,
    credits: AtomicU64,
    inline: bool,
    counters: Arc<RouteCounters>,
}

/// Severity of a reply, for "the worst reply".
fn severity(r: &Result<Response>) -> u8 {
    match r {
        Err(_) => 3,
        Ok(Response::Status {
            status: Status::Success,
            ..
        })
        | Ok(Response::Number(_)) => 0,
        Ok(Response::Status {
            status: Status::NotFound | Status::Miss,
            ..
        }) => 1,
        Ok(_) => 2,
    }
}

/// What makes two replies "the same" for a majority: the status, or the number.
fn outcome(r: &Response) -> (u8, u64) {
    match r {
        Response::Status { status, .. } => (0, *status as u64),
        Response::Number(n) => (1, *n),
        _ => (2, 0),
    }
}

impl ReplicatedRoute {
    /// Replicas `children`; policies as configured. `inline`: `all_async` copies run on the
    /// caller's thread after its reply.
    pub fn new(
        children: Vec<Arc<dyn Route>>,
        write: WritePolicy,
        read: ReadPolicy,
        hedge_after: HedgeAfter,
        max_hedge_ratio: f64,
        inline: bool,
    ) -> ReplicatedRoute {
        ReplicatedRoute {
            children,
            write,
            read,
            hedge_after,
            hedge_credit: (max_hedge_ratio.clamp(0.0, 1.0) * UNIT as f64) as u64,
            credits: AtomicU64::new(BURST),
            inline,
            counters: Arc::default(),
        }
    }

    fn random(&self) -> u64 {
        // Per thread and per process: forked workers do not share a sequence.
        crate::process::random::next_u64()
    }

    /// Earn a read's share of hedge credit.
    fn earn(&self) {
        let _ = self.credits.fetch_update(Ordering::AcqRel, Relaxed, |c| {
            (c < BURST).then(|| (c + self.hedge_credit).min(BURST))
        });
    }

    /// Spend one hedge, if the budget allows.
    fn take_hedge(&self) -> bool {
        self.credits
            .fetch_update(Ordering::AcqRel, Relaxed, |c| c.checked_sub(UNIT))
            .is_ok()
    }

    /// Reads from replica `start`, then the next ones for keys that failed over.
    fn read_from(
        &self,
        cx: &Cx,
        keys: &[Key<'_>],
        opts: GetOpts,
        start: usize,
        tried: usize,
        mut out: Option<Vec<Result<Option<Item>>>>,
    ) -> Vec<Result<Option<Item>>> {
        let n = self.children.len();
        let mut out = out
            .take()
            .unwrap_or_else(|| self.children[start % n].get(cx, keys, opts));
        for t in tried..n {
            let again: Vec<usize> = (0..keys.len())
                .filter(|&i| matches!(&out[i], Err(e) if e.should_failover()))
                .collect();
            if again.is_empty() {
                break;
            }
            self.counters
                .failovers
                .fetch_add(again.len() as u64, Relaxed);
            let sub: Vec<Key<'_>> = again.iter().map(|&i| keys[i]).collect();
            let res = self.children[(start + t) % n].get(cx, &sub, opts);
            for (i, r) in again.into_iter().zip(res) {
                out[i] = r;
            }
        }
        out
    }

    fn hedged(&self, cx: &Cx, key: Key<'_>, opts: GetOpts) -> Vec<Result<Option<Item>>> {
        let (Some(a), Some(b)) = (self.children[0].leaf(), self.children[1].leaf()) else {
            return self.read_from(cx, &[key], opts, 0, 1, None);
        };
        let (da, db) = (a.dest(key.place), b.dest(key.place));
        let after = match self.hedge_after {
            HedgeAfter::Fixed(d) => d,
            HedgeAfter::P95 => a.pool.dests[da]
                .p95()
                .map_or(P95_DEFAULT, |p| p.max(HEDGE_AFTER_MIN)),
        };
        self.earn();
        let (r, how) = get_hedged(cx, (a, da), (b, db), key, opts, after, &|| {
            self.take_hedge()
        });
        let c = &self.counters;
        match how {
            Hedge::NotNeeded => {}
            Hedge::Suppressed => {
                c.hedges_suppressed.fetch_add(1, Relaxed);
            }
            Hedge::Lost => {
                c.hedges_sent.fetch_add(1, Relaxed);
            }
            Hedge::Won => {
                c.hedges_sent.fetch_add(1, Relaxed);
                c.hedges_won.fetch_add(1, Relaxed);
            }
        }
        let tried = if matches!(how, Hedge::Lost | Hedge::Won) {
            2
        } else {
            1
        };
        self.read_from(cx, &[key], opts, 0, tried, Some(vec![r]))
    }

    /// `all_async`, and the touches of a gat: `reqs` on `children`, after the reply (with a
    /// context of their own, renewed from the request's `cx` when the job runs).
    fn background_all(&self, cx: &Cx, children: &[Arc<dyn Route>], reqs: &[Write<'_>]) {
        let owned = OwnedWrites::copy(reqs);
        let rest: Vec<Arc<dyn Route>> = children.to_vec();
        let counters = Arc::clone(&self.counters);
        let cx = *cx;
        let job = Box::new(move || {
            let per = write_all(&cx.renewed(), &rest, &owned.writes());
            let failed = per.iter().flatten().filter(|r| r.is_err()).count();
            counters.replica_failures.fetch_add(failed as u64, Relaxed);
        });
        if !background::spawn(job, self.inline) {
            self.counters.background_dropped.fetch_add(1, Relaxed);
        }
    }

    /// A `cas`: its token belongs to one server (reads with CAS use replica 0 first), so it
    /// goes to one replica at a time, in order, until one answers; when it stored, the other
    /// replicas get a plain `set` of the same value (per the write policy: all at once, or in
    /// the background for `all_async`), so the copies stay equal.
    fn write_one_ordered(&self, cx: &Cx, w: &Write<'_>) -> Result<Response> {
        let n = self.children.len();
        let mut reply = Err(crate::Error::new(crate::Reason::NoServers));
        let mut answered = 0;
        for (i, c) in self.children.iter().enumerate() {
            reply = c.write(cx, std::slice::from_ref(w)).pop().unwrap_or(reply);
            answered = i;
            match &reply {
                Err(e) if e.should_failover() && i + 1 < n => {
                    self.counters.failovers.fetch_add(1, Relaxed);
                }
                _ => break,
            }
        }
        let stored = matches!(
            reply,
            Ok(Response::Status {
                status: Status::Success,
                ..
            })
        );
        if stored && n > 1 {
            let mut set = *w;
            if let Request::Store { op, .. } = &mut set.req {
                *op = StoreOp::Set;
            }
            let others: Vec<Arc<dyn Route>> = (0..n)
                .filter(|&i| i != answered)
                .map(|i| Arc::clone(&self.children[i]))
                .collect();
            if self.write == WritePolicy::AllAsync {
                self.background_all(cx, &others, &[set]);
            } else {
                let per = write_all(cx, &others, &[set]);
                let replies: Vec<Result<Response>> = per.into_iter().flatten().collect();
                if self.write == WritePolicy::AllSync {
                    if let Some(e) = replies.iter().find_map(|r| r.as_ref().err()) {
                        self.counters.replica_failures.fetch_add(1, Relaxed);
                        return Err(e.clone());
                    }
                } else {
                    let failed = replies.iter().filter(|r| r.is_err()).count();
                    self.counters
                        .replica_failures
                        .fetch_add(failed as u64, Relaxed);
                    if 1 + replies.len() - failed < n / 2 + 1 {
                        self.counters.majority_failed.fetch_add(1, Relaxed);
                        return Err(replies
                            .into_iter()
                            .find_map(|r| r.err())
                            .unwrap_or_else(|| crate::Error::new(crate::Reason::NoServers)));
                    }
                }
            }
        }
        reply
    }

    /// Combine one request's replies from every replica per the write policy.
    fn combine(&self, replies: Vec<Result<Response>>) -> Result<Response> {
        let failed = replies.iter().filter(|r| r.is_err()).count();
        self.counters
            .replica_failures
            .fetch_add(failed as u64, Relaxed);
        if self.write == WritePolicy::AllMajority {
            let need = replies.len() / 2 + 1;
            for r in replies.iter().flatten() {
                let k = outcome(r);
                if replies.iter().flatten().filter(|x| outcome(x) == k).count() >= need {
                    return Ok(r.clone());
                }
            }
            self.counters.majority_failed.fetch_add(1, Relaxed);
        }
        let mut worst: Option<Result<Response>> = None;
        for r in replies {
            if worst.as_ref().is_none_or(|w| severity(&r) > severity(w)) {
                worst = Some(r);
            }
        }
        worst.unwrap_or(Ok(Response::End))
    }
}

impl Route for ReplicatedRoute {
    fn name(&self) -> &'static str {
        "replicated"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        let out = match self.read {
            // gets/gats: a CAS token is one server's; the `cas` that follows goes to replica 0
            // first (see `write`), so the token must come from there too.
            _ if opts.cas => self.read_from(cx, keys, opts, 0, 1, None),
            ReadPolicy::Hedged if keys.len() == 1 && self.children.len() > 1 => {
                self.hedged(cx, keys[0], opts)
            }
            ReadPolicy::Random => {
                let start = (self.random() % self.children.len() as u64) as usize;
                self.read_from(cx, keys, opts, start, 1, None)
            }
            _ => self.read_from(cx, keys, opts, 0, 1, None),
        };
        if let Some(exptime) = opts.touch {
            // gat/gats touched the replica that answered; the others get a touch in the
            // background (the replica that answered gets a harmless second one).
            self.background_all(cx, &self.children, &touches(keys, exptime));
        }
        out
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        if reqs.iter().any(|w| {
            matches!(
                w.req,
                Request::Store {
                    op: StoreOp::Cas(_),
                    ..
                }
            )
        }) {
            return reqs.iter().map(|w| self.write_one_ordered(cx, w)).collect();
        }
        if self.write == WritePolicy::AllAsync {
            let out = self.children[0].write(cx, reqs);
            if self.children.len() > 1 {
                self.background_all(cx, &self.children[1..], reqs);
            }
            return out;
        }
        let per = write_all(cx, &self.children, reqs);
        let mut columns: Vec<std::vec::IntoIter<Result<Response>>> =
            per.into_iter().map(|v| v.into_iter()).collect();
        (0..reqs.len())
            .map(|_| {
                let replies: Vec<Result<Response>> =
                    columns.iter_mut().filter_map(|c| c.next()).collect();
                self.combine(replies)
            })
            .collect()
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        for c in &self.children {
            c.traverse(op, key, visit);
        }
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        self.children
            .iter()
            .enumerate()
            .map(|(i, c)| (format!(".children[{i}]"), c))
            .collect()
    }

    fn counters(&self) -> Option<&RouteCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;
    use crate::route::testing::{Recorder, cx, delete_req, get_keys, set_req};

    fn three(write: WritePolicy, read: ReadPolicy) -> (Vec<Recorder>, ReplicatedRoute) {
        let recs = vec![
            Recorder::new("r0"),
            Recorder::new("r1"),
            Recorder::new("r2"),
        ];
        let kids = recs.iter().map(|r| r.route()).collect();
        let r = ReplicatedRoute::new(kids, write, read, HedgeAfter::P95, 0.05, true);
        (recs, r)
    }

    #[test]
    fn writes_reach_every_replica_and_all_sync_reports_any_failure() {
        let (recs, r) = three(WritePolicy::AllSync, ReadPolicy::First);
        let ok = r.write(&cx(), &[set_req(b"a", b"v"), delete_req(b"b")]);
        assert!(ok.iter().all(|x| x.is_ok()));
        for rec in &recs {
            assert_eq!(rec.saw_ops(), ["set", "delete"]);
        }
        recs[2].fail_keys(&[b"a"], Reason::Timeout);
        let w = r.write(&cx(), &[set_req(b"a", b"v")]);
        assert_eq!(w[0].as_ref().unwrap_err().reason(), Reason::Timeout);
    }

    #[test]
    fn all_majority_survives_one_of_three_and_fails_with_two() {
        let (recs, r) = three(WritePolicy::AllMajority, ReadPolicy::First);
        recs[1].fail_keys(&[b"a"], Reason::ConnectRefused);
        assert!(r.write(&cx(), &[set_req(b"a", b"v")])[0].is_ok());
        recs[2].fail_keys(&[b"a"], Reason::ConnectRefused);
        let w = r.write(&cx(), &[set_req(b"a", b"v")]);
        assert_eq!(w[0].as_ref().unwrap_err().reason(), Reason::ConnectRefused);
        assert_eq!(r.counters.majority_failed.load(Relaxed), 1);
    }

    #[test]
    fn all_async_answers_from_the_first_and_copies_the_rest() {
        let (recs, r) = three(WritePolicy::AllAsync, ReadPolicy::First);
        recs[1].fail_keys(&[b"a"], Reason::Timeout);
        assert!(r.write(&cx(), &[set_req(b"a", b"v")])[0].is_ok());
        assert_eq!(
            recs[2].saw_ops(),
            ["set"],
            "inline copies ran after the reply"
        );
        assert_eq!(r.counters.replica_failures.load(Relaxed), 1);
    }

    #[test]
    fn reads_go_to_one_replica_and_fail_over_per_key() {
        let (recs, r) = three(WritePolicy::AllSync, ReadPolicy::First);
        recs[0].fail_keys(&[b"b"], Reason::Tko);
        recs[1].fail_keys(&[b"b"], Reason::Timeout);
        let out = get_keys(&r, &[b"a", b"b"]);
        assert_eq!(out[0].as_ref().unwrap().as_ref().unwrap().value, b"r0:a");
        assert_eq!(out[1].as_ref().unwrap().as_ref().unwrap().value, b"r2:b");
        assert_eq!(recs[1].saw_keys(), ["b"]);
        // A miss is an answer: no other replica is asked.
        recs[0].miss_keys(&[b"m"]);
        get_keys(&r, &[b"m"]);
        assert_eq!(recs[1].saw_keys(), ["b"]);
    }

    #[test]
    fn cas_goes_to_one_replica_then_sets_the_others() {
        let (recs, r) = three(WritePolicy::AllMajority, ReadPolicy::Random);
        let cas = Write::new(Request::Store {
            op: StoreOp::Cas(7),
            key: b"k",
            value: b"v",
            flags: 0,
            exptime: 0,
            noreply: false,
        });
        assert!(r.write(&cx(), &[cas])[0].is_ok());
        assert_eq!(recs[0].saw_ops(), ["cas"]);
        assert_eq!(recs[1].saw_ops(), ["set"]);
        assert_eq!(recs[2].saw_ops(), ["set"]);
        // Replica 0 down: the cas goes to replica 1, the others get the set (a majority of
        // copies is written; all_sync would report replica 0's failure).
        recs[0].fail_keys(&[b"k"], Reason::Tko);
        assert!(r.write(&cx(), &[cas])[0].is_ok());
        assert_eq!(recs[1].saw_ops(), ["set", "cas"]);
        assert_eq!(recs[0].saw_ops(), ["cas", "cas", "set"]);
        // gets read replica 0 first even with random reads.
        let opts = GetOpts {
            cas: true,
            ..GetOpts::default()
        };
        recs[0].fail_keys(&[b"x"], Reason::Timeout);
        let keys = [Key::new(b"g")];
        for _ in 0..20 {
            r.get(&cx(), &keys, opts);
        }
        assert_eq!(recs[0].saw_keys().iter().filter(|k| *k == "g").count(), 20);
    }

    #[test]
    fn gat_touches_the_other_replicas() {
        let (recs, r) = three(WritePolicy::AllSync, ReadPolicy::First);
        let opts = GetOpts {
            touch: Some(60),
            ..GetOpts::default()
        };
        r.get(&cx(), &[Key::new(b"k")], opts);
        assert_eq!(recs[1].saw_ops(), ["touch"]);
        assert_eq!(recs[2].saw_exptimes(), [60]);
    }

    #[test]
    fn random_reads_spread_over_replicas() {
        let (recs, r) = three(WritePolicy::AllSync, ReadPolicy::Random);
        for _ in 0..300 {
            get_keys(&r, &[b"k"]);
        }
        for rec in &recs {
            let n = rec.saw_keys().len();
            assert!((60..140).contains(&n), "{n}");
        }
    }

    #[test]
    fn hedge_budget_allows_the_ratio_plus_a_burst() {
        let (_, r) = three(WritePolicy::AllSync, ReadPolicy::Hedged);
        let mut sent = 0;
        for _ in 0..1000 {
            r.earn();
            if r.take_hedge() {
                sent += 1;
            }
        }
        // 10 of burst + 5 % of 1000 reads.
        assert!((55..=61).contains(&sent), "{sent}");
    }

    #[test]
    fn hedge_after_takes_whole_or_fractional_milliseconds() {
        let parse = |v: serde_json::Value| serde_json::from_value::<HedgeAfter>(v);
        let us = |n| Ok(HedgeAfter::Fixed(Duration::from_micros(n)));
        assert_eq!(parse(serde_json::json!(5)).map_err(|_| ()), us(5000));
        assert_eq!(parse(serde_json::json!(0.3)).map_err(|_| ()), us(300));
        assert_eq!(parse(serde_json::json!(0.0005)).map_err(|_| ()), us(10));
        assert_eq!(parse(serde_json::json!(0)).map_err(|_| ()), us(10));
        assert_eq!(
            parse(serde_json::json!("p95")).map_err(|_| ()),
            Ok(HedgeAfter::P95)
        );
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(60_001),
            serde_json::json!("p99"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("fractions allowed"), "{e}");
        }
    }
}
