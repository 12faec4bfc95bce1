//! Destinations and their connection pools.
//!
//! A [`Destination`] is one server address. It keeps up to `max_connections` connections; idle
//! ones wait in a lock-free queue (crossbeam `ArrayQueue`). [`Destination::checkout`] pops an
//! idle connection or dials a new one (lazily: nothing is dialled before the first request) and
//! validates it with `mn`/`version`. The [`PooledConn`] guard it returns **discards** the
//! connection when dropped, unless the request finished cleanly and the caller called
//! [`PooledConn::checkin`]: every early return on an error therefore drops the socket, and a
//! reply can never be read by the wrong request.
//!
//! No lock is taken anywhere in the pool, so a `fork()` can never leave one held in the child.
//! Fork safety: [`fork::generation`] changes in a forked child; a destination that sees a new
//! generation drops its idle connections and forgets connections that were checked out by
//! threads that do not exist in the child. The fork itself already made the child's copies of
//! all of them `/dev/null` (`fork::track`): the parent's sockets are unaffected, and none
//! stays open in the child.
//!
//! Health: every destination has a circuit breaker ([`health::Health`]). [`Destination::admit`]
//! fails fast with `tko` while it is open; [`Destination::record`] feeds it each request's
//! outcome. [`Destination::maintain`] (run by the supervisor thread, or inline when
//! `background` is false) probes an open breaker, heartbeats idle connections, and recycles
//! connections past `max_idle_ms` / `max_age_ms` (the age limit is jittered per connection so a
//! fleet does not reconnect in step).
//!
//! Parked probe: a probe whose `mn`/`version` timed out on a connected socket (a SIGSTOPped or
//! hung server: its kernel accepts, the process does not answer) is not closed but parked, one
//! per destination, outside the pool (`Destination::park`). The supervisor waits on its
//! socket between ticks, so when the server runs again its first reply half-opens the breaker
//! at once, instead of at the next scheduled probe up to `probe_max_ms` later. Requests never
//! wait on it. A refused or reset server has nothing to park and keeps the schedule.
//!
//! Heartbeats on the supervisor are not waited for past 2 ms (`BEAT_WAIT`): later answers are
//! collected as they arrive (`Destination::check_beats`; the supervisor wakes on their
//! sockets too), so a slow or stopped server holds up no other server's maintenance.
//!
//! Security: a new connection does its TLS handshake (config `tls`) and its login (config
//! `auth`) inside the connect deadline, before validation. A refused login or a failed TLS
//! handshake means the settings are wrong, not that the server is down: it opens no breaker
//! (which would probe and reconnect over and over) and is not retried; instead the destination
//! remembers the refusal and fails fast with it, asking the server again at most once per
//! `probe_max_ms`, until a reload brings new settings (a new destination).

pub mod conn;
pub(crate) mod exchange;
pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};
use serde_json::{Value, json};

pub use conn::Conn;
use health::{
    BreakerSettings, BreakerState, Health, PoolHealth, Transition, jitter_fraction, now_ms,
};

use crate::error::{Error, Reason, Result};
use crate::process::fork;
use crate::protocol::{Decoder, Protocol};
use crate::stats::{DestCounters, ErrorCounters, Histogram, RecentQuantile, inc};
use crate::tls::Security;

/// An idle connection back in the pool for at least this long is checked for unsolicited bytes
/// ([`conn::Conn::is_quiet`], one `MSG_PEEK` syscall) before it carries a request. One reused
/// sooner skips the check: back-to-back requests (a loop of gets, a page's run of cache calls)
/// save a syscall each, about 1 µs of a 13 µs loopback get on a virtualised host. The window is
/// the price: a misbehaving server's bytes arriving within it of a reply can still be read as
/// the next reply — as bytes arriving after the check always could.
const QUIET_CHECK_AFTER: Duration = Duration::from_millis(1);

/// How a destination dials and talks. A reload keeps a destination (its warm connections
/// and breaker) only when its settings are unchanged (for TLS: also its files' contents).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnSettings {
    /// Wire protocol.
    pub protocol: Protocol,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Request deadline (`io_ms`), also the socket's `SO_RCVTIMEO`.
    pub io_timeout: Duration,
    /// Maximum connections to this server from this process.
    pub max_connections: usize,
    /// Reply decoder (carries the value size limit).
    pub decoder: Decoder,
    /// Idle connections unused this long are sent a heartbeat (`mn`/`version`).
    pub heartbeat_interval: Duration,
    /// Idle connections unused this long are closed (`None`: never).
    pub max_idle: Option<Duration>,
    /// Connections older than this (× a per-connection jitter of 0.8–1.0) are closed when idle.
    pub max_age: Option<Duration>,
    /// A supervisor thread probes and heartbeats; when false, requests do it inline.
    pub background: bool,
    /// Breaker knobs.
    pub breaker: BreakerSettings,
    /// TLS and login.
    pub security: Security,
}

/// A refused login or TLS handshake, remembered so that requests fail fast with it.
#[derive(Debug)]
struct Refusal {
    error: Error,
    /// Until when (ms, [`now_ms`]) the server is not asked again.
    until_ms: u64,
}

/// A probe whose validation timed out on a connected socket, left waiting for its reply.
#[derive(Debug)]
struct Parked {
    /// The connection, its `mn`/`version` sent and unanswered.
    conn: Box<Conn>,
    /// When it was parked.
    since: Instant,
}

/// A heartbeat whose answer a sweep did not wait for: its `mn`/`version` is sent, and the
/// supervisor's next rounds collect the answer ([`Destination::check_beats`]) or close the
/// connection once `deadline` passes.
#[derive(Debug)]
struct Beat {
    conn: Box<Conn>,
    deadline: Instant,
}

/// How long a sweep on the supervisor waits for heartbeat answers itself: a healthy server's
/// come within it and their connections go straight back. Later ones are collected on the
/// supervisor's next rounds, so a slow or stopped server holds up no other server's
/// maintenance (it used to hold the supervisor for `connect_ms` per heartbeat).
const BEAT_WAIT: Duration = Duration::from_millis(2);

