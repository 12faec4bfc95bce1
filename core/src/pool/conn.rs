//! One connection to one server: a socket (TCP or Unix-domain stream, see [`Stream`]), a read
//! buffer, a write buffer. Both kinds of socket share every send/recv/poll path below: they
//! are only ever touched through their fd.
//!
//! The socket stays in blocking mode with `SO_RCVTIMEO` set well short of the request deadline
//! (`io_ms`, see `blocking_wait`). The first wait for a reply is one blocking `recv`: a
//! single-key request costs two syscalls (`send`, `recv`), as with a blocking libmemcached. Every other read and write passes
//! `MSG_DONTWAIT` and waits in `poll(2)` against the request's deadline, so a reply that
//! trickles in can never stretch a request past its deadline, and the multi-server `poll(2)`
//! loop (the exchange engine) drives the same sockets without switching their mode.
//!
//! A `Conn` that saw any error, or a timeout in the middle of a reply, is dropped by its owner
//! (see [`super::PooledConn`]): bytes of an unread reply could otherwise be taken for the answer
//! to the next request.
//!
//! TLS (config `tls`) is a layer inside `Conn`, not another kind of socket: the same fd is
//! polled, the same `send`/`recv` calls move TLS records instead of plain bytes, and rustls sits
//! between them and the buffers. A fill hands *all* plaintext rustls decrypted to the read
//! buffer at once, so nothing ever waits inside rustls while `poll(2)` waits on the socket:
//! every route, probe, heartbeat and hedge runs unchanged over TLS.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Reason, Result};
use crate::process::fork;
use crate::protocol::{
    self, Decoder, InPlace, Protocol, Request, Response, ServerErrorKind, Status,
};
use crate::tls::{Auth, Security};

/// Read buffer size a connection starts with and shrinks back to after a large value.
const READ_CHUNK: usize = 16 * 1024;

/// A connection and its buffers.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    /// Always fully initialised up to `buf.len()`; bytes `start..end` are unread.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Start of the decoded replies kept in `buf` ([`Conn::hold`]): values a multi-get hands
    /// out in place once its reply is complete.
    held: Option<usize>,
    /// Bytes to send; `sent` of them are already written.
    pub(crate) wbuf: Vec<u8>,
    sent: usize,
    pub(crate) created: Instant,
    /// When a request last used the connection (idle time for `max_idle` counts from here).
    pub(crate) last_used: Instant,
    /// When a request or a heartbeat last proved the connection alive.
    pub(crate) last_checked: Instant,
    /// Recycle once this old (jittered per connection); `None`: never.
    pub(crate) max_age: Option<Duration>,
    pub(crate) generation: u64,
    /// The `SO_RCVTIMEO` set at connect ([`blocking_wait`]); `None`: never block in `recv`.
    read_timeout: Option<Duration>,
    /// Bytes moved since the destination last collected them (stats; TLS: record bytes).
    bytes_sent: u64,
    bytes_received: u64,
    /// The TLS session, when the pool has `tls`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Set once the connection was validated: a TLS error before is a failed handshake
    /// (`tls_failed`), after it a broken stream (`protocol`).
    pub(crate) ready: bool,
    /// The next meta opaque this connection sends ([`Conn::take_opaques`]).
    next_opaque: u32,
}

/// `send(2)`/`recv(2)` on a borrowed fd with fixed flags, as the `Read`/`Write` rustls moves
/// TLS records through.
struct FdIo {
    fd: i32,
    flags: libc::c_int,
}

