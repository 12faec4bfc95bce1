//! Request coalescing: identical concurrent reads from threads of one process share one
//! request.
//!
//! Two tables of *flights* (a request in progress, keyed by the key): plain single-key `get`s,
//! and `get_or_set` fills. The first caller for a key leads — it does the I/O (or the whole
//! lease-and-compute) — and callers arriving meanwhile follow: they wait for the leader's
//! result instead of sending their own. A hot key read by 64 threads costs one round trip,
//! and a hot key missed by 64 threads costs one lease, one compute and one set.
//!
//! Read-your-writes is kept: every write this process completes bumps a counter of its key's
//! shard, and a caller joins a flight only if no write to that shard completed since the flight
//! began. So a thread that has just `set` a key never receives a value read before its set.
//!
//! Fork safety (php-fpm, gunicorn and uwsgi fork after loading): the tables are tagged with
//! [`fork::generation`], and a call that sees another generation swaps in fresh, empty tables
//! without touching a lock the parent's vanished threads may have held (`fork::PerProcess`, shared with the local cache).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::Guard;
use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::item::Item;
use crate::process::fork::{self, PerProcess};

/// Shards per table: enough that 64 threads on different keys rarely share a lock.
const SHARDS: usize = 32;

/// What a plain get returns, shared with its followers.
pub(crate) type GetResult = Result<Option<Item>>;

/// Where a flight is.
#[derive(Debug)]
enum State<T> {
    /// The leader is working.
    Pending,
    /// The leader has a value followers may use while it works on (a stale value it is
    /// refreshing): followers take it, the leader goes on.
    Interim(T),
    /// The leader's result.
    Done(T),
    /// The leader gave up (an error of its own, or a panic): followers try themselves.
    Failed,
}

/// One request in progress.
#[derive(Debug)]
pub(crate) struct Flight<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Followers that joined (under the shard lock): the leader clones its result only when
    /// someone waits for it.
    followers: AtomicUsize,
    /// When the leader's work ends at the latest (a plain get: its request's deadline).
    deadline: Instant,
}

impl<T: Clone> Flight<T> {
    fn new(deadline: Instant) -> Flight<T> {
        Flight {
            state: Mutex::new(State::Pending),
            ready: Condvar::new(),
            followers: AtomicUsize::new(0),
            deadline,
        }
    }

    /// When the leader's work ends at the latest (given by the leader when it joined).
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    fn publish(&self, state: State<T>) {
        *self.state.lock() = state;
        self.ready.notify_all();
    }

    /// Wait for the leader's value (or an interim one) until `deadline`. `None`: the leader
    /// failed or the deadline passed; the caller goes on by itself.
    pub(crate) fn wait(&self, deadline: Instant) -> Option<T> {
        let mut st = self.state.lock();
        loop {
            match &*st {
                State::Done(v) | State::Interim(v) => return Some(v.clone()),
                State::Failed => return None,
                State::Pending => {
                    if self.ready.wait_until(&mut st, deadline).timed_out() {
                        return match &*st {
                            State::Done(v) | State::Interim(v) => Some(v.clone()),
                            _ => None,
                        };
                    }
                }
            }
        }
    }
}

/// The flights of one kind, by key.
type FlightMap<T> = Mutex<HashMap<Box<[u8]>, (u64, Arc<Flight<T>>)>>;

#[derive(Debug)]
struct Shard {
    gets: FlightMap<GetResult>,
    fills: FlightMap<Item>,
    /// Writes completed on this shard's keys (read-your-writes, see the module docs).
    writes: AtomicU64,
}

#[derive(Debug)]
struct Tables {
    generation: u64,
    shards: Box<[Shard]>,
}

impl fork::Generational for Tables {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn unlocked(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.gets.try_lock().is_some() && s.fills.try_lock().is_some())
    }
}

