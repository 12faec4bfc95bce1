//! A tiny blocking memcached text-protocol client for test assertions.
//!
//! This is intentionally independent of libfae: tests use it to look at what
//! the server really holds (`get`, `keys`, `stats`) and to poke servers and
//! proxies directly. Every connect, read and write has a timeout
//! ([`DEFAULT_TIMEOUT`] unless stated otherwise), so nothing here can hang.
//!
//! The convenience functions ([`command`], [`stats`], [`keys`], [`get`],
//! [`set`], [`delete`], [`flush`]) panic with a descriptive message when the
//! server cannot be reached or answers something unexpected: they are meant
//! for assertions. Use [`try_command`] or [`Conn`] to observe failures
//! (timeouts, resets, EOF, refused connects) as values.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Timeout used by the convenience functions for connecting and for a whole
/// request/response exchange: 2 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A failed raw exchange: what went wrong and the bytes received before it.
#[derive(Debug)]
pub struct RawError {
    kind: ErrorKind,
    op: &'static str,
    addr: String,
    partial: Vec<u8>,
    source: Option<io::Error>,
}

impl RawError {
    fn new(kind: ErrorKind, op: &'static str, addr: &str, partial: Vec<u8>) -> Self {
        RawError {
            kind,
            op,
            addr: addr.to_string(),
            partial,
            source: None,
        }
    }

    fn io(op: &'static str, addr: &str, partial: Vec<u8>, err: io::Error) -> Self {
        // Read/write timeouts surface as WouldBlock on Unix; normalise them.
        let kind = match err.kind() {
            ErrorKind::WouldBlock => ErrorKind::TimedOut,
            k => k,
        };
        RawError {
            kind,
            op,
            addr: addr.to_string(),
            partial,
            source: Some(err),
        }
    }

    /// The error kind. Timeouts are always [`ErrorKind::TimedOut`], a clean
    /// close by the peer before the terminator is [`ErrorKind::UnexpectedEof`],
    /// a reset is usually [`ErrorKind::ConnectionReset`] and a refused connect
    /// [`ErrorKind::ConnectionRefused`].
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Bytes received before the failure (possibly empty).
    pub fn partial(&self) -> &[u8] {
        &self.partial
    }

    /// Consumes the error, returning the bytes received before the failure.
    pub fn into_partial(self) -> Vec<u8> {
        self.partial
    }

