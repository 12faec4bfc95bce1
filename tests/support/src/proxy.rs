//! A fault-injecting TCP proxy in front of one upstream server.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0`. Each accepted client
//! connection gets its own upstream connection and three threads:
//!
//! * client → upstream: reads client bytes and forwards them (or discards,
//!   resets, or answers with garbage, depending on the fault);
//! * upstream reader: reads server bytes, stamps each chunk with its arrival
//!   time and queues it (bounded queue);
//! * client writer: takes chunks off the queue and writes them to the client,
//!   applying delays, drip, truncation or black-holing.
//!
//! The fault is read per chunk, so [`FaultProxy::set_fault`] takes effect for
//! new data on existing connections as well as for new connections. A
//! "chunk" is what one `read` returned; for request/response traffic with
//! small replies that is one reply.
//!
//! All sockets have read timeouts (50 ms ticks, so threads notice shutdown)
//! and write timeouts (2 s); dropping the proxy closes the listener and every
//! connection and joins every thread.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::child::lock;
use crate::sys;

/// The bytes sent to the client for every chunk of client data under
/// [`Fault::Garbage`].
pub const GARBAGE: &[u8] = b"XYZZY\r\n";

/// Read-timeout tick: how quickly threads notice a stop request.
const TICK: Duration = Duration::from_millis(50);
/// Write timeout on every proxied socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout for connecting to the upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Chunks queued from upstream before the upstream reader blocks.
const QUEUE_DEPTH: usize = 64;

/// The behaviour of a [`FaultProxy`]. Switch it at any time with
/// [`FaultProxy::set_fault`].
///
/// Unless stated otherwise, a fault applies to data that arrives after it is
/// set, on both existing and new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Pass-through: bytes are forwarded both ways unchanged.
    #[default]
    None,
    /// Each server→client chunk is delivered no earlier than this long after
    /// the proxy received it from the server (a latency, not a throughput
    /// cap: chunks keep their order, and a chunk already waiting delays
    /// those queued behind it only up to their own due time).
    /// Client→server traffic is not delayed.
    Delay(Duration),
    /// Deterministic partial delay: server→client chunks are counted
    /// proxy-wide (all connections, starting at 1 when this fault is set) and
    /// every `every_nth`-th one (the `n`th, `2n`th, ...) is delayed like
    /// [`Fault::Delay`]; the others pass at once (but keep order behind a
    /// delayed chunk on the same connection). `every_nth == 0` delays none,
    /// `1` delays all. Useful to test hedged requests.
    DelayEveryNth {
        /// Delay for the selected chunks.
        delay: Duration,
        /// Which chunks: every `every_nth`-th.
        every_nth: usize,
    },
    /// Connections are accepted and client bytes are read and discarded;
    /// nothing is forwarded and nothing is answered (server bytes that
    /// arrive meanwhile, e.g. replies in flight, are discarded too). Clients
    /// see timeouts. If the upstream is down, a new connection is still
    /// accepted and held open.
    BlackHole,
    /// Each newly accepted connection is reset at once (`SO_LINGER` 0, then
    /// close → RST), before any upstream connect. Clients see their connect
    /// succeed, then `ECONNRESET` (or EOF) on the first read or write.
    /// Connections the proxy already accepted are unaffected (pass-through);
    /// a connect that has not yet been accepted when the fault is set (see
    /// [`FaultProxy::accepted`]) is reset.
    ResetOnAccept,
    /// The connection is reset (RST to the client, upstream closed) as soon
    /// as the client sends any bytes; those bytes are not forwarded.
    ResetOnData,
    /// Forward only the first `after` bytes of the server→client stream of
    /// each connection, then close it gracefully (FIN): the client reads a
    /// short reply, then EOF. Bytes are counted per connection from when the
    /// fault was set (or from accept, for later connections). `after: 0`
    /// closes on the first server chunk without forwarding any of it.
    Truncate {
        /// Bytes forwarded before the close.
        after: usize,
    },
    /// Client data is not forwarded; each chunk of it is answered with
    /// [`GARBAGE`] (`XYZZY\r\n`). Server bytes already in flight are still
    /// forwarded.
    Garbage,
    /// Server→client bytes are forwarded one byte at a time, waiting
    /// `interval` before each byte, so an `n`-byte reply takes at least
    /// `n × interval`. A change of fault takes effect at the next chunk.
    SlowDrip {
        /// Wait before each byte.
        interval: Duration,
    },
    /// The listening socket is closed, so new connects get `ECONNREFUSED`.
    /// Established connections (including ones still in the accept backlog
    /// when the fault is set) are unaffected (pass-through); use
    /// [`FaultProxy::reset_all`] as well to simulate a crashed server.
    /// Setting any other fault re-opens the listener on the same port.
    Refuse,
}

