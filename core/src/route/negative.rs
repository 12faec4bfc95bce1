//! `negative`: a negative cache in front of a route. Keys that the route's plain gets found
//! absent are remembered in this process for `ttl_ms`, in a bounded LRU of at most `max_keys`
//! keys, and reads of them are answered as misses without I/O until this process writes the
//! key, the entry expires or it is evicted. It is for read paths that keep asking for keys that
//! do not exist (a cache of "not found" lookups, a feature flag nobody set). Another process's
//! write of a remembered key is seen at most `ttl_ms` late; this process's own writes at once.
//!
//! Per operation:
//! - get (plain reads: no CAS, touch or lease, the key placing itself; asking the TTL is
//!   allowed, so it works inside a `local` near cache too): remembered keys
//!   are misses answered in memory (`negative_hits`); the others go to `route` as one batch,
//!   and its misses are remembered (`negative_adds`). Its hits and failures are not; a hit
//!   forgets the key.
//! - gets/gats, gat, lease reads (meta `N`/`R`) and `*_by_key` reads
//!   (placed by another key, so possibly another server's item): straight to `route`
//!   (`negative_bypassed`), never remembered. A lease must reach memcached to be granted, a gat
//!   must touch the server's item, a CAS token is the server's. A hit forgets the key.
//! - set/add/replace/append/prepend/cas, delete, incr/decr, touch: the key is forgotten, the
//!   batch goes to `route`, and the key is forgotten again once the replies are in, whatever
//!   they are (a write that failed may still have landed).
//! - flush_all: forgets everything (`flush_local`).
//!
//! **A read that raced a write.** A read whose miss the server answered just before a write
//! landed can return after that write's reply: remembering it then would store an absence the
//! write already disproved, and this process would not read its own write for `ttl_ms`.
//! Forgetting after the reply alone does not prevent it (the late read stores after that), so
//! a read remembers only with proof that no write of the key started while it was out. Before
//! it goes to `route` it leaves a placeholder entry for the key (or finds one) and notes the
//! entry's CAS token; on a miss it turns the placeholder into "absent" with a `cas` on that
//! token. Every forget removes the entry, so a write, `flush_all` or eviction in between makes
//! the `cas` fail (`negative_raced`), and a new placeholder has a new token. Hence: once a
//! write's reply is in, no absence from a miss the server answered before that write exists —
//! any entry then present is removed by the second forget, and a later `cas` needs a
//! placeholder made after it, so a read sent after the write completed. The first forget is
//! not needed for that; it keeps reads made while the write is in flight from being answered
//! by the absence the write is about to disprove.
//!
//! The set is a [`LocalCache`] of empty entries (a placeholder and an absence differ by their
//! flags) with `max_ttl` = `ttl_ms`, so it brings millisecond expiry, the byte-free `max_keys`
//! bound (sharded: least recently used per shard, the total never exceeded; placeholders of
//! reads in flight count too) and fork safety: a forked child (php-fpm, gunicorn) starts with
//! an empty set and never waits on a lock a thread that vanished at `fork()` held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::defaults;
use crate::error::Result;
use crate::item::Item;
use crate::lru::LocalCache;
use crate::op::{Op, StoreOutcome};
use crate::process::fork;
use crate::protocol::{Response, StoreOp};
use crate::stats::RouteCounters;

use super::schema::{Builder, RouteSpec, invalid_field};
use super::{Cx, GetOpts, Key, Route, RouteConfig, Visit, Write};

/// `{"type": "negative", "ttl_ms": 500, "max_keys": 10000, "route": "main"}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// How long a key is remembered as absent, milliseconds (at least 1).
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u64,
    /// Keys remembered at most (at least 1); the least recently used go first.
    #[serde(default = "default_keys")]
    pub max_keys: usize,
    /// The route whose misses are remembered.
    pub route: Box<RouteConfig>,
}

fn default_ttl_ms() -> u64 {
    defaults::NEGATIVE_TTL_MS
}

fn default_keys() -> usize {
    defaults::NEGATIVE_MAX_KEYS
}

impl RouteSpec for Config {
    fn children(&self) -> Vec<(String, &RouteConfig)> {
        vec![(".route".to_string(), &self.route)]
    }

