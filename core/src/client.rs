//! The client facade: every memcached command, single and multi-key, thread-safe.
//!
//! One `Client` per process is the intended use; it is `Send + Sync` and every method takes
//! `&self`. The caller's thread does its own I/O: a single-key command checks out a pooled
//! connection to the key's server, writes, and reads the reply under one deadline
//! (`timeouts.io_ms`). A multi-key command groups keys by server, writes one pipelined batch
//! per server and then drives all those connections at once with `poll(2)` from the caller's
//! thread, under one deadline: a slow or dead server delays only its own keys, and its keys
//! come back as per-key errors next to the other servers' results.
//!
//! Outcomes are values, not errors: a miss is `Ok(None)`, an `add` on an existing key is
//! `Ok(StoreOutcome::NotStored)`. Errors are [`Error`]s with a stable [`Reason`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::config::{Config, OnDown, RouteConfig};
use crate::dist::{Mode, Node, Placement};
use crate::error::{Error, Reason, Result};
use crate::export::Exporter;
use crate::item::Item;
use crate::key;
use crate::pool::health::now_ms;
use crate::pool::health::{BreakerSettings, BreakerState, PoolHealth};
use crate::pool::{ConnSettings, Destination, PooledConn, conn, fork};
use crate::protocol::{
    self, Decoder, Protocol, Request, Response, ServerErrorKind, Status, StoreOp,
};
use crate::stats::inc;
use crate::supervisor::{self, Maintain};

/// The outcome of a storage command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value was stored.
    Stored,
    /// Not stored: `add` on an existing key, `replace`/`append`/`prepend` on a missing one.
    NotStored,
    /// `cas`: the item changed since the CAS token was read.
    Exists,
    /// `cas`: the item does not exist.
    NotFound,
}

/// The operations `route_for` can be asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// get, gets, gat, gats.
    Get,
    /// set, add, replace, append, prepend, cas.
    Set,
    /// delete.
    Delete,
    /// incr, decr.
    Arith,
    /// touch.
    Touch,
}

impl Op {
    /// Parse an operation name (`get`, `set`, `add`, `delete`, `incr`, …).
    pub fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "get" | "gets" | "gat" | "gats" => Op::Get,
            "set" | "add" | "replace" | "append" | "prepend" | "cas" => Op::Set,
            "delete" => Op::Delete,
            "incr" | "decr" => Op::Arith,
            "touch" => Op::Touch,
            _ => return None,
        })
    }
}

/// One item of a `set_multi`.
#[derive(Clone, Copy, Debug)]
pub struct SetItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiry (0 = never).
    pub exptime: u32,
}

/// A pool of servers with its placement.
#[derive(Debug)]
struct PoolRoute {
    name: String,
    placement: Placement,
    nodes: Vec<Node>,
    mode: Mode,
    dests: Vec<Arc<Destination>>,
    protocol: Protocol,
    binary_keys: bool,
    on_down: OnDown,
    health: Arc<PoolHealth>,
    /// `on_down: eject`: the placement over the servers whose breaker is not open, rebuilt
    /// when the pool's breaker epoch moves.
    live: ArcSwap<LiveView>,
    /// Probes and sweeps run on the supervisor thread (config `health.background`).
    background: bool,
    /// Graceful degrade switches (config `disabled`, `read_only`).
    disabled: bool,
    read_only: bool,
    /// Deadline of one request (`timeouts.io_ms`).
    io_timeout: Duration,
    /// Largest value accepted (`max_value_size`).
    max_value_size: usize,
}

/// The ring without the ejected servers.
#[derive(Debug)]
struct LiveView {
    epoch: u64,
    /// `None` when every server is open (nothing to rehash to) or none is.
    placement: Option<Placement>,
    /// Index in `placement` → index in `dests`.
    map: Vec<usize>,
}

impl PoolRoute {
    /// The destination for `key`. With `on_down: eject`, a key whose server is open goes to the
    /// placement over the remaining servers. Keys of healthy servers never move: on a ketama
    /// ring that is exactly libmemcached's rebuilt continuum; on modula modes it avoids
    /// reshuffling every key.
    fn dest_index(&self, key: &[u8]) -> usize {
        let i = self.placement.pick(key);
        if self.on_down == OnDown::FailFast || self.dests[i].health.state() != BreakerState::Open {
            return i;
        }
        let view = self.live_view();
        match &view.placement {
            Some(p) => {
                inc(&self.dests[i].counters.ejected_lookups);
                view.map[p.pick(key)]
            }
            None => i,
        }
    }

    fn live_view(&self) -> Arc<LiveView> {
        let epoch = self.health.epoch();
        let view = self.live.load_full();
        if view.epoch == epoch {
            return view;
        }
        let map: Vec<usize> = (0..self.dests.len())
            .filter(|&i| self.dests[i].health.state() != BreakerState::Open)
            .collect();
        let placement = if map.is_empty() || map.len() == self.dests.len() {
            None
        } else {
            let nodes: Vec<Node> = map.iter().map(|&i| self.nodes[i].clone()).collect();
            Placement::new(self.mode, &nodes).ok()
        };
        let fresh = Arc::new(LiveView {
            epoch,
            placement,
            map,
        });
        self.live.store(Arc::clone(&fresh));
        fresh
    }

    /// Admit a request to `dest`: not when the pool is disabled, nor while its breaker is
    /// open (probing inline when no supervisor does it).
    fn admit(&self, dest: &Destination) -> Result<()> {
        if self.disabled {
            dest.errors.add(Reason::Disabled);
            let e = Error::with_detail(
                Reason::Disabled,
                format!("pool \"{}\" is disabled", self.name),
            );
            return Err(e.at(dest.addr()));
        }
        dest.admit(self.background && supervisor::is_running())
    }

    /// A `read_only` pool answers writes locally (counted per destination).
    fn dropped<B: Batch>(&self, dest: &Destination, batch: &mut B) -> bool {
        if self.read_only && batch.drop_writes() {
            inc(&dest.counters.writes_dropped);
            return true;
        }
        false
    }
}

impl PoolRoute {
    /// See [`Client::stats`].
    fn stats(&self) -> Value {
        let mut dests = serde_json::Map::new();
        for d in &self.dests {
            dests.insert(d.addr().to_string(), d.stats_json());
        }
        json!({
            "pools": { self.name.clone(): {
                "servers": self.dests.len(),
                "mode": self.mode.as_str(),
                "protocol": self.protocol.as_str(),
                "on_down": self.on_down.as_str(),
                "breakers_not_closed": self.health.not_closed(),
                "disabled": self.disabled,
                "read_only": self.read_only,
            }},
            "destinations": Value::Object(dests),
            "process": {
                "pid": std::process::id(),
                "config_version": 0,
                "reloads": 0,
                "reload_failures": 0,
            },
            "supervisor": {
                "background": self.background,
                "running": supervisor::is_running(),
                "threads_started": supervisor::threads_started(),
            },
        })
    }
}

