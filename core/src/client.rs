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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::{Config, RouteConfig};
use crate::dist::Placement;
use crate::error::{Error, Reason, Result};
use crate::item::Item;
use crate::key;
use crate::pool::{ConnSettings, Destination, PooledConn, conn, fork};
use crate::protocol::{
    self, Decoder, Protocol, Request, Response, ServerErrorKind, Status, StoreOp,
};

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

/// One server's `stats` reply: `(name, value)` in the server's order.
pub type ServerStats = Vec<(String, String)>;

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
    placement: Placement,
    dests: Vec<Arc<Destination>>,
    protocol: Protocol,
    binary_keys: bool,
}

impl PoolRoute {
    fn dest_index(&self, key: &[u8]) -> usize {
        self.placement.pick(key)
    }
}

/// A memcached client with compatible placement and pooled connections.
#[derive(Debug)]
pub struct Client {
    pool: PoolRoute,
    io_timeout: Duration,
    max_value_size: usize,
    closed: AtomicBool,
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

impl Client {
    /// Build a client. Dials nothing: connections are made on first use.
    pub fn new(config: &Config) -> Result<Client> {
        fork::install();
        let RouteConfig::Pool { pool } = &config.route;
        let pc = config.pools.get(pool).ok_or_else(|| {
            Error::with_detail(
                Reason::InvalidConfig,
                format!("route: unknown pool \"{pool}\""),
            )
        })?;
        let placement = Placement::new(pc.mode, &pc.servers)
            .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("pools.{pool}: {e}")))?;
        let settings = ConnSettings {
            protocol: pc.protocol,
            connect_timeout: Duration::from_millis(config.timeouts.connect_ms),
            io_timeout: Duration::from_millis(config.timeouts.io_ms),
            max_connections: pc.max_connections,
            // Replies carry at most one value; leave room for memcached's own item overhead.
            decoder: Decoder {
                max_value_size: config.max_value_size.max(1024 * 1024),
            },
        };
        let dests = pc
            .servers
            .iter()
            .map(|n| Arc::new(Destination::new(&n.host, n.port, settings)))
            .collect();
        Ok(Client {
            pool: PoolRoute {
                placement,
                dests,
                protocol: pc.protocol,
                binary_keys: pc.binary_keys,
            },
            io_timeout: Duration::from_millis(config.timeouts.io_ms),
            max_value_size: config.max_value_size,
            closed: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::with_detail(Reason::Closed, "the client is closed"));
        }
        Ok(())
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        key::check(key, self.pool.binary_keys)
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

