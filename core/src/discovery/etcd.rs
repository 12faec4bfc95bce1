//! etcd v3 source over the JSON gRPC-gateway, on plain HTTP/1.1 over `std::net::TcpStream`
//! (no async runtime, no gRPC stack; every connect and read is bounded).
//!
//! # Layout in etcd
//!
//! One key per pool under a prefix; the value is a JSON array of server strings:
//!
//! ```text
//! /fae/pools/main    ["10.0.0.1:11211", "10.0.0.2:11211:2"]
//! /fae/pools/gutter  ["10.0.9.1:11211"]
//! ```
//!
//! `etcdctl put /fae/pools/main '["10.0.0.1:11211","10.0.0.2:11211:2"]'` changes a pool in one
//! atomic step. A pool placed by virtual buckets has an object instead, its servers and its
//! bucket map (the snapshot's `buckets` entry for the pool), so one put changes both:
//! `{"servers": [...], "buckets": {"count": 1024, "version": 3, "map": [...]}}`. Keys with a
//! further `/` below the prefix are ignored (room for other data).
//!
//! # Protocol
//!
//! * Snapshot: `POST /v3/kv/range {"key": b64(prefix), "range_end": b64(prefix+1)}`; keys and
//!   values are base64, int64 fields are JSON strings.
//! * Changes: `POST /v3/watch {"create_request": {"key", "range_end", "start_revision":
//!   rev+1}}`, a chunked response carrying one JSON message per line. Any event causes a
//!   re-range (the whole prefix is small), so the published topology is always a consistent
//!   read at one revision.
//! * A canceled watch (compaction: `compact_revision`) or an error message leads to a re-range
//!   and a new watch from the new revision. A closed stream, refused connect or timeout is
//!   [`Error::Unavailable`]: the caller keeps its last good topology and calls again; the
//!   next call tries the endpoints in turn. An idle watch is checked with a range every
//!   `idle_check` (default 10 s), which also detects a frozen server.
//! * Gateway path `/v3` (etcd 3.4 and later).
//!
//! # TLS and authentication
//!
//! With [`EtcdSource::tls`] every connection is TLS (rustls; CA, optional client certificate
//! for etcd's `--client-cert-auth`, server name). With [`EtcdSource::auth`] the source logs in
//! (`POST /v3/auth/authenticate`, password read from its file or variable at each login) and
//! sends the token in the `Authorization` header; an expired or revoked token leads to one new
//! login and one retry. A wrong password, a missing permission or a rejected certificate is
//! [`Error::Denied`]; the password and the token never appear in an error or a log line.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::tls::{self, Conn, settings_error};
use super::{Error, Result, Source, Topology};
use crate::tls::{AuthSection, Secret, TlsSection};

/// Largest HTTP header block or single watch message accepted.
const MAX_MESSAGE: usize = 16 << 20;

/// Reads etcd v3 key prefix as a topology and watches it.
#[derive(Debug)]
pub struct EtcdSource {
    endpoints: Vec<String>,
    prefix: String,
    next_ep: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_check: Duration,
    revision: i64,
    last: Option<Topology>,
    watch: Option<Stream>,
    last_check: Instant,
    tls: Option<tls::Client>,
    auth: Option<AuthSection>,
    token: Option<Secret>,
}