/// A memcached client with compatible placement and pooled connections.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A batch of requests on one connection, and what their replies mean.
trait Batch {
    /// Append the requests' bytes.
    fn encode(&self, protocol: Protocol, out: &mut Vec<u8>);
    /// Take one reply. `Ok(true)` when the batch is complete. `Err`: the stream can no longer
    /// be trusted; the connection is discarded and unresolved entries get the error.
    fn on_reply(&mut self, resp: Response) -> Result<bool>;
    /// The connection failed: give `err` to every unresolved entry.
    fn fail(&mut self, err: &Error);
    /// The pool is `read_only`: if this batch writes, answer it locally as not done and
    /// return true (nothing is sent). Reads and deletes return false and go to the server.
    fn drop_writes(&mut self) -> bool {
        false
    }
}

fn server_error(kind: ServerErrorKind, message: String) -> Error {
    let reason = match kind {
        ServerErrorKind::ServerError => Reason::ServerError,
        ServerErrorKind::ClientError | ServerErrorKind::Error => Reason::ClientError,
    };
    Error::with_detail(reason, message)
}

fn unexpected(resp: &Response) -> Error {
    Error::with_detail(Reason::Protocol, format!("unexpected reply {resp:?}"))
}

/// get/gets/gat/gats of several keys on one server.
struct GetBatch<'a> {
    keys: Vec<&'a [u8]>,
    /// Position of each key in the caller's list.
    slots: Vec<usize>,
    results: Vec<Option<Result<Option<Item>>>>,
    cas: bool,
    touch: Option<u32>,
    /// Text: index of the next key a `VALUE` may answer (replies come in request order).
    cursor: usize,
    protocol: Protocol,
    /// A key needs base64 (meta binary keys), so the batch must use `mg`.
    binary: bool,
    /// Meta: an error line in a quiet batch carries no opaque; it taints unresolved keys.
    taint: Option<Error>,
}

impl<'a> GetBatch<'a> {
    fn new(protocol: Protocol, cas: bool, touch: Option<u32>) -> Self {
        GetBatch {
            keys: Vec::new(),
            slots: Vec::new(),
            results: Vec::new(),
            cas,
            touch,
            cursor: 0,
            protocol,
            binary: false,
            taint: None,
        }
    }

    /// The wire format of this batch. A meta pool still sends a multi-key read of printable
    /// keys as one text `get k1 k2 …` line (memcached ≥ 1.6 takes both on one connection):
    /// one command to parse instead of one `mg` per key plus `mn`, which measured 1.4–1.6×
    /// slower for 100 keys over 4 servers (docs/BENCHMARKS.md) and made memcached yield mid
    /// batch past its 20-requests-per-event limit. Single keys and base64 keys use `mg`.
    fn wire(&self) -> Protocol {
        if self.protocol == Protocol::Meta && (self.keys.len() == 1 || self.binary) {
            Protocol::Meta
        } else {
            Protocol::Text
        }
    }

    fn push(&mut self, key: &'a [u8], slot: usize) {
        self.binary |= key::needs_base64(key);
        self.keys.push(key);
        self.slots.push(slot);
        self.results.push(None);
    }

    /// Add this batch's hits and misses to the destination's counters.
    fn count_hits(&self, dest: &Destination) {
        let (mut hits, mut misses) = (0, 0);
        for r in self.results.iter().flatten() {
            match r {
                Ok(Some(_)) => hits += 1,
                Ok(None) => misses += 1,
                Err(_) => {}
            }
        }
        dest.counters.hits.fetch_add(hits, Ordering::Relaxed);
        dest.counters.misses.fetch_add(misses, Ordering::Relaxed);
    }

    fn hit(&mut self, i: usize, v: protocol::Value) {
        let item = Item {
            value: v.data,
            flags: v.flags,
            cas: v.cas.unwrap_or(0),
        };
        self.results[i] = Some(Ok(Some(item)));
    }
}

impl Batch for GetBatch<'_> {
    fn encode(&self, _pool_protocol: Protocol, out: &mut Vec<u8>) {
        protocol::encode(
            self.wire(),
            &Request::Get {
                keys: &self.keys,
                cas: self.cas,
                touch: self.touch,
            },
            out,
        );
    }

    fn on_reply(&mut self, resp: Response) -> Result<bool> {
        match resp {
            Response::Value(v) => {
                let i = match self.wire() {
                    Protocol::Text => {
                        // A reply for a key we did not ask for (or out of order) means the
                        // stream is not what we think it is: never hand out its value.
                        let key = v.key.as_deref().unwrap_or_default();
                        let pos = self.keys[self.cursor..].iter().position(|k| *k == key);
                        let Some(pos) = pos else {
                            return Err(Error::with_detail(
                                Reason::Protocol,
                                "VALUE for a key that was not requested",
                            ));
                        };
                        self.cursor += pos + 1;
                        self.cursor - 1
                    }
                    Protocol::Meta => {
                        let i = v
                            .opaque
                            .map(|o| o as usize)
                            .filter(|&i| i < self.keys.len());
                        let Some(i) = i else {
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
                        i
                    }
                };
                self.hit(i, v);
                Ok(false)
            }
            Response::End => {
                for r in &mut self.results {
                    if r.is_none() {
                        *r = Some(match &self.taint {
                            Some(e) => Err(e.clone()),
                            None => Ok(None),
                        });
                    }
                }
                Ok(true)
            }
            // A lone miss (meta touch without `q` never comes here: gets are always quiet).
            Response::Status {
                status: Status::Miss,
                ..
            } => Ok(false),
            Response::Error { kind, message } => {
                let e = server_error(kind, message);
                if self.wire() == Protocol::Meta {
                    // memcached still answers the trailing `mn`; keep reading to `MN`.
                    self.taint = Some(e);
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            other => Err(unexpected(&other)),
        }
    }

    fn fail(&mut self, err: &Error) {
        for r in &mut self.results {
            if r.is_none() {
                *r = Some(Err(err.clone()));
            }
        }
    }
}

/// Commands that each get exactly one reply, in order.
struct OpsBatch<'a> {
    reqs: Vec<Request<'a>>,
    slots: Vec<usize>,
    replies: Vec<Result<Response>>,
}

impl<'a> OpsBatch<'a> {
    fn new() -> Self {
        OpsBatch {
            reqs: Vec::new(),
            slots: Vec::new(),
            replies: Vec::new(),
        }
    }

    fn one(req: Request<'a>) -> Self {
        OpsBatch {
            reqs: vec![req],
            slots: vec![0],
            replies: Vec::with_capacity(1),
        }
    }

    fn push(&mut self, req: Request<'a>, slot: usize) {
        self.reqs.push(req);
        self.slots.push(slot);
    }
}

impl Batch for OpsBatch<'_> {
    fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        for r in &self.reqs {
            protocol::encode(protocol, r, out);
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

    fn fail(&mut self, err: &Error) {
        while self.replies.len() < self.reqs.len() {
            self.replies.push(Err(err.clone()));
        }
    }
}

fn store_outcome(resp: Response) -> Result<StoreOutcome> {
    match resp {
        Response::Status { status, .. } => match status {
            Status::Success => Ok(StoreOutcome::Stored),
            Status::NotStored => Ok(StoreOutcome::NotStored),
            Status::Exists => Ok(StoreOutcome::Exists),
            Status::NotFound => Ok(StoreOutcome::NotFound),
            Status::Miss => Err(unexpected(&resp)),
        },
        other => Err(unexpected(&other)),
    }
}

fn found(resp: Response) -> Result<bool> {
    match resp {
        Response::Status {
            status: Status::Success,
            ..
        } => Ok(true),
        Response::Status {
            status: Status::NotFound | Status::Miss,
            ..
        } => Ok(false),
        other => Err(unexpected(&other)),
    }
}

fn arith_value(resp: Response) -> Result<Option<u64>> {
    match resp {
        Response::Number(n) => Ok(Some(n)),
        Response::Value(v) => std::str::from_utf8(&v.data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::with_detail(Reason::Protocol, "arithmetic reply is not a number")
            }),
        Response::Status {
            status: Status::NotFound | Status::Miss,
            ..
        } => Ok(None),
        other => Err(unexpected(&other)),
    }
}