impl Tables {
    fn new(generation: u64) -> Tables {
        Tables {
            generation,
            shards: (0..SHARDS)
                .map(|_| Shard {
                    gets: Mutex::new(HashMap::new()),
                    fills: Mutex::new(HashMap::new()),
                    writes: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[shard_of(key)]
    }
}

/// FNV-1a: the shard only needs a cheap, stable spread.
fn shard_of(key: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// A caller's part in a flight.
pub(crate) enum Role<T: Clone + 'static> {
    /// Do the work, then [`Leader::finish`] (dropping it unfinished tells followers to try
    /// themselves).
    Leader(Leader<T>),
    /// Wait for the leader ([`Flight::wait`]).
    Follower(Arc<Flight<T>>),
}

/// The leader of a flight; see [`Role`].
pub(crate) struct Leader<T: Clone + 'static> {
    tables: Arc<Tables>,
    key: Box<[u8]>,
    flight: Arc<Flight<T>>,
    pick: fn(&Shard) -> &FlightMap<T>,
    done: bool,
}

impl<T: Clone + 'static> Leader<T> {
    /// Let followers use `value` now while the leader goes on (a stale value being
    /// refreshed). Later followers get it at once too.
    pub(crate) fn interim(&self, value: &T) {
        // Published even with no follower yet: those joining later must find it.
        self.flight.publish(State::Interim(value.clone()));
    }

    /// Hand `value` to the followers and end the flight.
    pub(crate) fn finish(mut self, value: &T) {
        self.remove();
        if self.flight.followers.load(Ordering::Acquire) > 0 {
            self.flight.publish(State::Done(value.clone()));
        }
        self.done = true;
    }

    /// Take the flight out of the table: later callers start their own.
    fn remove(&self) {
        let map = (self.pick)(self.tables.shard(&self.key));
        let mut m = map.lock();
        if m.get(&self.key)
            .is_some_and(|(_, f)| Arc::ptr_eq(f, &self.flight))
        {
            m.remove(&self.key);
        }
    }
}

impl<T: Clone + 'static> Drop for Leader<T> {
    fn drop(&mut self) {
        if !self.done {
            self.remove();
            self.flight.publish(State::Failed);
        }
    }
}

/// The coalescing tables of one client; see the module docs.
#[derive(Debug)]
pub(crate) struct Coalescer {
    tables: PerProcess<Tables>,
}

impl Coalescer {
    pub(crate) fn new() -> Coalescer {
        Coalescer {
            tables: PerProcess::new(Tables::new(fork::generation())),
        }
    }

    /// This process's tables (fresh ones in a forked child).
    fn current(&self) -> Guard<Arc<Tables>> {
        self.tables.current(Tables::new)
    }

    /// The tables for `generation` (tests: as if forked).
    #[cfg(test)]
    fn tables_at(&self, generation: u64) -> Guard<Arc<Tables>> {
        self.tables.at(generation, Tables::new)
    }

    /// Lead or follow the plain-get flight of `key`; a leader's request ends by `deadline`.
    pub(crate) fn join_get(&self, key: &[u8], deadline: Instant) -> Role<GetResult> {
        self.join(key, deadline, |s| &s.gets)
    }

    /// Lead or follow the `get_or_set` flight of `key`; a leader expects to be done by
    /// `deadline`.
    pub(crate) fn join_fill(&self, key: &[u8], deadline: Instant) -> Role<Item> {
        self.join(key, deadline, |s| &s.fills)
    }