    fn check(&self, path: &str) -> Result<(), String> {
        if self.ttl_ms == 0 {
            return invalid_field(path, "ttl_ms", "must be at least 1");
        }
        if self.max_keys == 0 {
            return invalid_field(path, "max_keys", "must be at least 1");
        }
        Ok(())
    }

    fn build(&self, b: &mut Builder<'_>, path: &str) -> Result<Arc<dyn Route>> {
        Ok(Arc::new(NegativeRoute::new(
            b.child(&self.route, path, ".route")?,
            Duration::from_millis(self.ttl_ms),
            self.max_keys,
        )))
    }
}

/// Flags of a placeholder: a read of the key is out, nothing is known yet.
const PLACEHOLDER: u32 = 0;
/// Flags of a remembered absence.
const ABSENT: u32 = 1;

/// Bits of the eviction count carried over (the rest hold the process generation).
const COUNT_BITS: u32 = 48;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// See the module docs.
#[derive(Debug)]
pub struct NegativeRoute {
    absent: LocalCache,
    next: Arc<dyn Route>,
    ttl: Duration,
    max_keys: usize,
    counters: RouteCounters,
    /// The cache's eviction count already added to `negative_evictions`, with the process
    /// generation it belongs to (see [`NegativeRoute::carry_evictions`]).
    evictions_carried: AtomicU64,
}

/// What the set says about a key before a read.
enum Look {
    /// Remembered absent: answer a miss.
    Absent,
    /// Ask the route; the placeholder's CAS token, when there is one to turn into an absence.
    Ask(Option<u64>),
}

impl NegativeRoute {
    /// Remember `next`'s misses for `ttl` (at least 1 ms), at most `max_keys` (at least 1) of
    /// them.
    pub fn new(next: Arc<dyn Route>, ttl: Duration, max_keys: usize) -> NegativeRoute {
        let ttl = ttl.max(Duration::from_millis(1));
        let max_keys = max_keys.max(1);
        NegativeRoute {
            absent: LocalCache::new(max_keys, 0, Some(ttl)),
            next,
            ttl,
            max_keys,
            counters: RouteCounters::default(),
            evictions_carried: AtomicU64::new(0),
        }
    }

    /// Is `key` remembered absent? If not, leave a placeholder (unless one is there) and
    /// return its token.
    fn look(&self, key: &[u8]) -> Look {
        for first in [true, false] {
            if let Some(e) = self.absent.get(key) {
                return match e.flags {
                    ABSENT => Look::Absent,
                    _ => Look::Ask(Some(e.cas)),
                };
            }
            if first {
                // `add`: another reader's placeholder (or a fresh absence) stays as it is.
                self.absent.store(StoreOp::Add, key, b"", PLACEHOLDER, 0);
            }
        }
        // Removed again at once (a write, a flush, an eviction): ask, remember nothing.
        Look::Ask(None)
    }

    /// After the route's miss: turn the placeholder into an absence, unless something removed
    /// or replaced it meanwhile.
    fn remember(&self, key: &[u8], token: Option<u64>) {
        let stored = token.is_some_and(|t| {
            // exptime 0 is capped to max_ttl: `ttl` from now, the reply.
            let out = self.absent.store(StoreOp::Cas(t), key, b"", ABSENT, 0);
            out == StoreOutcome::Stored
        });
        let c = match stored {
            true => &self.counters.negative_adds,
            false => &self.counters.negative_raced,
        };
        c.fetch_add(1, Relaxed);
    }

    /// The cache counts evictions per process generation (a forked child's count restarts at
    /// 0) while route counters are inherited, so the part already added is kept with its
    /// generation, both in one word (a compare-and-swap, no lock: fork-safe).
    fn carry_evictions(&self) {
        let generation = fork::generation() & (u64::MAX >> COUNT_BITS);
        let now = self.absent.stats().evictions & COUNT_MASK;
        let mut seen = self.evictions_carried.load(Relaxed);
        loop {
            let carried = match seen >> COUNT_BITS == generation {
                true => seen & COUNT_MASK,
                false => 0,
            };
            if now <= carried {
                return;
            }
            let next = (generation << COUNT_BITS) | now;
            match self
                .evictions_carried
                .compare_exchange_weak(seen, next, Relaxed, Relaxed)
            {
                Ok(_) => {
                    self.counters
                        .negative_evictions
                        .fetch_add(now - carried, Relaxed);
                    return;
                }
                Err(s) => seen = s,
            }
        }
    }