/// A parked probe older than this gives its place to the next probe that times out: a
/// fresh socket, in case the old one died without a word (a dropped NAT entry).
const PARK_REFRESH: Duration = Duration::from_secs(30);

/// One server address and its connections.
#[derive(Debug)]
pub struct Destination {
    addr: Arc<str>,
    host: String,
    port: u16,
    settings: ConnSettings,
    /// The lock-free queues (idle connections, waiters, the parked probe, heartbeats out) of
    /// this process generation: see [`Queues`].
    queues: AtomicPtr<Queues>,
    /// The circuit breaker.
    pub health: Health,
    /// Event counters.
    pub counters: DestCounters,
    /// Errors by reason.
    pub errors: ErrorCounters,
    /// Latency of requests to this server (checkout to complete reply).
    pub latency: Histogram,
    maintaining: fork::TryFlag,
    /// Closed with the client: connections coming back are closed, not pooled.
    shut: AtomicBool,
    last_sweep_ms: AtomicU64,
    last_fail_open_log_ms: AtomicU64,
    /// What [`Destination::p95`] answers from.
    recent_p95: RecentQuantile,
    /// The last refused login or TLS handshake (see the module doc).
    refused: arc_swap::ArcSwapOption<Refusal>,
    /// The parked probe's socket while one is parked, else -1: what the supervisor polls.
    parked_fd: AtomicI32,
    /// Who looks at the parked slot (a forked child takes it over).
    parking: fork::TryFlag,
}

/// A destination's lock-free queues and the counts that go with them, one set per process
/// generation.
///
/// A `fork()` copies memory, not threads: when another thread of the parent is inside a push
/// or a pop of a crossbeam queue at that instant (its slot claimed, not yet published), the
/// child's copy of the queue is left mid-operation, and the next pop in the child waits for
/// the missing thread forever, spinning (seen: a child's first request and its supervisor
/// both spinning in `ArrayQueue::pop`, `tests/fork_thread_churn.rs`). So a child never
/// touches its parent's queues: the first use in a new generation swaps in empty ones
/// ([`Destination::q`]) and leaks the inherited set unread. What it held were the parent's
/// connections, whose sockets the fork already turned into `/dev/null` (`fork::track`).
///
/// The counts live in the set too: a fresh set starts them at zero in the same atomic step
/// that publishes it. Reset apart from the queues, a thread of the child that reserved a slot
/// between the swap and the reset lost its count, and closing that connection later took
/// `open` below zero (wrapping: no slot was ever free again).
struct Queues {
    generation: u64,
    /// Connections that exist (idle + checked out) in this process generation.
    open: AtomicUsize,
    /// Of those, connections lent to hedges' losers that the background worker is reading to
    /// their end (at most [`LEND_MAX`] × `max_connections`). They do not count against
    /// `max_connections`: a request must not wait for a reply nobody wants. So up to
    /// `LEND_MAX + 1` times `max_connections` may be open for a while; at most
    /// `max_connections` are ever idle.
    lent: AtomicUsize,
    /// How many entries `waiters` holds.
    waiter_entries: AtomicUsize,
    /// Idle connections.
    idle: ArrayQueue<Box<Conn>>,
    /// Requests parked in `checkout` until a connection or a slot comes back.
    waiters: SegQueue<Arc<Waiter>>,
    /// At most one parked probe (see [`Destination::park`]); a queue of one.
    parked: ArrayQueue<Parked>,
    /// Heartbeats still waiting for their answer (supervisor only; at most `max_connections`:
    /// only idle connections get one). Their connections count as open, not idle.
    beating: ArrayQueue<Beat>,
}

// Behind a raw pointer the compiler no longer sees that a destination shared between threads
// shares its queues: check here that they may be.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Queues>();
};

impl Queues {
    fn new(max_connections: usize, generation: u64) -> *mut Queues {
        let n = max_connections.max(1);
        Box::into_raw(Box::new(Queues {
            generation,
            open: AtomicUsize::new(0),
            lent: AtomicUsize::new(0),
            waiter_entries: AtomicUsize::new(0),
            idle: ArrayQueue::new(n),
            waiters: SegQueue::new(),
            parked: ArrayQueue::new(1),
            beating: ArrayQueue::new(n),
        }))
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        let q = *self.queues.get_mut();
        // SAFETY: `queues` always holds a pointer from `Queues::new`, owned by this destination
        // alone (a replaced set is leaked, never freed), and `&mut self` means no other
        // reference to it is left.
        let q = unsafe { Box::from_raw(q) };
        if q.generation != fork::generation() {
            // A parent's set, never used here: it may be mid-operation (see `Queues`).
            std::mem::forget(q);
        }
    }
}

impl Destination {
    /// A destination for `host:port`, or for the Unix-domain socket at `host` when it is a path
    /// (port 0), in a pool whose breakers share `pool`. Dials nothing.
    pub fn new(
        host: &str,
        port: u16,
        settings: ConnSettings,
        pool: Arc<PoolHealth>,
    ) -> Destination {
        Destination {
            addr: Arc::from(crate::addr::Node::new(host, port).addr()),
            host: host.to_string(),
            port,
            queues: AtomicPtr::new(Queues::new(settings.max_connections, fork::generation())),
            health: Health::new(settings.breaker, pool),
            counters: DestCounters::default(),
            errors: ErrorCounters::default(),
            latency: Histogram::default(),
            maintaining: fork::TryFlag::new(),
            shut: AtomicBool::new(false),
            last_sweep_ms: AtomicU64::new(now_ms()),
            last_fail_open_log_ms: AtomicU64::new(0),
            recent_p95: RecentQuantile::new(0.95),
            refused: arc_swap::ArcSwapOption::empty(),
            parked_fd: AtomicI32::new(-1),
            parking: fork::TryFlag::new(),
            settings,
        }
    }