impl EtcdSource {
    /// A source for `prefix` (e.g. `/fae/pools/`) on `endpoints` (`HOST:PORT` of etcd client
    /// URLs, plain HTTP). Connect timeout 1 s, request timeout 2 s, idle check 10 s.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdSource {
        EtcdSource {
            endpoints,
            prefix: prefix.into(),
            next_ep: 0,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            idle_check: Duration::from_secs(10),
            revision: 0,
            last: None,
            watch: None,
            last_check: Instant::now(),
            tls: None,
            auth: None,
            token: None,
        }
    }

    /// Speaks TLS to every endpoint. Fails if the settings do not fit together (the files are
    /// read at the first connect, and again whenever one of them changes).
    pub fn tls(mut self, settings: TlsSection) -> Result<EtcdSource> {
        self.tls = Some(tls::Client::new(settings)?);
        Ok(self)
    }

    /// Logs in as this user (etcd's user/password authentication).
    pub fn auth(mut self, auth: AuthSection) -> Result<EtcdSource> {
        auth.check("auth").map_err(settings_error)?;
        self.auth = Some(auth);
        Ok(self)
    }

    /// Sets the connect timeout (per endpoint) and the timeout of a range request.
    pub fn timeouts(mut self, connect: Duration, request: Duration) -> EtcdSource {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// How long a watch may stay silent before a range checks that etcd is alive.
    pub fn idle_check(mut self, every: Duration) -> EtcdSource {
        self.idle_check = every;
        self
    }

    /// The etcd revision of the last range (0 before the first).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    fn range_end(&self) -> Vec<u8> {
        prefix_end(self.prefix.as_bytes())
    }

    /// Tries every endpoint, starting with the last one that worked.
    fn with_endpoint<T>(&mut self, mut f: impl FnMut(&mut Self, &str) -> Result<T>) -> Result<T> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(Error::Invalid("no etcd endpoints".into()));
        }
        let mut last_err = None;
        for i in 0..n {
            let idx = (self.next_ep + i) % n;
            let ep = self.endpoints[idx].clone();
            match f(self, &ep) {
                Ok(v) => {
                    self.next_ep = idx;
                    return Ok(v);
                }
                Err(e @ (Error::Invalid(_) | Error::Denied(_))) => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
        self.next_ep = (self.next_ep + 1) % n;
        Err(last_err.unwrap_or_else(|| Error::Unavailable("no etcd endpoint".into())))
    }

    /// One range over the prefix. The revision is recorded even when the data is invalid,
    /// so a bad value is reported once per change.
    fn range(&mut self) -> Result<Topology> {
        let body = json!({
            "key": B64.encode(self.prefix.as_bytes()),
            "range_end": B64.encode(self.range_end()),
        })
        .to_string();
        let v = self.with_endpoint(|s, ep| {
            s.authorized(ep, |s, ep| {
                let deadline = Instant::now() + s.request_timeout;
                let mut st = s.post(ep, "/v3/kv/range", &body, deadline)?;
                st.read_json_body(deadline)
            })
        })?;
        self.last_check = Instant::now();
        if let Some(rev) = v.pointer("/header/revision").and_then(as_i64) {
            self.revision = rev;
        } else {
            return Err(Error::Invalid(format!(
                "etcd range {}: reply without header.revision: {}",
                self.prefix,
                clip(&v.to_string())
            )));
        }
        let mut t = parse_kvs(&self.prefix, &v)?;
        t.source = self.describe();
        Ok(t)
    }

    /// Re-ranges and returns the topology if it differs from the last one returned.
    fn refresh(&mut self) -> Result<Option<Topology>> {
        let t = self.range()?;
        if self.last.as_ref().is_some_and(|l| l.same_pools(&t)) {
            return Ok(None);
        }
        self.last = Some(t.clone());
        Ok(Some(t))
    }

    fn open_watch(&mut self) -> Result<()> {
        let body = json!({"create_request": {
            "key": B64.encode(self.prefix.as_bytes()),
            "range_end": B64.encode(self.range_end()),
            "start_revision": (self.revision + 1).to_string(),
        }})
        .to_string();
        let st = self.with_endpoint(|s, ep| {
            let deadline = Instant::now() + s.request_timeout;
            let st = s.authorized(ep, |s, ep| {
                let mut st = s.post(ep, "/v3/watch", &body, deadline)?;
                st.read_head(deadline)?;
                Ok(st)
            })?;
            if !st.chunked {
                return Err(Error::Unavailable(format!(
                    "{ep}: watch reply is not a chunked stream"
                )));
            }
            Ok(st)
        })?;
        self.watch = Some(st);
        Ok(())
    }

    /// Opens a connection (TLS if configured) and sends one POST with the login token.
    fn post(&mut self, ep: &str, path: &str, body: &str, deadline: Instant) -> Result<Stream> {
        let conn = tls::open(ep, self.connect_timeout, self.tls.as_mut())?;
        let token = self.token.as_ref().map(Secret::expose);
        Stream::send(conn, ep, path, body, token, deadline)
    }

    /// Runs `f` logged in (when `auth` is set): logs in first if there is no token, and once
    /// more if etcd says the token expired or was revoked.
    fn authorized<T>(
        &mut self,
        ep: &str,
        mut f: impl FnMut(&mut Self, &str) -> Result<T>,
    ) -> Result<T> {
        if self.auth.is_none() {
            return f(self, ep);
        }
        let fresh = self.token.is_none();
        if fresh {
            self.login(ep)?;
        }
        match f(self, ep) {
            Err(Error::Denied(m)) if !fresh && is_token_error(&m) => {
                log::info!("etcd {ep}: login token no longer valid; logging in again");
                self.token = None;
                self.login(ep)?;
                f(self, ep)
            }
            r => r,
        }
    }

    /// `POST /v3/auth/authenticate`; keeps the token. Messages name the user, not the password.
    fn login(&mut self, ep: &str) -> Result<()> {
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        let user = auth.username.clone();
        let pw = auth.password("auth").map_err(settings_error)?;
        let body = json!({"name": user, "password": pw.expose()}).to_string();
        drop(pw);
        self.token = None;
        let deadline = Instant::now() + self.request_timeout;
        let v = self
            .post(ep, "/v3/auth/authenticate", &body, deadline)
            .and_then(|mut st| st.read_json_body(deadline));
        let v = match v {
            Ok(v) => v,
            // Matched on the text: the gateway's HTTP status for these varies by version.
            Err(e) if e.message().contains("authentication is not enabled") => {
                log::warn!(
                    "etcd {ep}: auth is set but the server does not enable authentication; going on without a token"
                );
                return Ok(());
            }
            Err(e) if e.message().contains("authentication failed") => {
                return Err(Error::Denied(format!(
                    "{ep}: etcd login as user {user:?} failed: wrong user name or password"
                )));
            }
            Err(e) => return Err(e),
        };
        match v.get("token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {
                self.token = Some(Secret::new(t));
                Ok(())
            }
            _ => Err(Error::Invalid(format!(
                "{ep}: etcd login as user {user:?}: reply without a token"
            ))),
        }
    }
}