    fn join<T: Clone + 'static>(
        &self,
        key: &[u8],
        deadline: Instant,
        pick: fn(&Shard) -> &FlightMap<T>,
    ) -> Role<T> {
        let tables = Guard::into_inner(self.current());
        let shard = tables.shard(key);
        let flight = {
            let mut m = pick(shard).lock();
            let writes = shard.writes.load(Ordering::Acquire);
            match m.get(key) {
                // No write to this shard completed since that flight began: its reply is as
                // new as one we would get ourselves.
                Some((started, f)) if *started == writes => {
                    f.followers.fetch_add(1, Ordering::AcqRel);
                    return Role::Follower(Arc::clone(f));
                }
                _ => {
                    // None, or a flight older than a write: ours replaces it in the table
                    // (its leader still answers its own followers).
                    let f = Arc::new(Flight::new(deadline));
                    m.insert(key.into(), (writes, Arc::clone(&f)));
                    f
                }
            }
        };
        Role::Leader(Leader {
            tables,
            key: key.into(),
            flight,
            pick,
            done: false,
        })
    }

    /// A write to `key` completed: flights that began before it take no more followers.
    pub(crate) fn wrote(&self, key: &[u8]) {
        self.current()
            .shard(key)
            .writes
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Every key may have changed (`flush_all`, a reload).
    pub(crate) fn wrote_all(&self) {
        for s in self.current().shards.iter() {
            s.writes.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Duration;

    /// A leader's deadline far enough away never to matter.
    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn item(v: &[u8]) -> Item {
        Item {
            value: v.to_vec(),
            ..Item::default()
        }
    }

    #[test]
    fn followers_share_the_leaders_result() {
        let c = Arc::new(Coalescer::new());
        let Role::Leader(lead) = c.join_get(b"k", soon()) else {
            panic!("first caller leads")
        };
        let barrier = Arc::new(Barrier::new(9));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (c, barrier) = (Arc::clone(&c), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let role = c.join_get(b"k", soon());
                    barrier.wait();
                    match role {
                        Role::Follower(f) => f.wait(Instant::now() + Duration::from_secs(5)),
                        Role::Leader(_) => panic!("a flight is in progress"),
                    }
                })
            })
            .collect();
        barrier.wait();
        lead.finish(&Ok(Some(item(b"v"))));
        for h in handles {
            let got = h.join().unwrap().expect("a value");
            assert_eq!(got.unwrap().unwrap().value, b"v");
        }
        // The flight is over: the next caller leads.
        assert!(matches!(c.join_get(b"k", soon()), Role::Leader(_)));
    }

    #[test]
    fn a_completed_write_closes_the_flight_to_new_followers() {
        let c = Coalescer::new();
        let Role::Leader(_lead) = c.join_get(b"k", soon()) else {
            panic!()
        };
        assert!(matches!(c.join_get(b"k", soon()), Role::Follower(_)));
        c.wrote(b"k");
        // Read-your-writes: a caller after the write starts its own request.
        assert!(matches!(c.join_get(b"k", soon()), Role::Leader(_)));
        // Other keys' flights are unaffected unless they share the shard.
        let Role::Leader(_other) = c.join_get(b"other", soon()) else {
            panic!()
        };
        if shard_of(b"other") != shard_of(b"k") {
            assert!(matches!(c.join_get(b"other", soon()), Role::Follower(_)));
        }
    }

    #[test]
    fn a_dropped_leader_releases_its_followers() {
        let c = Coalescer::new();
        let Role::Leader(lead) = c.join_fill(b"k", soon()) else {
            panic!()
        };
        let Role::Follower(f) = c.join_fill(b"k", soon()) else {
            panic!()
        };
        drop(lead);
        assert!(f.wait(Instant::now() + Duration::from_secs(5)).is_none());
        assert!(matches!(c.join_fill(b"k", soon()), Role::Leader(_)));
    }

    #[test]
    fn interim_values_reach_early_and_late_followers() {
        let c = Coalescer::new();
        let Role::Leader(lead) = c.join_fill(b"k", soon()) else {
            panic!()
        };
        let Role::Follower(early) = c.join_fill(b"k", soon()) else {
            panic!()
        };
        lead.interim(&item(b"stale"));
        let Role::Follower(late) = c.join_fill(b"k", soon()) else {
            panic!()
        };
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(early.wait(soon).unwrap().value, b"stale");
        assert_eq!(late.wait(soon).unwrap().value, b"stale");
        lead.finish(&item(b"fresh"));
    }

    #[test]
    fn a_forked_child_starts_with_fresh_tables_even_if_a_lock_was_held() {
        let c = Coalescer::new();
        let Role::Leader(lead) = c.join_get(b"k", soon()) else {
            panic!()
        };
        let old = c.tables.load_full();
        // As if a thread that vanished at fork held a shard lock.
        let held = old.shard(b"k").gets.lock();
        let next = fork::generation() + 1;
        let fresh = c.tables_at(next);
        assert_eq!(fresh.generation, next);
        assert!(fresh.shard(b"k").gets.lock().is_empty());
        drop(held);
        drop(fresh);
        // Back in this process's generation (another reset): a leader again, not a follower
        // of the parent's flight.
        assert!(matches!(c.join_get(b"k", soon()), Role::Leader(_)));
        drop(lead);
    }

    #[test]
    fn a_follower_gives_up_at_its_deadline() {
        let c = Coalescer::new();
        let Role::Leader(_lead) = c.join_get(b"k", soon()) else {
            panic!()
        };
        let Role::Follower(f) = c.join_get(b"k", soon()) else {
            panic!()
        };
        let t = Instant::now();
        assert!(f.wait(t + Duration::from_millis(20)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
