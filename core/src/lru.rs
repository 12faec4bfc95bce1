//! `LocalCache`: a bounded, thread-safe, in-process LRU cache that answers like memcached.
//!
//! It backs the `local` route: the embedded default when a config lists no servers, and a near
//! cache in front of memcached (with `max_ttl` as its staleness bound).
//!
//! Per operation:
//! - **get / gat**: a live entry is returned (value, flags, CAS token) and becomes the most
//!   recently used; gat also sets its expiry. An expired entry is removed and is a miss.
//! - **set / add / replace / append / prepend / cas**: memcached's outcomes exactly — add on a
//!   live key is `NotStored` (and promotes it, as memcached does); replace, append and prepend
//!   on a missing key are `NotStored`; cas on a missing key is `NotFound`, on a changed one
//!   `Exists`. Append and prepend keep the entry's flags and expiry and ignore the request's.
//! - **delete**: true when a live entry was removed.
//! - **incr / decr**: the value must be decimal ASCII digits (padding whitespace allowed, as
//!   memcached's own incr leaves it), else [`ArithError::NonNumeric`]. incr wraps at 2^64, decr
//!   stops at 0, the value is rewritten as plain decimal; flags and expiry are kept.
//! - **touch**: sets the expiry of a live entry; like memcached it keeps the CAS token.
//!
//! Expiry follows memcached's `exptime`: 0 never expires, up to 30 days is seconds from now,
//! anything larger is an absolute unix time (one already past stores nothing visible). Every
//! lifetime is then capped to `max_ttl`, including "never". Expiry is checked against the
//! monotonic clock; an absolute time is converted with the wall clock once, when it is given.
//!
//! CAS tokens come from one counter per cache, starting at 1; every modification (store,
//! append, incr, …) takes the next one.
//!
//! Bounds: an entry costs `key.len() + value.len() +` [`ENTRY_OVERHEAD`] bytes. The cache is
//! split into shards (up to 16, by a hash of the key), each an independent LRU behind its own
//! mutex with an exact share of `max_items` and `max_bytes`, so the totals are never exceeded.
//! Eviction is therefore least-recently-used within a shard, approximately LRU overall. Before
//! evicting a live entry a shard drops expired ones among its [`EXPIRED_SCAN`] least recently
//! used entries (memcached's `lru_pull_tail` looks at 5); elsewhere expired entries are
//! removed lazily, when they are looked up. An entry larger than its shard's byte share is
//! refused (`NotStored`) rather than emptying the shard for it; small caches get fewer shards
//! so that share stays useful (see [`LocalCache::new`]).
//!
//! Fork safety: php-fpm, gunicorn and uwsgi fork after loading. A shard mutex held by another
//! thread at `fork()` would stay locked forever in the child, so no call ever waits on a lock
//! it might have inherited: the shard set is tagged with [`crate::process::fork::generation`], and
//! a call that sees another generation swaps in a fresh, empty set first (`fork::PerProcess`,
//! shared with the coalescing tables). A child starts with
//! an empty local cache: the parent's copy may be mid-update, and a local cache is per process
//! anyway. The inherited set is freed only if none of its locks is held; otherwise it is
//! leaked, because a half-updated map is not safe even to drop.

use crate::error::{Error, Reason};
use crate::item::Item;
use crate::op::StoreOutcome;
use crate::process::fork::{self, PerProcess};
use crate::protocol::StoreOp;
use arc_swap::Guard;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes charged per entry on top of its key and value: the slab node, the hash-map slot and
/// the shared key's reference counts (129 on a 64-bit target, a test keeps this honest),
/// rounded up for the spare capacity of the map and slab. Bookkeeping is real memory, and
/// charging it keeps a cache of tiny values bounded too.
pub const ENTRY_OVERHEAD: usize = 160;

/// The item bound used when `new` is given neither bound.
pub const DEFAULT_MAX_ITEMS: usize = 10_000;

/// How many of a shard's least recently used entries are checked for expired ones before a
/// live entry is evicted.
pub const EXPIRED_SCAN: usize = 8;

/// The most shards `new` chooses: enough to spread the lock traffic of a busy process.
const MAX_SHARDS: usize = 16;
/// `with_shards` accepts more, but not absurdly many.
const MAX_EXPLICIT_SHARDS: usize = 1024;
/// `new` gives each shard at least this many items of an item bound…
const MIN_SHARD_ITEMS: usize = 64;
/// …and at least this much of a byte bound: a shard's share is the largest entry it can take,
/// and 1 MiB is memcached's default item size limit.
const MIN_SHARD_BYTES: usize = 1 << 20;

/// memcached's `REALTIME_MAXDELTA`: a larger exptime is an absolute unix time.
const RELATIVE_EXPTIME_MAX: u32 = 60 * 60 * 24 * 30;

/// End of a linked list in the slab.
const NIL: usize = usize::MAX;

/// Why incr/decr failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArithError {
    /// The stored value is not a decimal number that fits 64 bits.
    NonNumeric,
}

impl fmt::Display for ArithError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // memcached's text, so callers see the same message from a local and a remote miss.
            Self::NonNumeric => f.write_str("cannot increment or decrement non-numeric value"),
        }
    }
}

impl std::error::Error for ArithError {}

impl From<ArithError> for Error {
    /// memcached answers `CLIENT_ERROR cannot increment or decrement non-numeric value`; the
    /// local cache fails the same way so a route behaves alike over either.
    fn from(e: ArithError) -> Self {
        Error::with_detail(Reason::ClientError, e.to_string())
    }
}