/// Whether an etcd error says the login token is no longer good (a new login fixes it).
fn is_token_error(m: &str) -> bool {
    m.contains("invalid auth token") || m.contains("revision of auth store is old")
}

/// Classifies an etcd error reply (HTTP status and body) for the caller.
fn http_error(ep: &str, status: u16, body: &str) -> Error {
    let detail = clip(body);
    let denied = |hint: &str| Error::Denied(format!("{ep}: HTTP {status}: {detail}{hint}"));
    if body.contains("user name is empty") {
        denied(" (the server requires authentication: set auth.username and a password source)")
    } else if body.contains("permission denied") {
        denied(
            " (no read permission on this prefix for the logged-in user; without auth.username \
             etcd checks the certificate's or an anonymous identity)",
        )
    } else if is_token_error(body)
        || body.contains("authentication failed")
        || status == 401
        || status == 403
    {
        denied("")
    } else if body.contains("CommonName of client") {
        // etcd (`--client-cert-auth` with auth on) cannot pass a certificate's CN through its
        // JSON gateway as a user name, so it refuses such certificates outright.
        denied(
            " (with --client-cert-auth and authentication on, etcd's JSON gateway accepts only \
             client certificates without a CommonName; log in with auth.username instead)",
        )
    } else if status == 400 && body.contains("HTTPS server") {
        Error::Invalid(format!(
            "{ep}: the server speaks TLS on this port: configure tls (ca_file …)"
        ))
    } else {
        Error::Unavailable(format!("{ep}: HTTP {status}: {detail}"))
    }
}

impl Source for EtcdSource {
    fn describe(&self) -> String {
        format!("etcd:{}{}", self.endpoints.join(","), self.prefix)
    }

    fn current(&mut self) -> Result<Topology> {
        let t = self.range()?;
        self.last = Some(t.clone());
        Ok(t)
    }

