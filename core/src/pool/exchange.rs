//! The exchange engine: batches of requests on pooled connections, one destination at a time
//! ([`exchange`]) or many at once under one deadline ([`exchange_many`], `poll(2)` from the
//! caller's thread), and a hedged race of two destinations ([`get_hedged`]).
//!
//! Routes hand it per-destination batches ([`Work`]: a destination, the admission rules of the
//! pool that sent it, a [`Batch`]) and a deadline; it knows nothing of route types. What a
//! reply means to a caller (a lease stub hidden from a plain read, a refresh win handed back,
//! hit counts) is the pool route's business, after the exchange.
//!
//! A slow or dead server delays only its own batch, whose entries come back as errors next to
//! the other servers' results. A connection is returned to its pool only when its batch
//! completed on a clean stream; any mid-reply failure discards it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::error::{Error, Reason, Result};
use crate::item::Item;
use crate::op::{GetOpts, unexpected};
use crate::pool::{Destination, OwnedConn, PooledConn, conn};
use crate::process::{background, supervisor};
use crate::protocol::{
    self, Decoder, InPlace, Protocol, Request, Response, ServerErrorKind, Status, meta,
};
use crate::stats::inc;

/// What a pool lets through to its servers: its degrade switches (config `disabled`,
/// `read_only`) and who probes an open breaker. A route passes its pool's with every batch.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    /// The pool's name (for the `disabled` error).
    pub(crate) pool: String,
    /// Every request fails fast with `disabled`.
    pub(crate) disabled: bool,
    /// Writes are answered locally as not done (deletes still go out).
    pub(crate) read_only: bool,
    /// Probes run on the supervisor thread (config `health.background`), when it runs.
    pub(crate) background: bool,
}

impl Admission {
    /// Admit a request to `dest`: not when the pool is disabled, nor while its breaker is
    /// open (probing inline when no supervisor does it).
    pub(crate) fn admit(&self, dest: &Destination, deadline: Instant) -> Result<()> {
        if self.disabled {
            dest.errors.add(Reason::Disabled);
            let e = Error::with_detail(
                Reason::Disabled,
                format!("pool \"{}\" is disabled", self.pool),
            );
            return Err(e.at(dest.addr()));
        }
        dest.admit(self.background && supervisor::is_running(), deadline)
    }

    /// A `read_only` pool answers writes locally (counted per destination).
    pub(crate) fn dropped<B: Batch>(&self, dest: &Destination, batch: &mut B) -> bool {
        if self.read_only && batch.drop_writes() {
            inc(&dest.counters.writes_dropped);
            return true;
        }
        false
    }
}

/// One batch for one destination.
pub(crate) struct Work<'p, B> {
    pub(crate) dest: &'p Destination,
    pub(crate) admission: &'p Admission,
    pub(crate) batch: B,
}

/// How a hedged read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hedge {
    /// The primary answered within `hedge_after` (or failed: the caller fails over).
    NotNeeded,
    /// The primary was slow but the hedge budget was spent.
    Suppressed,
    /// A hedge was sent and the primary answered first.
    Lost,
    /// A hedge was sent and answered first.
    Won,
}

/// One racer of a hedged read.
struct Racer<'c, 'k> {
    dest: &'c Arc<Destination>,
    /// Its loser may be read to the end by the background worker.
    background: bool,
    pc: PooledConn<'c>,
    batch: GetBatch<'k>,
    sending: bool,
    start: Instant,
    hedge: bool,
}

impl<'c, 'k> Racer<'c, 'k> {
    fn start(racer: Hedged<'c, 'k>, deadline: Instant) -> Result<Racer<'c, 'k>> {
        let (dest, admission, mut batch) = racer;
        let background = admission.background;
        let start = Instant::now();
        if let Some(e) = expired(dest, start, deadline) {
            return Err(e);
        }
        admission.admit(dest, deadline)?;
        let mut pc = dest.checkout(deadline, start).inspect_err(|e| {
            dest.record::<()>(&Err(e.clone()), start.elapsed());
        })?;
        batch.encode(dest.protocol(), pc.conn());
        let mut r = Racer {
            dest,
            background,
            pc,
            batch,
            sending: true,
            start,
            hedge: false,
        };
        match r.pc.conn().try_send() {
            Ok(done) => r.sending = !done,
            Err(e) => return Err(r.fail(e)),
        }
        Ok(r)
    }

    fn pollfd(&mut self) -> libc::pollfd {
        libc::pollfd {
            fd: self.pc.conn().fd(),
            events: if self.sending {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            },
            revents: 0,
        }
    }

    /// Serve readiness; `Ok(true)` when the reply is complete.
    fn step(&mut self, revents: libc::c_short) -> Result<bool> {
        let decoder = *self.pc.destination().decoder();
        step_read(
            self.pc.conn(),
            &decoder,
            &mut self.sending,
            &mut self.batch,
            revents,
        )
    }

    /// The other racer answered first. Memcached has no cancel, so the reply still comes:
    /// the background worker reads it to its end by `deadline`, records its latency and
    /// returns the connection to the pool. Meanwhile the connection is lent: it does not
    /// count against `max_connections`, so no request waits for it. Without a background
    /// worker (`health.background: false`), or when too many are out (four times
    /// `max_connections` per server, [`background::PENDING_MAX`] in all), the connection is
    /// discarded (closing the socket is the only other way to never read that reply later).
    fn hand_off(self, deadline: Instant) {
        if !self.background {
            return;
        }
        let Racer {
            dest,
            pc,
            batch,
            sending,
            start,
            ..
        } = self;
        let Some(conn) = pc.lend(Arc::clone(dest)) else {
            return; // too many out already: discarded
        };
        let (keys, state) = batch.detach();
        let loser = Loser {
            conn,
            keys,
            state: Some(state),
            sending,
            start,
            deadline,
        };
        if let Err(loser) = background::adopt(Box::new(loser)) {
            drop(loser);
        }
    }