    /// May a request go to this server now? Fails fast with `tko` (no socket touched) while
    /// the breaker is open. Without a supervisor the caller's thread runs a due probe first.
    pub fn admit(&self, supervised: bool, deadline: Instant) -> Result<()> {
        if self.health.admit() {
            return Ok(());
        }
        if !supervised && self.parked_fd.load(Ordering::Relaxed) >= 0 {
            // One non-blocking read: did the stopped server answer the parked probe?
            self.check_parked();
            if self.health.admit() {
                return Ok(());
            }
        }
        if !supervised && self.health.claim_probe() {
            // An inline probe is part of the request: it ends by the request's deadline.
            self.run_probe(deadline);
            if self.health.admit() {
                return Ok(());
            }
        }
        inc(&self.counters.tko_rejected);
        self.errors.add(Reason::Tko);
        Err(Error::with_detail(Reason::Tko, "circuit breaker open").at(&self.addr))
    }

    /// The p95 latency of this server's recent requests, the last 1,000–2,000 or the last
    /// 1–2 s ([`RecentQuantile`]), recomputed at most every 100 ms: a hedged read's delay.
    /// `None` before 100 requests were measured.
    pub fn p95(&self) -> Option<Duration> {
        self.recent_p95
            .get(&self.latency, now_ms())
            .map(Duration::from_micros)
    }

    /// Feed a request's outcome to the breaker and the counters. Caller errors never get here;
    /// server replies (even `SERVER_ERROR`) prove the server alive.
    pub fn record<T>(&self, result: &Result<T>, elapsed: Duration) {
        inc(&self.counters.requests);
        self.latency.record(elapsed);
        match result {
            Ok(_) => {
                if let Some(t) = self.health.record_success() {
                    self.note(t);
                }
            }
            Err(e) => self.record_error(e),
        }
    }

    fn record_error(&self, e: &Error) {
        self.errors.add(e.reason());
        if e.is_destination_failure() {
            if let Some(t) = self.health.record_failure(e.reason()) {
                self.note(t);
            }
        } else if matches!(
            e.reason(),
            Reason::PoolTimeout | Reason::AuthFailed | Reason::TlsFailed
        ) {
            // Local saturation says nothing about the server, and a refused login or handshake
            // (our settings) neither proves it alive nor down; a half-open trial that ended
            // here must not consume its slot, or the breaker could stay half-open for good.
            self.health.return_trial();
        } else if let Some(t) = self.health.record_success() {
            self.note(t);
        }
    }