/// Finish a connection's part: keep it if the batch completed on a clean stream.
fn release(pc: PooledConn<'_>, ok: bool) {
    if ok {
        pc.checkin();
    }
}

impl PoolRoute {
    fn check_key(&self, key: &[u8]) -> Result<()> {
        key::check(key, self.binary_keys)
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_size {
            return Err(Error::with_detail(
                Reason::ValueTooLarge,
                format!(
                    "value is {} bytes; max_value_size is {}",
                    value.len(),
                    self.max_value_size
                ),
            ));
        }
        Ok(())
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.io_timeout
    }

    /// Run one batch on one destination: admitted by its breaker, outcome recorded.
    fn exchange<B: Batch>(
        &self,
        dest: &Destination,
        batch: &mut B,
        deadline: Instant,
    ) -> Result<()> {
        if self.dropped(dest, batch) {
            return Ok(());
        }
        if let Err(e) = self.admit(dest) {
            batch.fail(&e);
            return Err(e);
        }
        let start = Instant::now();
        let result = self.exchange_admitted(dest, batch, deadline);
        dest.record(&result, start.elapsed());
        result
    }

    fn exchange_admitted<B: Batch>(
        &self,
        dest: &Destination,
        batch: &mut B,
        deadline: Instant,
    ) -> Result<()> {
        let addr = dest.addr();
        let mut pc = match dest.checkout(deadline) {
            Ok(pc) => pc,
            Err(e) => {
                batch.fail(&e);
                return Err(e);
            }
        };
        let c = pc.conn();
        batch.encode(dest.protocol(), &mut c.wbuf);
        let run = (|| -> Result<()> {
            c.send(deadline)?;
            loop {
                if batch.on_reply(c.recv(dest.decoder(), deadline)?)? {
                    return Ok(());
                }
            }
        })();
        match run {
            Ok(()) => {
                release(pc, true);
                Ok(())
            }
            Err(e) => {
                let e = e.at(addr);
                batch.fail(&e);
                drop(pc); // mid-reply failure: discard, never reuse
                Err(e)
            }
        }
    }

    /// Run one batch per destination, all at once, under one deadline. Each batch ends with
    /// its results or its error; nothing here returns early.
    fn exchange_many<B: Batch>(&self, work: &mut [(usize, B)], deadline: Instant) {
        if let [(d, batch)] = work {
            let _ = self.exchange(&self.dests[*d], batch, deadline);
            return;
        }
        struct Slot<'c> {
            pc: PooledConn<'c>,
            work: usize,
            sending: bool,
        }
        let start = Instant::now();
        let mut live: Vec<Slot<'_>> = Vec::with_capacity(work.len());
        for (i, (d, batch)) in work.iter_mut().enumerate() {
            let dest = &*self.dests[*d];
            if self.dropped(dest, batch) {
                continue;
            }
            if let Err(e) = self.admit(dest) {
                batch.fail(&e);
                continue;
            }
            match dest.checkout(deadline) {
                Ok(mut pc) => {
                    batch.encode(dest.protocol(), &mut pc.conn().wbuf);
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
        let finish = |slot: Slot<'_>, outcome: Result<()>, batch: &mut B| {
            let dest = slot.pc.destination();
            match outcome {
                Ok(()) => {
                    dest.record(&Ok::<(), Error>(()), start.elapsed());
                    release(slot.pc, true);
                }
                Err(e) => {
                    let e = e.at(dest.addr());
                    dest.record::<()>(&Err(e.clone()), start.elapsed());
                    batch.fail(&e);
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
                    finish(slot, Err(e), &mut work[w].1);
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
                    finish(slot, Err(e.clone()), &mut work[w].1);
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
                let batch = &mut work[w].1;
                let step: Result<bool> = (|| {
                    let decoder = *slot.pc.destination().decoder();
                    let c = slot.pc.conn();
                    if slot.sending && revents & libc::POLLOUT != 0 {
                        slot.sending = !c.try_send()?;
                    }
                    if revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL)
                        != 0
                    {
                        c.try_fill()?;
                        while let Some(resp) = c.try_decode(&decoder)? {
                            if batch.on_reply(resp)? {
                                return Ok(true);
                            }
                        }
                    }
                    Ok(false)
                })();
                match step {
                    Ok(false) => {}
                    Ok(true) => finish(live.swap_remove(i), Ok(()), &mut work[w].1),
                    Err(e) => finish(live.swap_remove(i), Err(e), &mut work[w].1),
                }
            }
        }
    }

    /// Group `keys` by destination: `(destination index, positions in keys)`.
    fn group(&self, keys: impl Iterator<Item = (usize, usize)>) -> Vec<(usize, Vec<usize>)> {
        let mut by_dest: Vec<Vec<usize>> = vec![Vec::new(); self.dests.len()];
        for (pos, d) in keys {
            by_dest[d].push(pos);
        }
        by_dest
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    fn fetch(&self, key: &[u8], cas: bool, touch: Option<u32>) -> Result<Option<Item>> {
        self.check_key(key)?;
        let dest = &self.dests[self.dest_index(key)];
        let mut batch = GetBatch::new(self.protocol, cas, touch);
        batch.push(key, 0);
        self.exchange(dest, &mut batch, self.deadline())?;
        batch.count_hits(dest);
        batch
            .results
            .pop()
            .flatten()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
    }

    /// See [`Client::get`].
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        self.fetch(key, false, None)
    }

    /// See [`Client::gets`].
    pub(crate) fn gets(&self, key: &[u8]) -> Result<Option<Item>> {
        self.fetch(key, true, None)
    }

    /// See [`Client::gat`].
    pub(crate) fn gat(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.fetch(key, false, Some(exptime))
    }

    /// See [`Client::gats`].
    pub(crate) fn gats(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.fetch(key, true, Some(exptime))
    }

    /// One request for `key` on the server `server_key` maps to (the key itself, except for
    /// libmemcached's `*_by_key`).
    fn single<T>(
        &self,
        server_key: &[u8],
        key: &[u8],
        req: Request<'_>,
        map: impl FnOnce(Response) -> Result<T>,
    ) -> Result<T> {
        self.check_key(server_key)?;
        if !std::ptr::eq(server_key, key) {
            self.check_key(key)?;
        }
        let dest = &self.dests[self.dest_index(server_key)];
        let mut batch = OpsBatch::one(req);
        self.exchange(dest, &mut batch, self.deadline())?;
        let reply = batch
            .replies
            .pop()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
        reply.and_then(map).map_err(|e| e.or_at(dest.addr()))
    }

    /// See [`Client::store`].
    pub(crate) fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<StoreOutcome> {
        self.check_value(value)?;
        let req = Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply: false,
        };
        self.single(key, key, req, store_outcome)
    }