/// A snapshot of a cache's counters. `items` and `bytes` include expired entries not yet
/// removed (as memcached's `curr_items` does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Entries held.
    pub items: u64,
    /// Bytes charged for them (key + value + [`ENTRY_OVERHEAD`] each).
    pub bytes: u64,
    /// get/gat that found a live entry.
    pub hits: u64,
    /// get/gat that found nothing live.
    pub misses: u64,
    /// Live entries removed to make room.
    pub evictions: u64,
    /// Expired entries removed (when looked up, or before an eviction).
    pub expired: u64,
}

/// A bounded, thread-safe, in-process LRU cache with memcached command semantics. See the
/// module documentation for the exact behaviour.
pub struct LocalCache {
    shards: PerProcess<Shards>,
    limits: Limits,
    next_cas: AtomicU64,
}

impl fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("shards", &self.limits.shards)
            .field("max_items", &self.limits.max_items)
            .field("max_bytes", &self.limits.max_bytes)
            .field("max_ttl", &self.limits.max_ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

impl LocalCache {
    /// A cache holding at most `max_items` entries and `max_bytes` bytes (0 leaves that bound
    /// off; with both 0 the bound is [`DEFAULT_MAX_ITEMS`] items). Every entry's lifetime is
    /// capped to `max_ttl` when given.
    ///
    /// The shard count is up to 16, fewer when that would give a shard fewer than 64 items or
    /// less than 1 MiB: a shard's byte share is the largest entry the cache accepts, and tiny
    /// shards would make eviction needlessly unlike a single LRU.
    pub fn new(max_items: usize, max_bytes: usize, max_ttl: Option<Duration>) -> LocalCache {
        let max_items = if max_items == 0 && max_bytes == 0 {
            DEFAULT_MAX_ITEMS
        } else {
            max_items
        };
        let by_items = bounded_or(max_items, MAX_SHARDS, |n| n / MIN_SHARD_ITEMS);
        let by_bytes = bounded_or(max_bytes, MAX_SHARDS, |n| n / MIN_SHARD_BYTES);
        let shards = by_items.min(by_bytes).clamp(1, MAX_SHARDS);
        Self::with_shards(max_items, max_bytes, max_ttl, shards)
    }

    /// Like [`new`](Self::new) with an explicit shard count (1 gives one exact LRU). The count
    /// is kept within 1..=1024 and so that every shard can hold at least one entry.
    pub fn with_shards(
        max_items: usize,
        max_bytes: usize,
        max_ttl: Option<Duration>,
        shards: usize,
    ) -> LocalCache {
        let max_items = if max_items == 0 && max_bytes == 0 {
            DEFAULT_MAX_ITEMS
        } else {
            max_items
        };
        let shards = shards
            .min(MAX_EXPLICIT_SHARDS)
            .min(bounded_or(max_items, usize::MAX, |n| n))
            .min(bounded_or(max_bytes, usize::MAX, |n| n / ENTRY_OVERHEAD))
            .max(1);
        let limits = Limits {
            max_items,
            max_bytes,
            max_ttl,
            shards,
        };
        LocalCache {
            shards: PerProcess::new(Shards::new(&limits, fork::generation())),
            limits,
            next_cas: AtomicU64::new(1),
        }
    }

    /// get: the live entry, which becomes the most recently used.
    pub fn get(&self, key: &[u8]) -> Option<Item> {
        self.with_shard(key, |s, c| match s.live(key, c) {
            Some(i) => {
                s.promote(i);
                inc(&c.hits);
                Some(s.node(i).item())
            }
            None => {
                inc(&c.misses);
                None
            }
        })
    }

    /// gat: like [`get`](Self::get), and the entry's expiry becomes `exptime` (capped to
    /// `max_ttl`). An `exptime` already past returns the entry once and removes it.
    pub fn get_and_touch(&self, key: &[u8], exptime: u32) -> Option<Item> {
        let (now, expires) = self.expiry(exptime);
        self.with_shard(key, |s, c| {
            let Some(i) = s.live(key, c) else {
                inc(&c.misses);
                return None;
            };
            inc(&c.hits);
            let item = s.node(i).item();
            s.retime(i, expires, now, c);
            Some(item)
        })
    }

    /// A storage command (set, add, replace, append, prepend, cas) with memcached's outcomes.
    /// A result larger than the shard's byte share is `NotStored`, and the key's old entry is
    /// removed so a near cache never serves the value this store meant to replace (memcached
    /// does that for set only).
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> StoreOutcome {
        let (now, expires) = self.expiry(exptime);
        self.with_shard(key, |s, c| {
            let found = s.live(key, c);
            match (op, found) {
                (StoreOp::Add, Some(i)) => {
                    // memcached: "add only adds a nonexistent item, but promote to head of LRU".
                    s.promote(i);
                    return StoreOutcome::NotStored;
                }
                (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, None) => {
                    return StoreOutcome::NotStored;
                }
                (StoreOp::Cas(_), None) => return StoreOutcome::NotFound,
                (StoreOp::Cas(token), Some(i)) if s.node(i).cas != token => {
                    return StoreOutcome::Exists;
                }
                _ => {}
            }
            let concat = matches!(op, StoreOp::Append | StoreOp::Prepend);
            let (len, expires) = match found {
                Some(i) if concat => (s.node(i).value.len() + value.len(), s.node(i).expires),
                _ => (value.len(), expires),
            };
            if cost(key.len(), len) > s.max_bytes {
                if let Some(i) = found {
                    s.remove(i, c);
                }
                return StoreOutcome::NotStored;
            }
            if expires.is_some_and(|at| at <= now) {
                // A past absolute exptime: memcached stores an item that is already dead.
                if let Some(i) = found {
                    s.remove(i, c);
                }
                return StoreOutcome::Stored;
            }
            let cas = self.next_cas.fetch_add(1, Relaxed);
            let Some(i) = found else {
                // Room first, so the counters never read above a bound.
                s.make_room(1, cost(key.len(), len), NIL, c);
                s.insert(
                    Node {
                        key: Arc::from(key),
                        value: value.to_vec(),
                        flags,
                        cas,
                        expires,
                        prev: NIL,
                        next: NIL,
                    },
                    c,
                );
                return StoreOutcome::Stored;
            };
            let before = s.node(i).cost();
            s.make_room(0, cost(key.len(), len).saturating_sub(before), i, c);
            let n = s.node_mut(i);
            match op {
                StoreOp::Append => {
                    // Exact capacity: the byte bound should be the memory held.
                    n.value.reserve_exact(value.len());
                    n.value.extend_from_slice(value);
                }
                StoreOp::Prepend => {
                    let mut v = Vec::with_capacity(len);
                    v.extend_from_slice(value);
                    v.extend_from_slice(&n.value);
                    n.value = v;
                }
                _ => {
                    n.value = value.to_vec();
                    n.flags = flags;
                    n.expires = expires;
                }
            }
            n.cas = cas;
            let after = n.cost();
            s.recost(before, after, c);
            s.promote(i);
            StoreOutcome::Stored
        })
    }

    /// delete: true when a live entry was removed.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.with_shard(key, |s, c| s.live(key, c).map(|i| s.remove(i, c)).is_some())
    }

    /// incr (`incr = true`) or decr by `delta`: the new value, `None` when the key is missing.
    /// incr wraps at 2^64, decr stops at 0; flags and expiry are kept, the CAS token changes.
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64) -> Result<Option<u64>, ArithError> {
        self.with_shard(key, |s, c| {
            let Some(i) = s.live(key, c) else {
                return Ok(None);
            };
            let n = s.node_mut(i);
            let old = parse_decimal(&n.value).ok_or(ArithError::NonNumeric)?;
            let new = if incr {
                old.wrapping_add(delta)
            } else {
                old.saturating_sub(delta)
            };
            let digits = new.to_string().into_bytes();
            let before = n.cost();
            let after = cost(key.len(), digits.len());
            if after > s.max_bytes {
                // It grew past the shard's share (a few bytes in a tiny cache): drop it.
                s.remove(i, c);
                inc(&c.evictions);
                return Ok(Some(new));
            }
            s.make_room(0, after.saturating_sub(before), i, c);
            let n = s.node_mut(i);
            n.value = digits;
            n.cas = self.next_cas.fetch_add(1, Relaxed);
            s.recost(before, after, c);
            s.promote(i);
            Ok(Some(new))
        })
    }

    /// touch: sets a live entry's expiry to `exptime` (capped to `max_ttl`); false when the key
    /// is missing. The entry becomes the most recently used; its CAS token is kept.
    pub fn touch(&self, key: &[u8], exptime: u32) -> bool {
        let (now, expires) = self.expiry(exptime);
        self.with_shard(key, |s, c| {
            s.live(key, c)
                .map(|i| s.retime(i, expires, now, c))
                .is_some()
        })
    }

    /// How long a live entry has left: `None` when missing, `Some(None)` when it never
    /// expires. Does not change recency.
    pub fn remaining_ttl(&self, key: &[u8]) -> Option<Option<Duration>> {
        self.with_shard(key, |s, c| {
            let i = s.live(key, c)?;
            Some(
                s.node(i)
                    .expires
                    .map(|at| at.saturating_duration_since(now())),
            )
        })
    }

    /// flush_all: removes every entry (counters other than items and bytes are kept).
    pub fn flush(&self) {
        let shards = self.current();
        for (i, shard) in shards.shards.iter().enumerate() {
            let mut s = shard.lock();
            shards.counters.items.fetch_sub(s.map.len() as u64, Relaxed);
            shards.counters.bytes.fetch_sub(s.bytes as u64, Relaxed);
            *s = Shard::new(&self.limits, i);
        }
    }

    /// The counters of this process's cache (a forked child starts from zero).
    pub fn stats(&self) -> LocalStats {
        let c = &self.current().counters;
        LocalStats {
            items: c.items.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            evictions: c.evictions.load(Relaxed),
            expired: c.expired.load(Relaxed),
        }
    }

    /// Run `f` on the key's shard, locked.
    fn with_shard<R>(&self, key: &[u8], f: impl FnOnce(&mut Shard, &Counters) -> R) -> R {
        let shards = self.current();
        let mut s = shards.pick(key).lock();
        f(&mut s, &shards.counters)
    }

    /// The shard set of this process (a forked child's first call swaps in an empty one).
    fn current(&self) -> Guard<Arc<Shards>> {
        self.shards.current(|g| Shards::new(&self.limits, g))
    }

    /// The shard set for `generation` (tests: as if forked).
    #[cfg(test)]
    fn shards_at(&self, generation: u64) -> Guard<Arc<Shards>> {
        self.shards.at(generation, |g| Shards::new(&self.limits, g))
    }

    /// The expiry for memcached `exptime`, capped to `max_ttl`, with the instant it was
    /// computed at. `Some(t)` with `t <= now` means already expired.
    fn expiry(&self, exptime: u32) -> (Instant, Option<Instant>) {
        let now = now();
        let ttl = match exptime {
            0 => None,
            1..=RELATIVE_EXPTIME_MAX => Some(Duration::from_secs(exptime.into())),
            // Absolute; memcached: "exptime <= current_time" is expired, so a time equal to
            // now gives 0 and is expired too.
            _ => Some(Duration::from_secs(
                u64::from(exptime).saturating_sub(unix_now()),
            )),
        };
        let ttl = match (ttl, self.limits.max_ttl) {
            (Some(t), Some(cap)) => Some(t.min(cap)),
            (t, cap) => t.or(cap),
        };
        // Past what Instant can hold is as good as never.
        (now, ttl.and_then(|t| now.checked_add(t)))
    }
}