    /// The operation that failed: `"connect"`, `"write"` or `"read"`.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// Whether the exchange timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::TimedOut
    }

    /// Whether the peer closed the connection cleanly (FIN) before the
    /// expected terminator.
    pub fn is_eof(&self) -> bool {
        self.kind == ErrorKind::UnexpectedEof
    }

    /// Whether the connection was reset (RST), as seen on read or write:
    /// `ConnectionReset`, `ConnectionAborted` or `BrokenPipe`.
    pub fn is_reset(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        )
    }

    /// Whether the connect was refused (nothing listening).
    pub fn is_refused(&self) -> bool {
        self.kind == ErrorKind::ConnectionRefused
    }
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "raw {} to {} failed: {:?}",
            self.op, self.addr, self.kind
        )?;
        if let Some(src) = &self.source {
            write!(f, " ({src})")?;
        }
        if !self.partial.is_empty() {
            write!(
                f,
                "; received so far: {:?}",
                String::from_utf8_lossy(&self.partial)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for RawError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<RawError> for io::Error {
    fn from(e: RawError) -> io::Error {
        io::Error::new(e.kind, e.to_string())
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, RawError> {
    let mut it = addr
        .to_socket_addrs()
        .map_err(|e| RawError::io("connect", addr, Vec::new(), e))?;
    it.next()
        .ok_or_else(|| RawError::new(ErrorKind::InvalidInput, "connect", addr, Vec::new()))
}

/// A TCP connection, or a Unix-domain socket one for an address that is a path.
#[derive(Debug)]
pub enum Stream {
    /// `host:port`.
    Tcp(TcpStream),
    /// A socket path (starts with `/`).
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
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

/// A persistent blocking connection with an internal read buffer.
///
/// Each read call has its own overall deadline of [`Conn::timeout`]; bytes
/// that arrive after a terminator stay buffered for the next read.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    addr: String,
    buf: Vec<u8>,
    timeout: Duration,
    eof: bool,
}

impl Conn {
    /// Connects with [`DEFAULT_TIMEOUT`] as the connect and per-exchange
    /// timeout.
    pub fn connect(addr: &str) -> Result<Conn, RawError> {
        Conn::connect_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects with `timeout` as the connect timeout and as the deadline of
    /// each later read/write call. An `addr` starting with `/` is a
    /// Unix-domain socket path (its connect is immediate or refused).
    pub fn connect_timeout(addr: &str, timeout: Duration) -> Result<Conn, RawError> {
        let stream = if addr.starts_with('/') {
            UnixStream::connect(addr)
                .map(Stream::Unix)
                .map_err(|e| RawError::io("connect", addr, Vec::new(), e))?
        } else {
            let sa = resolve(addr)?;
            let tcp = TcpStream::connect_timeout(&sa, timeout)
                .map_err(|e| RawError::io("connect", addr, Vec::new(), e))?;
            let _ = tcp.set_nodelay(true);
            Stream::Tcp(tcp)
        };
        Ok(Conn {
            stream,
            addr: addr.to_string(),
            buf: Vec::new(),
            timeout,
            eof: false,
        })
    }

    /// The deadline applied to each read/write call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the deadline applied to each later read/write call.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying socket (e.g. to `shutdown` it).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Sends all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream
            .set_write_timeout(Some(self.timeout.max(Duration::from_millis(1))))
            .map_err(|e| RawError::io("write", &self.addr, Vec::new(), e))?;
        self.stream
            .write_all(bytes)
            .map_err(|e| RawError::io("write", &self.addr, Vec::new(), e))
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`.
    /// Returns the number of bytes read (0 means EOF).
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until `until` appears in the stream and returns everything up to
    /// and including it. On timeout, EOF or error the bytes received so far
    /// are both kept in the buffer and copied into the error.
    pub fn read_until(&mut self, until: &[u8]) -> Result<Vec<u8>, RawError> {
        let deadline = Instant::now() + self.timeout;
        let mut searched = 0;
        loop {
            if let Some(pos) = find(&self.buf[searched..], until) {
                let end = searched + pos + until.len();
                return Ok(self.buf.drain(..end).collect());
            }
            searched = self.buf.len().saturating_sub(until.len().saturating_sub(1));
            match self.fill(deadline) {
                Ok(0) => {
                    return Err(RawError::new(
                        ErrorKind::UnexpectedEof,
                        "read",
                        &self.addr,
                        self.buf.clone(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(RawError::io("read", &self.addr, self.buf.clone(), e)),
            }
        }
    }

    /// Reads one line, including its `\r\n`.
    pub fn read_line(&mut self) -> Result<Vec<u8>, RawError> {
        self.read_until(b"\r\n")
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, RawError> {
        let deadline = Instant::now() + self.timeout;
        while self.buf.len() < n {
            match self.fill(deadline) {
                Ok(0) => {
                    return Err(RawError::new(
                        ErrorKind::UnexpectedEof,
                        "read",
                        &self.addr,
                        self.buf.clone(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(RawError::io("read", &self.addr, self.buf.clone(), e)),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads whatever arrives until the peer closes the connection or `wait`
    /// elapses, whichever comes first, and returns it (with anything already
    /// buffered). Never fails: a reset simply ends the read.
    pub fn read_for(&mut self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        while let Ok(n) = self.fill(deadline) {
            if n == 0 {
                break;
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Whether the peer has closed its side (EOF seen by an earlier read).
    pub fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Sends `bytes` then reads until `until` (see [`Conn::read_until`]).
    pub fn request(&mut self, bytes: &[u8], until: &[u8]) -> Result<Vec<u8>, RawError> {
        self.send(bytes)?;
        self.read_until(until)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Connects to `addr`, sends `bytes` and reads until `until` (inclusive),
/// with `timeout` bounding the connect and, separately, the read.
///
/// Returns the reply on success, or a [`RawError`] telling whether it timed
/// out, hit EOF, was reset or refused, with the bytes received so far.
pub fn try_command(
    addr: &str,
    bytes: &[u8],
    until: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, RawError> {
    let mut conn = Conn::connect_timeout(addr, timeout)?;
    conn.request(bytes, until)
}

/// Connects to `addr`, sends `bytes` and reads until `until` (inclusive) or
/// until [`DEFAULT_TIMEOUT`] passes, the peer closes, or the connection
/// breaks; returns whatever was received (so possibly a partial or empty
/// reply).
///
/// # Panics
/// If the connect or the send fails. Use [`try_command`] to get errors as
/// values.
pub fn command(addr: &str, bytes: &[u8], until: &[u8]) -> Vec<u8> {
    let mut conn = Conn::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    conn.send(bytes).unwrap_or_else(|e| panic!("{e}"));
    match conn.read_until(until) {
        Ok(v) => v,
        Err(e) => e.into_partial(),
    }
}

/// The server's version string (`version\r\n` → `VERSION x.y.z`), within
/// `timeout`.
pub fn try_version(addr: &str, timeout: Duration) -> Result<String, RawError> {
    let line = try_command(addr, b"version\r\n", b"\r\n", timeout)?;
    let text = String::from_utf8_lossy(&line);
    match text.strip_prefix("VERSION ") {
        Some(v) => Ok(v.trim_end().to_string()),
        None => Err(RawError::new(ErrorKind::InvalidData, "read", addr, line)),
    }
}

fn parse_stats(reply: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in String::from_utf8_lossy(reply).split("\r\n") {
        if let Some(rest) = line.strip_prefix("STAT ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            map.insert(k.to_string(), v.to_string());
        }
    }
    map
}

/// `stats\r\n` as a map from stat name to value (e.g. `"curr_items"`,
/// `"pid"`, `"curr_connections"`).
///
/// # Panics
/// If the server cannot be reached or does not answer with `END` in time.
pub fn stats(addr: &str) -> HashMap<String, String> {
    stats_group(addr, "")
}

/// `stats <group>\r\n` (e.g. `"settings"`, `"slabs"`, `"items"`) as a map.
/// An empty `group` is plain `stats`.
///
/// # Panics
/// If the server cannot be reached or does not answer with `END` in time.
pub fn stats_group(addr: &str, group: &str) -> HashMap<String, String> {
    let cmd = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    let reply = try_command(addr, cmd.as_bytes(), b"END\r\n", DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.trim_end()));
    parse_stats(&reply)
}

/// Decodes the `%XX` URL-encoding used by `lru_crawler metadump` for keys.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Extracts and decodes the keys of a metadump reply.
fn parse_metadump(reply: &[u8]) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for line in reply.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"key=") {
            let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let enc = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
            keys.push(percent_decode(enc));
        }
    }
    keys
}

/// All live keys on the server, sorted, via `lru_crawler metadump all`.
///
/// Keys are URL-encoded in that output (`%3A` for `:` ...); they are returned
/// decoded, as raw bytes. Expired and flushed items are not listed.
///
/// On memcached 1.6.18 this works out of the box: the LRU crawler is enabled
/// by default (`stats settings` shows `lru_crawler yes`). It fails if the
/// server runs with `-X` (dumping disabled) or `-o no_lru_crawler`. The
/// command must be the only one in flight on its connection ("cannot
/// pipeline other commands before metadump"), so a fresh connection is used;
/// while another crawl is running the server answers `BUSY`, which is retried
/// for up to [`DEFAULT_TIMEOUT`].
///
/// A dump is not a snapshot: the crawler walks each LRU while the LRU maintainer
/// moves fresh items from HOT to WARM/COLD, so an item written just before can be
/// skipped (seen on 1.6.18: 0 or 1 of 3 keys listed right after the sets). The
/// dump is therefore repeated until its length equals `stats` `curr_items`.
///
/// # Panics
/// If the server cannot be reached, or refuses the dump past the retries.
pub fn keys(addr: &str) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    loop {
        let reply = try_command(
            addr,
            b"lru_crawler metadump all\r\n",
            b"END\r\n",
            DEFAULT_TIMEOUT,
        );
        match reply {
            Ok(r) => {
                let mut keys = parse_metadump(&r);
                let expected = stats(addr)
                    .get("curr_items")
                    .and_then(|n| n.parse::<usize>().ok());
                if expected.is_some_and(|n| n != keys.len()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                keys.sort();
                return keys;
            }
            Err(e) => {
                let busy =
                    e.partial().starts_with(b"BUSY") || e.partial().starts_with(b"ERROR locked");
                if !busy || Instant::now() >= deadline {
                    panic!("lru_crawler metadump all: {e}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `get <key>`: `Some((flags, value))` or `None` on a miss.
///
/// # Panics
/// If the server cannot be reached or answers something malformed.
pub fn get(addr: &str, key: impl AsRef<[u8]>) -> Option<(u32, Vec<u8>)> {
    let key = key.as_ref();
    let ctx = || format!("get {}", String::from_utf8_lossy(key));
    let mut conn = Conn::connect(addr).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    let mut cmd = b"get ".to_vec();
    cmd.extend_from_slice(key);
    cmd.extend_from_slice(b"\r\n");
    conn.send(&cmd).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    let header = conn
        .read_line()
        .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    if header == b"END\r\n" {
        return None;
    }
    let text = String::from_utf8_lossy(&header).into_owned();
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
    if fields.len() < 4 || fields[0] != "VALUE" {
        panic!("{}: unexpected reply {text:?}", ctx());
    }
    let flags: u32 = fields[2]
        .parse()
        .unwrap_or_else(|_| panic!("{}: bad flags in {text:?}", ctx()));
    let len: usize = fields[3]
        .parse()
        .unwrap_or_else(|_| panic!("{}: bad length in {text:?}", ctx()));
    let mut data = conn
        .read_exact(len + 2)
        .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    assert!(
        data.ends_with(b"\r\n"),
        "{}: value not followed by CRLF",
        ctx()
    );
    data.truncate(len);
    let end = conn
        .read_line()
        .unwrap_or_else(|e| panic!("{}: {e}", ctx()));
    assert_eq!(end, b"END\r\n", "{}: missing END", ctx());
    Some((flags, data))
}

/// `set <key> <flags> 0 <len>` with `value`, asserting `STORED`.
///
/// # Panics
/// If the server cannot be reached or does not answer `STORED`.
pub fn set(addr: &str, key: impl AsRef<[u8]>, flags: u32, value: &[u8]) {
    let key = key.as_ref();
    let mut cmd = b"set ".to_vec();
    cmd.extend_from_slice(key);
    cmd.extend_from_slice(format!(" {flags} 0 {}\r\n", value.len()).as_bytes());
    cmd.extend_from_slice(value);
    cmd.extend_from_slice(b"\r\n");
    let reply = try_command(addr, &cmd, b"\r\n", DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("set {}: {e}", String::from_utf8_lossy(key)));
    assert_eq!(
        reply,
        b"STORED\r\n",
        "set {}: got {:?}",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(&reply)
    );
}

/// `delete <key>`: `true` if it existed (`DELETED`), `false` on `NOT_FOUND`.
///
/// # Panics
/// If the server cannot be reached or answers anything else.
pub fn delete(addr: &str, key: impl AsRef<[u8]>) -> bool {
    let key = key.as_ref();
    let mut cmd = b"delete ".to_vec();
    cmd.extend_from_slice(key);
    cmd.extend_from_slice(b"\r\n");
    let reply = try_command(addr, &cmd, b"\r\n", DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("delete {}: {e}", String::from_utf8_lossy(key)));
    match reply.as_slice() {
        b"DELETED\r\n" => true,
        b"NOT_FOUND\r\n" => false,
        other => panic!(
            "delete {}: got {:?}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(other)
        ),
    }
}

/// `flush_all`, asserting `OK`: every item becomes invisible at once.
///
/// # Panics
/// If the server cannot be reached or does not answer `OK`.
pub fn flush(addr: &str) {
    let reply = try_command(addr, b"flush_all\r\n", b"\r\n", DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("flush_all: {e}"));
    assert_eq!(
        reply,
        b"OK\r\n",
        "flush_all: got {:?}",
        String::from_utf8_lossy(&reply)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%2520b"), b"a%20b");
        assert_eq!(percent_decode(b"k%3A%C3%BC%2Fx"), "k:ü/x".as_bytes());
        assert_eq!(percent_decode(b"plain"), b"plain");
        assert_eq!(percent_decode(b"bad%zz%4"), b"bad%zz%4");
        assert_eq!(percent_decode(b"end%41"), b"endA");
    }

    #[test]
    fn metadump_parsing() {
        let reply = b"key=a%2520b exp=-1 la=1 cas=1 fetch=no cls=1 size=71\n\
                      key=k%3Ax exp=-1 la=1 cas=2 fetch=no cls=1 size=70\nEND\r\n";
        assert_eq!(
            parse_metadump(reply),
            vec![b"a%20b".to_vec(), b"k:x".to_vec()]
        );
        assert!(parse_metadump(b"END\r\n").is_empty());
    }

    #[test]
    fn stats_parsing() {
        let m = parse_stats(b"STAT pid 42\r\nSTAT version 1.6.18\r\nEND\r\n");
        assert_eq!(m["pid"], "42");
        assert_eq!(m["version"], "1.6.18");
    }

    #[test]
    fn find_needle() {
        assert_eq!(find(b"abcEND\r\n", b"END\r\n"), Some(3));
        assert_eq!(find(b"abc", b"x"), None);
    }
}