/// A command to the acceptor thread.
enum Ctl {
    /// Open (`true`) or close (`false`) the listener; the result is sent back.
    Listen(bool, mpsc::Sender<io::Result<()>>),
}

struct ProxyShared {
    upstream: String,
    /// The fault and its generation (incremented by every `set_fault`).
    fault: Mutex<(Fault, u64)>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    active: Arc<AtomicUsize>,
    /// Server→client chunks counted for [`Fault::DelayEveryNth`].
    nth: AtomicU64,
    conns: Mutex<Vec<Weak<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ProxyShared {
    fn fault(&self) -> (Fault, u64) {
        *lock(&self.fault)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn spawn(self: &Arc<Self>, name: &str, f: impl FnOnce() + Send + 'static) {
        match thread::Builder::new().name(name.into()).spawn(f) {
            Ok(h) => {
                let mut threads = lock(&self.threads);
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            Err(e) => eprintln!("fae-testkit proxy: cannot spawn thread: {e}"),
        }
    }
}

/// Decrements the active-connection count when the connection's sockets are
/// finally closed.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One proxied connection. The sockets close when the last thread drops its
/// `Arc<Conn>`.
struct Conn {
    client: TcpStream,
    upstream: Option<TcpStream>,
    stop: AtomicBool,
    _active: ActiveGuard,
}

impl Conn {
    fn stopped(&self, proxy: &ProxyShared) -> bool {
        self.stop.load(Ordering::SeqCst) || proxy.stopping()
    }

    /// Marks the connection stopped; `true` for the first caller only, so
    /// the first of [`Conn::reset`] / [`Conn::close`] decides how it ends.
    fn begin_end(&self) -> bool {
        !self.stop.swap(true, Ordering::SeqCst)
    }

    /// Ends the connection with an RST to the client.
    fn reset(&self) {
        if !self.begin_end() {
            return;
        }
        sys::set_linger_zero(&self.client);
        // Wakes our own blocked reader; sends nothing. The RST goes out when
        // the last thread drops the socket.
        let _ = self.client.shutdown(Shutdown::Read);
        if let Some(u) = &self.upstream {
            let _ = u.shutdown(Shutdown::Both);
        }
    }

    /// Ends the connection gracefully (FIN to the client).
    fn close(&self) {
        if !self.begin_end() {
            return;
        }
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(u) = &self.upstream {
            let _ = u.shutdown(Shutdown::Both);
        }
    }
}

/// A chunk for the client writer.
enum Item {
    /// Server bytes and when they arrived.
    Upstream(Instant, Vec<u8>),
    /// Bytes generated by the proxy ([`GARBAGE`]), written as they are.
    Injected(&'static [u8]),
    /// The upstream closed its side.
    Eof,
}

/// A fault-injecting TCP proxy; see the [module docs](self) and [`Fault`].
///
/// ```no_run
/// use fae_testkit::{raw, Fault, FaultProxy, Memcached};
/// let mc = Memcached::start();
/// let proxy = FaultProxy::start(&mc.addr());
/// proxy.set_fault(Fault::Refuse);
/// assert!(raw::Conn::connect(&proxy.addr()).unwrap_err().is_refused());
/// proxy.set_fault(Fault::None); // same port again
/// ```
pub struct FaultProxy {
    addr: String,
    port: u16,
    shared: Arc<ProxyShared>,
    ctl: mpsc::Sender<Ctl>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("fault", &self.fault())
            .field("accepted", &self.accepted())
            .field("active", &self.active())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a pass-through proxy on `127.0.0.1:<free port>` forwarding to
    /// `upstream` (`host:port`). The upstream need not be up: each client
    /// connection connects to it on accept (1 s timeout); if that fails the
    /// client connection is reset (except under [`Fault::BlackHole`]).
    ///
    /// # Panics
    /// If no listening socket can be opened.
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::try_start(upstream)
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start proxy: {e}"))
    }

    /// Like [`FaultProxy::start`] but returns errors instead of panicking.
    pub fn try_start(upstream: &str) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            fault: Mutex::new((Fault::None, 0)),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            active: Arc::new(AtomicUsize::new(0)),
            nth: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let (ctl, ctl_rx) = mpsc::channel();
        let sh = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fae-proxy-accept".into())
            .spawn(move || accept_loop(sh, Some(listener), port, ctl_rx))?;
        Ok(FaultProxy {
            addr: format!("127.0.0.1:{port}"),
            port,
            shared,
            ctl,
            acceptor: Some(acceptor),
        })
    }

    /// `"127.0.0.1:PORT"`: where clients should connect.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The listening port (kept across [`Fault::Refuse`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream address given to [`FaultProxy::start`].
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.shared.fault().0
    }

    /// Switches the fault; effective for the next chunk on every connection
    /// and for the next accept. Resets the [`Fault::DelayEveryNth`] counter.
    /// Switching to or from [`Fault::Refuse`] closes or re-opens the
    /// listener before returning (bounded: waits at most 2 s for the
    /// acceptor thread).
    ///
    /// # Panics
    /// If the listener cannot be re-opened on the same port (another process
    /// took it while refusing).
    pub fn set_fault(&self, fault: Fault) {
        {
            let mut f = lock(&self.shared.fault);
            f.0 = fault;
            f.1 += 1;
            self.shared.nth.store(0, Ordering::SeqCst);
        }
        let listen = fault != Fault::Refuse;
        let (tx, rx) = mpsc::channel();
        if self.ctl.send(Ctl::Listen(listen, tx)).is_err() {
            return;
        }
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "fae-testkit proxy: cannot re-open listener on {}: {e}",
                self.addr
            ),
            Err(_) => panic!("fae-testkit proxy: acceptor thread did not answer in 2 s"),
        }
    }

    /// Client connections accepted so far (including ones reset at once by
    /// [`Fault::ResetOnAccept`]).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Client connections currently open through the proxy. It drops shortly
    /// (within ~50 ms) after a connection ends; use
    /// [`wait_until`](crate::wait_until) to wait for it.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Resets (RST) every established client connection and closes its
    /// upstream connection. The listener and the fault are unchanged.
    pub fn reset_all(&self) {
        for c in lock(&self.shared.conns).iter().filter_map(Weak::upgrade) {
            c.reset();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in lock(&self.shared.conns).iter().filter_map(Weak::upgrade) {
            c.close();
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // Threads may register children while we join; drain until empty.
        loop {
            let next = lock(&self.shared.threads).pop();
            match next {
                Some(h) => {
                    let _ = h.join();
                }
                None => break,
            }
        }
    }
}

fn accept_loop(
    shared: Arc<ProxyShared>,
    mut listener: Option<TcpListener>,
    port: u16,
    ctl: mpsc::Receiver<Ctl>,
) {
    const POLL: Duration = Duration::from_millis(10);
    while !shared.stopping() {
        while let Ok(Ctl::Listen(on, reply)) = ctl.try_recv() {
            let res = if on && listener.is_none() {
                TcpListener::bind(("127.0.0.1", port))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map(|l| listener = Some(l))
            } else {
                if !on {
                    // Connections whose handshake already completed are
                    // taken over rather than reset with the listener.
                    if let Some(l) = listener.take() {
                        accept_pending(&shared, &l);
                    }
                }
                Ok(())
            };
            let _ = reply.send(res);
        }
        let Some(l) = &listener else {
            thread::sleep(POLL);
            continue;
        };
        if !sys::poll_readable(l.as_raw_fd(), POLL) {
            continue;
        }
        accept_pending(&shared, l);
    }
}

/// Accepts every connection waiting in the (non-blocking) listener's backlog.
fn accept_pending(shared: &Arc<ProxyShared>, l: &TcpListener) {
    loop {
        match l.accept() {
            Ok((stream, _)) => on_accept(shared, stream),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break, // WouldBlock, or a transient error
        }
    }
}

fn on_accept(shared: &Arc<ProxyShared>, client: TcpStream) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    if shared.fault().0 == Fault::ResetOnAccept {
        sys::set_linger_zero(&client);
        return; // dropped: RST
    }
    shared.active.fetch_add(1, Ordering::SeqCst);
    let guard = ActiveGuard(Arc::clone(&shared.active));
    let sh = Arc::clone(shared);
    shared.spawn("fae-proxy-conn", move || run_conn(sh, client, guard));
}