/// `f(n)` for a bound `n`, `unbounded` when the bound is 0 (off).
fn bounded_or(n: usize, unbounded: usize, f: impl FnOnce(usize) -> usize) -> usize {
    if n == 0 { unbounded } else { f(n) }
}

/// Shard `i`'s exact share of a `total` bound split over `shards` (`usize::MAX` when off).
fn share(total: usize, shards: usize, i: usize) -> usize {
    bounded_or(total, usize::MAX, |t| {
        t / shards + usize::from(i < t % shards)
    })
}

/// What an entry is charged.
fn cost(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ENTRY_OVERHEAD
}

/// memcached's `safe_strtoull` accepts surrounding whitespace (its incr pads with spaces) and
/// rejects overflow; signs are rejected here, memcached rejects negatives too.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let digits = v.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(d.into())
    })
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// The monotonic clock used for expiry.
fn now() -> Instant {
    Instant::now() + skew()
}

/// Seconds since the unix epoch, for absolute exptimes (0 if the clock is before 1970).
fn unix_now() -> u64 {
    (SystemTime::now() + skew())
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How far tests have moved the clocks forward (instead of sleeping).
#[cfg(not(test))]
#[inline(always)]
fn skew() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
fn skew() -> Duration {
    tests::SKEW.with(std::cell::Cell::get)
}

/// The normalised bounds (0 = off).
#[derive(Debug)]
struct Limits {
    max_items: usize,
    max_bytes: usize,
    max_ttl: Option<Duration>,
    shards: usize,
}

/// One process generation's shards and counters.
struct Shards {
    generation: u64,
    /// Randomly keyed SipHash (std's default), so callers cannot aim keys at one shard.
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    counters: Counters,
}

impl fork::Generational for Shards {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn unlocked(&self) -> bool {
        self.shards.iter().all(|s| s.try_lock().is_some())
    }
}

impl Shards {
    fn new(limits: &Limits, generation: u64) -> Shards {
        Shards {
            generation,
            hasher: RandomState::new(),
            shards: (0..limits.shards)
                .map(|i| Mutex::new(Shard::new(limits, i)))
                .collect(),
            counters: Counters::default(),
        }
    }

    fn pick(&self, key: &[u8]) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h % self.shards.len() as u64) as usize]
    }
}