    /// Run one batch on one destination.
    fn exchange<B: Batch>(
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
            let _ = self.exchange(&self.pool.dests[*d], batch, deadline);
            return;
        }
        struct Slot<'c> {
            pc: PooledConn<'c>,
            work: usize,
            sending: bool,
        }
        let mut live: Vec<Slot<'_>> = Vec::with_capacity(work.len());
        for (i, (d, batch)) in work.iter_mut().enumerate() {
            let dest = &*self.pool.dests[*d];
            match dest.checkout(deadline) {
                Ok(mut pc) => {
                    batch.encode(dest.protocol(), &mut pc.conn().wbuf);
                    live.push(Slot {
                        pc,
                        work: i,
                        sending: true,
                    });
                }
                Err(e) => batch.fail(&e),
            }
        }
        // Write every batch first, then serve whichever connection is ready. Reading only
        // after poll reports data avoids a speculative recv (EAGAIN) per server per call.
        let mut i = live.len();
        while i > 0 {
            i -= 1;
            match live[i].pc.conn().try_send() {
                Ok(done) => live[i].sending = !done,
                Err(e) => {
                    let slot = live.swap_remove(i);
                    work[slot.work].1.fail(&e.at(slot.pc.destination().addr()));
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
                for s in live.drain(..) {
                    work[s.work]
                        .1
                        .fail(&e.clone().at(s.pc.destination().addr()));
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
                let batch = &mut work[slot.work].1;
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
                    Ok(true) => release(live.swap_remove(i).pc, true),
                    Err(e) => {
                        let slot = live.swap_remove(i);
                        batch.fail(&e.at(slot.pc.destination().addr()));
                    }
                }
            }
        }
    }

    /// Group `keys` by destination: `(destination index, positions in keys)`.
    fn group(&self, keys: impl Iterator<Item = (usize, usize)>) -> Vec<(usize, Vec<usize>)> {
        let mut by_dest: Vec<Vec<usize>> = vec![Vec::new(); self.pool.dests.len()];
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
        self.check_open()?;
        self.check_key(key)?;
        let dest = &self.pool.dests[self.pool.dest_index(key)];
        let mut batch = GetBatch::new(self.pool.protocol, cas, touch);
        batch.push(key, 0);
        self.exchange(dest, &mut batch, self.deadline())?;
        batch
            .results
            .pop()
            .flatten()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
    }

    /// Get a value. `Ok(None)` on a miss.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        self.fetch(key, false, None)
    }

    /// Get a value and its CAS token.
    pub fn gets(&self, key: &[u8]) -> Result<Option<Item>> {
        self.fetch(key, true, None)
    }

    /// Get a value and set its expiry (get-and-touch).
    pub fn gat(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.fetch(key, false, Some(exptime))
    }

    /// Get a value with its CAS token and set its expiry.
    pub fn gats(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        self.fetch(key, true, Some(exptime))
    }

    fn single<T>(
        &self,
        key: &[u8],
        req: Request<'_>,
        map: impl FnOnce(Response) -> Result<T>,
    ) -> Result<T> {
        self.check_open()?;
        self.check_key(key)?;
        let dest = &self.pool.dests[self.pool.dest_index(key)];
        let mut batch = OpsBatch::one(req);
        self.exchange(dest, &mut batch, self.deadline())?;
        let reply = batch
            .replies
            .pop()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
        reply.and_then(map).map_err(|e| {
            if e.destination().is_none() {
                e.at(dest.addr())
            } else {
                e
            }
        })
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
        self.check_value(value)?;
        let req = Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply: false,
        };
        self.single(key, req, store_outcome)
    }

    /// Store unconditionally.
    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<()> {
        match self.store(StoreOp::Set, key, value, flags, exptime)? {
            StoreOutcome::Stored => Ok(()),
            other => Err(Error::with_detail(
                Reason::Protocol,
                format!("set answered {other:?}"),
            )),
        }
    }

    /// Store only if absent. `Ok(false)` if the key exists.
    pub fn add(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Add, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// Store only if present. `Ok(false)` if the key is missing.
    pub fn replace(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Replace, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// Append to an existing value. `Ok(false)` if the key is missing.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Append, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// Prepend to an existing value. `Ok(false)` if the key is missing.
    pub fn prepend(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Prepend, key, value, 0, 0)? == StoreOutcome::Stored)
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
        self.store(StoreOp::Cas(cas), key, value, flags, exptime)
    }

    /// Delete a key. `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.single(
            key,
            Request::Delete {
                key,
                noreply: false,
            },
            found,
        )
    }

    /// Increment a decimal value by `delta` (wraps at 2^64). `Ok(None)` if the key is missing.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.single(
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

    /// Decrement a decimal value by `delta` (stops at 0). `Ok(None)` if the key is missing.
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.single(
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

    /// Set a key's expiry. `Ok(false)` if the key is missing.
    pub fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        self.single(
            key,
            Request::Touch {
                key,
                exptime,
                noreply: false,
            },
            found,
        )
    }

    /// Get many keys. The result is aligned with `keys`: `Ok(Some(item))` hit, `Ok(None)` miss,
    /// `Err` when that key's server failed. The outer `Err` is for caller errors (an invalid
    /// key, a closed client), detected before any I/O.
    pub fn get_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<Option<Item>>>> {
        self.get_multi_opts(keys, false, None)
    }

    /// [`Client::get_multi`] with CAS tokens (`cas`) and/or a new expiry for hits (`touch`).
    pub fn get_multi_opts(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.check_open()?;
        for k in keys {
            self.check_key(k)?;
        }
        let deadline = self.deadline();
        let groups = self.group(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (i, self.pool.dest_index(k))),
        );
        let mut work: Vec<(usize, GetBatch<'_>)> = groups
            .into_iter()
            .map(|(d, positions)| {
                let mut b = GetBatch::new(self.pool.protocol, cas, touch);
                for p in positions {
                    b.push(keys[p], p);
                }
                (d, b)
            })
            .collect();
        self.exchange_many(&mut work, deadline);
        let mut out: Vec<Result<Option<Item>>> = Vec::with_capacity(keys.len());
        out.resize_with(keys.len(), || Ok(None));
        for (_, b) in work {
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
        self.check_open()?;
        for i in 0..n {
            self.check_key(key_of(i))?;
        }
        let deadline = self.deadline();
        let groups = self.group((0..n).map(|i| (i, self.pool.dest_index(key_of(i)))));
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
            let addr = self.pool.dests[d].addr();
            for (slot, r) in b.slots.into_iter().zip(b.replies) {
                out[slot] = Some(r.and_then(&map).map_err(|e| {
                    if e.destination().is_none() {
                        e.at(addr)
                    } else {
                        e
                    }
                }));
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(Reason::Protocol))))
            .collect())
    }

    /// Store many items, pipelined per server. Aligned with `items`.
    pub fn set_multi(&self, items: &[SetItem<'_>]) -> Result<Vec<Result<StoreOutcome>>> {
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

    /// Delete many keys, pipelined per server. Aligned with `keys`: `Ok(true)` deleted,
    /// `Ok(false)` was not there.
    pub fn delete_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<bool>>> {
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
        self.check_open()?;
        let mut work: Vec<(usize, OpsBatch<'_>)> = (0..self.pool.dests.len())
            .map(|d| (d, OpsBatch::one(req)))
            .collect();
        self.exchange_many(&mut work, self.deadline());
        Ok(work
            .into_iter()
            .map(|(d, mut b)| {
                let addr = self.pool.dests[d].addr();
                let r = b
                    .replies
                    .pop()
                    .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
                (
                    addr.to_string(),
                    r.and_then(&map).map_err(|e| {
                        if e.destination().is_none() {
                            e.at(addr)
                        } else {
                            e
                        }
                    }),
                )
            })
            .collect())
    }

    /// `flush_all` on every server (after `delay` seconds). Fails with the first server error,
    /// after every server was asked.
    pub fn flush_all(&self, delay: u32) -> Result<()> {
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

    /// Each server's version string, in config order.
    pub fn version(&self) -> Result<Vec<(String, Result<String>)>> {
        self.all_servers(Request::Version, |resp| match resp {
            Response::Version(v) => Ok(v),
            other => Err(unexpected(&other)),
        })
    }

    /// The servers (`host:port`) a request for `key` would touch, without any I/O.
    pub fn route_for(&self, op: Op, key: &[u8]) -> Result<Vec<String>> {
        let _ = op; // one pool: every operation goes to the key's server
        self.check_key(key)?;
        Ok(vec![
            self.pool.dests[self.pool.dest_index(key)]
                .addr()
                .to_string(),
        ])
    }

    /// Every destination's address, in config order.
    pub fn servers(&self) -> Vec<String> {
        self.pool
            .dests
            .iter()
            .map(|d| d.addr().to_string())
            .collect()
    }

    /// Open and idle connections per destination: `(addr, open, idle)`.
    pub fn connection_counts(&self) -> Vec<(String, usize, usize)> {
        self.pool
            .dests
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

    /// Close the client: later calls fail with `closed`; idle connections are closed now and
    /// connections in use are closed when their requests finish.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for d in &self.pool.dests {
            d.close_idle();
        }
    }

    /// Has [`Client::close`] been called?
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Build a client whose keys are placed by `placement` instead of the route's pool mode
    /// (for a binding that mirrors libmemcached's option state, see
    /// [`Placement::libmemcached_behavior`]). `placement` must have been built from the
    /// servers of the routed pool, in config order.
    pub fn with_placement(config: &Config, placement: Placement) -> Result<Client> {
        let mut client = Client::new(config)?;
        if placement.len() != client.pool.dests.len() {
            return Err(Error::with_detail(
                Reason::InvalidConfig,
                format!(
                    "placement has {} servers; the pool has {}",
                    placement.len(),
                    client.pool.dests.len()
                ),
            ));
        }
        client.pool.placement = placement;
        Ok(client)
    }

    /// The destination index `server_key` maps to (checked like a key).
    fn routed_index(&self, server_key: &[u8]) -> Result<usize> {
        self.check_open()?;
        self.check_key(server_key)?;
        Ok(self.pool.dest_index(server_key))
    }

    fn single_routed<T>(
        &self,
        server_key: &[u8],
        key: &[u8],
        req: Request<'_>,
        map: impl FnOnce(Response) -> Result<T>,
    ) -> Result<T> {
        let d = self.routed_index(server_key)?;
        self.check_key(key)?;
        let dest = &self.pool.dests[d];
        let mut batch = OpsBatch::one(req);
        self.exchange(dest, &mut batch, self.deadline())?;
        let reply = batch
            .replies
            .pop()
            .unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
        reply.and_then(map).map_err(|e| {
            if e.destination().is_none() {
                e.at(dest.addr())
            } else {
                e
            }
        })
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
        self.check_value(value)?;
        let req = Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply: false,
        };
        self.single_routed(server_key, key, req, store_outcome)
    }

    /// [`Client::delete`] on the server `server_key` maps to.
    pub fn delete_routed(&self, server_key: &[u8], key: &[u8]) -> Result<bool> {
        let req = Request::Delete {
            key,
            noreply: false,
        };
        self.single_routed(server_key, key, req, found)
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
        self.single_routed(server_key, key, req, arith_value)
    }

    /// [`Client::touch`] on the server `server_key` maps to.
    pub fn touch_routed(&self, server_key: &[u8], key: &[u8], exptime: u32) -> Result<bool> {
        let req = Request::Touch {
            key,
            exptime,
            noreply: false,
        };
        self.single_routed(server_key, key, req, found)
    }

    /// [`Client::get_multi_opts`] where `keys[i]` is placed by `server_keys[i]`. The two slices
    /// must have the same length.
    pub fn get_multi_routed(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.check_open()?;
        if keys.len() != server_keys.len() {
            return Err(Error::with_detail(
                Reason::InvalidArgument,
                "get_multi_routed: keys and server_keys differ in length",
            ));
        }
        for (k, s) in keys.iter().zip(server_keys) {
            self.check_key(k)?;
            self.check_key(s)?;
        }
        let deadline = self.deadline();
        let groups = self.group(
            server_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (i, self.pool.dest_index(k))),
        );
        let mut work: Vec<(usize, GetBatch<'_>)> = groups
            .into_iter()
            .map(|(d, positions)| {
                let mut b = GetBatch::new(self.pool.protocol, cas, None);
                for p in positions {
                    b.push(keys[p], p);
                }
                (d, b)
            })
            .collect();
        self.exchange_many(&mut work, deadline);
        let mut out: Vec<Result<Option<Item>>> = Vec::with_capacity(keys.len());
        out.resize_with(keys.len(), || Ok(None));
        for (_, b) in work {
            for (slot, r) in b.slots.into_iter().zip(b.results) {
                out[slot] = r.unwrap_or_else(|| Err(Error::new(Reason::Protocol)));
            }
        }
        Ok(out)
    }

    /// memcached's own `stats` (or `stats <group>`, e.g. `items`, `slabs`, `settings`) from
    /// every server, in config order: `(addr, [(name, value)])`. Runs on a fresh connection
    /// per server (an admin call, never on the request path), under the io timeout.
    pub fn server_stats(
        &self,
        group: Option<&str>,
    ) -> Result<Vec<(String, Result<ServerStats>)>> {
        self.check_open()?;
        if let Some(g) = group
            && (g.is_empty() || !g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(Error::with_detail(
                Reason::InvalidArgument,
                format!("stats group {g:?}: letters, digits and '_' only"),
            ));
        }
        Ok(self
            .pool
            .dests
            .iter()
            .map(|d| {
                let addr = d.addr();
                let r = crate::admin::stats(addr, group, self.io_timeout).map_err(|e| e.at(addr));
                (addr.to_string(), r)
            })
            .collect())
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
