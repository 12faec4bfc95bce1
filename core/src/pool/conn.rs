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

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Reason, Result};
use crate::protocol::{self, Decoder, Protocol, Request, Response};

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
    /// Bytes moved since the destination last collected them (stats).
    bytes_sent: u64,
    bytes_received: u64,
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
            return connect_unix(path, connect_timeout.min(left)).map(Stream::Unix);
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
                    return Ok(Stream::Tcp(stream));
                }
                Err(e) => last = connect_error(&addr.to_string(), &e),
            }
        }
        Err(last)
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
    /// the module doc). The caller validates the connection before first use.
    pub fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        read_timeout: Duration,
        deadline: Instant,
        generation: u64,
    ) -> Result<Conn> {
        let stream = Stream::dial(host, port, connect_timeout, deadline)?;
        let read_timeout = blocking_wait(read_timeout);
        stream
            .set_read_timeout(Some(read_timeout.unwrap_or(Duration::from_millis(1))))
            .map_err(|e| io_error(&e))?;
        Ok(Conn {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
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
        })
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
        self.wbuf.clear();
        protocol::encode(protocol, &Request::Noop, &mut self.wbuf);
        self.send(deadline)?;
        match (protocol, self.recv(decoder, deadline)?) {
            (Protocol::Meta, Response::End) | (Protocol::Text, Response::Version(_)) => Ok(()),
            (_, other) => Err(Error::with_detail(
                Reason::Protocol,
                format!("validation: unexpected reply {other:?}"),
            )),
        }
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

    /// Write all of `wbuf` before `deadline`.
    pub fn send(&mut self, deadline: Instant) -> Result<()> {
        while !self.try_send()? {
            wait(self.fd(), Want::Write, deadline)?;
        }
        Ok(())
    }

    /// Make room at the end of the read buffer.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_CHUNK {
                // A large value grew the buffer: give the memory back now it is consumed.
                self.buf = vec![0; READ_CHUNK];
            }
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
    }

    /// One `recv` into the free end of the buffer. `Ok(true)` if bytes arrived, `Ok(false)` if
    /// none were there (non-blocking) or the socket timeout passed (blocking); end of stream is
    /// a `Reset` error.
    fn fill(&mut self, flags: libc::c_int) -> Result<bool> {
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

    /// Read what the socket has without blocking. `Ok(true)` if bytes arrived.
    pub(crate) fn try_fill(&mut self) -> Result<bool> {
        self.fill(libc::MSG_DONTWAIT)
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

    /// Read one whole reply before `deadline`.
    pub fn recv(&mut self, decoder: &Decoder, deadline: Instant) -> Result<Response> {
        let mut may_block = true;
        loop {
            if let Some(resp) = self.try_decode(decoder)? {
                return Ok(resp);
            }
            // The first wait is a plain blocking recv when the socket timeout (well short of
            // `io_ms`, see `blocking_wait`) ends before the deadline: the common case, a
            // request that started microseconds ago. If it times out, and for every later
            // wait, poll(2) waits for the rest against the exact deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            if may_block && self.read_timeout.is_some_and(|t| left >= t) {
                may_block = false;
                if self.fill(0)? {
                    continue;
                }
            }
            may_block = false;
            if !self.try_fill()? {
                wait(self.fd(), Want::Read, deadline)?;
            }
        }
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
    pub(crate) fn is_quiet(&self) -> bool {
        if self.has_unread() {
            return false;
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
