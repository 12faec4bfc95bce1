//! Lookaside caching without stampedes: leases, stale-while-revalidate and `get_or_set`.
//!
//! The common use of memcached is lookaside: read, and on a miss compute (from the database)
//! and fill. When a hot key expires, every reader misses at once and every one of them asks
//! the database; and a fill computed before a delete can land after it and keep a stale value
//! alive. Facebook's leases fix both ("Scaling Memcache at Facebook" §3.2.1: peak database
//! rate 17 K/s → 1.3 K/s). memcached ≥ 1.6 has them natively in the meta protocol, and libfae
//! uses exactly that, so leases work across every process and host that shares the servers:
//!
//! | step | wire | [`Lease`] |
//! |---|---|---|
//! | read with a lease | `mg <key> v f c t N<lease_ttl_s> [R<recache_below_s>]` | |
//! | — a value | `VA <n> …` | [`Lease::Hit`] |
//! | — a miss, first reader | `VA 0 … W` (an empty stub is created) | [`Lease::Miss`] with a token: compute and fill |
//! | — a miss, later readers | `VA 0 … Z` | [`Lease::Wait`]: someone else is filling |
//! | — invalidated, first reader | `VA <n> … X W` | [`Lease::Refresh`]: serve the stale value, refill |
//! | — invalidated, later readers | `VA <n> … X Z` | [`Lease::Stale`]: serve it |
//! | — under `recache_below_s` left | `VA <n> … W` | [`Lease::Refresh`] (not stale) |
//! | fill | `ms <key> … C<token>` | stored only if nothing was written or deleted since the lease |
//! | invalidate | `md <key> I T<s>` | keep the value as stale for `s` seconds; outstanding fills fail |
//!
//! A delete (or a set, or an invalidate) between the lease and the fill changes the item's CAS,
//! so the late fill fails (`EX`/`NF`) and the newer state wins. The token is that CAS; `0`
//! means "no lease could be had" (a text-protocol pool, the in-process `local` cache), and a
//! fill with it is an `add`, which never overwrites a newer value either.
//!
//! Reads that do not take part in leases (plain `get`, `gets`, multi-gets over `mg`) see a stub
//! and an invalidated item as a miss. A text-protocol multi-get cannot tell: it sees a stub as
//! an empty value with flags 0 for the few milliseconds a fill takes.
//!
//! [`crate::Client::get_or_set`] puts it together: of N concurrent missers in a process, one leads (the
//! others follow it: request coalescing, `coalesce.rs`); across processes, one wins the lease and the
//! others poll until the value lands (or serve the stale one), for at most `wait_ms`; then they
//! compute it themselves and fill the stub they waited for with its CAS (stored only if it is
//! still unfilled: a winner that died stops blocking the key).
//!
//! This module sits on top of the route layer: it runs its reads and fills on a [`Router`]
//! with a request context ([`Cx`]), and the client facade calls into it, never the reverse.
//! The lease reads of one `get_or_set` share one context: each poll may take `io_ms`, and
//! none runs past `wait_ms` + `io_ms` from the call; the fill after the compute (user time)
//! is a request of its own.

use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::coalesce::{Coalescer, Role};
use crate::error::{Error, Result};
use crate::item::Item;
use crate::op::{Cx, GetOpts, Key, StoreOutcome, Write, found};
use crate::protocol::{Request, Response, Status, StoreOp};
use crate::route::Router;
use crate::stats::StampedeCounters;

/// What a lease read found ([`crate::Client::get_or_lease`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lease {
    /// A current value.
    Hit(Item),
    /// A value to serve and to refresh: it is stale ([`Item::stale`], invalidated) or close to
    /// expiry (`recache_below_s`), and this caller won the refresh. Compute, then
    /// [`crate::Client::set_with_lease`] with `token`.
    Refresh {
        /// The value to serve meanwhile.
        item: Item,
        /// The lease token.
        token: u64,
    },
    /// A stale value that another client is refreshing: serve it.
    Stale(Item),
    /// A miss, and this caller holds the lease: compute, then [`crate::Client::set_with_lease`]
    /// with
    /// `token` (`0`: no lease could be had, the fill is an `add`).
    Miss {
        /// The lease token.
        token: u64,
    },
    /// A miss that another client is filling: read again shortly.
    Wait,
}