/// Updated under a shard lock but read without one, by `stats`.
#[derive(Default)]
struct Counters {
    items: AtomicU64,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
}

/// One entry, a node of its shard's recency list.
struct Node {
    /// Shared with the map, which needs it to look up, and the node, which needs it to
    /// remove itself when evicted.
    key: Arc<[u8]>,
    value: Vec<u8>,
    flags: u32,
    cas: u64,
    expires: Option<Instant>,
    /// Towards the most recently used.
    prev: usize,
    /// Towards the least recently used.
    next: usize,
}

impl Node {
    fn cost(&self) -> usize {
        cost(self.key.len(), self.value.len())
    }

    fn item(&self) -> Item {
        Item {
            value: self.value.clone(),
            flags: self.flags,
            cas: self.cas,
            ..Item::default()
        }
    }
}

/// An LRU: a doubly linked list threaded through a slab by index, and a key → slot map, so
/// lookup, promotion, insertion and eviction are all O(1).
struct Shard {
    map: HashMap<Arc<[u8]>, usize>,
    slab: Vec<Option<Node>>,
    /// Vacant slab slots, reused before the slab grows.
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next eviction.
    tail: usize,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

impl Shard {
    fn new(limits: &Limits, i: usize) -> Shard {
        Shard {
            map: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_items: share(limits.max_items, limits.shards, i),
            max_bytes: share(limits.max_bytes, limits.shards, i),
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.slab[i].as_ref().expect("a linked slot is occupied")
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.slab[i].as_mut().expect("a linked slot is occupied")
    }

    /// The slot of `key` if it is live; an expired entry is removed on the way.
    fn live(&mut self, key: &[u8], c: &Counters) -> Option<usize> {
        let i = *self.map.get(key)?;
        // Entries that never expire cost no clock read.
        if self.node(i).expires.is_some_and(|at| at <= now()) {
            self.remove(i, c);
            inc(&c.expired);
            return None;
        }
        Some(i)
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = {
            let n = self.node(i);
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.node_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.node_mut(n).prev = prev,
        }
    }

    fn link_front(&mut self, i: usize) {
        let head = self.head;
        let n = self.node_mut(i);
        n.prev = NIL;
        n.next = head;
        match head {
            NIL => self.tail = i,
            h => self.node_mut(h).prev = i,
        }
        self.head = i;
    }

    /// Make `i` the most recently used.
    fn promote(&mut self, i: usize) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    /// Add a new entry as the most recently used (bounds are the caller's job: `make_room`).
    fn insert(&mut self, node: Node, c: &Counters) -> usize {
        let cost = node.cost();
        let key = Arc::clone(&node.key);
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i] = Some(node);
                i
            }
            None => {
                self.slab.push(Some(node));
                self.slab.len() - 1
            }
        };
        self.map.insert(key, i);
        self.link_front(i);
        self.bytes += cost;
        inc(&c.items);
        c.bytes.fetch_add(cost as u64, Relaxed);
        i
    }

    fn remove(&mut self, i: usize, c: &Counters) -> Node {
        self.unlink(i);
        let node = self.slab[i].take().expect("a linked slot is occupied");
        self.map.remove(&*node.key);
        self.free.push(i);
        let cost = node.cost();
        self.bytes -= cost;
        c.items.fetch_sub(1, Relaxed);
        c.bytes.fetch_sub(cost as u64, Relaxed);
        node
    }

    /// An entry's charge changed from `before` to `after`.
    fn recost(&mut self, before: usize, after: usize, c: &Counters) {
        self.bytes = self.bytes - before + after;
        if after >= before {
            c.bytes.fetch_add((after - before) as u64, Relaxed);
        } else {
            c.bytes.fetch_sub((before - after) as u64, Relaxed);
        }
    }

    /// Set a live entry's expiry (touch, gat), removing it if that is already past.
    fn retime(&mut self, i: usize, expires: Option<Instant>, now: Instant, c: &Counters) {
        if expires.is_some_and(|at| at <= now) {
            self.remove(i, c);
            inc(&c.expired);
        } else {
            self.node_mut(i).expires = expires;
            self.promote(i);
        }
    }

    /// Evict until `items` more entries and `bytes` more bytes fit, never `keep` (the entry
    /// about to change; `NIL` for none). The caller has checked that they fit an empty shard.
    fn make_room(&mut self, items: usize, bytes: usize, keep: usize, c: &Counters) {
        while self.map.len() + items > self.max_items || self.bytes + bytes > self.max_bytes {
            if self.reap_tail(keep, c) {
                continue;
            }
            let victim = if self.tail == keep && keep != NIL {
                self.node(keep).prev
            } else {
                self.tail
            };
            if victim == NIL {
                break;
            }
            self.remove(victim, c);
            inc(&c.evictions);
        }
    }

    /// Remove expired entries among the `EXPIRED_SCAN` least recently used (except `keep`);
    /// true if any was removed.
    fn reap_tail(&mut self, keep: usize, c: &Counters) -> bool {
        let now = now();
        let mut i = self.tail;
        let mut reaped = false;
        for _ in 0..EXPIRED_SCAN {
            if i == NIL {
                break;
            }
            let n = self.node(i);
            let prev = n.prev;
            if i != keep && n.expires.is_some_and(|at| at <= now) {
                self.remove(i, c);
                inc(&c.expired);
                reaped = true;
            }
            i = prev;
        }
        reaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        pub(super) static SKEW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// Move this thread's clocks forward.
    fn advance(secs: u64) {
        SKEW.with(|s| s.set(s.get() + Duration::from_secs(secs)));
    }

    /// One shard: exact LRU order.
    fn lru(max_items: usize, max_bytes: usize) -> LocalCache {
        LocalCache::with_shards(max_items, max_bytes, None, 1)
    }

    fn set(c: &LocalCache, key: &str, value: &str) -> StoreOutcome {
        c.store(StoreOp::Set, key.as_bytes(), value.as_bytes(), 0, 0)
    }

    fn value(c: &LocalCache, key: &str) -> Option<String> {
        c.get(key.as_bytes())
            .map(|i| String::from_utf8(i.value).unwrap())
    }

    fn unix(secs_from_now: i64) -> u32 {
        (unix_now() as i64 + secs_from_now) as u32
    }

    #[test]
    fn is_send_sync_debug() {
        fn check<T: Send + Sync + fmt::Debug>() {}
        check::<LocalCache>();
        assert!(format!("{:?}", lru(1, 0)).contains("max_items: 1"));
    }

    #[test]
    fn store_outcomes_match_memcached() {
        use StoreOp::*;
        use StoreOutcome::*;
        // (op, key present before?, outcome, value after)
        let table = [
            (Set, false, Stored, Some("new")),
            (Set, true, Stored, Some("new")),
            (Add, false, Stored, Some("new")),
            (Add, true, NotStored, Some("old")),
            (Replace, false, NotStored, None),
            (Replace, true, Stored, Some("new")),
            (Append, false, NotStored, None),
            (Append, true, Stored, Some("oldnew")),
            (Prepend, false, NotStored, None),
            (Prepend, true, Stored, Some("newold")),
        ];
        for (op, present, outcome, after) in table {
            let c = lru(10, 0);
            if present {
                set(&c, "k", "old");
            }
            assert_eq!(c.store(op, b"k", b"new", 0, 0), outcome, "{op:?} {present}");
            assert_eq!(value(&c, "k").as_deref(), after, "{op:?} {present}");
        }

        let c = lru(10, 0);
        assert_eq!(c.store(Cas(1), b"k", b"v", 0, 0), NotFound);
        set(&c, "k", "old");
        let token = c.get(b"k").unwrap().cas;
        assert_eq!(c.store(Cas(token + 1), b"k", b"v", 0, 0), Exists);
        assert_eq!(c.store(Cas(0), b"k", b"v", 0, 0), Exists);
        assert_eq!(value(&c, "k").as_deref(), Some("old"));
        assert_eq!(c.store(Cas(token), b"k", b"v", 9, 0), Stored);
        assert_eq!(c.get(b"k").unwrap().flags, 9);
        // The token moved on: the same one now fails.
        assert_eq!(c.store(Cas(token), b"k", b"w", 0, 0), Exists);
    }

    #[test]
    fn append_prepend_keep_flags_and_expiry() {
        let c = lru(10, 0);
        c.store(StoreOp::Set, b"k", b"b", 7, 100);
        assert_eq!(
            c.store(StoreOp::Append, b"k", b"c", 1, 0),
            StoreOutcome::Stored
        );
        assert_eq!(
            c.store(StoreOp::Prepend, b"k", b"a", 2, 5),
            StoreOutcome::Stored
        );
        let item = c.get(b"k").unwrap();
        assert_eq!((item.value.as_slice(), item.flags), (&b"abc"[..], 7));
        let ttl = c.remaining_ttl(b"k").unwrap().unwrap();
        assert!(ttl > Duration::from_secs(99) && ttl <= Duration::from_secs(100));
    }

    #[test]
    fn cas_tokens_start_at_1_and_change_on_every_modification() {
        let c = lru(10, 0);
        set(&c, "a", "1");
        let mut last = c.get(b"a").unwrap().cas;
        assert_eq!(last, 1);
        let mut step = |op: &dyn Fn()| {
            op();
            let now = c.get(b"a").unwrap().cas;
            assert!(now > last);
            last = now;
        };
        step(&|| {
            set(&c, "a", "2");
        });
        step(&|| {
            c.store(StoreOp::Append, b"a", b"0", 0, 0);
        });
        step(&|| {
            c.arith(b"a", true, 1).unwrap();
        });
        // Another key's store draws from the same counter.
        set(&c, "b", "x");
        assert!(c.get(b"b").unwrap().cas > last);
        // touch is not a modification in memcached: the token stays.
        let before = c.get(b"a").unwrap().cas;
        assert!(c.touch(b"a", 100));
        assert_eq!(c.get(b"a").unwrap().cas, before);
        // Refused stores do not modify.
        c.store(StoreOp::Add, b"a", b"y", 0, 0);
        assert_eq!(c.get(b"a").unwrap().cas, before);
    }

    #[test]
    fn exptime_relative_absolute_and_never() {
        let c = lru(10, 0);
        c.store(StoreOp::Set, b"never", b"v", 0, 0);
        c.store(StoreOp::Set, b"rel", b"v", 0, 10);
        c.store(StoreOp::Set, b"abs", b"v", 0, unix(20));
        c.store(StoreOp::Set, b"max-rel", b"v", 0, RELATIVE_EXPTIME_MAX);
        assert_eq!(c.remaining_ttl(b"never"), Some(None));
        assert_eq!(c.remaining_ttl(b"missing"), None);
        let abs = c.remaining_ttl(b"abs").unwrap().unwrap();
        assert!(abs > Duration::from_secs(18) && abs <= Duration::from_secs(20));

        advance(10);
        assert_eq!(value(&c, "rel"), None);
        assert!(value(&c, "abs").is_some());
        advance(10);
        assert_eq!(value(&c, "abs"), None);
        assert!(value(&c, "never").is_some());
        // 30 days is still relative (not 1970).
        assert!(value(&c, "max-rel").is_some());
        advance(u64::from(RELATIVE_EXPTIME_MAX));
        assert_eq!(value(&c, "max-rel"), None);
        assert!(value(&c, "never").is_some());
        assert_eq!(c.stats().expired, 3);
    }

    #[test]
    fn past_absolute_exptime_stores_nothing_visible() {
        let c = lru(10, 0);
        set(&c, "k", "old");
        // Stored, like memcached, but the old value is gone and nothing replaced it.
        assert_eq!(
            c.store(StoreOp::Set, b"k", b"new", 0, unix(-5)),
            StoreOutcome::Stored
        );
        assert_eq!(value(&c, "k"), None);
        assert_eq!(
            c.store(StoreOp::Add, b"k", b"v", 0, unix(0)),
            StoreOutcome::Stored
        );
        assert_eq!(c.stats().items, 0);
        // Just past 30 days is absolute: 1970 plus a month, long gone.
        let out = c.store(StoreOp::Set, b"k", b"v", 0, RELATIVE_EXPTIME_MAX + 1);
        assert_eq!(out, StoreOutcome::Stored);
        assert_eq!(value(&c, "k"), None);
        // A huge value is an absolute time far in the future (2106), not negative.
        c.store(StoreOp::Set, b"k", b"v", 0, u32::MAX);
        assert!(c.remaining_ttl(b"k").unwrap().unwrap() > Duration::from_secs(1 << 30));
    }

    #[test]
    fn max_ttl_caps_every_lifetime() {
        let c = LocalCache::with_shards(10, 0, Some(Duration::from_secs(5)), 1);
        c.store(StoreOp::Set, b"never", b"v", 0, 0);
        c.store(StoreOp::Set, b"long", b"v", 0, 3600);
        c.store(StoreOp::Set, b"short", b"v", 0, 2);
        c.store(StoreOp::Set, b"abs", b"v", 0, unix(3600));
        for k in ["never", "long", "abs"] {
            let ttl = c.remaining_ttl(k.as_bytes()).unwrap().unwrap();
            assert!(ttl <= Duration::from_secs(5), "{k}");
        }
        assert!(c.remaining_ttl(b"short").unwrap().unwrap() <= Duration::from_secs(2));
        advance(3);
        assert!(value(&c, "never").is_some());
        // touch and gat are capped too.
        assert!(c.touch(b"never", 0));
        assert!(c.get_and_touch(b"long", 3600).is_some());
        advance(5);
        for k in ["never", "long", "short", "abs"] {
            assert_eq!(value(&c, k), None, "{k}");
        }
    }

    #[test]
    fn evicts_least_recently_used_by_items() {
        let c = lru(3, 0);
        set(&c, "a", "1");
        set(&c, "b", "2");
        set(&c, "c", "3");
        c.get(b"a"); // a is now the most recent: b is next out
        set(&c, "d", "4");
        assert_eq!(value(&c, "b"), None);
        c.touch(b"c", 0); // touch promotes too
        set(&c, "e", "5");
        assert_eq!(value(&c, "a"), None);
        assert!(["c", "d", "e"].iter().all(|k| value(&c, k).is_some()));
        // Overwriting an existing key needs no room.
        set(&c, "c", "33");
        assert_eq!(c.stats().items, 3);
        assert_eq!(c.stats().evictions, 2);
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        // Room for three 10-byte values with 1-byte keys.
        let entry = cost(1, 10);
        let c = lru(0, 3 * entry + 5);
        let ten = "0123456789";
        for k in ["a", "b", "c"] {
            set(&c, k, ten);
        }
        c.get(b"a");
        set(&c, "d", ten);
        assert_eq!(value(&c, "b"), None);
        // Growing an entry evicts others, least recent first, never the one written.
        let twenty = &ten.repeat(2);
        c.store(StoreOp::Append, b"a", ten.as_bytes(), 0, 0);
        assert_eq!(value(&c, "c"), None);
        assert_eq!(value(&c, "a").as_deref(), Some(twenty.as_str()));
        assert!(value(&c, "d").is_some());
        assert!(c.stats().bytes <= (3 * entry + 5) as u64);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let c = lru(3, 0);
        c.store(StoreOp::Set, b"a", b"v", 0, 0);
        c.store(StoreOp::Set, b"b", b"v", 0, 5);
        c.store(StoreOp::Set, b"c", b"v", 0, 0);
        advance(5);
        // a is least recently used, but b is dead: b goes.
        set(&c, "d", "v");
        assert!(value(&c, "a").is_some());
        let s = c.stats();
        assert_eq!((s.evictions, s.expired, s.items), (0, 1, 3));
    }

    #[test]
    fn oversized_values_are_refused_without_emptying_the_cache() {
        let max = 4 * cost(1, 10);
        let c = lru(0, max);
        set(&c, "a", "small");
        set(&c, "b", "small");
        let huge = vec![b'x'; max];
        assert_eq!(
            c.store(StoreOp::Set, b"c", &huge, 0, 0),
            StoreOutcome::NotStored
        );
        assert!(value(&c, "a").is_some() && value(&c, "b").is_some());
        // Exactly the shard's share fits.
        let fits = vec![b'x'; max - cost(1, 0)];
        assert_eq!(
            c.store(StoreOp::Set, b"c", &fits, 0, 0),
            StoreOutcome::Stored
        );
        assert_eq!(c.stats().items, 1);
        // A refused replacement drops the old copy: a near cache must not serve it.
        set(&c, "a", "small");
        assert_eq!(
            c.store(StoreOp::Set, b"a", &huge, 0, 0),
            StoreOutcome::NotStored
        );
        assert_eq!(value(&c, "a"), None);
        set(&c, "a", "small");
        let append = vec![b'x'; max - cost(1, 0)];
        assert_eq!(
            c.store(StoreOp::Append, b"a", &append, 0, 0),
            StoreOutcome::NotStored
        );
        assert_eq!(value(&c, "a"), None);
    }

    #[test]
    fn arith() {
        let c = lru(10, 0);
        assert_eq!(c.arith(b"n", true, 1), Ok(None));
        c.store(StoreOp::Set, b"n", b"10", 5, 100);
        assert_eq!(c.arith(b"n", true, 5), Ok(Some(15)));
        assert_eq!(c.arith(b"n", false, 20), Ok(Some(0)));
        assert_eq!(value(&c, "n").as_deref(), Some("0"));
        let item = c.get(b"n").unwrap();
        assert_eq!(item.flags, 5);
        assert!(c.remaining_ttl(b"n").unwrap().is_some());

        set(&c, "n", &u64::MAX.to_string());
        assert_eq!(c.arith(b"n", true, 2), Ok(Some(1)));
        assert_eq!(value(&c, "n").as_deref(), Some("1"));
        // memcached's own incr leaves space padding behind; it still counts.
        set(&c, "n", "7   ");
        assert_eq!(c.arith(b"n", true, 1), Ok(Some(8)));
        assert_eq!(value(&c, "n").as_deref(), Some("8"));

        for bad in ["", "abc", "-1", "+1", "1.5", "1 2", "18446744073709551616"] {
            set(&c, "n", bad);
            assert_eq!(
                c.arith(b"n", true, 1),
                Err(ArithError::NonNumeric),
                "{bad:?}"
            );
            assert_eq!(value(&c, "n").as_deref(), Some(bad));
        }
        let e = Error::from(ArithError::NonNumeric);
        assert_eq!(e.reason(), Reason::ClientError);
        assert_eq!(
            e.detail(),
            Some("cannot increment or decrement non-numeric value")
        );
    }

    #[test]
    fn touch_and_gat() {
        let c = lru(10, 0);
        assert!(!c.touch(b"k", 10));
        assert_eq!(c.get_and_touch(b"k", 10), None);
        c.store(StoreOp::Set, b"k", b"v", 3, 5);
        assert!(c.touch(b"k", 100));
        advance(50);
        let item = c.get_and_touch(b"k", 0).unwrap();
        assert_eq!((item.value.as_slice(), item.flags), (&b"v"[..], 3));
        assert_eq!(c.remaining_ttl(b"k"), Some(None));
        // A past time: gat returns the entry once, then it is gone.
        assert!(c.get_and_touch(b"k", unix(-1)).is_some());
        assert_eq!(c.get(b"k"), None);
        set(&c, "k", "v");
        assert!(c.touch(b"k", unix(-1)));
        assert!(!c.touch(b"k", 0));
    }

    #[test]
    fn delete_and_flush() {
        let c = LocalCache::new(100, 0, None);
        assert!(!c.delete(b"k"));
        set(&c, "k", "v");
        assert!(c.delete(b"k"));
        assert!(!c.delete(b"k"));
        for i in 0..20 {
            set(&c, &i.to_string(), "v");
        }
        c.get(b"1");
        c.flush();
        let s = c.stats();
        assert_eq!((s.items, s.bytes, s.hits), (0, 0, 1));
        assert_eq!(value(&c, "1"), None);
        set(&c, "k", "v");
        assert_eq!(value(&c, "k").as_deref(), Some("v"));
    }

    #[test]
    fn stats_count_what_happened() {
        let c = lru(2, 0);
        set(&c, "a", "xyz");
        c.get(b"a");
        c.get(b"a");
        c.get(b"nope");
        c.get_and_touch(b"nope", 0);
        set(&c, "b", "v");
        set(&c, "c", "v"); // evicts a
        c.store(StoreOp::Set, b"b", b"v", 0, 1);
        advance(1);
        c.get(b"b"); // expired: a miss and an expired
        assert_eq!(
            c.stats(),
            LocalStats {
                items: 1,
                bytes: cost(1, 1) as u64,
                hits: 2,
                misses: 3,
                evictions: 1,
                expired: 1,
            }
        );
    }

    #[test]
    fn bounds_are_normalised_and_split_exactly() {
        let shares = |c: &LocalCache| -> (usize, usize, usize) {
            let s = c.current();
            let mut items = 0usize;
            let mut bytes = 0usize;
            for sh in s.shards.iter() {
                let sh = sh.lock();
                items = items.saturating_add(sh.max_items);
                bytes = bytes.saturating_add(sh.max_bytes);
            }
            (s.shards.len(), items, bytes)
        };
        assert_eq!(
            shares(&LocalCache::new(0, 0, None)),
            (16, DEFAULT_MAX_ITEMS, usize::MAX)
        );
        assert_eq!(
            shares(&LocalCache::new(1000, 0, None)),
            (15, 1000, usize::MAX)
        );
        assert_eq!(shares(&LocalCache::new(5, 0, None)), (1, 5, usize::MAX));
        assert_eq!(
            shares(&LocalCache::new(0, 3 << 20, None)),
            (3, usize::MAX, 3 << 20)
        );
        assert_eq!(
            shares(&LocalCache::new(0, 1 << 30, None)),
            (16, usize::MAX, 1 << 30)
        );
        assert_eq!(
            shares(&LocalCache::with_shards(3, 0, None, 8)),
            (3, 3, usize::MAX)
        );
        assert_eq!(shares(&LocalCache::with_shards(10, 0, None, 0)).0, 1);
    }

    #[test]
    fn overhead_covers_the_bookkeeping() {
        use std::mem::size_of;
        // Node in the slab, (key, slot) in the map plus its control byte, the Arc's counts.
        let real = size_of::<Option<Node>>() + size_of::<(Arc<[u8]>, usize)>() + 1 + 16;
        assert!(real <= ENTRY_OVERHEAD, "{real}");
    }

    #[test]
    fn threads_hammering_stay_within_bounds() {
        let max_items = 200;
        let max_bytes = 200 * cost(8, 40);
        let c = Arc::new(LocalCache::with_shards(max_items, max_bytes, None, 4));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..20_000 {
                        // xorshift: cheap, deterministic per thread.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = format!("k{}", x % 500);
                        let key = key.as_bytes();
                        let len = (x >> 32) as usize % 80;
                        match x % 8 {
                            0 => {
                                let _ = c.store(StoreOp::Append, key, b"ab", 0, 0);
                            }
                            1 => {
                                let _ = c.delete(key);
                            }
                            2 => {
                                let _ = c.arith(key, x & 1 == 0, x >> 40);
                            }
                            3 => {
                                let _ = c.touch(key, 100);
                            }
                            4 => {
                                let _ = c.store(StoreOp::Add, key, b"1", 0, 0);
                            }
                            _ if x % 4096 == 5 => c.flush(),
                            5 | 6 => {
                                let _ = c.store(StoreOp::Set, key, &vec![b'v'; len], 1, 0);
                            }
                            _ => {
                                let _ = c.get(key);
                            }
                        }
                        let s = c.stats();
                        assert!(s.items <= max_items as u64);
                        assert!(s.bytes <= max_bytes as u64);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The counters agree with the shards.
        let s = c.stats();
        let shards = c.current();
        let (items, bytes) = shards.shards.iter().fold((0, 0), |(i, b), sh| {
            let sh = sh.lock();
            (i + sh.map.len(), b + sh.bytes)
        });
        assert_eq!((s.items, s.bytes), (items as u64, bytes as u64));
        assert!(s.evictions > 0);
    }

    #[test]
    fn a_new_generation_starts_empty() {
        let c = lru(10, 0);
        set(&c, "k", "v");
        c.get(b"k");
        let old = c.shards.load_full();
        let next = fork::generation() + 1;
        let fresh = c.shards_at(next);
        assert_eq!(fresh.generation, next);
        assert_eq!(fresh.counters.items.load(Relaxed), 0);
        drop(fresh);
        // Nothing held a lock: the inherited set was released, only `old` is left.
        assert_eq!(Arc::strong_count(&old), 1);
        // Back in this process's generation (another reset), still empty and usable.
        assert_eq!(value(&c, "k"), None);
        let one_miss = LocalStats {
            misses: 1,
            ..LocalStats::default()
        };
        assert_eq!(c.stats(), one_miss);
        set(&c, "k", "v2");
        assert_eq!(value(&c, "k").as_deref(), Some("v2"));
    }

    #[test]
    fn an_inherited_locked_shard_is_leaked_not_waited_on() {
        let c = lru(10, 0);
        set(&c, "k", "v");
        let old = c.shards.load_full();
        // As if a thread that vanished at fork held the lock.
        let held = old.shards[0].lock();
        let next = fork::generation() + 1;
        drop(c.shards_at(next));
        // The cache's own reference was forgotten, not dropped.
        assert_eq!(Arc::strong_count(&old), 2);
        // The fresh set works while the old lock is still held.
        drop(c.shards_at(next));
        assert_eq!(c.shards.load_full().generation, next);
        assert_eq!(value(&c, "k"), None);
        drop(held);
    }
}