    /// See [`Client::set`].
    pub(crate) fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<()> {
        match self.store(StoreOp::Set, key, value, flags, exptime)? {
            StoreOutcome::Stored => Ok(()),
            // memcached never refuses a plain set with NOT_STORED; a read_only pool does.
            StoreOutcome::NotStored if self.read_only => Err(Error::with_detail(
                Reason::ReadOnly,
                "the pool is read_only: the write was dropped",
            )),
            other => Err(Error::with_detail(
                Reason::Protocol,
                format!("set answered {other:?}"),
            )),
        }
    }

    /// See [`Client::add`].
    pub(crate) fn add(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Add, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// See [`Client::replace`].
    pub(crate) fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<bool> {
        Ok(self.store(StoreOp::Replace, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// See [`Client::append`].
    pub(crate) fn append(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Append, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// See [`Client::prepend`].
    pub(crate) fn prepend(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Prepend, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// See [`Client::cas`].
    pub(crate) fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
    ) -> Result<StoreOutcome> {
        self.store(StoreOp::Cas(cas), key, value, flags, exptime)
    }

    /// See [`Client::delete`].
    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool> {
        self.single(
            key,
            key,
            Request::Delete {
                key,
                noreply: false,
            },
            found,
        )
    }

    /// See [`Client::incr`].
    pub(crate) fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.single(
            key,
            key,
            Request::Arith {
                key,
                incr: true,
                delta,
                noreply: false,
            },
            arith_value,
        )
    }

    /// See [`Client::decr`].
    pub(crate) fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.single(
            key,
            key,
            Request::Arith {
                key,
                incr: false,
                delta,
                noreply: false,
            },
            arith_value,
        )
    }

    /// See [`Client::touch`].
    pub(crate) fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        self.single(
            key,
            key,
            Request::Touch {
                key,
                exptime,
                noreply: false,
            },
            found,
        )
    }

    /// See [`Client::get_multi`].
    pub(crate) fn get_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<Option<Item>>>> {
        self.get_multi_opts(keys, false, None)
    }

    /// See [`Client::get_multi_opts`].
    pub(crate) fn get_multi_opts(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.fetch_multi(keys, keys, cas, touch)
    }

    /// Fetch `keys`, each from the server its `server_keys` entry maps to (the same slice for
    /// ordinary calls; a different one for libmemcached's `*_by_key`). Results are aligned with
    /// `keys`. Caller errors come before any I/O.
    fn fetch_multi(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        for k in keys {
            self.check_key(k)?;
        }
        let deadline = self.deadline();
        let groups = self.group(
            server_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (i, self.dest_index(k))),
        );
        let mut work: Vec<(usize, GetBatch<'_>)> = groups
            .into_iter()
            .map(|(d, positions)| {
                let mut b = GetBatch::new(self.protocol, cas, touch);
                for p in positions {
                    b.push(keys[p], p);
                }
                (d, b)
            })
            .collect();
        self.exchange_many(&mut work, deadline);
        let mut out: Vec<Result<Option<Item>>> = Vec::with_capacity(keys.len());
        out.resize_with(keys.len(), || Ok(None));
        for (d, b) in work {
            b.count_hits(&self.dests[d]);
            for (slot, r) in b.slots.into_iter().zip(b.results) {
                out[slot] = r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
            }
        }
        Ok(out)
    }

    fn ops_multi<'k, T>(
        &self,
        n: usize,
        key_of: impl Fn(usize) -> &'k [u8],
        req_of: impl Fn(usize) -> Request<'k>,
        map: impl Fn(Response) -> Result<T>,
    ) -> Result<Vec<Result<T>>> {
        for i in 0..n {
            self.check_key(key_of(i))?;
        }
        let deadline = self.deadline();
        let groups = self.group((0..n).map(|i| (i, self.dest_index(key_of(i)))));
        let mut work: Vec<(usize, OpsBatch<'k>)> = groups
            .into_iter()
            .map(|(d, positions)| {
                let mut b = OpsBatch::new();
                for p in positions {
                    b.push(req_of(p), p);
                }
                (d, b)
            })
            .collect();
        self.exchange_many(&mut work, deadline);
        let mut out: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
        for (d, b) in work {
            let addr = self.dests[d].addr();
            for (slot, r) in b.slots.into_iter().zip(b.replies) {
                out[slot] = Some(r.and_then(&map).map_err(|e| e.or_at(addr)));
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(Reason::Protocol))))
            .collect())
    }