impl Lease {
    /// Classify what a lease read returned.
    pub(crate) fn from_read(found: Option<Item>) -> Lease {
        let Some(item) = found else {
            // The route could not lease (text pool, local cache): an `add` fills it.
            return Lease::Miss { token: 0 };
        };
        if item.is_lease_stub() {
            return if item.win {
                Lease::Miss { token: item.cas }
            } else {
                Lease::Wait
            };
        }
        if item.win {
            let token = item.cas;
            return Lease::Refresh { item, token };
        }
        if item.stale {
            return Lease::Stale(item);
        }
        Lease::Hit(item)
    }

    /// Stable name (`hit`, `refresh`, `stale`, `miss`, `wait`), as the bindings report it.
    pub fn status(&self) -> &'static str {
        match self {
            Lease::Hit(_) => "hit",
            Lease::Refresh { .. } => "refresh",
            Lease::Stale(_) => "stale",
            Lease::Miss { .. } => "miss",
            Lease::Wait => "wait",
        }
    }

    /// The value to serve, if any.
    pub fn item(&self) -> Option<&Item> {
        match self {
            Lease::Hit(i) | Lease::Stale(i) | Lease::Refresh { item: i, .. } => Some(i),
            Lease::Miss { .. } | Lease::Wait => None,
        }
    }

    /// The token to fill with, if this caller should fill.
    pub fn token(&self) -> Option<u64> {
        match self {
            Lease::Refresh { token, .. } | Lease::Miss { token } => Some(*token),
            _ => None,
        }
    }
}

/// Why `get_or_set` failed: the cache refused the call (a bad key, a closed client), or the
/// compute function failed (its error, untouched).
#[derive(Debug)]
pub enum GetOrSetError<E> {
    /// A caller error from the cache, before any compute.
    Cache(Error),
    /// The compute function's own error.
    Compute(E),
}

impl<E: std::fmt::Display> std::fmt::Display for GetOrSetError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetOrSetError::Cache(e) => write!(f, "{e}"),
            GetOrSetError::Compute(e) => write!(f, "compute failed: {e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for GetOrSetError<E> {}

/// A computed value: the bytes and the client flags (each binding encodes its types).
pub type Computed = (Vec<u8>, u32);

/// A client's stampede state: the coalescing tables and the counters. Outlives reloads.
#[derive(Debug)]
pub(crate) struct Stampede {
    pub(crate) flights: Coalescer,
    pub(crate) counters: StampedeCounters,
}

impl Stampede {
    pub(crate) fn new() -> Stampede {
        Stampede {
            flights: Coalescer::new(),
            counters: StampedeCounters::default(),
        }
    }

    /// Count a lease read's outcome.
    pub(crate) fn count(&self, lease: &Lease) {
        let c = &self.counters;
        let n = match lease {
            Lease::Hit(_) => &c.lease_hits,
            Lease::Miss { .. } => &c.lease_misses,
            Lease::Wait => &c.lease_waits,
            Lease::Stale(_) => &c.lease_stale,
            Lease::Refresh { .. } => &c.lease_refreshes,
        };
        n.fetch_add(1, Relaxed);
    }

    /// Every counter row (stats JSON `stampede`; Prometheus `fae_stampede_<name>_total`).
    pub(crate) fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        self.counters.insert_into(&mut m);
        Value::Object(m)
    }
}

/// Polls of a key someone else is filling: 1, 2, 4 … ms, at most 50 ms, jittered so that the
/// waiters of many processes do not poll in lockstep.
fn backoff(attempt: u32, salt: u64) -> Duration {
    let base = 1u64 << attempt.min(6);
    let ms = base.min(50);
    // ±25 % from a cheap per-caller mix.
    let x = salt
        .wrapping_add(u64::from(attempt))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let jitter = (x >> 33) % (ms * 500 + 1);
    Duration::from_micros(ms * 750 + jitter)
}

/// A lease read of `key` (`crate::Client::get_or_lease`), counted; with the CAS of what it
/// read (for `Wait`: the stub's, which `get_or_set` may replace once its wait runs out).
pub(crate) fn read(router: &Router, cx: &Cx, st: &Stampede, key: &[u8]) -> Result<(Lease, u64)> {
    let s = &router.stampede;
    let opts = GetOpts {
        cas: true,
        lease: Some(s.lease_ttl_s),
        recache: (s.recache_below_s > 0).then_some(s.recache_below_s),
        ..GetOpts::default()
    };
    let found = one(router.read(cx, &[Key::new(key)], opts)?)?;
    let cas = found.as_ref().map_or(0, |it| it.cas);
    let lease = Lease::from_read(found);
    st.count(&lease);
    Ok((lease, cas))
}

