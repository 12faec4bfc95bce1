//! Per-destination health: a circuit breaker modelled on mcrouter's `TkoTracker`.
//!
//! States: **closed** (requests flow), **open** (technical knock-out: requests fail fast with
//! `tko`, no socket is touched), **half-open** (a probe succeeded; `half_open_requests` trial
//! requests are admitted, and when that many succeed the breaker closes; any failure reopens it).
//!
//! - **Soft failures** (`timeout`, `reset`, `io`, `protocol`): the breaker opens after
//!   `tko_soft_threshold` *consecutive* soft failures; any success resets the count.
//! - **Hard failures** (`connect_refused`, `connect_failed`, `connect_timeout`): open at once.
//!   A server that refuses connections or never completes its handshake is down, not slow.
//! - Server replies (`SERVER_ERROR`, `CLIENT_ERROR`), misses and `NOT_STORED` are not failures:
//!   the server answered.
//! - **Probes**: while open, a prober (the supervisor thread, or the requesting thread when
//!   `background` is false) connects and sends `mn`/`version` after a jittered exponential
//!   backoff: `probe_initial_ms`, × 1.5 per failed probe, capped at `probe_max_ms`, plus up to
//!   25 % jitter so a fleet of processes does not probe in step. Only a successful probe moves
//!   open → half-open; only trial requests move half-open → closed.
//! - **Parked probe**: a probe that timed out on a connected socket (a stopped or hung server)
//!   stays waiting for its reply (`pool`); the reply, the moment the server runs again, moves
//!   open → half-open too ([`Health::probe_answered_late`]), beside the schedule.
//! - **Fail-open** (mcrouter `PoolTkoTracker`): a breaker does not open when that would leave
//!   more than `max_tko_fraction` of its pool open. A network blip that touches every server
//!   must not take the whole cache down; requests then succeed or fail on their own. With the
//!   default 0.5, a one-server pool therefore never opens its breaker.
//!
//! Performance: [`Health::admit`] and [`Health::record_success`] with no prior failure are one
//! relaxed atomic load each: state and failure count live in one word.

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::Reason;
use crate::process::fork::TryFlag;

/// Breaker state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests fail fast with `tko`; probes run in the background.
    Open,
    /// A probe succeeded; a few trial requests are admitted.
    HalfOpen,
}

impl BreakerState {
    /// Stable name: `closed`, `open`, `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Breaker knobs (config `health`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive soft failures that open the breaker.
    pub tko_soft_threshold: u32,
    /// First probe delay after the breaker opens.
    pub probe_initial: Duration,
    /// Longest probe delay.
    pub probe_max: Duration,
    /// Trial requests a half-open breaker admits; that many successes close it.
    pub half_open_requests: u32,
    /// Largest fraction of a pool that may be open at once.
    pub max_tko_fraction: f64,
}

/// Pool-wide breaker bookkeeping shared by the destinations of one pool.
#[derive(Debug)]
pub struct PoolHealth {
    size: usize,
    max_tko_fraction: f64,
    /// Destinations whose breaker is not closed.
    not_closed: AtomicUsize,
    /// Bumped on every transition that changes which servers are open (eject views rebuild).
    epoch: AtomicU64,
}