    /// See [`Client::set_multi`].
    pub(crate) fn set_multi(&self, items: &[SetItem<'_>]) -> Result<Vec<Result<StoreOutcome>>> {
        for it in items {
            self.check_value(it.value)?;
        }
        self.ops_multi(
            items.len(),
            |i| items[i].key,
            |i| {
                let it = items[i];
                Request::Store {
                    op: StoreOp::Set,
                    key: it.key,
                    value: it.value,
                    flags: it.flags,
                    exptime: it.exptime,
                    noreply: false,
                }
            },
            store_outcome,
        )
    }

    /// See [`Client::delete_multi`].
    pub(crate) fn delete_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<bool>>> {
        self.ops_multi(
            keys.len(),
            |i| keys[i],
            |i| Request::Delete {
                key: keys[i],
                noreply: false,
            },
            found,
        )
    }

    fn all_servers<T>(
        &self,
        req: Request<'_>,
        map: impl Fn(Response) -> Result<T>,
    ) -> Result<Vec<(String, Result<T>)>> {
        let mut work: Vec<(usize, OpsBatch<'_>)> = (0..self.dests.len())
            .map(|d| (d, OpsBatch::one(req)))
            .collect();
        self.exchange_many(&mut work, self.deadline());
        Ok(work
            .into_iter()
            .map(|(d, mut b)| {
                let addr = self.dests[d].addr();
                let r = b
                    .replies
                    .pop()
                    .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
                (
                    addr.to_string(),
                    r.and_then(&map).map_err(|e| e.or_at(addr)),
                )
            })
            .collect())
    }

    /// See [`Client::flush_all`].
    pub(crate) fn flush_all(&self, delay: u32) -> Result<()> {
        for (_, r) in self.all_servers(
            Request::FlushAll {
                delay,
                noreply: false,
            },
            |resp| match resp {
                Response::Status {
                    status: Status::Success,
                    ..
                } => Ok(()),
                other => Err(unexpected(&other)),
            },
        )? {
            r?;
        }
        Ok(())
    }

    /// See [`Client::version`].
    pub(crate) fn version(&self) -> Result<Vec<(String, Result<String>)>> {
        self.all_servers(Request::Version, |resp| match resp {
            Response::Version(v) => Ok(v),
            other => Err(unexpected(&other)),
        })
    }

    /// See [`Client::route_for`].
    pub(crate) fn route_for(&self, op: Op, key: &[u8]) -> Result<Vec<String>> {
        let _ = op; // one pool: every operation goes to the key's server
        self.check_key(key)?;
        Ok(vec![self.dests[self.dest_index(key)].addr().to_string()])
    }

    /// See [`Client::servers`].
    pub(crate) fn servers(&self) -> Vec<String> {
        self.dests.iter().map(|d| d.addr().to_string()).collect()
    }

    /// See [`Client::connection_counts`].
    pub(crate) fn connection_counts(&self) -> Vec<(String, usize, usize)> {
        self.dests
            .iter()
            .map(|d| {
                (
                    d.addr().to_string(),
                    d.open_connections(),
                    d.idle_connections(),
                )
            })
            .collect()
    }

    /// See [`Client::idle_local_addrs`].
    pub(crate) fn idle_local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.dests
            .iter()
            .flat_map(|d| d.idle_local_addrs())
            .collect()
    }

    /// See [`Client::breaker_states`].
    pub(crate) fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.dests
            .iter()
            .map(|d| (d.addr().to_string(), d.health.state()))
            .collect()
    }
}

impl PoolRoute {
    /// Build the route for `config`. Destinations of `previous` whose address and settings are
    /// unchanged are kept, with their warm connections and breaker state; their breakers are
    /// re-linked to the new pool's bookkeeping. Nothing is dialled.
    fn build(config: &Config, previous: Option<&PoolRoute>) -> Result<PoolRoute> {
        let RouteConfig::Pool { pool } = &config.route;
        let pc = config.pools.get(pool).ok_or_else(|| {
            Error::with_detail(
                Reason::InvalidConfig,
                format!("route: unknown pool \"{pool}\""),
            )
        })?;
        let placement = Placement::new(pc.mode, &pc.servers)
            .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("pools.{pool}: {e}")))?;
        let h = &config.health;
        let ms = Duration::from_millis;
        let settings = ConnSettings {
            protocol: pc.protocol,
            connect_timeout: ms(config.timeouts.connect_ms),
            io_timeout: ms(config.timeouts.io_ms),
            max_connections: pc.max_connections,
            // Replies carry at most one value; leave room for memcached's own item overhead.
            decoder: Decoder {
                max_value_size: config.max_value_size.max(1024 * 1024),
            },
            heartbeat_interval: ms(h.heartbeat_interval_ms),
            max_idle: (h.max_idle_ms > 0).then(|| ms(h.max_idle_ms)),
            max_age: (h.max_age_ms > 0).then(|| ms(h.max_age_ms)),
            background: h.background,
            breaker: BreakerSettings {
                tko_soft_threshold: h.tko_soft_threshold,
                probe_initial: ms(h.probe_initial_ms),
                probe_max: ms(h.probe_max_ms),
                half_open_requests: h.half_open_requests,
                max_tko_fraction: h.max_tko_fraction,
            },
        };
        let health = PoolHealth::new(pc.servers.len(), h.max_tko_fraction);
        let dests = pc
            .servers
            .iter()
            .map(|n| {
                let addr = n.addr();
                let kept = previous.and_then(|p| {
                    p.dests
                        .iter()
                        .find(|d| **d.addr() == *addr && *d.settings() == settings)
                });
                match kept {
                    Some(d) => {
                        d.health.rebind(Arc::clone(&health));
                        Arc::clone(d)
                    }
                    None => Arc::new(Destination::new(
                        &n.host,
                        n.port,
                        settings,
                        Arc::clone(&health),
                    )),
                }
            })
            .collect();
        Ok(PoolRoute {
            name: pool.clone(),
            placement,
            nodes: pc.servers.clone(),
            mode: pc.mode,
            dests,
            protocol: pc.protocol,
            binary_keys: pc.binary_keys,
            on_down: pc.on_down,
            live: ArcSwap::from_pointee(LiveView {
                epoch: u64::MAX,
                placement: None,
                map: Vec::new(),
            }),
            health,
            background: h.background,
            disabled: pc.disabled,
            read_only: pc.read_only,
            io_timeout: ms(config.timeouts.io_ms),
            max_value_size: config.max_value_size,
        })
    }
}

/// The route a request runs on, counted as in flight until dropped.
struct Active<'a> {
    inner: &'a Inner,
    route: arc_swap::Guard<Arc<PoolRoute>>,
}

impl std::ops::Deref for Active<'_> {
    type Target = PoolRoute;
    fn deref(&self) -> &PoolRoute {
        &self.route
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a client shares with the supervisor: the current route, swapped atomically on reload,
/// and everything that outlives a reload.
#[derive(Debug)]
struct Inner {
    route: ArcSwap<PoolRoute>,
    closed: AtomicBool,
    /// Requests between `Client::route` and their end (graceful close waits for them).
    in_flight: AtomicUsize,
    background: bool,
    exporter: Option<Exporter>,
    /// The config file to watch (`Config::from_file`), its last seen (mtime, size) stamp.
    source: Option<PathBuf>,
    source_stamp: AtomicU64,
    watch_ms: u64,
    last_watch_ms: AtomicU64,
    config_version: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// The config the route was built from, before the topology snapshot is applied. Taken
    /// only by reloads (never on the request path), with a bounded wait: a fork() during a
    /// reload in another thread must not leave the child blocked forever.
    base: parking_lot::Mutex<Config>,
    /// (inode, mtime, size) stamp of the topology snapshot last applied.
    topology_stamp: AtomicU64,
}

/// A stamp that changes when a file is rewritten or replaced: mtime in ns, size and inode (an
/// atomic rename gives a new inode even within one mtime tick).
fn file_stamp(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as u64;
    Some(mtime ^ m.len().rotate_left(32) ^ m.ino().rotate_left(17))
}

/// `base` with the server lists of its topology snapshot applied (`discovery.file`). A missing
/// snapshot is only acceptable at client creation (`missing_ok`): later it would silently
/// revert the pools to their bootstrap lists.
fn effective_config(base: &Config, missing_ok: bool) -> Result<Config> {
    let Some(path) = &base.discovery.file else {
        return Ok(base.clone());
    };
    if missing_ok && !path.exists() {
        log::warn!(target: "fae", "discovery.file={} missing; using the config's server lists", path.display());
        return Ok(base.clone());
    }
    let topology = crate::discovery::Topology::read(path)
        .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("discovery.file: {e}")))?;
    base.with_topology(&topology)
}