/// Fill `key` with a lease `token` (`crate::Client::set_with_lease`): a `cas` with it, or an
/// `add` for token 0. `Ok(false)`: a newer write won, nothing was stored.
pub(crate) fn fill(
    router: &Router,
    cx: &Cx,
    st: &Stampede,
    set: (&[u8], &[u8], u32, u32),
    token: u64,
) -> Result<bool> {
    let (key, value, flags, exptime) = set;
    let op = if token == 0 {
        StoreOp::Add
    } else {
        StoreOp::Cas(token)
    };
    let req = Request::Store {
        op,
        key,
        value,
        flags,
        exptime,
        noreply: false,
    };
    let reply = write_one(router, cx, st, Write::new(req))?;
    Ok(StoreOutcome::from_reply(reply)? == StoreOutcome::Stored)
}

/// Hand back a lease without filling it (`crate::Client::release_lease`): `md <key> C<token>
/// I`. `Ok(false)` when something was written since (or for token 0).
pub(crate) fn release(
    router: &Router,
    cx: &Cx,
    st: &Stampede,
    key: &[u8],
    token: u64,
) -> Result<bool> {
    if token == 0 {
        return Ok(false);
    }
    let req = Request::Delete {
        key,
        noreply: false,
        invalidate: Some(0),
        cas: Some(token),
    };
    match write_one(router, cx, st, Write::new(req))? {
        Response::Status {
            status: Status::Exists,
            ..
        } => Ok(false),
        other => found(other),
    }
}

/// One write through the tree; then no get that starts later may join a flight begun before
/// it (read-your-writes, see `coalesce`).
fn write_one(router: &Router, cx: &Cx, st: &Stampede, w: Write<'_>) -> Result<Response> {
    let reply = one(router.write(cx, std::slice::from_ref(&w))?);
    st.flights.wrote(w.key());
    reply
}

/// The single result of a one-key call (a reply list that lost it is a protocol error).
fn one<T>(mut results: Vec<Result<T>>) -> Result<T> {
    results
        .pop()
        .unwrap_or_else(|| Err(Error::new(crate::error::Reason::Protocol)))
}

/// [`crate::Client::get_or_set`]: see the module docs. `route` gives the route in force for
/// each step (a reload between two polls takes effect; the client counts each step as a
/// request in flight), after checking that the client is still open.
pub(crate) fn get_or_set<R: Deref<Target = Router>, E>(
    route: &dyn Fn() -> Result<R>,
    st: &Stampede,
    key: &[u8],
    exptime: u32,
    compute: impl FnOnce() -> Result<Computed, E>,
) -> Result<Item, GetOrSetError<E>> {
    let (settings, io) = {
        let r = route().map_err(GetOrSetError::Cache)?;
        r.check_key(key).map_err(GetOrSetError::Cache)?;
        (r.stampede, r.io_timeout)
    };
    let wait = Duration::from_millis(settings.wait_ms);
    let fills = Fills {
        route,
        st,
        key,
        exptime,
        wait,
        io,
    };
    if settings.coalesce {
        match st.flights.join_fill(key, Instant::now() + wait * 2) {
            Role::Follower(f) => {
                st.counters.coalesced_fills.fetch_add(1, Relaxed);
                // The leader's own wait is bounded by `wait` plus its compute; ours by twice
                // `wait`, after which we go on alone.
                if let Some(item) = f.wait(Instant::now() + wait * 2) {
                    return Ok(item);
                }
                return lease_dance(&fills, compute, None);
            }
            Role::Leader(lead) => {
                return lease_dance(&fills, compute, Some(lead));
            }
        }
    }
    lease_dance(&fills, compute, None)
}

/// One caller's `get_or_set` of `key`, and where it runs.
struct Fills<'a, R> {
    route: &'a dyn Fn() -> Result<R>,
    st: &'a Stampede,
    key: &'a [u8],
    exptime: u32,
    /// `stampede.wait_ms`.
    wait: Duration,
    /// `timeouts.io_ms` when the call began.
    io: Duration,
}