fn connect_upstream(addr: &str) -> io::Result<TcpStream> {
    let sa: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "upstream has no address"))?;
    TcpStream::connect_timeout(&sa, UPSTREAM_CONNECT_TIMEOUT)
}

fn configure(s: &TcpStream) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(TICK))?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))
}

/// Sets up one connection, then runs its client → upstream direction.
fn run_conn(shared: Arc<ProxyShared>, client: TcpStream, guard: ActiveGuard) {
    if shared.stopping() || configure(&client).is_err() {
        return;
    }
    let upstream = match connect_upstream(&shared.upstream).and_then(|u| configure(&u).map(|()| u))
    {
        Ok(u) => Some(u),
        Err(_) if shared.fault().0 == Fault::BlackHole => None,
        Err(_) => {
            sys::set_linger_zero(&client);
            return;
        }
    };
    let conn = Arc::new(Conn {
        client,
        upstream,
        stop: AtomicBool::new(false),
        _active: guard,
    });
    {
        let mut conns = lock(&shared.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&conn));
    }
    let (tx, rx) = mpsc::sync_channel::<Item>(QUEUE_DEPTH);
    if conn.upstream.is_some() {
        let (c, s, t) = (Arc::clone(&conn), Arc::clone(&shared), tx.clone());
        shared.spawn("fae-proxy-up", move || upstream_reader(s, c, t));
    }
    {
        let (c, s) = (Arc::clone(&conn), Arc::clone(&shared));
        shared.spawn("fae-proxy-down", move || client_writer(s, c, rx));
    }
    client_reader(&shared, &conn, tx);
}