impl Inner {
    fn reload(&self, config: &Config) -> Result<()> {
        self.rebuild(Some(config))
    }

    /// Build a route from `new_base` (or the current base, when the topology changed) and swap
    /// it in; on any error the old route stays and the failure is counted.
    fn rebuild(&self, new_base: Option<&Config>) -> Result<()> {
        let Some(mut base) = self.base.try_lock_for(Duration::from_secs(2)) else {
            inc(&self.reload_failures);
            return Err(Error::with_detail(
                Reason::InvalidConfig,
                "another reload is still running",
            ));
        };
        let old = self.route.load_full();
        let built = effective_config(new_base.unwrap_or(&base), false)
            .and_then(|effective| PoolRoute::build(&effective, Some(&old)));
        let outcome = match built {
            Ok(route) => {
                let kept = route
                    .dests
                    .iter()
                    .filter(|d| old.dests.iter().any(|o| Arc::ptr_eq(o, d)))
                    .count();
                self.route.store(Arc::new(route));
                if let Some(nb) = new_base {
                    *base = nb.clone();
                }
                inc(&self.reloads);
                Ok((self.config_version.fetch_add(1, Ordering::AcqRel) + 1, kept))
            }
            Err(e) => {
                inc(&self.reload_failures);
                Err(e)
            }
        };
        // Log after the lock is released: a logger may take locks of its own (the GIL).
        drop(base);
        match outcome {
            Ok((v, kept)) => {
                log::info!(target: "fae", "reload=ok config_version={v} destinations_kept={kept}");
                Ok(())
            }
            Err(e) => {
                log::warn!(
                    target: "fae",
                    "reload=failed reason={} detail=\"{}\"; the old config stays in force",
                    e.reason(),
                    e.detail().unwrap_or("")
                );
                Err(e)
            }
        }
    }

    /// Re-apply the topology snapshot when it changed (checked with the config file).
    fn watch_topology(&self) {
        let Some(path) = self.base.try_lock().and_then(|b| b.discovery.file.clone()) else {
            return;
        };
        let Some(stamp) = file_stamp(&path) else {
            return;
        };
        if self.topology_stamp.swap(stamp, Ordering::AcqRel) != stamp {
            let _ = self.rebuild(None);
        }
    }

    /// Reload from the watched config file, and re-apply the topology snapshot, when they
    /// changed (checked every `watch_ms`).
    fn watch_source(&self) {
        if self.watch_ms == 0 {
            return;
        }
        let now = now_ms();
        if now.saturating_sub(self.last_watch_ms.load(Ordering::Relaxed)) < self.watch_ms {
            return;
        }
        self.last_watch_ms.store(now, Ordering::Relaxed);
        self.watch_topology();
        let Some(path) = &self.source else { return };
        let Some(stamp) = file_stamp(path) else {
            return;
        };
        if self.source_stamp.swap(stamp, Ordering::AcqRel) == stamp {
            return;
        }
        match Config::from_file(path) {
            Ok(c) => {
                let _ = self.reload(&c);
            }
            Err(e) => {
                inc(&self.reload_failures);
                log::warn!(
                    target: "fae",
                    "reload=failed source={} detail=\"{}\"; the old config stays in force",
                    path.display(),
                    e.detail().unwrap_or("")
                );
            }
        }
    }

    fn stats(&self) -> Value {
        let mut v = self.route.load().stats();
        v["process"] = json!({
            "pid": std::process::id(),
            "config_version": self.config_version.load(Ordering::Relaxed),
            "reloads": self.reloads.load(Ordering::Relaxed),
            "reload_failures": self.reload_failures.load(Ordering::Relaxed),
        });
        v
    }
}

impl Maintain for Inner {
    fn maintain(&self) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        for d in &self.route.load().dests {
            d.maintain();
        }
        if let Some(e) = &self.exporter {
            e.tick(&|| self.stats());
        }
        self.watch_source();
        true
    }
}
impl Client {
    /// Build a client. Dials nothing: connections are made on first use, and no thread starts
    /// before the first request. A client built from [`Config::from_file`] watches that file
    /// (`reload.watch_ms`) and reloads when it changes.
    pub fn new(config: &Config) -> Result<Client> {
        fork::install();
        let route = PoolRoute::build(&effective_config(config, true)?, None)?;
        let background = config.health.background;
        let inner = Arc::new(Inner {
            route: ArcSwap::from_pointee(route),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            background,
            exporter: Exporter::new(
                config.stats.listen.clone(),
                config.stats.dir.clone(),
                config.stats.interval_ms,
            ),
            source_stamp: AtomicU64::new(
                config.source.as_deref().and_then(file_stamp).unwrap_or(0),
            ),
            source: config.source.clone(),
            watch_ms: config.reload.watch_ms,
            last_watch_ms: AtomicU64::new(now_ms()),
            config_version: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            base: parking_lot::Mutex::new(config.clone()),
            topology_stamp: AtomicU64::new(
                config
                    .discovery
                    .file
                    .as_deref()
                    .and_then(file_stamp)
                    .unwrap_or(0),
            ),
        });
        if background {
            let weak: std::sync::Weak<dyn Maintain> = Arc::downgrade(&inner) as _;
            supervisor::register(weak);
        }
        Ok(Client { inner })
    }

    /// Replace the configuration: the new route is built off to the side and swapped in
    /// atomically; requests in flight finish on the old one. Destinations whose address and
    /// settings are unchanged keep their warm connections and breaker state. A config that
    /// fails to build is rejected with its error, the old one stays in force, and the failure
    /// is counted (`process.reload_failures` in [`Client::stats`]). Settings of `stats` and
    /// `health.background` apply from client creation and are not changed by a reload.
    pub fn reload(&self, config: &Config) -> Result<()> {
        self.inner.reload(config)
    }