    /// Count and log a breaker transition, once.
    fn note(&self, t: Transition) {
        let addr = &self.addr;
        match t {
            Transition::Opened(r) => {
                inc(&self.counters.breaker_opened);
                log::warn!(target: "fae", "destination={addr} breaker=open reason={r}");
            }
            Transition::HalfOpened => {
                inc(&self.counters.breaker_half_opened);
                log::info!(target: "fae", "destination={addr} breaker=half_open reason=probe_ok");
            }
            Transition::Closed => {
                inc(&self.counters.breaker_closed);
                log::info!(target: "fae", "destination={addr} breaker=closed reason=trials_ok");
            }
            Transition::Reopened(r) => {
                inc(&self.counters.breaker_reopened);
                log::warn!(target: "fae", "destination={addr} breaker=open reason={r} trial=failed");
            }
            Transition::FailOpen(r) => {
                inc(&self.counters.fail_open);
                // Rate-limited: while a pool fails open every failure lands here.
                let now = now_ms();
                let last = self.last_fail_open_log_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= 10_000
                    && self
                        .last_fail_open_log_ms
                        .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    log::warn!(
                        target: "fae",
                        "destination={addr} breaker=closed reason={r} fail_open=true (too much of the pool is open)"
                    );
                }
            }
        }
    }

    /// The remembered refusal while it lasts (see the module doc).
    fn refusal(&self) -> Option<Error> {
        let r = self.refused.load();
        let r = r.as_ref()?;
        (now_ms() < r.until_ms).then(|| r.error.clone())
    }

    /// Dial and validate a connection within `connect_ms`.
    fn dial(&self, deadline: Instant, generation: u64) -> Result<Box<Conn>> {
        self.dial_keeping(deadline, generation).map_err(|(e, _)| e)
    }

    /// [`Destination::dial`], giving back with the error a connection whose validation timed
    /// out with its `mn`/`version` sent: the server accepted (its kernel did) but did not
    /// answer. A probe parks it ([`Destination::park`]).
    fn dial_keeping(
        &self,
        deadline: Instant,
        generation: u64,
    ) -> std::result::Result<Box<Conn>, (Error, Option<Box<Conn>>)> {
        if let Some(e) = self.refusal() {
            inc(&self.counters.connections_failed);
            return Err((e, None));
        }
        // `connect_ms` bounds the whole dial: TCP (and TLS) handshake, login and validation.
        // A stopped server's kernel still completes TCP handshakes; only validation notices it.
        let connect_deadline = deadline.min(Instant::now() + self.settings.connect_timeout);
        let security = &self.settings.security;
        let dialled = Conn::connect(
            &self.host,
            self.port,
            self.settings.connect_timeout,
            self.settings.io_timeout,
            connect_deadline,
            generation,
            security,
        )
        .map_err(|e| (e, None))
        .and_then(|mut conn| {
            if let Some(auth) = &security.auth {
                conn.login(auth, &self.settings.decoder, connect_deadline)
                    .map_err(|e| {
                        let reason = match e.reason() {
                            Reason::Timeout => Reason::ConnectTimeout,
                            Reason::Reset | Reason::Io => Reason::ConnectFailed,
                            other => other,
                        };
                        let detail = e.detail().unwrap_or(e.reason().as_str());
                        (Error::with_detail(reason, format!("login: {detail}")), None)
                    })?;
            }
            let validated = conn.validate(
                self.settings.protocol,
                &self.settings.decoder,
                connect_deadline,
            );
            // Sent and unanswered: the reply may still come (a stopped server resumed).
            let waiting = validated
                .as_ref()
                .is_err_and(|e| e.reason() == Reason::Timeout && conn.wbuf.is_empty());
            let validated = validated.map_err(|e| {
                if matches!(e.reason(), Reason::AuthFailed | Reason::TlsFailed) {
                    return e; // says what it is already
                }
                // The connection never became usable: a timeout or a reset here is a failure to
                // connect (hard: the breaker opens at once), not a slow reply.
                let reason = match e.reason() {
                    Reason::Timeout => Reason::ConnectTimeout,
                    Reason::Reset | Reason::Io => Reason::ConnectFailed,
                    other => other,
                };
                // A TLS-only server (memcached -Z) waits for a handshake or hangs up: say so.
                let hint = match (security.tls.is_none(), e.reason()) {
                    (true, Reason::Reset) => {
                        " (a TLS-only server closes plain connections: does the pool need \"tls\"?)"
                    }
                    (true, Reason::Timeout) => {
                        " (a stopped server, or a TLS-only one waiting for a handshake: does the pool need \"tls\"?)"
                    }
                    _ => "",
                };
                Error::with_detail(reason, format!("validating new connection: {e}{hint}"))
            });
            match validated {
                Ok(()) => {
                    conn.ready = true;
                    Ok(conn)
                }
                Err(e) => Err((e, waiting.then_some(conn))),
            }
        });
        match dialled {
            Ok(mut conn) => {
                self.opened(&mut conn);
                Ok(conn)
            }
            Err((e, waiting)) => {
                inc(&self.counters.connections_failed);
                let e = e.at(&self.addr);
                if matches!(e.reason(), Reason::AuthFailed | Reason::TlsFailed) {
                    log::warn!(
                        target: "fae",
                        "destination={} refused=true reason={}: {} (not asked again for {} ms)",
                        self.addr,
                        e.reason(),
                        e.detail().unwrap_or(""),
                        self.settings.breaker.probe_max.as_millis()
                    );
                    self.refused.store(Some(Arc::new(Refusal {
                        error: e.clone(),
                        until_ms: now_ms()
                            .saturating_add(self.settings.breaker.probe_max.as_millis() as u64),
                    })));
                }
                Err((e, waiting))
            }
        }
    }

    /// Count a connection that passed validation and give it its jittered `max_age`.
    fn opened(&self, conn: &mut Conn) {
        inc(&self.counters.connections_opened);
        if conn.tls_resumed() == Some(true) {
            inc(&self.counters.tls_resumed);
        }
        if let Some(age) = self.settings.max_age {
            conn.max_age = Some(age.mul_f64(0.8 + 0.2 * jitter_fraction()));
        }
    }

    /// A connection for an admin command (`stats`), outside the pool: dialled, TLS and
    /// login as the pool's, within `connect_timeout` and `deadline`; not validated or counted.
    pub(crate) fn admin_conn(
        &self,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Box<Conn>> {
        let s = &self.settings;
        let mut conn = Conn::connect(
            &self.host,
            self.port,
            connect_timeout,
            s.io_timeout,
            deadline,
            fork::generation(),
            &s.security,
        )?;
        if let Some(auth) = &s.security.auth {
            conn.login(auth, &s.decoder, deadline)?;
        }
        conn.ready = true;
        Ok(conn)
    }

    /// Probe an open breaker: dial + validate. A good connection joins the idle pool; one
    /// whose validation timed out unanswered is parked ([`Destination::park`]).
    fn run_probe(&self, deadline: Instant) {
        let generation = self.q().generation;
        let ok = if self.reserve_slot() {
            match self.dial_keeping(deadline, generation) {
                Ok(conn) => {
                    self.release(Some(conn), true);
                    true
                }
                Err((_, waiting)) => {
                    self.release(None, false);
                    if let Some(conn) = waiting {
                        self.park(conn);
                    }
                    false
                }
            }
        } else {
            // Every slot is taken by connections in use: the server is evidently reachable.
            true
        };
        inc(if ok {
            &self.counters.probes_ok
        } else {
            &self.counters.probes_failed
        });
        if let Some(t) = self.health.probe_finished(ok) {
            self.note(t);
        }
    }

    /// Leave `conn` (a probe's, its validation sent and unanswered) waiting for the reply
    /// while the breaker stays open. A stopped or hung server (SIGSTOP, a stalled event loop)
    /// answers it the moment it runs again; the supervisor polls its socket with its tick
    /// ([`Destination::parked_probe_fd`]), so the breaker half-opens then instead of at the
    /// next scheduled probe, up to `probe_max_ms` later. Scheduled probes go on meanwhile (a
    /// restarted server is found by them). One per destination; not counted against
    /// `max_connections`, and never lent to a request: nobody waits on it.
    fn park(&self, conn: Box<Conn>) {
        let q = self.q();
        if !self.parking.try_take() {
            return; // being looked at: this one is not needed
        }
        let keep_old = q.parked.pop().filter(|old| {
            old.conn.generation == conn.generation && old.since.elapsed() < PARK_REFRESH
        });
        if let Some(old) = keep_old {
            let _ = q.parked.push(old);
        } else if self.health.state() == BreakerState::Open && !self.shut.load(Ordering::Acquire) {
            let fd = conn.fd();
            let fresh = Parked {
                conn,
                since: Instant::now(),
            };
            if q.parked.push(fresh).is_ok() {
                self.parked_fd.store(fd, Ordering::Release);
                inc(&self.counters.probes_parked);
            }
        } else {
            self.parked_fd.store(-1, Ordering::Release);
        }
        self.parking.give_back();
    }

    /// The parked probe's socket, for the supervisor to wake on (`None`: none is parked).
    /// Racy by nature: at worst the supervisor wakes once for nothing.
    pub fn parked_probe_fd(&self) -> Option<i32> {
        let fd = self.parked_fd.load(Ordering::Acquire);
        (fd >= 0).then_some(fd)
    }

    /// The sockets of heartbeats still waiting for their answer, for the supervisor to wake on
    /// (so an answered connection is back in the pool at once, not at the next tick).
    /// Supervisor only, like `Destination::check_beats`.
    pub fn heartbeat_fds(&self, out: &mut Vec<i32>) {
        let q = self.q();
        for _ in 0..q.beating.len() {
            let Some(b) = q.beating.pop() else {
                break;
            };
            out.push(b.conn.fd());
            if let Err(b) = q.beating.push(b) {
                self.close_open(b.conn, &self.counters.connections_discarded);
            }
        }
    }

    /// Did the parked probe get its reply? One non-blocking read. A valid reply half-opens
    /// the breaker at once and its connection joins the pool; an end of stream, an error or
    /// a wrong reply drops it (scheduled probes go on); no reply yet puts it back. It is
    /// dropped too once the breaker is no longer open (a scheduled probe got there first).
    fn check_parked(&self) {
        let q = self.q();
        if self.parked_fd.load(Ordering::Acquire) < 0 {
            return;
        }
        let generation = q.generation;
        if !self.parking.try_take() {
            return;
        }
        let mut answered = None;
        // A parent's went with the parent's queues (`Queues`), unread: its reply is the
        // parent's.
        if let Some(mut p) = q.parked.pop()
            && p.conn.generation == generation
        {
            let reply = match p.conn.try_fill() {
                Ok(_) => p.conn.try_decode(&self.settings.decoder),
                Err(e) => Err(e),
            };
            let wanted =
                self.health.state() == BreakerState::Open && !self.shut.load(Ordering::Acquire);
            match reply {
                Ok(None) if wanted => {
                    let _ = q.parked.push(p); // the slot is ours: room for it
                    self.parking.give_back();
                    return;
                }
                Ok(Some(resp)) => answered = Some((p.conn, resp)),
                Ok(None) | Err(_) => {}
            }
        }
        self.parked_fd.store(-1, Ordering::Release);
        self.parking.give_back();
        let Some((mut conn, resp)) = answered else {
            return;
        };
        if conn::check_validation(self.settings.protocol, resp).is_err() {
            return; // not memcached's answer: dropped, and the schedule decides
        }
        inc(&self.counters.probe_wakeups);
        if let Some(t) = self.health.probe_answered_late() {
            self.note(t);
        }
        conn.ready = true;
        self.opened(&mut conn);
        if self.reserve_slot() {
            self.release(Some(conn), true);
        }
    }

    /// Background work for this destination, on the supervisor thread: a due breaker probe,
    /// then (every `heartbeat_interval`) heartbeats and recycling of idle connections. Never
    /// blocks on another thread; at most one maintainer runs per destination. The probe runs
    /// on a thread of its own (`fae-probe`, one at a time per destination, gone when the probe
    /// ends): a probe can wait its whole `connect_ms` (a server that accepts and never
    /// answers), and meanwhile the supervisor goes on with every other destination, above all
    /// waking on the parked probe of a server that resumes. Heartbeats are not waited for past
    /// 2 ms either.
    pub fn maintain(self: &Arc<Self>) {
        self.maintain_with(true, || {
            let deadline = Instant::now() + self.settings.connect_timeout;
            let me = Arc::clone(self);
            let spawned =
                crate::process::thread::spawn("fae-probe", move || me.run_probe(deadline));
            if spawned.is_err() {
                self.run_probe(deadline); // no thread to be had: as before, on this one
            }
        });
    }

    /// [`Destination::maintain`] on the calling thread, probe included (`background: false`).
    fn maintain_inline(&self) {
        self.maintain_with(false, || {
            self.run_probe(Instant::now() + self.settings.connect_timeout);
        });
    }

    /// The maintenance round, with `probe` run if a probe is due (and claimed). On the
    /// supervisor (`background`) heartbeats are not waited for past [`BEAT_WAIT`].
    fn maintain_with(&self, background: bool, probe: impl FnOnce()) {
        if !self.maintaining.try_take() {
            return;
        }
        self.check_parked();
        self.check_beats();
        if self.health.claim_probe() {
            probe();
        }
        let now = now_ms();
        let interval = self.settings.heartbeat_interval.as_millis() as u64;
        let sweep_every = match self.settings.max_idle {
            Some(idle) => interval.min(idle.as_millis() as u64),
            None => interval,
        };
        if now.saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= sweep_every {
            self.last_sweep_ms.store(now, Ordering::Relaxed);
            self.sweep_idle(background);
        }
        self.maintaining.give_back();
    }

    /// [`Destination::maintain`] for requests when no supervisor runs (`background: false`):
    /// cheap unless a probe or a sweep is due.
    pub fn maintain_if_due(&self) {
        let interval = self.settings.heartbeat_interval.as_millis() as u64;
        let sweep_due =
            now_ms().saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= interval;
        if sweep_due {
            self.maintain_inline();
        }
    }

    /// Heartbeat idle connections unused for `heartbeat_interval`; close those past
    /// `max_idle` or their `max_age`. On the supervisor (`background`) a heartbeat not
    /// answered within [`BEAT_WAIT`] is left to [`Destination::check_beats`]; inline, the
    /// request doing the sweep waits up to `connect_ms`.
    fn sweep_idle(&self, background: bool) {
        let q = self.q();
        let generation = q.generation;
        let wait_until = Instant::now() + BEAT_WAIT;
        // Inline only: set when a heartbeat timed out. The server does not answer, and each
        // further heartbeat would hold this request for another `connect_ms` to learn the
        // same: the connections still due are closed unchecked instead.
        let mut unanswered = false;
        for _ in 0..q.idle.len() {
            let Some(mut conn) = q.idle.pop() else {
                break;
            };
            if conn.generation != generation {
                continue;
            }
            let too_old = conn.max_age.is_some_and(|m| conn.age() >= m);
            let too_idle = self
                .settings
                .max_idle
                .is_some_and(|m| conn.last_used.elapsed() >= m);
            if too_old || too_idle {
                self.close_open(conn, &self.counters.connections_recycled);
                continue;
            }
            // Due within BEAT_WAIT counts as due: connections heartbeated in one sweep (within
            // BEAT_WAIT of each other) fall due together again, so a stopped server's
            // heartbeats time out in one round and its breaker hears of it once.
            if conn.last_checked.elapsed() + BEAT_WAIT >= self.settings.heartbeat_interval {
                if unanswered {
                    self.close_open(conn, &self.counters.connections_discarded);
                    continue;
                }
                let (protocol, decoder) = (self.settings.protocol, &self.settings.decoder);
                let deadline = Instant::now() + self.settings.connect_timeout;
                let until = if background {
                    wait_until.min(deadline)
                } else {
                    deadline
                };
                let answer = conn
                    .send_validation(protocol, deadline)
                    .and_then(|()| conn.validation_answer(protocol, decoder, until));
                match answer {
                    Ok(Some(())) => {
                        inc(&self.counters.heartbeats_ok);
                        conn.last_checked = Instant::now();
                    }
                    Ok(None) if background => {
                        if let Err(b) = q.beating.push(Beat { conn, deadline }) {
                            self.close_open(b.conn, &self.counters.connections_discarded);
                        }
                        continue;
                    }
                    Ok(None) => {
                        unanswered = true;
                        self.heartbeat_failed(conn, &Error::new(Reason::Timeout));
                        continue;
                    }
                    Err(e) => {
                        unanswered = matches!(e.reason(), Reason::Timeout | Reason::ConnectTimeout);
                        self.heartbeat_failed(conn, &e);
                        continue;
                    }
                }
            }
            self.keep_idle(conn);
        }
    }

    /// Collect the answers of heartbeats a sweep did not wait for (one non-blocking read
    /// each): an answered connection goes back to the pool; one with a wrong answer, or none
    /// by its deadline, is closed and counted in `heartbeats_failed`. The breaker hears of a
    /// round's timeouts once: they share one cause and one moment.
    fn check_beats(&self) {
        let q = self.q();
        if q.beating.is_empty() {
            return;
        }
        let generation = q.generation;
        let now = Instant::now();
        let (protocol, decoder) = (self.settings.protocol, &self.settings.decoder);
        let mut timed_out = false;
        for _ in 0..q.beating.len() {
            let Some(mut b) = q.beating.pop() else {
                break;
            };
            if b.conn.generation != generation {
                continue; // a parent's: not counted here
            }
            if self.shut.load(Ordering::Acquire) {
                self.close_open(b.conn, &self.counters.connections_discarded);
                continue;
            }
            match b.conn.validation_answer(protocol, decoder, now) {
                Ok(Some(())) => {
                    inc(&self.counters.heartbeats_ok);
                    b.conn.last_checked = Instant::now();
                    self.keep_idle(b.conn);
                    self.wake_one();
                }
                Ok(None) if now < b.deadline => {
                    if let Err(b) = q.beating.push(b) {
                        self.close_open(b.conn, &self.counters.connections_discarded);
                    }
                }
                Ok(None) if timed_out => self.close_open(b.conn, &self.counters.heartbeats_failed),
                Ok(None) => {
                    timed_out = true;
                    self.heartbeat_failed(b.conn, &Error::new(Reason::Timeout));
                }
                Err(e) => self.heartbeat_failed(b.conn, &e),
            }
        }
    }

    /// A heartbeat failed with `e`: the connection is closed, and the server's breaker hears.
    fn heartbeat_failed(&self, conn: Box<Conn>, e: &Error) {
        self.close_open(conn, &self.counters.heartbeats_failed);
        self.record_error(&e.clone().at(&self.addr));
    }

    /// Put a connection the pool counts as open into the idle queue; close it (uncounted) if
    /// the queue is full.
    fn keep_idle(&self, conn: Box<Conn>) {
        let q = self.q();
        if let Err(conn) = q.idle.push(conn) {
            drop(conn);
            q.open.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Close a connection the pool counts as open (idle, or out for a heartbeat), and count
    /// it in `counter`. Closed and uncounted first: whoever sees the counter sees it gone.
    fn close_open(&self, conn: Box<Conn>, counter: &AtomicU64) {
        drop(conn);
        self.q().open.fetch_sub(1, Ordering::AcqRel);
        inc(counter);
        self.wake_one();
    }

    /// Local addresses of the idle TCP connections (diagnostics: which sockets this process
    /// holds; Unix-domain sockets have none).
    pub fn idle_local_addrs(&self) -> Vec<std::net::SocketAddr> {
        let q = self.q();
        let mut out = Vec::new();
        for _ in 0..q.idle.len() {
            let Some(conn) = q.idle.pop() else {
                break;
            };
            if let Some(a) = conn.local_addr() {
                out.push(a);
            }
            self.keep_idle(conn);
        }
        out
    }

    /// A JSON snapshot of this destination: gauges, counters and errors by reason.
    pub fn stats_json(&self) -> Value {
        let mut v = json!({
            "state": self.health.state().as_str(),
            "open_connections": self.open_connections(),
            "idle_connections": self.idle_connections(),
            "errors": self.errors.to_json(),
            "latency": self.latency.to_json(),
        });
        if let Value::Object(m) = &mut v {
            self.counters.insert_into(m);
        }
        v
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &ConnSettings {
        &self.settings
    }

    /// `host:port`, or the socket path of a Unix-domain socket server.
    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The protocol this destination speaks.
    pub fn protocol(&self) -> Protocol {
        self.settings.protocol
    }

    /// The reply decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.settings.decoder
    }

    /// Connections currently open to this server (idle and in use).
    pub fn open_connections(&self) -> usize {
        self.q().open.load(Ordering::Relaxed)
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.q().idle.len()
    }

    /// This generation's queues: one load and a compare, or, first thing in a forked child,
    /// a fresh set (see [`Queues`]).
    #[inline]
    fn q(&self) -> &Queues {
        let p = self.queues.load(Ordering::Acquire);
        // SAFETY: `queues` is never null, and no set it ever held is freed before the
        // destination is dropped (replaced sets are leaked), so the reference lives as long
        // as `&self`.
        let q = unsafe { &*p };
        if q.generation == fork::generation() {
            q
        } else {
            self.renew_queues(p)
        }
    }

    #[cold]
    fn renew_queues(&self, seen: *mut Queues) -> &Queues {
        let fresh = Queues::new(self.settings.max_connections, fork::generation());
        match self
            .queues
            .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // The inherited set is leaked, unread (see `Queues`).
            // SAFETY: `fresh` is now owned by `queues`, freed only when the destination drops.
            Ok(_) => unsafe { &*fresh },
            Err(_) => {
                // Another thread of this process renewed them first.
                // SAFETY: `fresh` never left this function.
                drop(unsafe { Box::from_raw(fresh) });
                self.q()
            }
        }
    }

    /// Take a connection: an idle one, or a new validated one if fewer than `max_connections`
    /// exist, or wait for one to come back until `deadline`. `now` is the caller's clock
    /// reading (it decides whether an idle connection is checked for unsolicited bytes).
    pub fn checkout(&self, deadline: Instant, now: Instant) -> Result<PooledConn<'_>> {
        if self.shut.load(Ordering::Acquire) {
            // The client was closed: late work (a shadow copy still queued) must not dial.
            return Err(Error::with_detail(Reason::Closed, "the client is closed").at(&self.addr));
        }
        // In a forked child, the first use swaps in this generation's queues (see `Queues`).
        let q = self.q();
        let generation = q.generation;
        let mut spins = 0u32;
        let mut parked: Option<Arc<Waiter>> = None;
        loop {
            if let Some(mut conn) = q.idle.pop() {
                if conn.generation == generation
                    && now.saturating_duration_since(conn.last_used) >= QUIET_CHECK_AFTER
                    && !conn.is_quiet()
                {
                    // Unsolicited bytes or a close while idle: never read them as a reply.
                    self.release(Some(conn), false);
                    continue;
                }
                if conn.generation == generation {
                    leave(parked.as_deref());
                    return Ok(PooledConn {
                        dest: self,
                        conn: Some(conn),
                    });
                }
                continue; // a parent's connection: drop (close) it
            }
            if self.reserve_slot() {
                leave(parked.as_deref());
                // From here the slot is ours; the guard gives it back if dialling fails.
                let mut guard = PooledConn {
                    dest: self,
                    conn: None,
                };
                guard.conn = Some(self.dial(deadline, generation)?);
                return Ok(guard);
            }
            // At the limit: wait for a connection to come back. This path only runs when more
            // threads than `max_connections` use one server at once, or when its connections
            // are stuck on a stopped server until their deadline: then a thread that looked
            // again every 50 µs took CPU from the requests to healthy servers (issue 17,
            // item 7). A few yields, then park until `release` wakes us (or WAIT_TICK passes).
            let now = Instant::now();
            if now >= deadline {
                leave(parked.as_deref());
                return Err(Error::with_detail(
                    Reason::PoolTimeout,
                    format!("all {} connections busy", self.settings.max_connections),
                )
                .at(&self.addr));
            }
            inc(&self.counters.checkout_wakeups);
            spins += 1;
            if spins < 4 {
                std::thread::yield_now();
                continue;
            }
            match &parked {
                // Registered and looked again: now sleep, then look again. Woken by `release`
                // (which took the entry: register again if still needed) or by the tick (the
                // entry is still queued and live: keep it).
                Some(w) => {
                    std::thread::park_timeout((deadline - now).min(WAIT_TICK));
                    if !w.queued.load(Ordering::Acquire) {
                        parked = None;
                    }
                }
                // Register, then look once more before sleeping: a connection that came back
                // before the registration woke nobody.
                None => {
                    let w = Arc::new(Waiter {
                        thread: std::thread::current(),
                        waiting: AtomicBool::new(true),
                        queued: AtomicBool::new(true),
                    });
                    q.waiter_entries.fetch_add(1, Ordering::SeqCst);
                    q.waiters.push(Arc::clone(&w));
                    parked = Some(w);
                }
            }
        }
    }

    /// A connection or a slot came back: wake one parked `checkout`, skipping entries whose
    /// thread stopped waiting.
    fn wake_one(&self) {
        let q = self.q();
        if q.waiter_entries.load(Ordering::SeqCst) == 0 {
            return;
        }
        while let Some(w) = q.waiters.pop() {
            q.waiter_entries.fetch_sub(1, Ordering::AcqRel);
            w.queued.store(false, Ordering::Release);
            if w.waiting.swap(false, Ordering::AcqRel) {
                w.thread.unpark();
                return;
            }
        }
    }

    /// Take a connection slot if fewer than `max_connections` exist, not counting those lent.
    fn reserve_slot(&self) -> bool {
        let q = self.q();
        let max = self.settings.max_connections + q.lent.load(Ordering::Acquire);
        q.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// The client closed: close idle connections now and every connection that comes back.
    pub fn shut(&self) {
        self.shut.store(true, Ordering::Release);
        self.close_idle();
        // The parked probe goes at the next look (`check_parked` drops it once shut).
    }

    /// Close every idle connection now, and those out for a heartbeat (used by
    /// `Client::close`; a heartbeat the supervisor is looking at this instant is closed with
    /// the destination).
    pub fn close_idle(&self) {
        let q = self.q();
        while q.idle.pop().is_some() {
            q.open.fetch_sub(1, Ordering::AcqRel);
        }
        while q.beating.pop().is_some() {
            q.open.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn release(&self, conn: Option<Box<Conn>>, keep: bool) {
        self.release_at(conn, keep, None);
    }

    /// [`Destination::release`]; `now`, when the caller has just read the clock, becomes the
    /// connection's last use (a clock read is about 25 ns on a virtualised host).
    fn release_at(&self, conn: Option<Box<Conn>>, keep: bool, now: Option<Instant>) {
        self.put_back(conn, keep, now);
        self.wake_one();
    }

    fn put_back(&self, mut conn: Option<Box<Conn>>, keep: bool, now: Option<Instant>) {
        if let Some(c) = conn.as_mut() {
            let (sent, received) = c.take_byte_counts();
            self.counters.bytes_sent.fetch_add(sent, Ordering::Relaxed);
            self.counters
                .bytes_received
                .fetch_add(received, Ordering::Relaxed);
        }
        let q = self.q();
        match conn {
            Some(c) if c.generation != q.generation => {} // a parent's connection: not counted here
            Some(mut c) if keep && c.is_clean() && !self.shut.load(Ordering::Acquire) => {
                c.last_used = now.unwrap_or_else(Instant::now);
                c.last_checked = c.last_used;
                self.keep_idle(c);
            }
            other => {
                if other.is_some() {
                    inc(&self.counters.connections_discarded);
                }
                let _ = q
                    .open
                    .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }
}

/// The longest a `checkout` waiting for a busy pool sleeps before it looks again (a bound
/// for a wake-up lost between a release and a registration).
const WAIT_TICK: Duration = Duration::from_millis(1);

/// A thread parked in `checkout`.
#[derive(Debug)]
struct Waiter {
    thread: std::thread::Thread,
    /// Still waiting: whoever swaps it to false (a releaser, or the waiter leaving) owns it.
    waiting: AtomicBool,
    /// In the queue: a releaser that pops it clears this first.
    queued: AtomicBool,
}

/// The waiter `w` got what it waited for, or gave up: a releaser must skip its entry.
fn leave(w: Option<&Waiter>) {
    if let Some(w) = w {
        w.waiting.store(false, Ordering::Release);
    }
}

/// A checked-out connection. Dropping it discards the connection; [`PooledConn::checkin`]
/// returns it to the pool if it is clean.
#[derive(Debug)]
pub struct PooledConn<'a> {
    dest: &'a Destination,
    /// `None` only while a new connection is being dialled.
    conn: Option<Box<Conn>>,
}

impl<'a> PooledConn<'a> {
    /// The connection.
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a PooledConn holds its connection until it is released")
    }

    /// The destination it belongs to.
    pub fn destination(&self) -> &'a Destination {
        self.dest
    }

    /// Return the connection to the pool (only if nothing is left unread or unsent).
    pub fn checkin(self) {
        self.checkin_at(Instant::now());
    }

    /// [`PooledConn::checkin`], `now` (a clock reading the caller has just taken) being the
    /// connection's last use.
    pub(crate) fn checkin_at(self, now: Instant) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let conn = this.conn.take();
        this.dest.release_at(conn, true, Some(now));
    }
}

impl PooledConn<'_> {
    /// Lend the connection out of the pool: the same connection, holding its destination by
    /// `dest` (the one it came from) instead of a borrow, to outlive the request (a hedge's
    /// loser, read to the end in the background). It stops counting against
    /// `max_connections` until it comes back. `None` when [`LEND_MAX`] × `max_connections`
    /// are already lent: the connection is then discarded.
    pub(crate) fn lend(self, dest: Arc<Destination>) -> Option<OwnedConn> {
        debug_assert!(std::ptr::eq(self.dest, &*dest));
        let max = self.dest.settings.max_connections.saturating_mul(LEND_MAX);
        if self
            .dest
            .q()
            .lent
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        // One more connection may be dialled now: a request waiting for one need not wait.
        self.dest.wake_one();
        let mut this = std::mem::ManuallyDrop::new(self);
        Some(OwnedConn {
            conn: this.conn.take(),
            dest,
        })
    }
}