    fn wait_change(&mut self, timeout: Duration) -> Result<Option<Topology>> {
        let deadline = Instant::now() + timeout;
        if self.last.is_none() {
            // First call, or every earlier read failed: the baseline itself is the change.
            return self.refresh();
        }
        loop {
            if self.watch.is_none() {
                self.open_watch()?;
            }
            let msg = match self.watch.as_mut().map(|w| w.next_line(deadline)) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.watch = None;
                    return Err(e);
                }
                None => continue,
            };
            let Some(line) = msg else {
                // Timed out. Check liveness (and catch anything missed) when idle too long.
                if self.last_check.elapsed() >= self.idle_check {
                    return self.refresh().inspect_err(|_| self.watch = None);
                }
                return Ok(None);
            };
            self.last_check = Instant::now();
            let v: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => {
                    self.watch = None;
                    return Err(Error::Invalid(format!(
                        "etcd watch: bad message ({e}): {}",
                        clip(&String::from_utf8_lossy(&line))
                    )));
                }
            };
            let r = v.get("result").unwrap_or(&Value::Null);
            let canceled = r.get("canceled").and_then(Value::as_bool).unwrap_or(false)
                || r.get("compact_revision").and_then(as_i64).unwrap_or(0) > 0
                || v.get("error").is_some()
                || r.is_null();
            if canceled {
                // Compacted past our revision, or the server gave up: re-list, re-watch.
                log::info!(
                    "etcd watch on {} canceled ({}); re-reading",
                    self.prefix,
                    clip(&v.to_string())
                );
                self.watch = None;
                match self.refresh()? {
                    Some(t) => return Ok(Some(t)),
                    // A watch the server keeps canceling (e.g. no permission to watch) must
                    // not spin past the caller's deadline.
                    None if Instant::now() >= deadline => return Ok(None),
                    None => continue,
                }
            }
            let has_events = r
                .get("events")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            let rev = r
                .pointer("/header/revision")
                .and_then(as_i64)
                .unwrap_or(i64::MAX);
            if has_events
                && rev > self.revision
                && let Some(t) = self.refresh()?
            {
                return Ok(Some(t));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

/// A pool key's value in its object form: the servers and, for a pool placed by virtual
/// buckets, its bucket map (the snapshot's `"buckets"` entry of the pool).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolValue {
    servers: Vec<String>,
    #[serde(default)]
    buckets: Option<crate::placement::vbucket::BucketsSpec>,
}

/// Builds a topology from a range reply's `kvs`.
fn parse_kvs(prefix: &str, v: &Value) -> Result<Topology> {
    let mut t = Topology::default();
    let kvs = match v.get("kvs") {
        None | Some(Value::Null) => return Ok(t),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "etcd range: kvs is {}",
                clip(&other.to_string())
            )));
        }
    };
    for kv in kvs {
        let key = kv
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| B64.decode(k).ok())
            .and_then(|k| String::from_utf8(k).ok())
            .ok_or_else(|| {
                Error::Invalid(format!("etcd range: bad key in {}", clip(&kv.to_string())))
            })?;
        let Some(pool) = key.strip_prefix(prefix) else {
            continue;
        };
        if pool.is_empty() || pool.contains('/') {
            continue;
        }
        let raw = match kv.get("value").and_then(Value::as_str) {
            Some(s) => B64
                .decode(s)
                .map_err(|e| Error::Invalid(format!("etcd key {key}: value is not base64: {e}")))?,
            None => Vec::new(),
        };
        // An object carries the pool's bucket map with its servers, so one put changes both.
        let value = if raw.trim_ascii_start().starts_with(b"{") {
            serde_json::from_slice::<PoolValue>(&raw)
        } else {
            serde_json::from_slice(&raw).map(|servers| PoolValue {
                servers,
                buckets: None,
            })
        };
        let value = value.map_err(|e| {
            Error::Invalid(format!(
                "etcd key {key}: value must be a JSON array of \"host:port[:weight]\" strings, or {{\"servers\": [...], \"buckets\": {{...}}}} ({e}): {}",
                clip(&String::from_utf8_lossy(&raw))
            ))
        })?;
        t.pools.insert(pool.to_string(), value.servers);
        if let Some(b) = value.buckets {
            t.buckets.insert(pool.to_string(), b);
        }
    }
    t.validate(&format!("etcd prefix {prefix}"))?;
    Ok(t)
}

