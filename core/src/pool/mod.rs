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
//! generation drops its idle connections (closing the child's copies of the fds: the parent's
//! sockets are unaffected) and forgets connections that were checked out by threads that do not
//! exist in the child.

pub mod conn;
pub mod fork;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

pub use conn::Conn;

use crate::error::{Error, Reason, Result};
use crate::protocol::{Decoder, Protocol};

/// How a destination dials and talks.
#[derive(Clone, Copy, Debug)]
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
}

/// One server address and its connections.
#[derive(Debug)]
pub struct Destination {
    addr: Arc<str>,
    host: String,
    port: u16,
    settings: ConnSettings,
    idle: ArrayQueue<Conn>,
    /// Connections that exist (idle + checked out) in this process generation.
    open: AtomicUsize,
    generation: AtomicU64,
}

impl Destination {
    /// A destination for `host:port`. Dials nothing.
    pub fn new(host: &str, port: u16, settings: ConnSettings) -> Destination {
        Destination {
            addr: Arc::from(format!("{host}:{port}")),
            host: host.to_string(),
            port,
            settings,
            idle: ArrayQueue::new(settings.max_connections.max(1)),
            open: AtomicUsize::new(0),
            generation: AtomicU64::new(fork::generation()),
        }
    }

    /// `host:port`.
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
        self.open.load(Ordering::Relaxed)
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.len()
    }

    /// In a forked child, forget the parent's connections.
    fn check_fork(&self) -> u64 {
        let current = fork::generation();
        if self.generation.load(Ordering::Acquire) != current
            && self.generation.swap(current, Ordering::AcqRel) != current
        {
            while self.idle.pop().is_some() {}
            self.open.store(0, Ordering::Release);
        }
        current
    }

    /// Take a connection: an idle one, or a new validated one if fewer than `max_connections`
    /// exist, or wait for one to come back until `deadline`.
    pub fn checkout(&self, deadline: Instant) -> Result<PooledConn<'_>> {
        let generation = self.check_fork();
        let mut spins = 0u32;
        loop {
            if let Some(conn) = self.idle.pop() {
                if conn.generation == generation {
                    return Ok(PooledConn {
                        dest: self,
                        conn: Some(conn),
                    });
                }
                continue; // a parent's connection: drop (close) it
            }
            let open = self.open.load(Ordering::Relaxed);
            if open < self.settings.max_connections {
                if self
                    .open
                    .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                // From here the slot is ours; the guard gives it back if dialling fails.
                let mut guard = PooledConn {
                    dest: self,
                    conn: None,
                };
                // `connect_ms` bounds the whole dial: TCP handshake plus validation. A stopped
                // server's kernel still completes handshakes; only validation notices it.
                let connect_deadline = deadline.min(Instant::now() + self.settings.connect_timeout);
                let mut conn = Conn::connect(
                    &self.host,
                    self.port,
                    self.settings.connect_timeout,
                    self.settings.io_timeout,
                    connect_deadline,
                    generation,
                )
                .map_err(|e| e.at(&self.addr))?;
                conn.validate(
                    self.settings.protocol,
                    &self.settings.decoder,
                    connect_deadline,
                )
                .map_err(|e| {
                    let reason = if e.reason() == Reason::Timeout {
                        Reason::ConnectTimeout
                    } else {
                        e.reason()
                    };
                    Error::with_detail(reason, format!("validating new connection: {e}"))
                        .at(&self.addr)
                })?;
                guard.conn = Some(conn);
                return Ok(guard);
            }
            // At the limit: wait for a connection to come back. Lock-free on purpose (fork
            // safety); this path only runs when more threads than `max_connections` use one
            // server at once.
            if Instant::now() >= deadline {
                return Err(Error::with_detail(
                    Reason::Timeout,
                    format!("all {} connections busy", self.settings.max_connections),
                )
                .at(&self.addr));
            }
            spins += 1;
            if spins < 16 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Close every idle connection now (used by `Client::close`).
    pub fn close_idle(&self) {
        while self.idle.pop().is_some() {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn release(&self, conn: Option<Conn>, keep: bool) {
        let current = fork::generation();
        match conn {
            Some(c) if c.generation != current => {} // a parent's connection: not counted here
            Some(c) if keep && c.is_clean() => {
                if let Err(c) = self.idle.push(c) {
                    drop(c);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                }
            }
            _ => {
                let _ = self
                    .open
                    .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }
}

/// A checked-out connection. Dropping it discards the connection; [`PooledConn::checkin`]
/// returns it to the pool if it is clean.
#[derive(Debug)]
pub struct PooledConn<'a> {
    dest: &'a Destination,
    /// `None` only while a new connection is being dialled.
    conn: Option<Conn>,
}

impl PooledConn<'_> {
    /// The connection.
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a PooledConn holds its connection until it is released")
    }

    /// The destination it belongs to.
    pub fn destination(&self) -> &Destination {
        self.dest
    }

    /// Return the connection to the pool (only if nothing is left unread or unsent).
    pub fn checkin(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let conn = this.conn.take();
        this.dest.release(conn, true);
    }
}

impl Drop for PooledConn<'_> {
    /// Discard: the connection (or, when dialling failed, its reserved slot) is given up.
    fn drop(&mut self) {
        self.dest.release(self.conn.take(), false);
    }
}