/// What the lease dance decided.
enum Next {
    /// Serve this value.
    Serve(Item),
    /// Compute; store with `token` if there is one; let followers serve `interim` meanwhile.
    /// `release`: hand the lease back if the compute fails (a stub or a stale value's refresh,
    /// not an early recache of a current value).
    Compute {
        token: Option<u64>,
        interim: Option<Item>,
        release: bool,
    },
}

impl<R: Deref<Target = Router>> Fills<'_, R> {
    /// A lease read in the current route, one step of the call's context.
    fn poll(&self, cx: &Cx) -> Result<(Lease, u64)> {
        let r = (self.route)()?;
        read(&r, &cx.step(self.io), self.st, self.key)
    }

    /// Hand the lease back after a failed compute.
    fn release(&self, token: u64) -> Result<bool> {
        let r = (self.route)()?;
        release(&r, &r.cx(), self.st, self.key, token)
    }
    /// Fill with the lease after the compute, as a request of its own (the compute was the
    /// caller's time). A lost fill (a newer write won) is counted, not an error, and so is a
    /// cache failure. A caller error (a value over `max_value_size`) is returned.
    fn store(&self, value: &[u8], flags: u32, token: u64) -> Result<(), Error> {
        let st = self.st;
        let set = (self.key, value, flags, self.exptime);
        let stored = (self.route)().and_then(|r| fill(&r, &r.cx(), st, set, token));
        match stored {
            Ok(true) => st.counters.fills_stored.fetch_add(1, Relaxed),
            Ok(false) => st.counters.fills_lost.fetch_add(1, Relaxed),
            Err(e) if e.is_caller_error() => return Err(e),
            Err(e) => {
                log::debug!(target: "fae", "get_or_set: fill failed ({e})");
                st.counters.lease_errors.fetch_add(1, Relaxed)
            }
        };
        Ok(())
    }
}