impl io::Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes for the
        // whole call; recv writes at most that many.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), self.flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl io::Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, initialised buffer of `buf.len()` bytes for the whole call;
        // MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
        let n = unsafe {
            libc::send(
                self.fd,
                buf.as_ptr().cast(),
                buf.len(),
                self.flags | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// All queued TLS records in one `sendmsg(2)` (rustls keeps one buffer per record: a large
    /// value is many records).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on Unix (documented); sendmsg only reads them.
        msg.msg_iov = bufs.as_ptr().cast_mut().cast();
        msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
        // SAFETY: `msg` points at `msg_iovlen` live iovecs borrowed for the whole call; no
        // name or control data.
        let n = unsafe { libc::sendmsg(self.fd, &msg, self.flags | libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rustls failure as an error: before the connection was validated, a failed handshake
/// (`tls_failed`: not retried, the settings must change); afterwards a broken stream.
fn tls_error(e: &rustls::Error, ready: bool) -> Error {
    if ready {
        return Error::with_detail(Reason::Protocol, format!("TLS: {e}"));
    }
    let hint = match e {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            " (does the server speak TLS? memcached needs -Z)"
        }
        rustls::Error::AlertReceived(_) => " (the server rejected the handshake)",
        _ => "",
    };
    Error::with_detail(Reason::TlsFailed, format!("TLS handshake: {e}{hint}"))
}

/// A connected socket: TCP, or a Unix-domain stream socket for a server given as a path.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (`TCP_NODELAY` set).
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
}

impl Stream {
    /// Dial `host:port`, or the socket at `host` when it is a path (port ignored), within
    /// `connect_timeout` and `deadline`.
    pub fn dial(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Stream> {
        if let Some(path) = crate::addr::unix_path(host) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::with_detail(
                    Reason::ConnectTimeout,
                    "deadline passed before connect",
                ));
            }
            return connect_unix(path, connect_timeout.min(left))
                .map(|s| Stream::Unix(s).tracked());
        }
        let mut last = Error::new(Reason::ConnectFailed);
        for addr in resolve(host, port)? {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::with_detail(
                    Reason::ConnectTimeout,
                    "deadline passed before connect",
                ));
            }
            match TcpStream::connect_timeout(&addr, connect_timeout.min(left)) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(|e| io_error(&e))?;
                    return Ok(Stream::Tcp(stream).tracked());
                }
                Err(e) => last = connect_error(&addr.to_string(), &e),
            }
        }
        Err(last)
    }

    /// Listed for forked children to let go of ([`fork::track`]) until it is dropped.
    fn tracked(self) -> Stream {
        fork::track(self.fd());
        self
    }

    /// The raw file descriptor, for `send`/`recv`/`poll(2)`.
    pub fn fd(&self) -> i32 {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// `SO_RCVTIMEO`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// `SO_SNDTIMEO`.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    /// The local TCP address; `None` for a Unix-domain socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }
}

impl Drop for Stream {
    /// Off the fork list before the socket closes (the fields drop after this).
    fn drop(&mut self) {
        fork::untrack(self.fd());
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A failed connect to `what` (an address or a socket path) as a connect error.
fn connect_error(what: &str, e: &io::Error) -> Error {
    let reason = match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Reason::ConnectTimeout,
        io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
        _ => Reason::ConnectFailed,
    };
    Error::with_detail(reason, format!("connect {what}: {e}"))
}

/// Connect a Unix-domain stream socket to `path` within `timeout`. Linux bounds a blocking
/// `connect(2)` on a Unix socket by `SO_SNDTIMEO` (it waits only when the listener's backlog
/// is full, e.g. a stopped server): the wait then ends in `EAGAIN`, a connect timeout. A
/// missing file is `ENOENT`, a file nobody listens on `ECONNREFUSED`, no permission `EACCES`:
/// each a connect error naming the path.
fn connect_unix(path: &str, timeout: Duration) -> Result<UnixStream> {
    let fail = |e: io::Error| connect_error(path, &e);
    // SAFETY: a plain socket(2) call; the returned fd is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh socket nobody else owns; the stream closes it on every path.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    stream
        .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(fail)?;
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return Err(Error::with_detail(
            Reason::ConnectFailed,
            format!(
                "connect {path}: a socket path has at most {} bytes",
                sa.sun_path.len() - 1
            ),
        ));
    }
    for (d, &b) in sa.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    loop {
        // SAFETY: `sa` is a valid sockaddr_un that outlives the call and `len` covers its
        // family, the path and the terminating NUL within the struct.
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(fail(e));
        }
    }
}