/// Client → upstream.
fn client_reader(shared: &ProxyShared, conn: &Conn, tx: SyncSender<Item>) {
    let mut buf = vec![0u8; 16 * 1024];
    while !conn.stopped(shared) {
        let n = match (&conn.client).read(&mut buf) {
            Ok(0) => {
                // Client finished sending: pass the half-close on; replies
                // still flow until the upstream closes.
                if let Some(u) = &conn.upstream {
                    let _ = u.shutdown(Shutdown::Write);
                } else {
                    conn.close();
                }
                return;
            }
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {
                conn.reset();
                return;
            }
        };
        match shared.fault().0 {
            Fault::BlackHole => {}
            Fault::ResetOnData => {
                conn.reset();
                return;
            }
            Fault::Garbage => {
                if tx.send(Item::Injected(GARBAGE)).is_err() {
                    return;
                }
            }
            _ => {
                let ok = match &conn.upstream {
                    Some(u) => (&*u).write_all(&buf[..n]).is_ok(),
                    None => false,
                };
                if !ok {
                    conn.reset();
                    return;
                }
            }
        }
    }
}

/// Upstream → queue.
fn upstream_reader(shared: Arc<ProxyShared>, conn: Arc<Conn>, tx: SyncSender<Item>) {
    let Some(mut up) = conn.upstream.as_ref() else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    while !conn.stopped(&shared) {
        match up.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Item::Eof);
                return;
            }
            Ok(n) => {
                if tx
                    .send(Item::Upstream(Instant::now(), buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {
                conn.reset();
                return;
            }
        }
    }
}

/// Sleeps until `until`, in small steps; returns `false` if the connection
/// was stopped meanwhile.
fn sleep_until(shared: &ProxyShared, conn: &Conn, until: Instant) -> bool {
    loop {
        if conn.stopped(shared) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        thread::sleep((until - now).min(Duration::from_millis(10)));
    }
}

/// Queue → client, applying the server→client faults.
fn client_writer(shared: Arc<ProxyShared>, conn: Arc<Conn>, rx: mpsc::Receiver<Item>) {
    let mut client = &conn.client;
    let mut generation = u64::MAX;
    let mut truncated_sent = 0usize;
    while !conn.stopped(&shared) {
        let (at, data) = match rx.recv_timeout(TICK) {
            Ok(Item::Upstream(at, data)) => (at, data),
            Ok(Item::Injected(bytes)) => {
                if client.write_all(bytes).is_err() {
                    conn.reset();
                    return;
                }
                continue;
            }
            Ok(Item::Eof) => {
                conn.close();
                return;
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (fault, g) = shared.fault();
        if g != generation {
            generation = g;
            truncated_sent = 0;
        }
        let ok = match fault {
            Fault::BlackHole => true,
            Fault::Delay(d) => {
                if !sleep_until(&shared, &conn, at + d) {
                    return;
                }
                client.write_all(&data).is_ok()
            }
            Fault::DelayEveryNth { delay, every_nth } => {
                let k = shared.nth.fetch_add(1, Ordering::SeqCst) + 1;
                if every_nth > 0
                    && k.is_multiple_of(every_nth as u64)
                    && !sleep_until(&shared, &conn, at + delay)
                {
                    return;
                }
                client.write_all(&data).is_ok()
            }
            Fault::Truncate { after } => {
                let room = after.saturating_sub(truncated_sent);
                let n = room.min(data.len());
                if n > 0 && client.write_all(&data[..n]).is_err() {
                    conn.reset();
                    return;
                }
                truncated_sent += n;
                if truncated_sent >= after {
                    conn.close();
                    return;
                }
                true
            }
            Fault::SlowDrip { interval } => {
                let mut ok = true;
                for b in &data {
                    if !sleep_until(&shared, &conn, Instant::now() + interval) {
                        return;
                    }
                    if client.write_all(std::slice::from_ref(b)).is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Fault::None
            | Fault::ResetOnAccept
            | Fault::ResetOnData
            | Fault::Garbage
            | Fault::Refuse => client.write_all(&data).is_ok(),
        };
        if !ok {
            conn.reset();
            return;
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