/// The lease dance for one caller (the leader of this process's callers, if coalescing).
fn lease_dance<R: Deref<Target = Router>, E>(
    fills: &Fills<'_, R>,
    compute: impl FnOnce() -> Result<Computed, E>,
    lead: Option<crate::coalesce::Leader<Item>>,
) -> Result<Item, GetOrSetError<E>> {
    let (st, key, wait) = (fills.st, fills.key, fills.wait);
    // Waiting for another's fill takes at most `wait`, and the poll then running at most
    // one `io_ms` more: every lease read of this call runs in this one context.
    let cx = Cx::within(wait + fills.io);
    let deadline = Instant::now() + wait;
    let salt = u64::from(std::process::id()) ^ (key.as_ptr() as u64);
    let mut attempt = 0;
    // The CAS of the stub we were last told to wait for.
    let mut stub = None;
    let next = loop {
        let lease = match fills.poll(&cx) {
            Ok((l, cas)) => {
                if l == Lease::Wait {
                    stub = Some(cas);
                }
                l
            }
            Err(e) if e.is_caller_error() => return Err(GetOrSetError::Cache(e)),
            // Already waiting for someone's fill: a failed poll (all connections busy, a
            // timeout) is one more wait, not a reason to give up on the cache.
            Err(_) if stub.is_some() && Instant::now() + backoff(attempt, salt) <= deadline => {
                st.counters.lease_errors.fetch_add(1, Relaxed);
                std::thread::sleep(backoff(attempt, salt));
                attempt += 1;
                continue;
            }
            Err(e) => {
                // The cache is failing: the value still comes from its source (coalesced in
                // this process), and nothing is stored.
                st.counters.lease_errors.fetch_add(1, Relaxed);
                log::debug!(target: "fae", "get_or_set: lease read failed ({e}); computing without the cache");
                break Next::Compute {
                    token: None,
                    interim: None,
                    release: false,
                };
            }
        };
        match lease {
            Lease::Hit(item) | Lease::Stale(item) => break Next::Serve(item),
            // Others (in this process too) serve the stale value while we refresh it.
            Lease::Refresh { item, token } => {
                break Next::Compute {
                    token: Some(token),
                    release: item.stale,
                    interim: Some(item),
                };
            }
            Lease::Miss { token } => {
                break Next::Compute {
                    token: Some(token),
                    interim: None,
                    release: true,
                };
            }
            Lease::Wait => {
                let pause = backoff(attempt, salt);
                attempt += 1;
                if Instant::now() + pause > deadline {
                    // The filler is slow or gone (its stub would block the key for
                    // lease_ttl_s): compute, and fill with the stub's CAS — stored only if the
                    // stub is still unfilled and nothing was written or deleted meanwhile, so a
                    // dead winner stops costing every reader `wait_ms`. A slow winner's late
                    // fill then loses to this (newer) value.
                    st.counters.wait_timeouts.fetch_add(1, Relaxed);
                    break Next::Compute {
                        token: stub.filter(|&c| c != 0),
                        interim: None,
                        release: false,
                    };
                }
                std::thread::sleep(pause);
            }
        }
    };
    let item = match next {
        Next::Serve(item) => item,
        Next::Compute {
            token,
            interim,
            release,
        } => {
            if let (Some(l), Some(i)) = (&lead, &interim) {
                l.interim(i);
            }
            st.counters.computes.fetch_add(1, Relaxed);
            let (value, flags) = match compute() {
                Ok(v) => v,
                Err(e) => {
                    // Hand the lease back so the next reader (here or elsewhere) wins at once
                    // instead of waiting out the stub; `lead` is dropped unfinished, so this
                    // process's followers try themselves.
                    if let (true, Some(t)) = (release, token) {
                        let _ = fills.release(t);
                    }
                    return Err(GetOrSetError::Compute(e));
                }
            };
            if let Some(token) = token
                && let Err(e) = fills.store(&value, flags, token)
            {
                // A value `set` would refuse (over max_value_size) is refused here too, and
                // the lease handed back.
                if release {
                    let _ = fills.release(token);
                }
                return Err(GetOrSetError::Cache(e));
            }
            Item {
                value,
                flags,
                ..Item::default()
            }
        }
    };
    if let Some(l) = lead {
        l.finish(&item);
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(value: &[u8], flags: u32, win: bool, stale: bool, taken: bool) -> Option<Item> {
        Some(Item {
            value: value.to_vec(),
            flags,
            cas: 7,
            win,
            stale,
            win_taken: taken,
            ..Item::default()
        })
    }

    #[test]
    fn replies_map_to_lease_outcomes() {
        // The replies memcached 1.6.18 gave (checked by hand, see the module table).
        assert_eq!(Lease::from_read(None), Lease::Miss { token: 0 });
        assert_eq!(
            Lease::from_read(it(b"", 0, true, false, false)),
            Lease::Miss { token: 7 }
        );
        assert_eq!(
            Lease::from_read(it(b"", 0, false, false, true)),
            Lease::Wait
        );
        // An invalidated stub is still a stub.
        assert_eq!(
            Lease::from_read(it(b"", 0, true, true, false)),
            Lease::Miss { token: 7 }
        );
        assert_eq!(Lease::from_read(it(b"", 0, false, true, true)), Lease::Wait);
        let stale = Lease::from_read(it(b"old", 0, true, true, false));
        assert_eq!(stale.status(), "refresh");
        assert_eq!(stale.token(), Some(7));
        assert_eq!(stale.item().unwrap().value, b"old");
        assert_eq!(
            Lease::from_read(it(b"old", 0, false, true, true)).status(),
            "stale"
        );
        // Early recache: a current value and the win.
        assert_eq!(
            Lease::from_read(it(b"v", 3, true, false, false)).status(),
            "refresh"
        );
        // Someone else recaching early: a plain hit.
        assert_eq!(
            Lease::from_read(it(b"v", 3, false, false, true)).status(),
            "hit"
        );
        // A real empty value with flags is a value.
        assert_eq!(
            Lease::from_read(it(b"", 2, false, false, true)).status(),
            "hit"
        );
        assert_eq!(
            Lease::from_read(it(b"", 0, false, false, false)).status(),
            "hit"
        );
    }

    #[test]
    fn backoff_grows_to_50ms_with_jitter() {
        let d: Vec<Duration> = (0..10).map(|a| backoff(a, 12345)).collect();
        assert!(d[0] >= Duration::from_micros(750) && d[0] <= Duration::from_micros(1250));
        for x in &d[6..] {
            assert!(*x >= Duration::from_micros(37_500) && *x <= Duration::from_micros(62_500));
        }
        assert_ne!(backoff(3, 1), backoff(3, 2));
    }
}