    fn route(&self) -> Result<Active<'_>> {
        let inner = &*self.inner;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let active = Active {
            inner,
            route: inner.route.load(),
        };
        // Checked after counting: a close() that saw no request in flight has already set it.
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::with_detail(Reason::Closed, "the client is closed"));
        }
        if inner.background {
            supervisor::ensure_running();
        } else {
            for d in &active.route.dests {
                d.maintain_if_due();
            }
            if let Some(e) = &inner.exporter {
                e.tick(&|| inner.stats());
            }
            inner.watch_source();
        }
        Ok(active)
    }
    /// A snapshot of the client's health and counters, as JSON:
    /// `{"pools": {name: {...}}, "destinations": {"host:port": {"state": "closed", "requests": n,
    /// "errors": {"timeout": n}, "latency": {...}, "open_connections": n, ...}},
    /// "process": {"config_version": n, "reloads": n, "reload_failures": n}, "supervisor": {...}}`.
    /// Counter names are listed in [`crate::stats::DestCounters::TABLE`].
    pub fn stats(&self) -> Value {
        self.inner.stats()
    }

    /// [`Client::stats`] in the Prometheus text exposition format.
    pub fn stats_prometheus(&self) -> String {
        crate::stats::render_prometheus(&self.stats())
    }

    /// Close the client: [`Client::close_within`] with a grace of twice `io_ms`. Later calls
    /// fail with `closed`.
    pub fn close(&self) {
        self.close_within(self.inner.route.load().io_timeout * 2);
    }

    /// Close gracefully: new requests fail with `closed` at once; requests in flight may
    /// finish, for at most `grace`; then every connection is closed (idle ones now, those of
    /// requests still running as they come back), and the supervisor forgets this client (its
    /// thread exits when no client is left). Returns true if no request was still running.
    pub fn close_within(&self, grace: Duration) -> bool {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let drained = inner.in_flight.load(Ordering::Acquire) == 0;
        for d in &inner.route.load().dests {
            d.shut();
        }
        drained
    }
    /// Has [`Client::close`] been called?
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Get a value. `Ok(None)` on a miss.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        self.route()?.get(key)
    }

    /// Get a value and its CAS token.
    pub fn gets(&self, key: &[u8]) -> Result<Option<Item>> {
        self.route()?.gets(key)
    }

    /// Get a value and set its expiry (get-and-touch).
    pub fn gat(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.route()?.gat(key, exptime)
    }

    /// Get a value with its CAS token and set its expiry.
    pub fn gats(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.route()?.gats(key, exptime)
    }

    /// Any storage command. `exptime`: 0 = never, ≤ 30 days = seconds from now, larger = unix
    /// time.
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<StoreOutcome> {
        self.route()?.store(op, key, value, flags, exptime)
    }

    /// Store unconditionally.
    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<()> {
        self.route()?.set(key, value, flags, exptime)
    }

    /// Store only if absent. `Ok(false)` if the key exists.
    pub fn add(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        self.route()?.add(key, value, flags, exptime)
    }

    /// Store only if present. `Ok(false)` if the key is missing.
    pub fn replace(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        self.route()?.replace(key, value, flags, exptime)
    }

    /// Append to an existing value. `Ok(false)` if the key is missing.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.route()?.append(key, value)
    }

    /// Prepend to an existing value. `Ok(false)` if the key is missing.
    pub fn prepend(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        self.route()?.prepend(key, value)
    }

    /// Compare and swap: store only if the item's CAS is still `cas`.
    pub fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
    ) -> Result<StoreOutcome> {
        self.route()?.cas(key, value, flags, exptime, cas)
    }

    /// Delete a key. `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.route()?.delete(key)
    }

    /// Increment a decimal value by `delta` (wraps at 2^64). `Ok(None)` if the key is missing.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.route()?.incr(key, delta)
    }

    /// Decrement a decimal value by `delta` (stops at 0). `Ok(None)` if the key is missing.
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.route()?.decr(key, delta)
    }

    /// Set a key's expiry. `Ok(false)` if the key is missing.
    pub fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        self.route()?.touch(key, exptime)
    }

    /// Get many keys. The result is aligned with `keys`: `Ok(Some(item))` hit, `Ok(None)` miss,
    /// `Err` when that key's server failed. The outer `Err` is for caller errors (an invalid
    /// key, a closed client), detected before any I/O.
    pub fn get_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<Option<Item>>>> {
        self.route()?.get_multi(keys)
    }

    /// [`Client::get_multi`] with CAS tokens (`cas`) and/or a new expiry for hits (`touch`).
    pub fn get_multi_opts(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.route()?.get_multi_opts(keys, cas, touch)
    }

    /// Store many items, pipelined per server. Aligned with `items`.
    pub fn set_multi(&self, items: &[SetItem<'_>]) -> Result<Vec<Result<StoreOutcome>>> {
        self.route()?.set_multi(items)
    }

    /// Delete many keys, pipelined per server. Aligned with `keys`: `Ok(true)` deleted,
    /// `Ok(false)` was not there.
    pub fn delete_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<bool>>> {
        self.route()?.delete_multi(keys)
    }

    /// `flush_all` on every server (after `delay` seconds). Fails with the first server error,
    /// after every server was asked.
    pub fn flush_all(&self, delay: u32) -> Result<()> {
        self.route()?.flush_all(delay)
    }

    /// Each server's version string, in config order.
    pub fn version(&self) -> Result<Vec<(String, Result<String>)>> {
        self.route()?.version()
    }

    /// The servers (`host:port`) a request for `key` would touch, without any I/O.
    pub fn route_for(&self, op: Op, key: &[u8]) -> Result<Vec<String>> {
        self.route()?.route_for(op, key)
    }

    /// Every destination's address, in config order.
    pub fn servers(&self) -> Vec<String> {
        self.inner.route.load().servers()
    }

    /// Open and idle connections per destination: `(addr, open, idle)`.
    pub fn connection_counts(&self) -> Vec<(String, usize, usize)> {
        self.inner.route.load().connection_counts()
    }

    /// Local addresses of the idle pooled connections (diagnostics; the fork tests use it to
    /// prove a child never reuses its parent's sockets).
    pub fn idle_local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.inner.route.load().idle_local_addrs()
    }

    /// Each destination's breaker state, in config order: `(addr, state)`.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.inner.route.load().breaker_states()
    }

    /// Close every idle connection now and keep the client usable: the next request dials
    /// again. This is pymemcache's and pylibmc's `disconnect_all()`, which frameworks call at the
    /// end of a request; unlike [`Client::close`] it does not make later calls fail.
    pub fn disconnect_idle(&self) {
        for d in &self.inner.route.load().dests {
            d.close_idle();
        }
    }

    /// memcached's `stats [args]` on every server, in config order: `(addr, [(name, value)])`
    /// in the server's order. An admin command, so it uses its own short-lived connection per
    /// server (dialled and answered within `io_ms` each) and never a pooled one:
    /// `stats` replies are multi-line and have no place in the request codec. `args` must be
    /// printable ASCII words (`""`, `"settings"`, `"slabs"`, `"items"` …).
    pub fn server_stats(&self, args: &str) -> Result<Vec<(String, Result<ServerStats>)>> {
        let route = self.route()?;
        if !args.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(Error::with_detail(
                Reason::InvalidArgument,
                "stats arguments must be printable ASCII words",
            ));
        }
        let line = if args.trim().is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {}\r\n", args.trim())
        };
        Ok(route
            .dests
            .iter()
            .map(|d| {
                let r = admin_stats(d.addr(), &line, route.io_timeout).map_err(|e| e.at(d.addr()));
                (d.addr().to_string(), r)
            })
            .collect())
    }
}