    fn forget(&self, reqs: &[Write<'_>]) {
        for w in reqs {
            self.absent.delete(w.key());
        }
    }
}

impl Route for NegativeRoute {
    fn name(&self) -> &'static str {
        "negative"
    }

    fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
        self.counters.requests.fetch_add(keys.len() as u64, Relaxed);
        // Asking the TTL changes nothing about a miss (the `local` near cache asks it).
        let plain = GetOpts { ttl: false, ..opts } == GetOpts::default();
        if !plain || keys.iter().any(|k| k.key != k.place) {
            self.counters
                .negative_bypassed
                .fetch_add(keys.len() as u64, Relaxed);
            let out = self.next.get(cx, keys, opts);
            for (k, r) in keys.iter().zip(&out) {
                // The key exists (or has a lease stub): whatever was remembered is stale.
                if matches!(r, Ok(Some(_))) {
                    self.absent.delete(k.key);
                }
            }
            return out;
        }
        let mut out: Vec<Result<Option<Item>>> = Vec::with_capacity(keys.len());
        let mut ask: Vec<(usize, Option<u64>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.look(k.key) {
                Look::Absent => {
                    self.counters.negative_hits.fetch_add(1, Relaxed);
                }
                Look::Ask(token) => ask.push((i, token)),
            }
            out.push(Ok(None));
        }
        if ask.is_empty() {
            return out;
        }
        let replies = if ask.len() == keys.len() {
            self.next.get(cx, keys, opts)
        } else {
            let sub: Vec<Key<'_>> = ask.iter().map(|&(i, _)| keys[i]).collect();
            self.next.get(cx, &sub, opts)
        };
        for (&(i, token), r) in ask.iter().zip(replies) {
            let key = keys[i].key;
            match &r {
                Ok(None) => self.remember(key, token),
                Ok(Some(_)) => {
                    self.absent.delete(key);
                }
                // Nothing learnt; the placeholder expires or serves the next read.
                Err(_) => {}
            }
            out[i] = r;
        }
        out
    }

    fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
        self.counters.requests.fetch_add(reqs.len() as u64, Relaxed);
        self.forget(reqs);
        let out = self.next.write(cx, reqs);
        // Again: a read that left its placeholder during the write may have remembered an
        // absence the server answered before the write landed (see the module docs).
        self.forget(reqs);
        out
    }

    fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
        self.next.traverse(op, key, visit);
    }

    fn children(&self) -> Vec<(String, &Arc<dyn Route>)> {
        vec![(".route".to_string(), &self.next)]
    }

    fn counters(&self) -> Option<&RouteCounters> {
        self.carry_evictions();
        Some(&self.counters)
    }

    fn extra_stats(&self) -> Option<Value> {
        Some(json!({
            // Placeholders of reads in flight included.
            "keys": self.absent.stats().items,
            "max_keys": self.max_keys,
            "ttl_ms": self.ttl.as_millis() as u64,
        }))
    }

    fn flush_local(&self) {
        self.absent.flush();
        self.next.flush_local();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, OnceLock, Weak};

    use super::*;
    use crate::error::Reason;
    use crate::route::testing::{
        Recorder, cx, delete_req, get_keys, incr_req, set_req, store_req, touch_req,
    };

    fn negative(next: &Recorder, ttl_ms: u64, max_keys: usize) -> NegativeRoute {
        NegativeRoute::new(next.route(), Duration::from_millis(ttl_ms), max_keys)
    }

    fn count(r: &NegativeRoute, name: &str) -> u64 {
        r.counters()
            .unwrap()
            .values()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    }

    fn is_miss(r: &Result<Option<Item>>) -> bool {
        matches!(r, Ok(None))
    }

    fn value(r: &Result<Option<Item>>) -> Vec<u8> {
        r.as_ref().unwrap().as_ref().unwrap().value.clone()
    }

    #[test]
    fn a_miss_is_remembered_and_the_next_get_does_no_io() {
        let far = Recorder::new("far");
        far.miss_keys(&[b"gone"]);
        let r = negative(&far, 60_000, 100);
        assert!(is_miss(&get_keys(&r, &[b"gone"])[0]));
        assert_eq!(far.saw_keys(), ["gone"]);
        for _ in 0..5 {
            assert!(is_miss(&get_keys(&r, &[b"gone"])[0]));
        }
        assert_eq!(far.saw_keys(), ["gone"], "answered from memory");
        assert_eq!(count(&r, "negative_hits"), 5);
        assert_eq!(count(&r, "negative_adds"), 1);
        assert_eq!(count(&r, "requests"), 6);
        // Hits are not remembered: every get of a present key goes out.
        get_keys(&r, &[b"here"]);
        assert_eq!(value(&get_keys(&r, &[b"here"])[0]), b"far:here");
        assert_eq!(far.saw_keys(), ["gone", "here", "here"]);
        // Nor are failures.
        far.fail_keys(&[b"bad"], Reason::Timeout);
        for _ in 0..2 {
            let e = get_keys(&r, &[b"bad"]).remove(0).unwrap_err();
            assert_eq!(e.reason(), Reason::Timeout);
        }
        assert_eq!(far.saw_keys().iter().filter(|k| *k == "bad").count(), 2);
        assert_eq!(
            r.extra_stats().unwrap()["keys"],
            2,
            "gone, bad's placeholder"
        );
    }

    #[test]
    fn a_remembered_absence_expires_after_ttl_ms() {
        let far = Recorder::new("far");
        far.miss_keys(&[b"k"]);
        let r = negative(&far, 200, 100);
        get_keys(&r, &[b"k"]);
        get_keys(&r, &[b"k"]);
        assert_eq!(far.saw_keys(), ["k"]);
        std::thread::sleep(Duration::from_millis(250));
        get_keys(&r, &[b"k"]);
        assert_eq!(far.saw_keys(), ["k", "k"], "expired: asked again");
        get_keys(&r, &[b"k"]);
        assert_eq!(far.saw_keys(), ["k", "k"], "and remembered again");
    }

    #[test]
    fn every_write_of_this_process_forgets_the_key() {
        let far = Recorder::new("far").store_values();
        let r = negative(&far, 60_000, 100);
        let writes: [(&str, Write<'_>); 6] = [
            ("set", set_req(b"k", b"v")),
            ("add", store_req(StoreOp::Add, b"k", b"v")),
            ("cas", store_req(StoreOp::Cas(7), b"k", b"v")),
            ("delete", delete_req(b"k")),
            ("incr", incr_req(b"k", 1)),
            ("touch", touch_req(b"k", 10)),
        ];
        for (name, w) in writes {
            r.write(&cx(), &[delete_req(b"k")]);
            get_keys(&r, &[b"k"]);
            let before = far.saw_ops().len();
            get_keys(&r, &[b"k"]);
            assert_eq!(far.saw_ops().len(), before, "{name}: remembered first");
            r.write(&cx(), &[w]);
            let before = far.saw_ops().len();
            get_keys(&r, &[b"k"]);
            assert_eq!(
                far.saw_ops()[before..],
                ["get"],
                "{name}: forgotten, the get went out"
            );
        }
        // A set is read back at once.
        r.write(&cx(), &[delete_req(b"k")]);
        assert!(is_miss(&get_keys(&r, &[b"k"])[0]));
        r.write(&cx(), &[set_req(b"k", b"mine")]);
        assert_eq!(value(&get_keys(&r, &[b"k"])[0]), b"mine");
        // A failed write forgets too: it may have landed.
        far.miss_keys(&[b"f"]);
        get_keys(&r, &[b"f"]);
        far.fail_keys(&[b"f"], Reason::Timeout);
        assert!(r.write(&cx(), &[set_req(b"f", b"v")])[0].is_err());
        let e = get_keys(&r, &[b"f"]).remove(0).unwrap_err();
        assert_eq!(e.reason(), Reason::Timeout, "went out");
    }

    #[test]
    fn lease_cas_gat_and_ttl_reads_bypass_and_never_populate() {
        let far = Recorder::new("far");
        far.miss_keys(&[b"k"]);
        let r = negative(&far, 60_000, 100);
        let special = [
            GetOpts {
                cas: true,
                ..GetOpts::default()
            },
            GetOpts {
                touch: Some(10),
                ..GetOpts::default()
            },
            GetOpts {
                cas: true,
                lease: Some(10),
                ..GetOpts::default()
            },
            GetOpts {
                recache: Some(5),
                ..GetOpts::default()
            },
        ];
        for opts in special {
            for _ in 0..2 {
                assert!(is_miss(&r.get(&cx(), &[Key::new(b"k")], opts)[0]));
            }
        }
        assert_eq!(far.saw_keys().len(), 8, "every one went out");
        assert_eq!(r.extra_stats().unwrap()["keys"], 0, "none remembered");
        assert_eq!(count(&r, "negative_bypassed"), 8);
        // Even when the key is remembered, and the opts are passed on unchanged.
        get_keys(&r, &[b"k"]);
        for opts in special {
            r.get(&cx(), &[Key::new(b"k")], opts);
        }
        assert_eq!(far.saw_keys().len(), 13);
        assert_eq!(far.saw_opts()[9..], special);
        // A by-key read (placed by another key, maybe another server) too.
        let by_key = Key {
            key: b"k",
            place: b"elsewhere",
        };
        r.get(&cx(), &[by_key], GetOpts::default());
        assert_eq!(far.saw_keys().len(), 14);
        // Asking the TTL is still a plain read (the `local` near cache asks it): answered here.
        let ttl = GetOpts {
            ttl: true,
            ..GetOpts::default()
        };
        get_keys(&r, &[b"k"]);
        let seen = far.saw_keys().len();
        assert!(is_miss(&r.get(&cx(), &[Key::new(b"k")], ttl)[0]));
        assert_eq!(far.saw_keys().len(), seen);
        // A bypassing read that finds the key forgets the absence.
        let far = Recorder::new("far").store_values();
        let r = negative(&far, 60_000, 100);
        get_keys(&r, &[b"k"]);
        far.write(&cx(), &[set_req(b"k", b"theirs")]); // another process's write
        assert!(is_miss(&get_keys(&r, &[b"k"])[0]), "not seen yet");
        let gets = GetOpts {
            cas: true,
            ..GetOpts::default()
        };
        assert!(
            r.get(&cx(), &[Key::new(b"k")], gets)[0]
                .as_ref()
                .unwrap()
                .is_some()
        );
        assert_eq!(value(&get_keys(&r, &[b"k"])[0]), b"theirs");
    }

    #[test]
    fn the_set_is_bounded_and_evicts_the_least_recently_used() {
        let far = Recorder::new("far");
        let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("k{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        far.miss_keys(&refs);
        let r = negative(&far, 60_000, 3);
        for k in &refs[..3] {
            get_keys(&r, &[k]);
        }
        get_keys(&r, &[b"k0"]); // k0 is now the most recent: k1 goes next
        get_keys(&r, &[b"k3"]);
        assert_eq!(far.saw_keys(), ["k0", "k1", "k2", "k3"]);
        get_keys(&r, &[b"k0"]);
        get_keys(&r, &[b"k2"]);
        get_keys(&r, &[b"k3"]);
        assert_eq!(far.saw_keys().len(), 4, "k0, k2, k3 still remembered");
        get_keys(&r, &[b"k1"]);
        assert_eq!(far.saw_keys().len(), 5, "k1 was evicted");
        assert_eq!(count(&r, "negative_evictions"), 2);
        for k in &refs {
            get_keys(&r, &[k]);
        }
        assert!(r.extra_stats().unwrap()["keys"].as_u64().unwrap() <= 3);
        assert_eq!(r.extra_stats().unwrap()["max_keys"], 3);
        // One batch larger than the bound: placeholders evict each other, nothing breaks.
        let out = get_keys(&r, &refs);
        assert!(out.iter().all(is_miss));
        assert!(r.extra_stats().unwrap()["keys"].as_u64().unwrap() <= 3);
        let raced = count(&r, "negative_raced");
        assert!(
            raced >= 7,
            "{raced}: evicted placeholders are not remembered"
        );
    }

    #[test]
    fn multi_key_batches_split_and_keep_their_order() {
        let far = Recorder::new("far");
        far.miss_keys(&[b"a", b"c", b"e"]);
        let r = negative(&far, 60_000, 100);
        get_keys(&r, &[b"a", b"c"]);
        assert_eq!(far.saw_keys(), ["a", "c"]);
        assert_eq!(far.saw_opts().len(), 1, "one batch");
        let out = get_keys(&r, &[b"a", b"b", b"c", b"d", b"e"]);
        assert_eq!(
            far.saw_keys()[2..],
            ["b", "d", "e"],
            "only the unknown keys, in order"
        );
        assert_eq!(far.saw_opts().len(), 2, "as one batch");
        assert!(is_miss(&out[0]));
        assert_eq!(value(&out[1]), b"far:b");
        assert!(is_miss(&out[2]));
        assert_eq!(value(&out[3]), b"far:d");
        assert!(is_miss(&out[4]));
        // All remembered: no call at all.
        let out = get_keys(&r, &[b"e", b"a", b"c"]);
        assert!(out.iter().all(is_miss));
        assert_eq!(far.saw_opts().len(), 2);
        assert_eq!(count(&r, "negative_hits"), 2 + 3);
        // A failure in the batch stays at its position and is not remembered.
        far.fail_keys(&[b"x"], Reason::Timeout);
        let out = get_keys(&r, &[b"a", b"x", b"b"]);
        assert!(is_miss(&out[0]));
        assert_eq!(out[1].as_ref().unwrap_err().reason(), Reason::Timeout);
        assert_eq!(value(&out[2]), b"far:b");
        assert_eq!(far.saw_keys()[5..], ["x", "b"]);
    }

    #[test]
    fn flush_local_empties_and_traverse_reports_the_child() {
        let far = Recorder::new("far");
        far.miss_keys(&[b"k"]);
        let r = negative(&far, 60_000, 100);
        get_keys(&r, &[b"k"]);
        r.flush_local();
        get_keys(&r, &[b"k"]);
        assert_eq!(far.saw_keys(), ["k", "k"]);
        assert_eq!(
            crate::route::builder::destinations(&r, Op::Get, b"k"),
            ["far/far"]
        );
        assert_eq!(r.children()[0].0, ".route");
        assert_eq!(r.name(), "negative");
    }

    /// Run once, with the negative route, while the child is handling a request.
    type Hook = Box<dyn FnOnce(&NegativeRoute) + Send>;

    /// A route that runs a hook once in the middle of its next get (after the server
    /// answered) or write (before it lands): another thread's request slipping in while this
    /// one is out, made deterministic.
    struct Hooked {
        inner: Recorder,
        parent: OnceLock<Weak<NegativeRoute>>,
        on_get: Mutex<Option<Hook>>,
        on_write: Mutex<Option<Hook>>,
    }

    impl std::fmt::Debug for Hooked {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Hooked")
        }
    }

    impl Hooked {
        fn run(&self, hook: &Mutex<Option<Hook>>) {
            let hook = hook.lock().unwrap().take();
            if let Some(h) = hook {
                h(&self.parent.get().unwrap().upgrade().unwrap());
            }
        }
    }

    impl Route for Hooked {
        fn name(&self) -> &'static str {
            "hooked"
        }
        fn get(&self, cx: &Cx, keys: &[Key<'_>], opts: GetOpts) -> Vec<Result<Option<Item>>> {
            // The server answers first, then the hook runs before the reply is handled.
            let out = self.inner.get(cx, keys, opts);
            self.run(&self.on_get);
            out
        }
        fn write(&self, cx: &Cx, reqs: &[Write<'_>]) -> Vec<Result<Response>> {
            // The hook runs after the first forget, before the write lands.
            self.run(&self.on_write);
            self.inner.write(cx, reqs)
        }
        fn traverse(&self, op: Op, key: &[u8], visit: &mut dyn FnMut(Visit<'_>)) {
            self.inner.traverse(op, key, visit);
        }
    }

    fn hooked(far: &Recorder, on_get: Option<Hook>, on_write: Option<Hook>) -> Arc<NegativeRoute> {
        let child = Arc::new(Hooked {
            inner: far.clone(),
            parent: OnceLock::new(),
            on_get: Mutex::new(on_get),
            on_write: Mutex::new(on_write),
        });
        let r = Arc::new(NegativeRoute::new(
            Arc::clone(&child) as Arc<dyn Route>,
            Duration::from_secs(60),
            100,
        ));
        child.parent.set(Arc::downgrade(&r)).unwrap();
        r
    }

    #[test]
    fn a_miss_answered_before_a_write_is_not_remembered_after_it() {
        // The read's miss left the server; then this process's set ran start to finish
        // (both forgets); then the read's reply is handled. Remembering it would hide the set.
        let far = Recorder::new("far").store_values();
        let set: Hook = Box::new(|r| {
            r.write(&cx(), &[set_req(b"k", b"v")]);
        });
        let r = hooked(&far, Some(set), None);
        assert!(is_miss(&get_keys(&*r, &[b"k"])[0]), "the read missed");
        assert_eq!(count(&r, "negative_raced"), 1);
        assert_eq!(count(&r, "negative_adds"), 0);
        assert_eq!(value(&get_keys(&*r, &[b"k"])[0]), b"v", "the set is seen");
    }

    #[test]
    fn a_miss_remembered_while_a_write_is_out_is_forgotten_after_its_reply() {
        // After the write's first forget and before it lands, a read misses and remembers;
        // the second forget, after the reply, removes that absence.
        let far = Recorder::new("far").store_values();
        let read: Hook = Box::new(|r| {
            assert!(is_miss(&get_keys(r, &[b"k"])[0]));
            assert_eq!(count(r, "negative_adds"), 1);
        });
        let r = hooked(&far, None, Some(read));
        r.write(&cx(), &[set_req(b"k", b"v")]);
        assert_eq!(
            value(&get_keys(&*r, &[b"k"])[0]),
            b"v",
            "read its own write"
        );
    }

    #[test]
    fn concurrent_reads_and_writes_never_hide_a_completed_write() {
        // Threads read a key while others set and delete it through the route; after each
        // set's reply, a get of this thread must not be a remembered miss.
        let far = Recorder::new("far").store_values();
        let r = Arc::new(negative(&far, 60_000, 1000));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (r, stop) = (Arc::clone(&r), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        get_keys(&*r, &[b"k0", b"k1", b"k2"]);
                    }
                })
            })
            .collect();
        for i in 0..2000 {
            let k = format!("k{}", i % 3);
            r.write(&cx(), &[set_req(k.as_bytes(), b"v")]);
            let got = get_keys(&*r, &[k.as_bytes()]).remove(0);
            assert!(matches!(got, Ok(Some(_))), "round {i}: a set was hidden");
            r.write(&cx(), &[delete_req(k.as_bytes())]);
        }
        stop.store(true, Relaxed);
        for t in readers {
            t.join().unwrap();
        }
    }

    #[test]
    fn config_parses_with_defaults_and_checks_its_bounds() {
        use crate::config::{Config as Fae, RouteConfig};
        fn err(json: &str) -> String {
            Fae::from_json(json)
                .unwrap_err()
                .detail()
                .unwrap_or("")
                .to_string()
        }
        fn with_route(route: &str) -> String {
            format!(
                r#"{{"pools": {{"a": {{"servers": ["127.0.0.1:1"]}}, "b": {{"servers": ["127.0.0.1:2"]}}}}, "route": {route}}}"#
            )
        }
        let c = Fae::from_json(&with_route(r#"{"type": "negative", "route": "a"}"#)).unwrap();
        assert_eq!(
            c.route,
            RouteConfig::Negative(Config {
                ttl_ms: defaults::NEGATIVE_TTL_MS,
                max_keys: defaults::NEGATIVE_MAX_KEYS,
                route: Box::new(RouteConfig::pool("a")),
            })
        );
        assert_eq!(c.route.children()[0].0, ".route");
        let c = Fae::from_json(&with_route(
            r#"{"type": "negative", "ttl_ms": 50, "max_keys": 7, "route": {"type": "failover", "children": ["a", "b"]}}"#,
        ))
        .unwrap();
        assert!(matches!(
            c.route,
            RouteConfig::Negative(Config {
                ttl_ms: 50,
                max_keys: 7,
                ..
            })
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
}