/// The `SO_RCVTIMEO` for a request deadline of `io`: a blocking `recv` must end before the
/// deadline, because only `poll(2)` waits precisely. A socket timeout runs on the kernel's timer
/// wheel, which fires a timeout of T up to T/8 late (plus a jiffy): 250 ms at `HZ=250` is 63
/// jiffies + 1, level 1 of the wheel, 32 ms granularity — the 13–16 % by which requests
/// outlived a 250 ms deadline when a stopped server made every first wait time out. Waiting
/// 7/8 of `io` less 10 ms in `recv` and the rest in `poll(2)` keeps the deadline exact. `None`
/// when that leaves less than a millisecond (tiny `io_ms`): always poll.
fn blocking_wait(io: Duration) -> Option<Duration> {
    let t = (io / 8 * 7).saturating_sub(Duration::from_millis(10));
    (t >= Duration::from_millis(1)).then_some(t)
}

/// What a readiness wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    Read,
    Write,
}

/// Map an I/O error to a failure reason.
pub(crate) fn io_error(e: &io::Error) -> Error {
    let reason = match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::NotConnected => Reason::Reset,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Reason::Timeout,
        _ => Reason::Io,
    };
    Error::with_detail(reason, e.to_string())
}

/// Resolve `host:port`; a bracketed IPv6 host loses its brackets for the lookup.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<SocketAddr> = (h, port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::with_detail(Reason::ConnectFailed, format!("cannot resolve {host}: {e}"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::with_detail(
            Reason::ConnectFailed,
            format!("{host} resolves to no address"),
        ));
    }
    Ok(addrs)
}

/// Is `resp` memcached's answer to the validation request: meta `mn` → `MN`, text `version`
/// → `VERSION …`? A login-requiring server's refusal is `auth_failed`.
pub(crate) fn check_validation(protocol: Protocol, resp: Response) -> Result<()> {
    match (protocol, resp) {
        (Protocol::Meta, Response::End) | (Protocol::Text, Response::Version(_)) => Ok(()),
        (
            _,
            Response::Error {
                kind: ServerErrorKind::ClientError,
                message,
            },
        ) if message.contains("unauthenticated") => Err(Error::with_detail(
            Reason::AuthFailed,
            "the server requires a login (memcached -Y): configure \"auth\"",
        )),
        (_, other) => Err(Error::with_detail(
            Reason::Protocol,
            format!("validation: unexpected reply {other:?}"),
        )),
    }
}

/// Wait until `fd` is ready for `want` or `deadline` passes (then `Timeout`).
pub(crate) fn wait(fd: i32, want: Want, deadline: Instant) -> Result<()> {
    let events = match want {
        Want::Read => libc::POLLIN,
        Want::Write => libc::POLLOUT,
    };
    let mut pfd = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    poll(&mut pfd, deadline).map(|_| ())
}