/// One server's `stats` reply: `(name, value)` pairs in the server's order.
pub type ServerStats = Vec<(String, String)>;

/// One `stats` exchange on a fresh connection to `addr` (`host:port`, IPv6 host unbracketed).
fn admin_stats(addr: &str, line: &str, io_timeout: Duration) -> Result<Vec<(String, String)>> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let io_err = |e: std::io::Error| {
        let reason = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Reason::Timeout,
            std::io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                Reason::Reset
            }
            _ => Reason::Io,
        };
        Error::with_detail(reason, format!("stats: {e}"))
    };
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| Error::with_detail(Reason::ConnectFailed, "bad server address"))?;
    let sa = (host.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .map_err(io_err)?
        .next()
        .ok_or_else(|| Error::with_detail(Reason::ConnectFailed, "address did not resolve"))?;
    let mut s = TcpStream::connect_timeout(&sa, io_timeout).map_err(io_err)?;
    let deadline = Instant::now() + io_timeout;
    s.set_write_timeout(Some(io_timeout)).map_err(io_err)?;
    s.write_all(line.as_bytes()).map_err(io_err)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::with_detail(
                Reason::Timeout,
                "stats: no complete reply",
            ));
        }
        s.set_read_timeout(Some(left)).map_err(io_err)?;
        let n = s.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Err(Error::with_detail(
                Reason::Reset,
                "stats: connection closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let first = text.split("\r\n").next().unwrap_or("");
        if first.starts_with("SERVER_ERROR") {
            return Err(Error::with_detail(Reason::ServerError, first.to_string()));
        }
        if first.starts_with("CLIENT_ERROR") || first == "ERROR" {
            return Err(Error::with_detail(Reason::ClientError, first.to_string()));
        }
        if text == "END\r\n" || text.ends_with("\r\nEND\r\n") {
            return Ok(text
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("STAT "))
                .map(|l| match l.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                })
                .collect());
        }
    }
}

impl PoolRoute {
    fn get_multi_routed(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
    ) -> Result<Vec<Result<Option<Item>>>> {
        if keys.len() != server_keys.len() {
            return Err(Error::with_detail(
                Reason::InvalidArgument,
                "get_multi_routed: keys and server_keys differ in length",
            ));
        }
        for s in server_keys {
            self.check_key(s)?;
        }
        self.fetch_multi(keys, server_keys, cas, None)
    }
}

/// Additive API for bindings that mirror libmemcached (the PHP extension): commands placed by a
/// server key other than the stored key, and a placement from libmemcached's option state.
impl Client {
    /// Build a client whose keys are placed by `placement` instead of the pool's mode (for a
    /// binding that mirrors libmemcached's option state, see
    /// [`Placement::libmemcached_behavior`]). `placement` must have been built from the routed
    /// pool's servers, in config order. A later [`Client::reload`] (or a watched file or
    /// topology change) places keys by the config's mode again; `on_down: eject` rebuilds its
    /// ring of live servers with the pool's mode.
    pub fn with_placement(config: &Config, placement: Placement) -> Result<Client> {
        let client = Client::new(config)?;
        let current = client.inner.route.load_full();
        if placement.len() != current.dests.len() {
            return Err(Error::with_detail(
                Reason::InvalidConfig,
                format!(
                    "placement has {} servers; the pool has {}",
                    placement.len(),
                    current.dests.len()
                ),
            ));
        }
        let mut route = PoolRoute::build(&effective_config(config, true)?, Some(&current))?;
        route.placement = placement;
        client.inner.route.store(Arc::new(route));
        Ok(client)
    }

    /// [`Client::get`] / [`Client::gets`] on the server `server_key` maps to, which may differ
    /// from the server of `key` (libmemcached's `*_by_key`, php-memcached's `getByKey`, and a
    /// namespace prefix that is not hashed).
    pub fn get_routed(&self, server_key: &[u8], key: &[u8], cas: bool) -> Result<Option<Item>> {
        let mut out = self.get_multi_routed(&[key], &[server_key], cas)?;
        out.pop()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
    }

    /// [`Client::store`] on the server `server_key` maps to.
    pub fn store_routed(
        &self,
        server_key: &[u8],
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<StoreOutcome> {
        let route = self.route()?;
        route.check_value(value)?;
        let req = Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply: false,
        };
        route.single(server_key, key, req, store_outcome)
    }

    /// [`Client::delete`] on the server `server_key` maps to.
    pub fn delete_routed(&self, server_key: &[u8], key: &[u8]) -> Result<bool> {
        let req = Request::Delete {
            key,
            noreply: false,
        };
        self.route()?.single(server_key, key, req, found)
    }

    /// [`Client::incr`] (`incr = true`) or [`Client::decr`] on the server `server_key` maps to.
    pub fn arith_routed(
        &self,
        server_key: &[u8],
        key: &[u8],
        incr: bool,
        delta: u64,
    ) -> Result<Option<u64>> {
        let req = Request::Arith {
            key,
            incr,
            delta,
            noreply: false,
        };
        self.route()?.single(server_key, key, req, arith_value)
    }

    /// [`Client::touch`] on the server `server_key` maps to.
    pub fn touch_routed(&self, server_key: &[u8], key: &[u8], exptime: u32) -> Result<bool> {
        let req = Request::Touch {
            key,
            exptime,
            noreply: false,
        };
        self.route()?.single(server_key, key, req, found)
    }

    /// [`Client::get_multi_opts`] where `keys[i]` is placed by `server_keys[i]`. The two slices
    /// must have the same length.
    pub fn get_multi_routed(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.route()?.get_multi_routed(keys, server_keys, cas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn client_is_send_and_sync() {
        assert_send_sync::<Client>();
    }

    #[test]
    fn op_names() {
        assert_eq!(Op::from_name("gets"), Some(Op::Get));
        assert_eq!(Op::from_name("cas"), Some(Op::Set));
        assert_eq!(Op::from_name("nope"), None);
    }
}