/// How many connections per server may be lent to hedges' losers, in `max_connections`. A
/// loser holds its connection until its reply comes, at most the request's `io_ms`; with one
/// slow reply every few reads, several are out at once (Little's law: 20 ms replies every
/// 2 ms keep ten out), and a loser beyond the cap is closed and dialled again. The cap bounds
/// the sockets a stuck server can hold: what it keeps out times out within `io_ms`.
pub(crate) const LEND_MAX: usize = 4;

/// A connection lent out of the pool ([`PooledConn::lend`]), owning a handle on its
/// destination; like [`PooledConn`], it is discarded when dropped unless
/// [`OwnedConn::checkin`] returns it.
#[derive(Debug)]
pub(crate) struct OwnedConn {
    dest: Arc<Destination>,
    conn: Option<Box<Conn>>,
}

impl OwnedConn {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("an OwnedConn holds its connection until it is released")
    }

    /// The destination it belongs to.
    pub(crate) fn destination(&self) -> &Arc<Destination> {
        &self.dest
    }

    /// Return the connection to the pool (only if nothing is left unread or unsent); what is
    /// left is an empty guard whose drop does nothing.
    pub(crate) fn checkin(&mut self) {
        self.give_back(true);
    }

    fn give_back(&mut self, keep: bool) {
        if let Some(c) = self.conn.take() {
            let d = &self.dest;
            let _ = d
                .q()
                .lent
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
            // Kept if the idle queue (`max_connections` long) has room, else closed; so the
            // connections dialled while it was out are not closed just to be dialled again.
            d.release(Some(c), keep);
        }
    }
}

impl Drop for OwnedConn {
    fn drop(&mut self) {
        self.give_back(false);
    }
}

impl Drop for PooledConn<'_> {
    /// Discard: the connection (or, when dialling failed, its reserved slot) is given up.
    fn drop(&mut self) {
        self.dest.release(self.conn.take(), false);
    }
}