/// `poll(2)` over `fds` until one is ready or `deadline` passes. Returns how many are ready;
/// never returns 0 (that is a `Timeout` error).
pub(crate) fn poll(fds: &mut [libc::pollfd], deadline: Instant) -> Result<usize> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(Reason::Timeout));
        }
        // ppoll takes a timespec: a sub-millisecond wait (a hedge after 0.3 ms) is kept as
        // such, where poll(2) would round it up to a whole millisecond.
        let left = (deadline - now).min(Duration::from_secs(i32::MAX as u64));
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` for the whole call,
        // its length is passed alongside it, `ts` lives across the call, and a null signal
        // mask leaves the thread's mask as it is.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n > 0 {
            return Ok(n as usize);
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io_error(&e));
            }
        }
    }
}

impl Conn {
    /// Dial `host:port` (or the Unix-domain socket at `host`, a path) within
    /// `connect_timeout` (and `deadline`); TCP gets `TCP_NODELAY`. The socket stays blocking (see
    /// the module doc). With `security.tls` the TLS handshake runs too, by `deadline`; the
    /// caller logs in ([`Conn::login`]) and validates the connection before first use.
    pub fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        read_timeout: Duration,
        deadline: Instant,
        generation: u64,
        security: &Security,
    ) -> Result<Box<Conn>> {
        // A TLS session is made before dialling: a bad server name fails without a socket.
        let tls = match &security.tls {
            Some(t) => {
                let mut session = t.session(host)?;
                // The write buffer is ours (`wbuf`); rustls may queue a whole batch at once.
                session.set_buffer_limit(None);
                Some(Box::new(session))
            }
            None => None,
        };
        let stream = Stream::dial(host, port, connect_timeout, deadline)?;
        let read_timeout = blocking_wait(read_timeout);
        stream
            .set_read_timeout(Some(read_timeout.unwrap_or(Duration::from_millis(1))))
            .map_err(|e| io_error(&e))?;
        // Boxed: a connection moves through the idle queue and its guards on every request,
        // and a pointer moves in one instruction where the struct (over 200 bytes) took a memcpy.
        let mut conn = Box::new(Conn {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            held: None,
            wbuf: Vec::with_capacity(1024),
            sent: 0,
            created: Instant::now(),
            last_used: Instant::now(),
            last_checked: Instant::now(),
            max_age: None,
            generation,
            read_timeout,
            bytes_sent: 0,
            bytes_received: 0,
            tls,
            ready: false,
            next_opaque: 0,
        });
        if conn.tls.is_some() {
            conn.handshake(deadline)?;
        }
        Ok(conn)
    }

    /// Drive the TLS handshake to its end before `deadline`.
    fn handshake(&mut self, deadline: Instant) -> Result<()> {
        let fd = self.stream.fd();
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let mut io = FdIo {
            fd,
            flags: libc::MSG_DONTWAIT,
        };
        while tls.is_handshaking() {
            if tls.wants_write() {
                match tls.write_tls(&mut io) {
                    Ok(n) => self.bytes_sent += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait(fd, Want::Write, deadline)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error(&e)),
                }
                continue;
            }
            match tls.read_tls(&mut io) {
                Ok(0) => {
                    return Err(Error::with_detail(
                        Reason::TlsFailed,
                        "TLS handshake: the server closed the connection (does it speak TLS? memcached needs -Z)",
                    ));
                }
                Ok(n) => {
                    self.bytes_received += n as u64;
                    if let Err(e) = tls.process_new_packets() {
                        // Tell the server why (an alert), best effort.
                        let _ = tls.write_tls(&mut io);
                        return Err(tls_error(&e, false));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(fd, Want::Read, deadline).map_err(|e| {
                        if e.reason() == Reason::Timeout {
                            Error::with_detail(
                                Reason::ConnectTimeout,
                                "TLS handshake: no answer in time (does the server speak TLS? memcached needs -Z)",
                            )
                        } else {
                            e
                        }
                    })?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&e)),
            }
        }
        Ok(())
    }

    /// Whether this connection's TLS session was resumed (an abbreviated handshake);
    /// `None` without TLS.
    pub fn tls_resumed(&self) -> Option<bool> {
        self.tls
            .as_ref()
            .map(|t| t.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// memcached's text-protocol login (`memcached -Y`), before the connection is validated.
    /// A `version` first asks whether the server wants one: only a server that answers
    /// `CLIENT_ERROR unauthenticated` is sent the credentials (a server without `-Y` would
    /// store them as an ordinary item). A rejected login is `auth_failed`.
    pub fn login(&mut self, auth: &Auth, decoder: &Decoder, deadline: Instant) -> Result<()> {
        self.wbuf.clear();
        protocol::encode(Protocol::Text, &Request::Noop, &mut self.wbuf);
        self.send(deadline)?;
        match self.recv(decoder, deadline)? {
            Response::Version(_) => return Ok(()),
            Response::Error {
                kind: ServerErrorKind::ClientError,
                ..
            } => {}
            other => {
                return Err(Error::with_detail(
                    Reason::Protocol,
                    format!("login: unexpected reply {other:?}"),
                ));
            }
        }
        auth.login_request(&mut self.wbuf);
        let sent = self.send(deadline);
        // The request held the password: overwrite it, not just forget it.
        let cap = self.wbuf.capacity();
        self.wbuf.clear();
        self.wbuf.resize(cap, 0);
        self.wbuf.clear();
        sent?;
        match self.recv(decoder, deadline)? {
            Response::Status {
                status: Status::Success,
                ..
            } => Ok(()),
            Response::Error {
                kind: ServerErrorKind::ClientError,
                message,
            } if message.contains("auth") => Err(Error::with_detail(
                Reason::AuthFailed,
                format!(
                    "the server rejected the login of user \"{}\" ({message})",
                    auth.username()
                ),
            )),
            other => Err(Error::with_detail(
                Reason::Protocol,
                format!(
                    "login: unexpected reply {}",
                    match other {
                        Response::Error { kind, .. } => format!("{kind:?}"),
                        o => format!("{o:?}"),
                    }
                ),
            )),
        }
    }

    /// Prove the server speaks memcached before the connection is used (memcached's own proxy
    /// does the same with `version`): meta `mn` → `MN`, text `version` → `VERSION …`. A
    /// listener that accepts but never answers fails here, not on a user's request.
    pub fn validate(
        &mut self,
        protocol: Protocol,
        decoder: &Decoder,
        deadline: Instant,
    ) -> Result<()> {
        self.send_validation(protocol, deadline)?;
        self.validation_answer(protocol, decoder, deadline)?
            .ok_or_else(|| Error::new(Reason::Timeout))
    }

    /// [`Conn::validate`]'s first half: send `mn` (meta) or `version` (text).
    pub(crate) fn send_validation(&mut self, protocol: Protocol, deadline: Instant) -> Result<()> {
        self.wbuf.clear();
        protocol::encode(protocol, &Request::Noop, &mut self.wbuf);
        self.send(deadline)
    }

    /// [`Conn::validate`]'s second half: the answer, checked, if it comes by `until`; `None`
    /// if it has not (a heartbeat that must not hold up its caller collects it later).
    pub(crate) fn validation_answer(
        &mut self,
        protocol: Protocol,
        decoder: &Decoder,
        until: Instant,
    ) -> Result<Option<()>> {
        loop {
            if let Some(resp) = self.try_decode(decoder)? {
                return check_validation(protocol, resp).map(Some);
            }
            if !self.try_fill()? {
                match wait(self.fd(), Want::Read, until) {
                    Ok(()) => {}
                    Err(e) if e.reason() == Reason::Timeout => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// `n` consecutive meta opaques (the first is returned), none sent on this connection in
    /// its last 2^32 − `n`: a reply naming another one answers an earlier request.
    pub(crate) fn take_opaques(&mut self, n: usize) -> u32 {
        let first = self.next_opaque;
        // A batch holds far fewer than 2^32 keys: the count fits.
        self.next_opaque = first.wrapping_add(n as u32);
        first
    }

    /// Bytes sent and received since the last call (for the destination's counters).
    pub(crate) fn take_byte_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.bytes_sent),
            std::mem::take(&mut self.bytes_received),
        )
    }

    /// How long ago the connection was made.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// The local TCP address of the socket; `None` for a Unix-domain socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr()
    }

    /// The raw file descriptor, for `poll(2)`.
    pub(crate) fn fd(&self) -> i32 {
        self.stream.fd()
    }

    /// Write what is left of `wbuf` without blocking. `Ok(true)` when all of it is written.
    pub(crate) fn try_send(&mut self) -> Result<bool> {
        if self.tls.is_some() {
            return self.try_send_tls();
        }
        while self.sent < self.wbuf.len() {
            let rest = &self.wbuf[self.sent..];
            // SAFETY: `rest` is a live, initialised buffer of `rest.len()` bytes for the whole
            // call; MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                self.sent += n as usize;
                self.bytes_sent += n as u64;
                continue;
            }
            if n == 0 {
                return Err(Error::with_detail(
                    Reason::Reset,
                    "connection closed while sending",
                ));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(false),
                io::ErrorKind::Interrupted => {}
                _ => return Err(io_error(&e)),
            }
        }
        self.wbuf.clear();
        self.sent = 0;
        Ok(true)
    }

    /// [`Conn::try_send`] over TLS: all of `wbuf` is handed to rustls at once (`sent` then
    /// equals its length), then its records are written until the socket would block.
    fn try_send_tls(&mut self) -> Result<bool> {
        let fd = self.stream.fd();
        let ready = self.ready;
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        if self.sent < self.wbuf.len() {
            use io::Write;
            tls.writer()
                .write_all(&self.wbuf[self.sent..])
                .map_err(|e| io_error(&e))?;
            self.sent = self.wbuf.len();
        }
        let mut io = FdIo {
            fd,
            flags: libc::MSG_DONTWAIT,
        };
        while tls.wants_write() {
            match tls.write_tls(&mut io) {
                Ok(0) => {
                    return Err(Error::with_detail(
                        Reason::Reset,
                        "connection closed while sending",
                    ));
                }
                Ok(n) => self.bytes_sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if !ready && e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(Error::with_detail(
                        Reason::TlsFailed,
                        format!("TLS: the server closed the connection ({e})"),
                    ));
                }
                Err(e) => return Err(io_error(&e)),
            }
        }
        self.wbuf.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Write all of `wbuf` before `deadline`.
    pub fn send(&mut self, deadline: Instant) -> Result<()> {
        while !self.try_send()? {
            wait(self.fd(), Want::Write, deadline)?;
        }
        Ok(())
    }

    /// Make room at the end of the read buffer. Held replies ([`Conn::hold`]) move with the
    /// unread bytes.
    fn make_room(&mut self) {
        let keep = self.held.unwrap_or(self.start);
        if keep == self.end {
            self.start = 0;
            self.end = 0;
            self.held = self.held.map(|_| 0);
            if self.buf.len() > 4 * READ_CHUNK {
                // A large value grew the buffer: give the memory back now it is consumed.
                self.buf = vec![0; READ_CHUNK];
            }
        } else if self.end == self.buf.len() {
            if keep > 0 {
                self.buf.copy_within(keep..self.end, 0);
                self.end -= keep;
                self.start -= keep;
                self.held = self.held.map(|_| 0);
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
    }

    /// Keep the replies decoded from now on in the buffer (until [`Conn::unhold`]), so that
    /// [`Conn::try_decode_in_place`]'s ranges into [`Conn::held`] stay valid.
    pub(crate) fn hold(&mut self) {
        if self.held.is_none() {
            self.held = Some(self.start);
        }
    }

    /// The replies decoded since [`Conn::hold`].
    pub(crate) fn held(&self) -> &[u8] {
        match self.held {
            Some(h) => &self.buf[h..self.start],
            None => &[],
        }
    }

    /// Whether replies are held.
    pub(crate) fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Let the held replies go: their room is reused.
    pub(crate) fn unhold(&mut self) {
        self.held = None;
    }

    /// One `recv` into the free end of the buffer. `Ok(true)` if bytes arrived, `Ok(false)` if
    /// none were there (non-blocking) or the socket timeout passed (blocking); end of stream is
    /// a `Reset` error.
    fn fill(&mut self, flags: libc::c_int) -> Result<bool> {
        if self.tls.is_some() {
            return self.fill_tls(flags);
        }
        self.make_room();
        loop {
            let spare = &mut self.buf[self.end..];
            // SAFETY: `spare` is a live, initialised, exclusively borrowed buffer of
            // `spare.len()` bytes for the whole call; recv writes at most that many.
            let n = unsafe {
                libc::recv(
                    self.stream.fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    flags,
                )
            };
            if n > 0 {
                self.end += n as usize;
                self.bytes_received += n as u64;
                return Ok(true);
            }
            if n == 0 {
                return Err(Error::with_detail(
                    Reason::Reset,
                    "connection closed by server",
                ));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(false),
                io::ErrorKind::Interrupted => {}
                _ => return Err(io_error(&e)),
            }
        }
    }

    /// Move every plaintext byte rustls holds into the read buffer. `Ok(true)` if any moved;
    /// the server's TLS close is a `Reset`.
    fn drain_plaintext(&mut self) -> Result<bool> {
        use io::Read;
        let mut moved = false;
        loop {
            self.make_room();
            let Some(tls) = self.tls.as_mut() else {
                return Ok(moved);
            };
            match tls.reader().read(&mut self.buf[self.end..]) {
                Ok(0) if !moved => {
                    return Err(Error::with_detail(
                        Reason::Reset,
                        "connection closed by server (TLS close)",
                    ));
                }
                Ok(0) => return Ok(true),
                Ok(n) => {
                    self.end += n;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(Error::with_detail(
                        Reason::Reset,
                        "connection closed by server",
                    ));
                }
                Err(e) => return Err(io_error(&e)),
            }
        }
    }

    /// [`Conn::fill`] over TLS: read TLS records (the first `recv` with `flags`, the rest
    /// without waiting) until some plaintext came out of them, or the socket is empty, and hand
    /// all of it to the read buffer. Stopping at the first plaintext saves the `recv` that would
    /// only say "nothing more" (a single-key reply is one record); what is still in the socket
    /// wakes `poll(2)`, and no plaintext is ever left inside rustls.
    fn fill_tls(&mut self, mut flags: libc::c_int) -> Result<bool> {
        let fd = self.stream.fd();
        if self.drain_plaintext()? {
            return Ok(true);
        }
        loop {
            let ready = self.ready;
            let Some(tls) = self.tls.as_mut() else {
                return Ok(false);
            };
            let mut io = FdIo { fd, flags };
            match tls.read_tls(&mut io) {
                Ok(0) => {
                    return Err(Error::with_detail(
                        Reason::Reset,
                        "connection closed by server",
                    ));
                }
                Ok(n) => {
                    self.bytes_received += n as u64;
                    flags = libc::MSG_DONTWAIT;
                    if let Err(e) = tls.process_new_packets() {
                        return Err(tls_error(&e, ready));
                    }
                    if tls.wants_write() {
                        // A post-handshake reply (key update): best effort, never waits.
                        let _ = tls.write_tls(&mut FdIo {
                            fd,
                            flags: libc::MSG_DONTWAIT,
                        });
                    }
                    if self.drain_plaintext()? {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&e)),
            }
        }
    }

    /// Read what the socket has without blocking. `Ok(true)` if bytes arrived.
    pub(crate) fn try_fill(&mut self) -> Result<bool> {
        self.fill(libc::MSG_DONTWAIT)
    }

    /// Wait until more bytes arrive (or `deadline` passes): for admin replies outside the
    /// request codec, read back through [`Conn::unread`].
    pub(crate) fn read_some(&mut self, deadline: Instant) -> Result<()> {
        while !self.try_fill()? {
            wait(self.fd(), Want::Read, deadline)?;
        }
        Ok(())
    }

    /// The bytes read and not yet decoded.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Mark everything read as consumed (an admin reply read through [`Conn::unread`]).
    pub(crate) fn consume_unread(&mut self) {
        self.start = self.end;
    }

    /// Decode one reply from what is buffered, if a whole one is there.
    pub(crate) fn try_decode(&mut self, decoder: &Decoder) -> Result<Option<Response>> {
        match decoder.decode(&self.buf[self.start..self.end]) {
            Ok(Some((resp, used))) => {
                self.start += used;
                Ok(Some(resp))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Error::with_detail(Reason::Protocol, e.0)),
        }
    }

    /// [`Conn::try_decode`], a value's data left in the buffer: held from here on
    /// ([`Conn::hold`]), and the range given relative to [`Conn::held`].
    pub(crate) fn try_decode_in_place(&mut self, decoder: &Decoder) -> Result<Option<InPlace>> {
        self.hold();
        let base = self.start - self.held.unwrap_or(self.start);
        match decoder.decode_in_place(&self.buf[self.start..self.end]) {
            Ok(Some((reply, used))) => {
                self.start += used;
                Ok(Some(match reply {
                    InPlace::Value(v, r) => InPlace::Value(v, base + r.start..base + r.end),
                    other => other,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Error::with_detail(Reason::Protocol, e.0)),
        }
    }

    /// Read one whole reply before `deadline`.
    pub fn recv(&mut self, decoder: &Decoder, deadline: Instant) -> Result<Response> {
        let mut may_block = true;
        loop {
            if let Some(resp) = self.try_decode(decoder)? {
                return Ok(resp);
            }
            self.wait_more(deadline, &mut may_block)?;
        }
    }

    /// Wait for more bytes and read them (or fail by `deadline`). `may_block` starts true for
    /// a reply and is cleared by the first wait.
    pub(crate) fn wait_more(&mut self, deadline: Instant, may_block: &mut bool) -> Result<()> {
        // The first wait is a plain blocking recv when the socket timeout (well short of
        // `io_ms`, see `blocking_wait`) ends before the deadline: the common case, a request
        // that started microseconds ago. If it times out, and for every later wait, poll(2)
        // waits for the rest against the exact deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if *may_block && self.read_timeout.is_some_and(|t| left >= t) {
            *may_block = false;
            if self.fill(0)? {
                return Ok(());
            }
        }
        *may_block = false;
        if !self.try_fill()? {
            wait(self.fd(), Want::Read, deadline)?;
        }
        Ok(())
    }

    /// Bytes the server sent beyond the replies read so far are buffered. After a batch's last
    /// reply this means the server answered something that was not asked.
    pub(crate) fn has_unread(&self) -> bool {
        self.start != self.end
    }

    /// Whether the socket of an idle connection has no byte waiting. A server sends nothing
    /// unasked, so bytes here are unsolicited (or the late part of an earlier reply) and would
    /// be read as the answer to the next request: the connection must be discarded instead.
    /// One non-blocking `MSG_PEEK`, no data consumed. An end of stream alone counts as quiet:
    /// the request then fails on it as before (a soft `reset`), which carries no reply to
    /// misread.
    pub(crate) fn is_quiet(&mut self) -> bool {
        if self.has_unread() {
            return false;
        }
        if self.tls.is_some() {
            // Records may be TLS housekeeping (a TLS 1.3 session ticket sent after the
            // handshake): quiet unless they decrypt to reply bytes. A TLS close fails the next
            // request as a soft `reset`, as the plain end of stream does.
            return match self.try_fill() {
                Ok(got) => !got && !self.has_unread(),
                Err(e) => e.reason() == Reason::Reset,
            };
        }
        let mut byte = 0u8;
        loop {
            // SAFETY: `byte` is a live, exclusively borrowed one-byte buffer for the whole
            // call; MSG_PEEK leaves the data in the socket.
            let n = unsafe {
                libc::recv(
                    self.stream.fd(),
                    std::ptr::from_mut(&mut byte).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return n == 0;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => return true,
                io::ErrorKind::Interrupted => {}
                _ => return false,
            }
        }
    }

    /// True when no unread byte is buffered and nothing is left to send: the only state in
    /// which a connection may go back to the pool.
    pub fn is_clean(&self) -> bool {
        self.start == self.end && self.sent == 0 && self.wbuf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dial(path: &str) -> Error {
        let deadline = Instant::now() + Duration::from_secs(1);
        Stream::dial(path, 0, Duration::from_secs(1), deadline).unwrap_err()
    }

    #[test]
    fn socket_dial_errors_name_the_path() {
        let e = dial("/nonexistent-dir/m.sock");
        assert_eq!(e.reason(), Reason::ConnectFailed);
        let d = e.detail().unwrap();
        assert!(
            d.contains("/nonexistent-dir/m.sock") && d.contains("No such file"),
            "{d}"
        );

        let long = format!("/{}", "x".repeat(200));
        let d = dial(&long).detail().unwrap().to_string();
        assert!(d.contains("at most 107 bytes"), "{d}");

        // No permission (root is never refused, so the mapping is checked directly).
        let e = connect_error(
            "/run/m.sock",
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.reason(), Reason::ConnectFailed);
        assert!(e.detail().unwrap().contains("/run/m.sock"));
        let e = connect_error("/run/m.sock", &io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(
            e.reason(),
            Reason::ConnectTimeout,
            "a full backlog until SO_SNDTIMEO"
        );
    }

    #[test]
    fn a_socket_in_a_directory_we_may_not_enter_is_a_connect_error() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return; // root bypasses file permissions
        }
        let dir = std::env::temp_dir().join(format!("fae-conn-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = dial(path.to_str().unwrap());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(e.reason(), Reason::ConnectFailed, "{e}");
        assert!(e.detail().unwrap().contains("ermission denied"), "{e}");
    }
}