/// The smallest key greater than every key with this prefix (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().unwrap_or(&mut 0) = last + 1;
            return end;
        }
        end.pop();
    }
    // Empty prefix or all 0xff: the whole keyspace.
    vec![0]
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Incremental state of a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    Crlf,
    Done,
}

/// One HTTP/1.1 request and its response, read incrementally with deadlines.
#[derive(Debug)]
struct Stream {
    ep: String,
    sock: Conn,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    content_length: Option<usize>,
    chunk: Chunk,
    eof: bool,
}

impl Stream {
    /// Sends one POST on `sock`. `token`: the login token, sent as `Authorization`.
    fn send(
        mut sock: Conn,
        ep: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Stream> {
        let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {ep}\r\nContent-Type: application/json\r\n\
             {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.set_write_timeout(deadline.saturating_duration_since(Instant::now()));
        sock.write_all(req.as_bytes())
            .and_then(|()| sock.flush())
            .map_err(|e| tls::io_error(ep, "send", &e))?;
        Ok(Stream {
            ep: ep.to_string(),
            sock,
            raw: Vec::new(),
            body: Vec::new(),
            chunked: false,
            content_length: None,
            chunk: Chunk::Size,
            eof: false,
        })
    }

    /// Reads more bytes into `raw`. `Ok(false)` on deadline.
    fn fill(&mut self, deadline: Instant) -> Result<bool> {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        self.sock.set_read_timeout(deadline - now);
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            // A TLS peer that closes without close_notify: the framing (Content-Length or
            // chunks) still tells whether the reply is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.sock.is_tls() => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                if self.raw.len() > MAX_MESSAGE {
                    return Err(Error::Invalid(format!("{}: reply too large", self.ep)));
                }
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Instant::now() < deadline)
            }
            Err(e) => Err(tls::io_error(&self.ep, "read", &e)),
        }
    }

    /// Reads the status line and headers; fails on a non-200 status.
    fn read_head(&mut self, deadline: Instant) -> Result<()> {
        let end = loop {
            if let Some(i) = find(&self.raw, b"\r\n\r\n") {
                break i;
            }
            if self.eof {
                let hint = if self.sock.is_tls() {
                    ""
                } else {
                    " (if this port speaks TLS, configure tls)"
                };
                return Err(Error::Unavailable(format!(
                    "{}: connection closed before reply{hint}",
                    self.ep
                )));
            }
            if !self.fill(deadline)? {
                return Err(Error::Unavailable(format!(
                    "{}: timed out waiting for reply",
                    self.ep
                )));
            }
        };
        let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::Invalid(format!("{}: bad HTTP status line {status_line:?}", self.ep))
            })?;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                {
                    self.chunked = true;
                } else if k.eq_ignore_ascii_case("content-length") {
                    self.content_length = v.parse().ok();
                }
            }
        }
        if status != 200 {
            let _ = self.read_body(deadline);
            return Err(http_error(
                &self.ep,
                status,
                &String::from_utf8_lossy(&self.body),
            ));
        }
        Ok(())
    }

    /// Moves decoded body bytes from `raw` to `body` as far as possible.
    fn decode(&mut self) -> Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(i) = find(&self.raw, b"\r\n") else {
                        return Ok(());
                    };
                    let line = String::from_utf8_lossy(&self.raw[..i]).into_owned();
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let n = usize::from_str_radix(hex, 16)
                        .ok()
                        .filter(|&n| n <= MAX_MESSAGE)
                        .ok_or_else(|| {
                            Error::Invalid(format!("{}: bad chunk size {line:?}", self.ep))
                        })?;
                    self.raw.drain(..i + 2);
                    self.chunk = if n == 0 { Chunk::Done } else { Chunk::Data(n) };
                }
                Chunk::Data(n) => {
                    if self.raw.is_empty() {
                        return Ok(());
                    }
                    let take = n.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.chunk = if take == n {
                        Chunk::Crlf
                    } else {
                        Chunk::Data(n - take)
                    };
                }
                Chunk::Crlf => {
                    if self.raw.len() < 2 {
                        return Ok(());
                    }
                    self.raw.drain(..2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Done => return Ok(()),
            }
        }
    }

    fn body_complete(&self) -> bool {
        if self.chunked {
            self.chunk == Chunk::Done
        } else if let Some(n) = self.content_length {
            self.body.len() >= n
        } else {
            self.eof
        }
    }

    fn read_body(&mut self, deadline: Instant) -> Result<()> {
        loop {
            self.decode()?;
            if self.body_complete() {
                return Ok(());
            }
            if self.eof {
                return Err(Error::Unavailable(format!("{}: reply cut short", self.ep)));
            }
            if !self.fill(deadline)? {
                return Err(Error::Unavailable(format!(
                    "{}: timed out reading reply",
                    self.ep
                )));
            }
        }
    }

    fn read_json_body(&mut self, deadline: Instant) -> Result<Value> {
        self.read_head(deadline)?;
        self.read_body(deadline)?;
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Invalid(format!(
                "{}: reply is not JSON ({e}): {}",
                self.ep,
                clip(&String::from_utf8_lossy(&self.body))
            ))
        })
    }

    /// The next newline-terminated message of a streaming body; `Ok(None)` at the deadline.
    fn next_line(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        loop {
            self.decode()?;
            if let Some(i) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.body.len() > MAX_MESSAGE {
                return Err(Error::Invalid(format!(
                    "{}: watch message too large",
                    self.ep
                )));
            }
            if self.eof || self.chunk == Chunk::Done {
                return Err(Error::Unavailable(format!(
                    "{}: watch stream closed",
                    self.ep
                )));
            }
            if !self.fill(deadline)? {
                return Ok(None);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_rules() {
        assert_eq!(prefix_end(b"/fae/pools/"), b"/fae/pools0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), b"\0");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn kvs_parse_and_reject() {
        let enc = |s: &str| B64.encode(s);
        let v = json!({"header": {"revision": "5"}, "kvs": [
            {"key": enc("/p/main"), "value": enc(r#"["a:1","b:2:3"]"#)},
            {"key": enc("/p/x/nested"), "value": enc("whatever")},
        ]});
        let t = parse_kvs("/p/", &v).unwrap();
        assert_eq!(t.pools.len(), 1);
        assert_eq!(t.pools["main"], vec!["a:1", "b:2:3"]);
        for bad in [
            json!({"kvs": [{"key": enc("/p/m"), "value": enc("{")}]}),
            json!({"kvs": [{"key": enc("/p/m"), "value": "!!"}]}),
            json!({"kvs": [{"key": enc("/p/m"), "value": enc("[\"a:0\"]")}]}),
            json!({"kvs": [{"key": 3}]}),
            json!({"kvs": "x"}),
        ] {
            assert!(
                matches!(parse_kvs("/p/", &bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
        assert!(parse_kvs("/p/", &json!({})).unwrap().pools.is_empty());
    }

    #[test]
    fn chunked_decoding_across_reads() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            let parts: [&[u8]; 5] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"8\r\n{\"a\":",
                b"1}\n\r\n3\r\n{}\n\r",
                b"\n",
                b"0\r\n\r\n",
            ];
            for p in parts {
                s.write_all(p).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let conn = tls::open(&addr, Duration::from_secs(1), None).unwrap();
        let mut st = Stream::send(conn, &addr, "/x", "{}", None, deadline).unwrap();
        st.read_head(deadline).unwrap();
        assert!(st.chunked);
        assert_eq!(st.next_line(deadline).unwrap().unwrap(), b"{\"a\":1}\n");
        assert_eq!(st.next_line(deadline).unwrap().unwrap(), b"{}\n");
        assert!(matches!(st.next_line(deadline), Err(Error::Unavailable(_))));
        server.join().unwrap();
    }
}