    /// The reply is complete: record, return the connection, hand out the batch.
    fn finish(self) -> GetBatch<'k> {
        let dest = self.pc.destination();
        let end = Instant::now();
        dest.record(
            &Ok::<(), Error>(()),
            end.saturating_duration_since(self.start),
        );
        release_at(self.pc, end);
        self.batch
    }

    /// The racer failed: record it (a real failure of its server), discard the connection.
    fn fail(self, e: Error) -> Error {
        let dest = self.pc.destination();
        let e = e.at(dest.addr());
        dest.record::<()>(&Err(e.clone()), self.start.elapsed());
        e
    }
}

/// Serve a read's readiness on `c`: send what is left, decode what arrived. `Ok(true)` when
/// the batch's reply is complete and nothing follows it.
fn step_read(
    c: &mut conn::Conn,
    decoder: &crate::protocol::Decoder,
    sending: &mut bool,
    batch: &mut GetBatch<'_>,
    revents: libc::c_short,
) -> Result<bool> {
    if *sending && revents & libc::POLLOUT != 0 {
        *sending = !c.try_send()?;
    }
    if revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        c.try_fill()?;
        if batch.read_from(c, decoder)? {
            nothing_after(c)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The losing request of a hedged read, read to its end by the background worker.
struct Loser {
    conn: OwnedConn,
    keys: Vec<Vec<u8>>,
    /// `None` only while a step borrows it.
    state: Option<GetState>,
    sending: bool,
    start: Instant,
    deadline: Instant,
}

impl Loser {
    /// Checked like any reply (a block that answers nothing asked discards the connection);
    /// its values are dropped.
    fn read(&mut self, revents: libc::c_short) -> Result<bool> {
        let dest = Arc::clone(self.conn.destination());
        let Some(state) = self.state.take() else {
            return Err(Error::new(Reason::Protocol));
        };
        let mut batch = state.attach(self.keys.iter().map(Vec::as_slice).collect());
        let r = step_read(
            self.conn.conn(),
            dest.decoder(),
            &mut self.sending,
            &mut batch,
            revents,
        );
        self.state = Some(batch.into_state());
        r
    }
}

impl background::Pending for Loser {
    fn pollfd(&mut self) -> libc::pollfd {
        libc::pollfd {
            fd: self.conn.conn().fd(),
            events: if self.sending {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            },
            revents: 0,
        }
    }

    fn step(&mut self, revents: libc::c_short) -> bool {
        let dest = Arc::clone(self.conn.destination());
        match self.read(revents) {
            Ok(false) => false,
            Ok(true) => {
                // Its latency is real: the p95 a hedge waits for must count the slow replies.
                dest.record(&Ok::<(), Error>(()), self.start.elapsed());
                self.conn.checkin();
                true
            }
            Err(e) => {
                dest.record::<()>(&Err(e.at(dest.addr())), self.start.elapsed());
                true // dropped: the connection is discarded
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    /// No reply by the request's deadline: a timeout, as it would have been without a hedge.
    fn expired(&mut self) {
        let dest = self.conn.destination();
        let e = Error::with_detail(Reason::Timeout, "a hedged read's loser never answered");
        dest.record::<()>(&Err(e.at(dest.addr())), self.start.elapsed());
    }
}

/// A racer of [`get_hedged`]: the destination, its pool's admission, the one-key read.
pub(crate) type Hedged<'c, 'k> = (&'c Arc<Destination>, &'c Admission, GetBatch<'k>);

/// Read a key from `primary`; if no reply came within `hedge_after` and `may_hedge()` agrees,
/// send the same read to `secondary` and take whichever answers first. The other request is
/// handed to the background worker, which reads its reply to the end by `deadline`, records
/// its latency and outcome, and returns its connection to the pool ([`Racer::hand_off`]), so a
/// won hedge costs no reconnect. An error from the primary before the hedge is
/// returned at once (the caller fails over); an error of one racer leaves the other running.
/// Both racers end by `deadline`. The answer is the winner's batch (`Hedge::Won`: the
/// secondary's), or the error.
pub(crate) fn get_hedged<'c, 'k>(
    primary: Hedged<'c, 'k>,
    secondary: Hedged<'c, 'k>,
    deadline: Instant,
    hedge_after: Duration,
    may_hedge: &dyn Fn() -> bool,
) -> (Result<GetBatch<'k>>, Hedge) {
    let hedge_at = Instant::now() + hedge_after;
    let mut first = match Racer::start(primary, deadline) {
        Ok(r) => r,
        Err(e) => return (Err(e), Hedge::NotNeeded),
    };
    // Phase 1: the primary alone, until the hedge is due.
    loop {
        let mut pfd = [first.pollfd()];
        match conn::poll(&mut pfd, hedge_at.min(deadline)) {
            Ok(_) => match first.step(pfd[0].revents) {
                Ok(true) => return (Ok(first.finish()), Hedge::NotNeeded),
                Ok(false) => {}
                Err(e) => return (Err(first.fail(e)), Hedge::NotNeeded),
            },
            Err(e) if e.reason() == Reason::Timeout && Instant::now() < deadline => break,
            Err(e) => return (Err(first.fail(e)), Hedge::NotNeeded),
        }
    }
    if !may_hedge() {
        return (finish_alone(first, deadline), Hedge::Suppressed);
    }
    let mut second = match Racer::start(secondary, deadline) {
        Ok(r) => r,
        Err(_) => return (finish_alone(first, deadline), Hedge::Lost),
    };
    second.hedge = true;
    // Phase 2: both; the first complete reply wins, an error leaves the other running.
    let mut racers = vec![first, second];
    let mut last_err: Option<Error> = None;
    while !racers.is_empty() {
        let mut pfds: Vec<libc::pollfd> = racers.iter_mut().map(Racer::pollfd).collect();
        if let Err(e) = conn::poll(&mut pfds, deadline) {
            let mut err = e.clone();
            for r in racers.drain(..) {
                err = r.fail(e.clone());
            }
            return (Err(err), Hedge::Lost);
        }
        let mut i = racers.len();
        while i > 0 {
            i -= 1;
            if pfds[i].revents == 0 {
                continue;
            }
            match racers[i].step(pfds[i].revents) {
                Ok(true) => {
                    let winner = racers.swap_remove(i);
                    let how = if winner.hedge {
                        Hedge::Won
                    } else {
                        Hedge::Lost
                    };
                    let batch = winner.finish();
                    for loser in racers {
                        loser.hand_off(deadline);
                    }
                    return (Ok(batch), how);
                }
                Ok(false) => {}
                Err(e) => {
                    let r = racers.swap_remove(i);
                    last_err = Some(r.fail(e));
                }
            }
        }
    }
    (
        Err(last_err.unwrap_or_else(|| Error::new(Reason::Protocol))),
        Hedge::Lost,
    )
}

/// Drive one racer to its end.
fn finish_alone<'k>(mut r: Racer<'_, 'k>, deadline: Instant) -> Result<GetBatch<'k>> {
    loop {
        let mut pfd = [r.pollfd()];
        if let Err(e) = conn::poll(&mut pfd, deadline) {
            return Err(r.fail(e));
        }
        match r.step(pfd[0].revents) {
            Ok(true) => return Ok(r.finish()),
            Ok(false) => {}
            Err(e) => return Err(r.fail(e)),
        }
    }
}

/// The request's deadline passed before a batch could go out (an earlier child, retry or
/// failover used it up): the batch fails with `timeout` and nothing is sent, so no write lands
/// after its caller was told it timed out. Not the server's fault: its breaker hears nothing.
fn expired(dest: &Destination, now: Instant, deadline: Instant) -> Option<Error> {
    (now >= deadline).then(|| {
        Error::with_detail(
            Reason::Timeout,
            "the request's deadline passed before this server was asked",
        )
        .at(dest.addr())
    })
}

/// A batch's last reply was read: any byte already buffered behind it answers nothing that
/// was asked (a duplicate block, a second status, garbage), so the whole reply is suspect.
fn nothing_after(c: &conn::Conn) -> Result<()> {
    if c.has_unread() {
        return Err(Error::with_detail(
            Reason::Protocol,
            "bytes after the end of the reply",
        ));
    }
    Ok(())
}

/// Finish a connection's part: keep it if the batch completed on a clean stream.
pub(crate) fn release(mut pc: PooledConn<'_>, ok: bool) {
    if ok {
        pc.conn().unhold();
        pc.checkin();
    }
}

/// [`release`] of a completed batch, `now` being the clock reading its latency was taken from.
fn release_at(mut pc: PooledConn<'_>, now: Instant) {
    pc.conn().unhold();
    pc.checkin_at(now);
}

/// A connection's part of `batch` is over (complete or failed): if the batch left values in
/// its read buffer ([`conn::Conn::hold`]), `on_held` takes them now, before the connection
/// is returned or dropped.
fn hand_held<B>(c: &mut conn::Conn, batch: &mut B, on_held: &mut dyn FnMut(&mut B, &[u8])) {
    if c.holding() {
        on_held(batch, c.held());
        c.unhold();
    }
}

/// Run one batch on one destination: admitted by its pool and its breaker, outcome recorded.
pub(crate) fn exchange<B: Batch>(
    admission: &Admission,
    dest: &Destination,
    batch: &mut B,
    deadline: Instant,
) -> Result<()> {
    exchange_with(admission, dest, batch, deadline, &mut |_, _| {})
}

/// [`exchange`], with `on_held` called on the values the batch left in the connection's
/// buffer ([`hand_held`]).
pub(crate) fn exchange_with<B: Batch>(
    admission: &Admission,
    dest: &Destination,
    batch: &mut B,
    deadline: Instant,
    on_held: &mut dyn FnMut(&mut B, &[u8]),
) -> Result<()> {
    if admission.dropped(dest, batch) {
        return Ok(());
    }
    // One clock reading serves the deadline check, the checkout and the latency's start
    // (and one at the end, its end and the connection's last use): a read costs ~25 ns here.
    let start = Instant::now();
    if let Some(e) = expired(dest, start, deadline) {
        batch.fail(&e);
        return Err(e);
    }
    if let Err(e) = admission.admit(dest, deadline) {
        batch.fail(&e);
        return Err(e);
    }
    let (result, end) = exchange_admitted(dest, batch, deadline, start, on_held);
    dest.record(&result, end.saturating_duration_since(start));
    result
}

/// The exchange, and the time it ended.
fn exchange_admitted<B: Batch>(
    dest: &Destination,
    batch: &mut B,
    deadline: Instant,
    start: Instant,
    on_held: &mut dyn FnMut(&mut B, &[u8]),
) -> (Result<()>, Instant) {
    let addr = dest.addr();
    let mut pc = match dest.checkout(deadline, start) {
        Ok(pc) => pc,
        Err(e) => {
            batch.fail(&e);
            return (Err(e), Instant::now());
        }
    };
    let c = pc.conn();
    batch.encode(dest.protocol(), c);
    let run = (|| -> Result<()> {
        c.send(deadline)?;
        let mut may_block = true;
        loop {
            if batch.read_from(c, dest.decoder())? {
                return nothing_after(c);
            }
            c.wait_more(deadline, &mut may_block)?;
        }
    })();
    match run {
        Ok(()) => {
            hand_held(pc.conn(), batch, on_held);
            let end = Instant::now();
            release_at(pc, end);
            (Ok(()), end)
        }
        Err(e) => {
            let e = e.at(addr);
            batch.fail(&e);
            hand_held(pc.conn(), batch, on_held);
            drop(pc); // mid-reply failure: discard, never reuse
            (Err(e), Instant::now())
        }
    }
}

/// Run one batch per destination, all at once, under one deadline. Each batch ends with
/// its results or its error; nothing here returns early.
pub(crate) fn exchange_many<B: Batch>(work: &mut [Work<'_, B>], deadline: Instant) {
    exchange_many_with(work, deadline, &mut |_, _, _| {});
}

/// [`exchange_many`], with `on_held(i, batch, bytes)` called on the values batch `i` left in
/// its connection's buffer ([`hand_held`]).
pub(crate) fn exchange_many_with<B: Batch>(
    work: &mut [Work<'_, B>],
    deadline: Instant,
    on_held: &mut dyn FnMut(usize, &mut B, &[u8]),
) {
    if let [w] = work {
        let _ = exchange_with(w.admission, w.dest, &mut w.batch, deadline, &mut |b, h| {
            on_held(0, b, h);
        });
        return;
    }
    struct Slot<'c> {
        pc: PooledConn<'c>,
        work: usize,
        sending: bool,
    }
    let start = Instant::now();
    let mut live: Vec<Slot<'_>> = Vec::with_capacity(work.len());
    for (i, w) in work.iter_mut().enumerate() {
        let (admission, dest, batch) = (w.admission, w.dest, &mut w.batch);
        if admission.dropped(dest, batch) {
            continue;
        }
        let now = Instant::now();
        if let Some(e) = expired(dest, now, deadline) {
            batch.fail(&e);
            continue;
        }
        if let Err(e) = admission.admit(dest, deadline) {
            batch.fail(&e);
            continue;
        }
        match dest.checkout(deadline, now) {
            Ok(mut pc) => {
                batch.encode(dest.protocol(), pc.conn());
                live.push(Slot {
                    pc,
                    work: i,
                    sending: true,
                });
            }
            Err(e) => {
                dest.record::<()>(&Err(e.clone()), start.elapsed());
                batch.fail(&e);
            }
        }
    }
    // Every way a slot ends goes through here: the breaker hears about each server once.
    let mut finish = |mut slot: Slot<'_>, outcome: Result<()>, batch: &mut B| {
        let dest = slot.pc.destination();
        let w = slot.work;
        match outcome {
            Ok(()) => {
                dest.record(&Ok::<(), Error>(()), start.elapsed());
                hand_held(slot.pc.conn(), batch, &mut |b, h| on_held(w, b, h));
                release(slot.pc, true);
            }
            Err(e) => {
                let e = e.at(dest.addr());
                dest.record::<()>(&Err(e.clone()), start.elapsed());
                batch.fail(&e);
                hand_held(slot.pc.conn(), batch, &mut |b, h| on_held(w, b, h));
            }
        }
    };
    // Write every batch first, then serve whichever connection is ready. Reading only
    // after poll reports data avoids a speculative recv (EAGAIN) per server per call.
    let mut i = live.len();
    while i > 0 {
        i -= 1;
        match live[i].pc.conn().try_send() {
            Ok(done) => live[i].sending = !done,
            Err(e) => {
                let slot = live.swap_remove(i);
                let w = slot.work;
                finish(slot, Err(e), &mut work[w].batch);
            }
        }
    }
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(live.len());
    while !live.is_empty() {
        pfds.clear();
        for s in &mut live {
            let events = if s.sending {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            };
            pfds.push(libc::pollfd {
                fd: s.pc.conn().fd(),
                events,
                revents: 0,
            });
        }
        if let Err(e) = conn::poll(&mut pfds, deadline) {
            for slot in live.drain(..) {
                let w = slot.work;
                finish(slot, Err(e.clone()), &mut work[w].batch);
            }
            break;
        }
        // Descending, so that swap_remove(i) only moves an already-served slot into i and
        // `pfds[i]` keeps describing `live[i]` for every slot still to be served.
        let mut i = live.len();
        while i > 0 {
            i -= 1;
            let revents = pfds[i].revents;
            if revents == 0 {
                continue;
            }
            let slot = &mut live[i];
            let w = slot.work;
            let batch = &mut work[w].batch;
            let step: Result<bool> = (|| {
                let decoder = *slot.pc.destination().decoder();
                let c = slot.pc.conn();
                if slot.sending && revents & libc::POLLOUT != 0 {
                    slot.sending = !c.try_send()?;
                }
                if revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    c.try_fill()?;
                    if batch.read_from(c, &decoder)? {
                        nothing_after(c)?;
                        return Ok(true);
                    }
                }
                Ok(false)
            })();
            match step {
                Ok(false) => {}
                Ok(true) => finish(live.swap_remove(i), Ok(()), &mut work[w].batch),
                Err(e) => finish(live.swap_remove(i), Err(e), &mut work[w].batch),
            }
        }
    }
}

/// A batch of requests on one connection, and what their replies mean.
pub(crate) trait Batch {
    /// Append the requests' bytes to `c`'s write buffer (`c` also numbers meta reads).
    fn encode(&mut self, protocol: Protocol, c: &mut conn::Conn);
    /// Take one reply. `Ok(true)` when the batch is complete. `Err`: the stream can no longer
    /// be trusted; the connection is discarded and unresolved entries get the error.
    fn on_reply(&mut self, resp: Response) -> Result<bool>;
    /// Take every whole reply `c` has buffered ([`Batch::on_reply`] each). `Ok(true)` when
    /// the batch is complete.
    fn read_from(&mut self, c: &mut conn::Conn, decoder: &Decoder) -> Result<bool> {
        while let Some(resp) = c.try_decode(decoder)? {
            if self.on_reply(resp)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    /// The connection failed: give `err` to every unresolved entry.
    fn fail(&mut self, err: &Error);
    /// The pool is `read_only`: if this batch writes, answer it locally as not done and
    /// return true (nothing is sent). Reads and deletes return false and go to the server.
    fn drop_writes(&mut self) -> bool {
        false
    }
}

pub(crate) fn server_error(kind: ServerErrorKind, message: String) -> Error {
    let reason = match kind {
        ServerErrorKind::ServerError => Reason::ServerError,
        ServerErrorKind::ClientError | ServerErrorKind::Error => Reason::ClientError,
    };
    Error::with_detail(reason, message)
}

/// get/gets/gat/gats of several keys on one server, on the wire its caller chose: the items
/// as the server sent them (lease stubs, stale items and CAS tokens included).
pub(crate) struct GetBatch<'a> {
    /// Inline for one key: a single-key get allocates nothing for its batch.
    pub(crate) keys: SmallVec<[&'a [u8]; 1]>,
    /// Position of each key in the caller's list.
    pub(crate) slots: SmallVec<[usize; 1]>,
    pub(crate) results: Vec<Option<Result<Option<Item>>>>,
    opts: GetOpts,
    /// Text: index of the next key a `VALUE` may answer (replies come in request order).
    cursor: usize,
    wire: Protocol,
    /// Meta: an error line in a quiet batch carries no opaque; it taints unresolved keys.
    taint: Option<Error>,
    /// Meta: the opaque of the first key, from the connection ([`conn::Conn::take_opaques`]).
    opaque: u32,
    /// Read in place ([`GetBatch::in_place`]): each key's outcome, in place of `results`
    /// (which stays empty), a hit's data left in the connection's buffer.
    pub(crate) held: Option<SmallVec<[Held; 1]>>,
    /// In place: the error of the keys whose outcome is [`Outcome::Failed`] (one per batch:
    /// a batch fails once, or is tainted once at its end).
    pub(crate) held_err: Option<Error>,
}

/// What became of a key read in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No answer yet.
    #[default]
    Pending,
    /// A miss.
    Miss,
    /// A hit, its data at `start..start + len` of the held bytes.
    Hit,
    /// The batch's error ([`GetBatch::held_err`]).
    Failed,
}

/// One key of a batch read in place: a compact [`Item`] without its value (no 56-byte result
/// slot and no `Vec` per key).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    pub(crate) outcome: Outcome,
    pub(crate) win: bool,
    pub(crate) stale: bool,
    pub(crate) win_taken: bool,
    pub(crate) flags: u32,
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) cas: u64,
    pub(crate) ttl: Option<i64>,
}

impl<'a> GetBatch<'a> {
    /// A read sent as `wire` (text `get`/`gets`/`gat`/`gats`, or meta `mg`), asking `opts`.
    pub(crate) fn new(wire: Protocol, opts: GetOpts) -> Self {
        GetBatch {
            keys: SmallVec::new(),
            slots: SmallVec::new(),
            results: Vec::new(),
            opts,
            cursor: 0,
            wire,
            taint: None,
            opaque: 0,
            held: None,
            held_err: None,
        }
    }

    /// Leave the values in the connection's buffer: no copy per value. The batch must be run
    /// with an `on_held` hook ([`exchange_with`], [`exchange_many_with`]), which reads them
    /// ([`GetBatch::held`]) before the connection goes back to its pool.
    pub(crate) fn in_place(mut self) -> Self {
        self.held = Some(SmallVec::new());
        self
    }

    /// Whether key `i` has its answer.
    fn resolved(&self, i: usize) -> bool {
        match &self.held {
            Some(h) => h.get(i).is_some_and(|h| h.outcome != Outcome::Pending),
            None => self.results.get(i).is_some_and(Option::is_some),
        }
    }

    /// Key `i` missed.
    fn miss(&mut self, i: usize) {
        match &mut self.held {
            Some(h) => h[i].outcome = Outcome::Miss,
            None => self.results[i] = Some(Ok(None)),
        }
    }

    /// The wire format of this batch.
    pub(crate) fn wire(&self) -> Protocol {
        self.wire
    }

    /// Meta, one key: sent without `q` and `mn` ([`meta::quiet_get`]), so its one reply (`VA`,
    /// `EN` or an error line) ends the batch.
    fn unterminated(&self) -> bool {
        self.wire == Protocol::Meta && !meta::quiet_get(self.keys.len())
    }

    /// The key a meta reply's opaque names, if it is one of this batch's.
    fn index_of(&self, opaque: u32) -> Option<usize> {
        let i = opaque.wrapping_sub(self.opaque) as usize;
        (i < self.keys.len()).then_some(i)
    }

    /// Room for `n` more keys: a batch is built in one go, so its three lists grow once.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.keys.reserve_exact(n);
        self.slots.reserve_exact(n);
        match &mut self.held {
            Some(h) => h.reserve_exact(n),
            None => self.results.reserve_exact(n),
        }
    }

    pub(crate) fn push(&mut self, key: &'a [u8], slot: usize) {
        self.keys.push(key);
        self.slots.push(slot);
        match &mut self.held {
            Some(h) => h.push(Held::default()),
            None => self.results.push(None),
        }
    }

    /// Which key a value answers. Text: the next asked key it names (replies come in request
    /// order); meta: its opaque, checked against the key it echoes.
    fn value_index(&mut self, v: &protocol::Value) -> Result<usize> {
        match self.wire() {
            Protocol::Text => {
                // A reply for a key we did not ask for (or out of order) means the stream is
                // not what we think it is: never hand out its value.
                let key = v.key.as_deref().unwrap_or_default();
                let pos = self.keys[self.cursor..].iter().position(|k| *k == key);
                let Some(pos) = pos else {
                    return Err(Error::with_detail(
                        Reason::Protocol,
                        "VALUE for a key that was not requested",
                    ));
                };
                self.cursor += pos + 1;
                Ok(self.cursor - 1)
            }
            Protocol::Meta => {
                let Some(i) = v.opaque.and_then(|o| self.index_of(o)) else {
                    return Err(Error::with_detail(
                        Reason::Protocol,
                        "VA with a missing or unknown opaque",
                    ));
                };
                if v.key.as_deref().is_some_and(|k| k != self.keys[i]) {
                    return Err(Error::with_detail(
                        Reason::Protocol,
                        "VA key does not match its opaque",
                    ));
                }
                if self.resolved(i) {
                    // One `mg` gets one reply: a second block for the same key is not an
                    // answer to anything asked, and neither block can be trusted.
                    return Err(Error::with_detail(
                        Reason::Protocol,
                        "a second reply for the same key",
                    ));
                }
                Ok(i)
            }
        }
    }

    /// The reply is over: every key not answered missed, or has the error a meta error line
    /// left ([`GetBatch::taint`]).
    fn end(&mut self) {
        if let Some(held) = &mut self.held {
            for h in held.iter_mut().filter(|h| h.outcome == Outcome::Pending) {
                h.outcome = match &self.taint {
                    Some(e) => {
                        self.held_err = Some(e.clone());
                        Outcome::Failed
                    }
                    None => Outcome::Miss,
                };
            }
            return;
        }
        for r in &mut self.results {
            if r.is_none() {
                *r = Some(match &self.taint {
                    Some(e) => Err(e.clone()),
                    None => Ok(None),
                });
            }
        }
    }

    /// Key `i` hit; read in place, its data is at `data` of the held bytes.
    fn hit(&mut self, i: usize, v: protocol::Value, data: std::ops::Range<usize>) {
        if let Some(h) = &mut self.held {
            h[i] = Held {
                outcome: Outcome::Hit,
                win: v.win,
                stale: v.stale,
                win_taken: v.win_taken,
                flags: v.flags,
                start: data.start,
                len: data.len(),
                cas: v.cas.unwrap_or(0),
                ttl: v.ttl,
            };
            return;
        }
        self.results[i] = Some(Ok(Some(Item {
            value: v.data,
            flags: v.flags,
            cas: v.cas.unwrap_or(0),
            ttl: v.ttl,
            win: v.win,
            stale: v.stale,
            win_taken: v.win_taken,
        })));
    }
}

/// A [`GetBatch`] without its borrowed keys: a hedge's loser, owned by the background worker.
struct GetState {
    slots: SmallVec<[usize; 1]>,
    results: Vec<Option<Result<Option<Item>>>>,
    opts: GetOpts,
    cursor: usize,
    wire: Protocol,
    taint: Option<Error>,
    opaque: u32,
}

impl GetState {
    /// The batch again, over `keys` (the same keys, in order).
    fn attach(self, keys: Vec<&[u8]>) -> GetBatch<'_> {
        GetBatch {
            keys: keys.into(),
            slots: self.slots,
            results: self.results,
            opts: self.opts,
            cursor: self.cursor,
            wire: self.wire,
            taint: self.taint,
            opaque: self.opaque,
            held: None,
            held_err: None,
        }
    }
}

impl GetBatch<'_> {
    /// Copies of the keys and the rest of the state, to outlive the caller's keys.
    fn detach(self) -> (Vec<Vec<u8>>, GetState) {
        let keys = self.keys.iter().map(|k| k.to_vec()).collect();
        (keys, self.into_state())
    }

    /// The state without the keys.
    fn into_state(self) -> GetState {
        GetState {
            slots: self.slots,
            results: self.results,
            opts: self.opts,
            cursor: self.cursor,
            wire: self.wire,
            taint: self.taint,
            opaque: self.opaque,
        }
    }
}

impl Batch for GetBatch<'_> {
    fn encode(&mut self, _pool_protocol: Protocol, c: &mut conn::Conn) {
        if self.wire() == Protocol::Meta {
            self.opaque = c.take_opaques(self.keys.len());
        }
        protocol::encode(
            self.wire(),
            &Request::Get {
                keys: &self.keys,
                opaque: self.opaque,
                cas: self.opts.cas,
                touch: self.opts.touch,
                ttl: self.opts.ttl,
                lease: self.opts.lease,
                recache: self.opts.recache,
            },
            &mut c.wbuf,
        );
    }

    /// In place: values are read with [`conn::Conn::try_decode_in_place`], their data left
    /// in the connection's buffer.
    fn read_from(&mut self, c: &mut conn::Conn, decoder: &Decoder) -> Result<bool> {
        if self.held.is_none() {
            while let Some(resp) = c.try_decode(decoder)? {
                if self.on_reply(resp)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        while let Some(reply) = c.try_decode_in_place(decoder)? {
            match reply {
                InPlace::Value(v, data) => {
                    let i = self.value_index(&v)?;
                    self.hit(i, v, data);
                    if self.unterminated() {
                        return Ok(true);
                    }
                }
                InPlace::Other(resp) => {
                    if self.on_reply(resp)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    fn on_reply(&mut self, resp: Response) -> Result<bool> {
        match resp {
            Response::Value(v) => {
                let i = self.value_index(&v)?;
                self.hit(i, v, 0..0);
                Ok(self.unterminated())
            }
            // A single meta key's read sends no `mn`: an `MN` answers nothing asked.
            Response::End if !self.unterminated() => {
                self.end();
                Ok(true)
            }
            // `EN` answers an unanswered key it names by opaque: a single key's miss, or one
            // a quiet batch shows anyway (memcached hides it). A server that echoes no opaque
            // on `EN` (before 1.6.10) is believed only for a single key: a miss is never a
            // wrong value. Anything else was not asked.
            Response::Status {
                status: Status::Miss,
                opaque,
                ..
            } if self.wire() == Protocol::Meta => {
                let i = match opaque {
                    Some(o) => self.index_of(o),
                    None if self.unterminated() => Some(0),
                    None => None,
                };
                match i {
                    Some(i) if !self.resolved(i) => {
                        self.miss(i);
                        Ok(self.unterminated())
                    }
                    _ => Err(unexpected(&Response::Status {
                        status: Status::Miss,
                        cas: None,
                        opaque,
                    })),
                }
            }
            Response::Error { kind, message } => {
                let e = server_error(kind, message);
                if self.wire() == Protocol::Meta {
                    // A quiet batch: memcached still answers the trailing `mn`, keep reading
                    // to `MN`. A single key: this line was its answer.
                    self.taint = Some(e);
                    if self.unterminated() {
                        self.end();
                        return Ok(true);
                    }
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            other => Err(unexpected(&other)),
        }
    }

    /// A protocol error taints the whole reply: values read before it are replaced too.
    fn fail(&mut self, err: &Error) {
        let all = err.reason() == Reason::Protocol;
        if let Some(held) = &mut self.held {
            for h in held {
                if h.outcome == Outcome::Pending || all {
                    h.outcome = Outcome::Failed;
                }
            }
            self.held_err = Some(err.clone());
            return;
        }
        for r in &mut self.results {
            if r.is_none() || all {
                *r = Some(Err(err.clone()));
            }
        }
    }
}

/// Commands that each get exactly one reply, in order.
pub(crate) struct OpsBatch<'a> {
    reqs: Vec<Request<'a>>,
    pub(crate) slots: Vec<usize>,
    pub(crate) replies: Vec<Result<Response>>,
}

impl<'a> OpsBatch<'a> {
    pub(crate) fn new() -> Self {
        OpsBatch {
            reqs: Vec::new(),
            slots: Vec::new(),
            replies: Vec::new(),
        }
    }

    pub(crate) fn one(req: Request<'a>) -> Self {
        OpsBatch {
            reqs: vec![req],
            slots: vec![0],
            replies: Vec::with_capacity(1),
        }
    }

    pub(crate) fn push(&mut self, req: Request<'a>, slot: usize) {
        self.reqs.push(req);
        self.slots.push(slot);
    }
}

impl Batch for OpsBatch<'_> {
    fn encode(&mut self, protocol: Protocol, c: &mut conn::Conn) {
        for r in &self.reqs {
            protocol::encode(protocol, r, &mut c.wbuf);
        }
    }

    /// Stores answer `NOT_STORED`, incr/decr and touch `NOT_FOUND`. Deletes are never dropped
    /// (invalidation is what keeps a cache correct while it is degraded), nor `flush_all` and
    /// `version` (operator commands).
    fn drop_writes(&mut self) -> bool {
        let local = |r: &Request<'_>| match r {
            Request::Store { .. } => Some(Status::NotStored),
            Request::Arith { .. } | Request::Touch { .. } => Some(Status::NotFound),
            _ => None,
        };
        if self.reqs.is_empty() || !self.reqs.iter().all(|r| local(r).is_some()) {
            return false;
        }
        self.replies = self
            .reqs
            .iter()
            .filter_map(local)
            .map(|status| {
                Ok(Response::Status {
                    status,
                    cas: None,
                    opaque: None,
                })
            })
            .collect();
        true
    }

    fn on_reply(&mut self, resp: Response) -> Result<bool> {
        let Some(req) = self.reqs.get(self.replies.len()) else {
            return Err(Error::with_detail(
                Reason::Protocol,
                "a reply nobody asked for",
            ));
        };
        if !answers(req, &resp) {
            return Err(unexpected(&resp));
        }
        let poisoned = match &resp {
            // memcached swallows the data of a refused store and stays in sync after
            // SERVER_ERROR; after CLIENT_ERROR/ERROR the rest of the stream is suspect.
            Response::Error { kind, .. } => *kind != ServerErrorKind::ServerError,
            _ => false,
        };
        let reply = match resp {
            Response::Error { kind, message } => Err(server_error(kind, message)),
            other => Ok(other),
        };
        let err = reply.as_ref().err().cloned();
        self.replies.push(reply);
        if poisoned {
            return Err(err.unwrap_or_else(|| Error::new(Reason::Protocol)));
        }
        Ok(self.replies.len() == self.reqs.len())
    }

    /// A protocol error taints the whole reply: replies read before it are replaced too.
    fn fail(&mut self, err: &Error) {
        if err.reason() == Reason::Protocol {
            self.replies.clear();
        }
        while self.replies.len() < self.reqs.len() {
            self.replies.push(Err(err.clone()));
        }
    }
}

/// Whether `resp` can be the reply to `req` (text or meta, as libfae encodes it): a status of
/// the request's kind, a number only for incr/decr. Error lines answer anything. Requests of
/// an `OpsBatch` carry no opaque, so a reply naming one answers something else.
fn answers(req: &Request<'_>, resp: &Response) -> bool {
    use Status::*;
    let status = |ok: &[Status]| match resp {
        Response::Status {
            status,
            opaque: None,
            ..
        } => ok.contains(status),
        _ => false,
    };
    match req {
        _ if matches!(resp, Response::Error { .. }) => true,
        Request::Store { .. } => status(&[Success, NotStored, Exists, NotFound]),
        // Exists: a meta delete with `C` whose CAS no longer matches.
        Request::Delete { .. } => status(&[Success, NotFound, Exists]),
        // Text: the new value or NOT_FOUND; meta `ma … v`: `VA <n>` with the number, or NF.
        Request::Arith { .. } => match resp {
            Response::Number(_) => true,
            Response::Value(v) => {
                v.key.is_none()
                    && v.opaque.is_none()
                    && !v.data.trim_ascii().is_empty()
                    && v.data.trim_ascii().iter().all(u8::is_ascii_digit)
            }
            _ => status(&[NotFound]),
        },
        // Text `touch`: TOUCHED/NOT_FOUND; meta `mg … T`: HD/EN.
        Request::Touch { .. } => status(&[Success, NotFound, Miss]),
        Request::FlushAll { .. } => status(&[Success]),
        Request::Version => matches!(resp, Response::Version(_)),
        Request::Noop => matches!(resp, Response::End | Response::Version(_)),
        Request::Get { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meta read of `keys` whose opaques start at `opaque`, as [`Batch::encode`] numbers it.
    fn meta_batch<'k>(keys: &[&'k [u8]], opaque: u32) -> GetBatch<'k> {
        let mut b = GetBatch::new(Protocol::Meta, GetOpts::default());
        for (i, k) in keys.iter().enumerate() {
            b.push(k, i);
        }
        b.opaque = opaque;
        b
    }

    fn va(key: &[u8], opaque: Option<u32>, data: &[u8]) -> Response {
        Response::Value(protocol::Value {
            key: Some(key.into()),
            opaque,
            data: data.to_vec(),
            ..protocol::Value::default()
        })
    }

    fn en(opaque: Option<u32>) -> Response {
        Response::Status {
            status: Status::Miss,
            cas: None,
            opaque,
        }
    }

    fn value(b: &GetBatch<'_>, i: usize) -> Option<Vec<u8>> {
        match &b.results[i] {
            Some(Ok(item)) => item.as_ref().map(|it| it.value.clone()),
            other => panic!("key {i}: {other:?}"),
        }
    }

    /// One key: its `VA` or `EN` ends the read, matched by the connection's opaque.
    #[test]
    fn a_single_key_ends_at_its_one_reply() {
        let mut b = meta_batch(&[b"k"], 41);
        assert_eq!(b.on_reply(va(b"k", Some(41), b"v")), Ok(true));
        assert_eq!(value(&b, 0).as_deref(), Some(&b"v"[..]));

        let mut b = meta_batch(&[b"k"], 41);
        assert_eq!(b.on_reply(en(Some(41))), Ok(true));
        assert_eq!(value(&b, 0), None);

        // A server that echoes no opaque on a miss (memcached before 1.6.10).
        let mut b = meta_batch(&[b"k"], 41);
        assert_eq!(b.on_reply(en(None)), Ok(true));
        assert_eq!(value(&b, 0), None);

        // Opaques wrap.
        let mut b = meta_batch(&[b"a", b"b"], u32::MAX);
        assert_eq!(b.on_reply(va(b"b", Some(0), b"2")), Ok(false));
        assert_eq!(b.on_reply(Response::End), Ok(true));
        assert_eq!(value(&b, 1).as_deref(), Some(&b"2"[..]));
        assert_eq!(value(&b, 0), None);
    }

    /// A reply to an earlier request on the connection (its opaque), an `MN` nobody asked for,
    /// or a second answer is a protocol error, never a hit or a miss.
    #[test]
    fn a_single_key_refuses_what_it_did_not_ask() {
        let refused = |reply: Response| {
            let mut b = meta_batch(&[b"k"], 41);
            let e = b.on_reply(reply).expect_err("accepted");
            assert_eq!(e.reason(), Reason::Protocol, "{e}");
        };
        refused(va(b"k", Some(40), b"old"));
        refused(va(b"k", None, b"old"));
        refused(va(b"other", Some(41), b"x"));
        refused(en(Some(40)));
        refused(Response::End);

        // A quiet batch never believes an `EN` without its opaque.
        let mut b = meta_batch(&[b"a", b"b"], 0);
        assert_eq!(
            b.on_reply(en(None)).map_err(|e| e.reason()),
            Err(Reason::Protocol)
        );
    }

    /// An error line is a single key's answer: the read ends with it and the stream stays in
    /// step (the connection is kept, as after a quiet batch's error and its `MN`).
    #[test]
    fn a_single_key_error_line_is_its_answer() {
        let mut b = meta_batch(&[b"k"], 7);
        let reply = Response::Error {
            kind: ServerErrorKind::ServerError,
            message: "out of memory".into(),
        };
        assert_eq!(b.on_reply(reply), Ok(true));
        match &b.results[0] {
            Some(Err(e)) => assert_eq!(e.reason(), Reason::ServerError),
            other => panic!("{other:?}"),
        }
    }
}