impl PoolHealth {
    /// Bookkeeping for a pool of `size` destinations.
    pub fn new(size: usize, max_tko_fraction: f64) -> Arc<PoolHealth> {
        Arc::new(PoolHealth {
            size,
            max_tko_fraction,
            not_closed: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    /// Changes whenever a breaker of the pool opens, half-opens or closes.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Destinations whose breaker is open or half-open.
    pub fn not_closed(&self) -> usize {
        self.not_closed.load(Ordering::Relaxed)
    }

    /// Reserve a slot for one more open breaker, unless that would exceed `max_tko_fraction`.
    fn try_reserve(&self) -> bool {
        let limit = (self.max_tko_fraction * self.size as f64).floor() as usize;
        self.not_closed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .not_closed
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Milliseconds since a process-wide epoch: an `Instant` that fits in an atomic.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A random fraction in `[0, 1)` for jitter, different in every forked worker.
pub(crate) fn jitter_fraction() -> f64 {
    crate::process::random::fraction()
}

const STATE_SHIFT: u32 = 32;
const COUNT_MASK: u64 = 0xffff_ffff;
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

/// A transition, for counting and logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// closed → open.
    Opened(Reason),
    /// open → half-open (probe succeeded).
    HalfOpened,
    /// half-open → closed.
    Closed,
    /// half-open → open (a trial failed).
    Reopened(Reason),
    /// Would have opened, but the pool is failing open.
    FailOpen(Reason),
}

/// One destination's breaker.
#[derive(Debug)]
pub struct Health {
    /// State in the high 32 bits, consecutive soft failures in the low 32.
    word: AtomicU64,
    trials_left: AtomicU32,
    trial_successes: AtomicU32,
    probe_delay_ms: AtomicU64,
    next_probe_ms: AtomicU64,
    /// Who runs the probe (a forked child takes it over from a parent's prober).
    probing: TryFlag,
    settings: BreakerSettings,
    /// The pool bookkeeping this breaker counts in; replaced when a reload moves the
    /// destination into a rebuilt pool.
    pool: ArcSwap<PoolHealth>,
}

/// Is this failure hard (open at once) or soft (count toward the threshold)?
pub fn is_hard(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ConnectRefused | Reason::ConnectFailed | Reason::ConnectTimeout
    )
}

impl Health {
    /// A closed breaker belonging to `pool`.
    pub fn new(settings: BreakerSettings, pool: Arc<PoolHealth>) -> Health {
        Health {
            word: AtomicU64::new(0),
            trials_left: AtomicU32::new(0),
            trial_successes: AtomicU32::new(0),
            probe_delay_ms: AtomicU64::new(settings.probe_initial.as_millis() as u64),
            next_probe_ms: AtomicU64::new(0),
            probing: TryFlag::new(),
            settings,
            pool: ArcSwap::new(pool),
        }
    }

    /// Count this breaker in `pool` from now on (a reload rebuilt the pool around it). A
    /// breaker that is not closed takes its slot in the new pool's open count.
    pub fn rebind(&self, pool: Arc<PoolHealth>) {
        if self.state() != BreakerState::Closed {
            pool.not_closed.fetch_add(1, Ordering::AcqRel);
        }
        self.pool.store(pool);
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.word.load(Ordering::Relaxed) >> STATE_SHIFT {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// The pool this breaker belongs to.
    pub fn pool(&self) -> Arc<PoolHealth> {
        self.pool.load_full()
    }

    /// May a request be sent? Closed: yes (one relaxed load). Open: no. Half-open: while trial
    /// slots remain.
    #[inline]
    pub fn admit(&self) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        if w >> STATE_SHIFT == CLOSED {
            return true;
        }
        if w >> STATE_SHIFT == OPEN {
            return false;
        }
        self.trials_left
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A request admitted as a half-open trial ended without telling anything about the
    /// server (local pool saturation): give its trial slot back.
    pub fn return_trial(&self) {
        if self.word.load(Ordering::Relaxed) >> STATE_SHIFT == HALF_OPEN {
            self.trials_left.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The server answered. With no prior failure this is one relaxed load.
    #[inline]
    pub fn record_success(&self) -> Option<Transition> {
        if self.word.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.record_success_slow()
    }

    #[cold]
    fn record_success_slow(&self) -> Option<Transition> {
        let w = self.word.load(Ordering::Acquire);
        match w >> STATE_SHIFT {
            CLOSED => {
                // Reset the soft count; a racing failure may win, which only delays the reset.
                let _ = self
                    .word
                    .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed);
                None
            }
            HALF_OPEN => {
                let ok = self.trial_successes.fetch_add(1, Ordering::AcqRel) + 1;
                if ok >= self.settings.half_open_requests
                    && self
                        .word
                        .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    self.pool.load().release();
                    self.pool.load().bump();
                    self.probe_delay_ms.store(
                        self.settings.probe_initial.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    return Some(Transition::Closed);
                }
                None
            }
            _ => None, // a late success from before the breaker opened: the prober decides
        }
    }

    /// A request failed for `reason` (only destination failures are passed here).
    pub fn record_failure(&self, reason: Reason) -> Option<Transition> {
        loop {
            let w = self.word.load(Ordering::Acquire);
            match w >> STATE_SHIFT {
                CLOSED => {
                    let count = (w & COUNT_MASK) + 1;
                    if !is_hard(reason) && count < u64::from(self.settings.tko_soft_threshold) {
                        if self
                            .word
                            .compare_exchange(w, count, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            return None;
                        }
                        continue;
                    }
                    if !self.pool.load().try_reserve() {
                        // Fail-open: keep counting (saturating) but stay closed.
                        let capped = count.min(COUNT_MASK);
                        let _ = self.word.compare_exchange(
                            w,
                            capped,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                        return Some(Transition::FailOpen(reason));
                    }
                    if self
                        .word
                        .compare_exchange(
                            w,
                            OPEN << STATE_SHIFT,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        self.pool.load().release();
                        continue;
                    }
                    let initial = self.settings.probe_initial.as_millis() as u64;
                    self.probe_delay_ms.store(initial, Ordering::Relaxed);
                    self.schedule_probe(initial);
                    self.pool.load().bump();
                    return Some(Transition::Opened(reason));
                }
                HALF_OPEN => {
                    if self
                        .word
                        .compare_exchange(
                            w,
                            OPEN << STATE_SHIFT,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    let delay = self.next_delay();
                    self.schedule_probe(delay);
                    self.pool.load().bump();
                    return Some(Transition::Reopened(reason));
                }
                _ => return None, // already open
            }
        }
    }

    fn next_delay(&self) -> u64 {
        let max = self.settings.probe_max.as_millis() as u64;
        let grown = (self.probe_delay_ms.load(Ordering::Relaxed) as f64 * 1.5) as u64;
        let d = grown.clamp(1, max.max(1));
        self.probe_delay_ms.store(d, Ordering::Relaxed);
        d
    }

    fn schedule_probe(&self, delay_ms: u64) {
        let jitter = (delay_ms as f64 * 0.25 * jitter_fraction()) as u64;
        self.next_probe_ms
            .store(now_ms() + delay_ms + jitter, Ordering::Release);
    }

    /// Is a probe due now? If so, the caller owns the probe and must report it with
    /// [`Health::probe_finished`].
    pub fn claim_probe(&self) -> bool {
        self.word.load(Ordering::Relaxed) >> STATE_SHIFT == OPEN
            && now_ms() >= self.next_probe_ms.load(Ordering::Acquire)
            && self.probing.try_take()
    }

    /// Report a probe claimed with [`Health::claim_probe`].
    pub fn probe_finished(&self, ok: bool) -> Option<Transition> {
        let t = if ok {
            self.half_open()
        } else {
            let delay = self.next_delay();
            self.schedule_probe(delay);
            None
        };
        self.probing.give_back();
        t
    }

    /// The server answered a probe left waiting on its socket (a parked probe, see
    /// `pool`): open → half-open now, whatever the probe schedule says. Needs no claim: it
    /// runs beside the scheduled probes, and whichever succeeds first moves the breaker.
    pub fn probe_answered_late(&self) -> Option<Transition> {
        self.half_open()
    }

    /// open → half-open with a fresh set of trials; `None` if the breaker was not open.
    fn half_open(&self) -> Option<Transition> {
        if self.word.load(Ordering::Acquire) >> STATE_SHIFT != OPEN {
            return None;
        }
        self.trial_successes.store(0, Ordering::Relaxed);
        self.trials_left
            .store(self.settings.half_open_requests.max(1), Ordering::Relaxed);
        let moved = self
            .word
            .compare_exchange(
                OPEN << STATE_SHIFT,
                HALF_OPEN << STATE_SHIFT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        moved.then(|| {
            self.pool.load().bump();
            Transition::HalfOpened
        })
    }

    /// Milliseconds until the next probe is due (0 if due or not open).
    pub fn probe_due_in_ms(&self) -> u64 {
        if self.state() != BreakerState::Open {
            return 0;
        }
        self.next_probe_ms
            .load(Ordering::Acquire)
            .saturating_sub(now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            tko_soft_threshold: 3,
            probe_initial: Duration::from_millis(0),
            probe_max: Duration::from_millis(10),
            half_open_requests: 2,
            max_tko_fraction: 1.0,
        }
    }

    fn breaker(pool_size: usize, fraction: f64) -> (Arc<PoolHealth>, Vec<Health>) {
        let pool = PoolHealth::new(pool_size, fraction);
        let hs = (0..pool_size)
            .map(|_| {
                Health::new(
                    BreakerSettings {
                        max_tko_fraction: fraction,
                        ..settings()
                    },
                    Arc::clone(&pool),
                )
            })
            .collect();
        (pool, hs)
    }

    #[test]
    fn soft_failures_open_after_the_threshold_and_a_success_resets_the_count() {
        let (_, hs) = breaker(2, 1.0);
        let h = &hs[0];
        assert_eq!(h.record_failure(Reason::Timeout), None);
        assert_eq!(h.record_failure(Reason::Timeout), None);
        h.record_success();
        assert_eq!(h.record_failure(Reason::Timeout), None);
        assert_eq!(h.record_failure(Reason::Timeout), None);
        assert_eq!(
            h.record_failure(Reason::Timeout),
            Some(Transition::Opened(Reason::Timeout))
        );
        assert_eq!(h.state(), BreakerState::Open);
        assert!(!h.admit());
    }

    #[test]
    fn a_hard_failure_opens_at_once() {
        let (pool, hs) = breaker(2, 1.0);
        assert_eq!(
            hs[0].record_failure(Reason::ConnectRefused),
            Some(Transition::Opened(Reason::ConnectRefused))
        );
        assert_eq!(pool.not_closed(), 1);
    }

    #[test]
    fn a_late_probe_reply_half_opens_only_an_open_breaker() {
        let (_, hs) = breaker(2, 1.0);
        let h = &hs[0];
        assert_eq!(h.probe_answered_late(), None, "closed: nothing to do");
        h.record_failure(Reason::ConnectTimeout);
        // No claim needed, and a scheduled probe may run beside it.
        assert!(h.claim_probe());
        assert_eq!(h.probe_answered_late(), Some(Transition::HalfOpened));
        assert_eq!(h.state(), BreakerState::HalfOpen);
        assert!(h.admit() && h.admit() && !h.admit());
        assert_eq!(h.probe_finished(true), None, "already half-open");
        assert_eq!(h.probe_answered_late(), None);
        assert!(!h.admit(), "the trials were not handed out again");
    }

    #[test]
    fn probe_half_opens_and_trials_close() {
        let (pool, hs) = breaker(2, 1.0);
        let h = &hs[0];
        h.record_failure(Reason::ConnectRefused);
        assert!(h.claim_probe(), "probe_initial is 0: due at once");
        assert!(!h.claim_probe(), "only one prober");
        assert_eq!(h.probe_finished(true), Some(Transition::HalfOpened));
        assert!(h.admit() && h.admit());
        assert!(!h.admit(), "only half_open_requests trials");
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_success(), Some(Transition::Closed));
        assert_eq!(h.state(), BreakerState::Closed);
        assert_eq!(pool.not_closed(), 0);
        assert!(h.admit());
    }

    #[test]
    fn a_trial_that_said_nothing_returns_its_slot() {
        let (_, hs) = breaker(2, 1.0);
        let h = &hs[0];
        h.record_failure(Reason::ConnectRefused);
        assert!(h.claim_probe());
        h.probe_finished(true);
        assert!(h.admit() && h.admit());
        assert!(!h.admit());
        h.return_trial();
        assert!(h.admit(), "the slot came back");
    }

    #[test]
    fn a_failed_trial_reopens_and_backs_off() {
        let (_, hs) = breaker(2, 1.0);
        let h = &hs[0];
        h.record_failure(Reason::ConnectRefused);
        assert!(h.claim_probe());
        h.probe_finished(true);
        assert!(h.admit());
        assert_eq!(
            h.record_failure(Reason::Timeout),
            Some(Transition::Reopened(Reason::Timeout))
        );
        assert_eq!(h.state(), BreakerState::Open);
        assert!(h.claim_probe() || h.probe_due_in_ms() <= 3);
    }

    #[test]
    fn failed_probes_back_off_exponentially_up_to_the_cap() {
        let pool = PoolHealth::new(2, 1.0);
        let s = BreakerSettings {
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_millis(300),
            ..settings()
        };
        let h = Health::new(s, pool);
        h.record_failure(Reason::ConnectRefused);
        assert!(!h.claim_probe(), "not due before probe_initial");
        let due = h.probe_due_in_ms();
        assert!((90..=126).contains(&due), "{due}");
        assert!(h.probing.try_take());
        h.probe_finished(false);
        assert_eq!(h.probe_delay_ms.load(Ordering::Relaxed), 150);
        h.probe_finished(false);
        h.probe_finished(false);
        h.probe_finished(false);
        assert_eq!(
            h.probe_delay_ms.load(Ordering::Relaxed),
            300,
            "capped at probe_max"
        );
    }

    #[test]
    fn fail_open_caps_the_open_fraction_of_a_pool() {
        let (pool, hs) = breaker(4, 0.5);
        assert!(matches!(
            hs[0].record_failure(Reason::ConnectRefused),
            Some(Transition::Opened(_))
        ));
        assert!(matches!(
            hs[1].record_failure(Reason::ConnectRefused),
            Some(Transition::Opened(_))
        ));
        assert_eq!(
            hs[2].record_failure(Reason::ConnectRefused),
            Some(Transition::FailOpen(Reason::ConnectRefused))
        );
        assert_eq!(hs[2].state(), BreakerState::Closed);
        assert!(hs[2].admit());
        assert_eq!(pool.not_closed(), 2);
    }

    #[test]
    fn a_one_server_pool_fails_open_by_default() {
        let (_, hs) = breaker(1, 0.5);
        assert!(matches!(
            hs[0].record_failure(Reason::ConnectRefused),
            Some(Transition::FailOpen(_))
        ));
    }

    #[test]
    fn late_results_do_not_disturb_an_open_breaker() {
        let (_, hs) = breaker(2, 1.0);
        let h = &hs[0];
        h.record_failure(Reason::ConnectRefused);
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_failure(Reason::Timeout), None);
        assert_eq!(h.state(), BreakerState::Open);
    }
}
