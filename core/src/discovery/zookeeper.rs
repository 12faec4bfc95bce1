//! ZooKeeper source, with a minimal synchronous client of the wire protocol
//! ([`super::zk_proto`]); no threads, no async runtime, every wait bounded.
//!
//! # Layout in ZooKeeper
//!
//! Under a root node (e.g. `/fae/pools`), one child per pool; that pool node's **children are
//! the server strings** (`host:port[:weight]`). A pool placed by virtual buckets has its bucket
//! map as the pool node's data, `{"buckets": {"count": 1024, "version": 3, "map": [...]}}`
//! (the snapshot's `buckets` entry for the pool); other node data is ignored:
//!
//! ```text
//! /fae/pools
//! ├── main
//! │   ├── 10.0.0.1:11211
//! │   └── 10.0.0.2:11211:2
//! └── gutter
//!     └── 10.0.9.1:11211
//! ```
//!
//! This is the ZooKeeper idiom fae used: a server can register itself with an ephemeral child
//! and vanish from the pool when its session dies. Servers are listed sorted by name.
//!
//! # Watches and sessions
//!
//! A read sets one-shot watches on the root (`getChildren`) and on every pool (`getChildren`,
//! and `getData` for its bucket map); any watch event re-reads the whole tree, which re-arms
//! every watch (ZooKeeper coalesces changes between events, and re-reading catches them). If the root is missing an
//! `exists` watch waits for its creation.
//!
//! On any connection loss the source reconnects (endpoints in turn) and offers the old session
//! id. If the server answers that the session **expired** (its watches are gone), the source
//! opens a new session. Either way it then **re-reads and re-arms every watch** — fae's
//! ZooKeeper code re-armed its watch but forgot its registration after expiry; this source
//! registers nothing, and re-arms on every reconnect, not only on expiry, because watches are
//! bound to the server connection. While ZooKeeper is unreachable, calls return
//! [`Error::Unavailable`] and the caller keeps the last good topology. The client pings every
//! third of the session timeout while it waits and declares the connection dead after two
//! thirds of it without a byte from the server.
//!
//! # TLS and authentication
//!
//! With [`ZkSource::tls`] the connection is TLS (ZooKeeper 3.5+ `secureClientPort`, served by
//! its Netty connection factory; CA, optional client certificate for `ssl.clientAuth=need`,
//! server name). With [`ZkSource::auth`] every new connection sends `addauth digest
//! user:password` before its first read (auth belongs to the connection, so it is sent again
//! after each reconnect). The `digest` scheme accepts any user and password at login; a wrong
//! one shows when a node's ACL refuses the read — [`Error::Denied`] naming the node and user.
//! SASL (Kerberos or DIGEST-MD5 via JAAS) is not supported.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::tls::{self, Conn, settings_error};
use super::zk_proto::{
    self as proto, ConnectResponse, Decoder, Encoder, ReplyHeader, WatcherEvent,
};
use super::{Error, Result, Source, Topology};
use crate::tls::{AuthSection, TlsSection};

/// A pool node's data in its JSON form: the pool's bucket map.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolData {
    buckets: Option<crate::placement::vbucket::BucketsSpec>,
}

/// The bucket map in the data of the pool node `path`: data that is a JSON object is
/// `{"buckets": {...}}`; other data is not fae's and is ignored, as before maps were carried.
fn pool_buckets(path: &str, data: &[u8]) -> Result<Option<crate::placement::vbucket::BucketsSpec>> {
    if !data.trim_ascii_start().starts_with(b"{") {
        return Ok(None);
    }
    serde_json::from_slice::<PoolData>(data)
        .map(|d| d.buckets)
        .map_err(|e| {
            Error::Invalid(format!(
                "zookeeper node {path}: data must be {{\"buckets\": {{...}}}} ({e})"
            ))
        })
}

/// Keeper state in a notification that says the session expired.
const STATE_EXPIRED: i32 = -112;

fn proto_err(ep: &str, e: proto::ProtoError) -> Error {
    Error::Unavailable(format!("{ep}: {e}"))
}

/// A ZooKeeper session over one TCP connection. One request at a time.
#[derive(Debug)]
pub struct ZkClient {
    ep: String,
    sock: Conn,
    raw: Vec<u8>,
    session_id: i64,
    passwd: Vec<u8>,
    timeout: Duration,
    xid: i32,
    last_recv: Instant,
    last_send: Instant,
    fired: bool,
    /// The authenticated user, for messages.
    user: Option<String>,
}

/// Outcome of a connect attempt that offered an old session.
#[derive(Debug)]
enum Connected {
    Session(ZkClient),
    Expired,
}

impl ZkClient {
    /// Opens a new session on `endpoint` (`HOST:PORT`), asking for `session_timeout` (the
    /// server clamps it to its `[2, 20] × tickTime`). `connect_timeout` bounds the TCP connect
    /// and the handshake.
    pub fn connect(
        endpoint: &str,
        session_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<ZkClient> {
        ZkClient::connect_secure(endpoint, session_timeout, connect_timeout, None, None)
    }

    /// Like [`ZkClient::connect`], over TLS when `tls` is given, and logging in with
    /// `addauth digest user:password` when `auth` is given.
    pub fn connect_secure(
        endpoint: &str,
        session_timeout: Duration,
        connect_timeout: Duration,
        tls: Option<&TlsSection>,
        auth: Option<&AuthSection>,
    ) -> Result<ZkClient> {
        let mut tls = tls.cloned().map(tls::Client::new).transpose()?;
        match ZkClient::connect_session(
            endpoint,
            session_timeout,
            connect_timeout,
            None,
            tls.as_mut(),
            auth,
        )? {
            Connected::Session(c) => Ok(c),
            Connected::Expired => Err(Error::Unavailable(format!(
                "{endpoint}: new session refused"
            ))),
        }
    }

    fn connect_session(
        endpoint: &str,
        session_timeout: Duration,
        connect_timeout: Duration,
        resume: Option<(i64, &[u8])>,
        tls: Option<&mut tls::Client>,
        auth: Option<&AuthSection>,
    ) -> Result<Connected> {
        let deadline = Instant::now() + connect_timeout;
        // Read the password first: a missing file is a settings error, not a dead server.
        let login = auth
            .map(|a| {
                a.password("auth")
                    .map_err(settings_error)
                    .map(|pw| (a.username.clone(), pw))
            })
            .transpose()?;
        let tls_on = tls.is_some();
        let mut sock = tls::open(endpoint, connect_timeout, tls)?;
        let (sid, pw) = resume.unwrap_or((0, &[0u8; 16]));
        let ms = i32::try_from(session_timeout.as_millis()).unwrap_or(i32::MAX);
        sock.set_write_timeout(deadline.saturating_duration_since(Instant::now()));
        sock.write_all(&proto::connect_request(ms, sid, pw))
            .and_then(|()| sock.flush())
            .map_err(|e| tls::io_error(endpoint, "send connect", &e))?;
        let mut c = ZkClient {
            ep: endpoint.to_string(),
            sock,
            raw: Vec::new(),
            session_id: 0,
            passwd: Vec::new(),
            timeout: session_timeout,
            xid: 0,
            last_recv: Instant::now(),
            last_send: Instant::now(),
            fired: false,
            user: None,
        };
        let hint = if tls_on {
            ""
        } else {
            " (if this port speaks TLS, configure tls)"
        };
        let payload = c
            .read_frame(deadline)
            .map_err(|e| Error::Unavailable(format!("{}{hint}", e.message())))?
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "{endpoint}: no connect response within {connect_timeout:?}{hint}"
                ))
            })?;
        let r = ConnectResponse::decode(&payload).map_err(|e| proto_err(endpoint, e))?;
        if r.timeout_ms <= 0 {
            return Ok(Connected::Expired);
        }
        c.session_id = r.session_id;
        c.passwd = r.passwd;
        c.timeout = Duration::from_millis(r.timeout_ms as u64);
        if let Some((user, pw)) = login {
            c.add_auth(&user, pw.expose().as_bytes(), deadline)?;
            c.user = Some(user);
        }
        Ok(Connected::Session(c))
    }

    /// `addauth digest user:password`; waits for the server's verdict.
    fn add_auth(&mut self, user: &str, pw: &[u8], deadline: Instant) -> Result<()> {
        let mut cred = Vec::with_capacity(user.len() + 1 + pw.len());
        cred.extend_from_slice(user.as_bytes());
        cred.push(b':');
        cred.extend_from_slice(pw);
        let frame = proto::auth_request("digest", &cred);
        self.send(&frame)?;
        loop {
            let Some(payload) = self.read_frame(deadline)? else {
                return Err(Error::Unavailable(format!(
                    "{}: no answer to the login of user {user:?}",
                    self.ep
                )));
            };
            let mut d = Decoder::new(&payload);
            let h = ReplyHeader::decode(&mut d).map_err(|e| proto_err(&self.ep, e))?;
            if h.xid != proto::xid::AUTH {
                continue;
            }
            return match h.err {
                proto::code::OK => Ok(()),
                proto::code::AUTH_FAILED => Err(Error::Denied(format!(
                    "{}: ZooKeeper refused the login of user {user:?} (digest)",
                    self.ep
                ))),
                err => Err(Error::Unavailable(format!(
                    "{}: login of user {user:?}: ZooKeeper error {err}",
                    self.ep
                ))),
            };
        }
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// The negotiated session timeout.
    pub fn session_timeout(&self) -> Duration {
        self.timeout
    }

    fn read_timeout(&self) -> Duration {
        self.timeout * 2 / 3
    }

    fn ping_interval(&self) -> Duration {
        self.timeout / 3
    }

    /// Next frame payload, or `None` at `deadline`.
    fn read_frame(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(f) = proto::take_frame(&mut self.raw).map_err(|e| proto_err(&self.ep, e))? {
                return Ok(Some(f));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.sock.set_read_timeout(deadline - now);
            let mut buf = [0u8; 16 * 1024];
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    return Err(Error::Unavailable(format!(
                        "{}: connection closed by server",
                        self.ep
                    )));
                }
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.last_recv = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(tls::io_error(&self.ep, "read", &e)),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> Result<()> {
        self.sock
            .set_write_timeout(self.read_timeout().max(Duration::from_millis(100)));
        self.sock
            .write_all(frame)
            .and_then(|()| self.sock.flush())
            .map_err(|e| tls::io_error(&self.ep, "send", &e))?;
        self.last_send = Instant::now();
        Ok(())
    }

    /// Handles a notification or ping reply; returns the header and the decoder positioned
    /// after it for anything else.
    fn dispatch<'a>(&mut self, payload: &'a [u8]) -> Result<Option<(ReplyHeader, Decoder<'a>)>> {
        let mut d = Decoder::new(payload);
        let h = ReplyHeader::decode(&mut d).map_err(|e| proto_err(&self.ep, e))?;
        match h.xid {
            proto::xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&mut d).map_err(|e| proto_err(&self.ep, e))?;
                if ev.kind == proto::event::NONE && ev.state == STATE_EXPIRED {
                    return Err(Error::Unavailable(format!("{}: session expired", self.ep)));
                }
                log::debug!(
                    "zookeeper {}: watch event {} on {}",
                    self.ep,
                    ev.kind,
                    ev.path
                );
                self.fired = true;
                Ok(None)
            }
            proto::xid::PING => Ok(None),
            _ => Ok(Some((h, d))),
        }
    }

    /// Sends one request and waits (bounded by two thirds of the session timeout) for its
    /// reply; returns the error code and the reply body.
    fn call(&mut self, op: i32, body: &Encoder) -> Result<(i32, Vec<u8>)> {
        self.xid = self.xid.wrapping_add(1).max(1);
        let xid = self.xid;
        self.send(&proto::request(xid, op, body))?;
        let deadline = Instant::now() + self.read_timeout();
        loop {
            let Some(payload) = self.read_frame(deadline)? else {
                return Err(Error::Unavailable(format!(
                    "{}: no reply within {:?}",
                    self.ep,
                    self.read_timeout()
                )));
            };
            if let Some((h, d)) = self.dispatch(&payload)? {
                if h.xid != xid {
                    return Err(Error::Unavailable(format!(
                        "{}: reply xid {} for request {xid}",
                        self.ep, h.xid
                    )));
                }
                if h.err == proto::code::SESSION_EXPIRED {
                    return Err(Error::Unavailable(format!("{}: session expired", self.ep)));
                }
                let rest = payload[payload.len() - d.remaining()..].to_vec();
                return Ok((h.err, rest));
            }
        }
    }

    fn check(&self, path: &str, err: i32) -> Result<()> {
        if err == proto::code::OK {
            Ok(())
        } else if err == proto::code::NO_AUTH {
            Err(Error::Denied(match &self.user {
                Some(u) => format!(
                    "{}: {path}: not authorized (NoAuth): the node's ACL does not admit user \
                     {u:?} — wrong password, or no permission",
                    self.ep
                ),
                None => format!(
                    "{}: {path}: not authorized (NoAuth): the node's ACL requires a login \
                     (set auth.username and a password source)",
                    self.ep
                ),
            }))
        } else {
            Err(Error::Unavailable(format!(
                "{}: {path}: ZooKeeper error {err}",
                self.ep
            )))
        }
    }

    /// Children of `path` (unsorted), `None` if it does not exist; `watch` arms a one-shot
    /// children watch.
    pub fn get_children(&mut self, path: &str, watch: bool) -> Result<Option<Vec<String>>> {
        let mut b = Encoder::new();
        b.string(path).bool(watch);
        let (err, body) = self.call(proto::op::GET_CHILDREN, &b)?;
        if err == proto::code::NO_NODE {
            return Ok(None);
        }
        self.check(path, err)?;
        Decoder::new(&body)
            .strings()
            .map(Some)
            .map_err(|e| proto_err(&self.ep, e))
    }

    /// Data of `path`, `None` if it does not exist; `watch` arms a one-shot data watch.
    pub fn get_data(&mut self, path: &str, watch: bool) -> Result<Option<Vec<u8>>> {
        let mut b = Encoder::new();
        b.string(path).bool(watch);
        let (err, body) = self.call(proto::op::GET_DATA, &b)?;
        if err == proto::code::NO_NODE {
            return Ok(None);
        }
        self.check(path, err)?;
        // The node's stat follows; only the data is needed.
        Decoder::new(&body)
            .buffer()
            .map(|d| Some(d.unwrap_or_default().to_vec()))
            .map_err(|e| proto_err(&self.ep, e))
    }

    /// Replaces the data of `path` (any version).
    pub fn set_data(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut b = Encoder::new();
        b.string(path).buffer(Some(data)).int(-1);
        let (err, _) = self.call(proto::op::SET_DATA, &b)?;
        self.check(path, err)
    }

    /// Whether `path` exists; `watch` arms a one-shot watch (also when it does not exist).
    pub fn exists(&mut self, path: &str, watch: bool) -> Result<bool> {
        let mut b = Encoder::new();
        b.string(path).bool(watch);
        let (err, _) = self.call(proto::op::EXISTS, &b)?;
        if err == proto::code::NO_NODE {
            return Ok(false);
        }
        self.check(path, err).map(|_| true)
    }

    /// Creates a persistent node with an open ACL. `Ok(false)` if it already exists.
    pub fn create(&mut self, path: &str, data: &[u8]) -> Result<bool> {
        self.create_node(path, data, false)
    }

    /// Creates a persistent node only this session's authenticated identities may use (ACL
    /// `auth::`, e.g. `digest:user:…`). `Ok(false)` if it already exists.
    pub fn create_private(&mut self, path: &str, data: &[u8]) -> Result<bool> {
        let mut b = Encoder::new();
        b.string(path).buffer(Some(data));
        proto::creator_acl(&mut b);
        b.int(0);
        let (err, _) = self.call(proto::op::CREATE, &b)?;
        if err == proto::code::NODE_EXISTS {
            return Ok(false);
        }
        self.check(path, err).map(|_| true)
    }

    fn create_node(&mut self, path: &str, data: &[u8], ephemeral: bool) -> Result<bool> {
        let mut b = Encoder::new();
        b.string(path).buffer(Some(data));
        proto::open_acl(&mut b);
        b.int(i32::from(ephemeral));
        let (err, _) = self.call(proto::op::CREATE, &b)?;
        if err == proto::code::NODE_EXISTS {
            return Ok(false);
        }
        self.check(path, err).map(|_| true)
    }

    /// Creates `path` and any missing ancestors (persistent, empty data).
    pub fn create_all(&mut self, path: &str) -> Result<()> {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            self.create(&cur, b"")?;
        }
        Ok(())
    }

    /// Deletes a node (any version). `Ok(false)` if it did not exist.
    pub fn delete(&mut self, path: &str) -> Result<bool> {
        let mut b = Encoder::new();
        b.string(path).int(-1);
        let (err, _) = self.call(proto::op::DELETE, &b)?;
        if err == proto::code::NO_NODE {
            return Ok(false);
        }
        self.check(path, err).map(|_| true)
    }

    /// Waits until a watch fires (`Ok(true)`) or `deadline` (`Ok(false)`), pinging as needed.
    /// An error means the connection or session is gone.
    pub fn wait_event(&mut self, deadline: Instant) -> Result<bool> {
        loop {
            if std::mem::take(&mut self.fired) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if now.duration_since(self.last_recv) >= self.read_timeout() {
                return Err(Error::Unavailable(format!(
                    "{}: nothing from the server for {:?}",
                    self.ep,
                    now.duration_since(self.last_recv)
                )));
            }
            if now.duration_since(self.last_send) >= self.ping_interval() {
                let ping = proto::request(proto::xid::PING, proto::op::PING, &Encoder::new());
                self.send(&ping)?;
            }
            let until = deadline
                .min(self.last_send + self.ping_interval())
                .min(self.last_recv + self.read_timeout())
                .max(now + Duration::from_millis(1));
            if let Some(payload) = self.read_frame(until)?
                && let Some((h, _)) = self.dispatch(&payload)?
            {
                return Err(Error::Unavailable(format!(
                    "{}: unexpected reply xid {}",
                    self.ep, h.xid
                )));
            }
        }
    }

    /// Closes the session (best effort) and the connection.
    pub fn close(mut self) {
        let _ = self.send(&proto::request(
            1,
            proto::op::CLOSE_SESSION,
            &Encoder::new(),
        ));
        let _ = self.read_frame(Instant::now() + Duration::from_millis(200));
    }
}

/// Session counters of a [`ZkSource`], for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZkSessionStats {
    /// New sessions opened.
    pub sessions: u64,
    /// Reconnects that resumed the previous session.
    pub resumed: u64,
    /// Reconnects refused because the session had expired.
    pub expired: u64,
}

/// Watches a ZooKeeper root node's pools (see the [module docs](self) for the layout).
#[derive(Debug)]
pub struct ZkSource {
    endpoints: Vec<String>,
    root: String,
    next_ep: usize,
    session_timeout: Duration,
    connect_timeout: Duration,
    conn: Option<ZkClient>,
    resume: Option<(i64, Vec<u8>)>,
    last: Option<Topology>,
    stats: ZkSessionStats,
    tls: Option<tls::Client>,
    auth: Option<AuthSection>,
}

impl ZkSource {
    /// A source for `root` (e.g. `/fae/pools`) on `endpoints` (`HOST:PORT`). Session timeout
    /// 10 s, connect timeout 1 s.
    pub fn new(endpoints: Vec<String>, root: impl Into<String>) -> ZkSource {
        let mut root = root.into();
        while root.len() > 1 && root.ends_with('/') {
            root.pop();
        }
        if !root.starts_with('/') {
            root.insert(0, '/');
        }
        ZkSource {
            endpoints,
            root,
            next_ep: 0,
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            conn: None,
            resume: None,
            last: None,
            stats: ZkSessionStats::default(),
            tls: None,
            auth: None,
        }
    }

    /// Speaks TLS to every endpoint (the servers' `secureClientPort`). Fails if the settings
    /// do not fit together; the files are read at connect, again whenever one changes.
    pub fn tls(mut self, settings: TlsSection) -> Result<ZkSource> {
        self.tls = Some(tls::Client::new(settings)?);
        Ok(self)
    }

    /// Logs in on every connection with `addauth digest user:password`.
    pub fn auth(mut self, auth: AuthSection) -> Result<ZkSource> {
        auth.check("auth").map_err(settings_error)?;
        self.auth = Some(auth);
        Ok(self)
    }

    /// Sets the requested session timeout and the connect (TCP + handshake) timeout.
    pub fn timeouts(mut self, session: Duration, connect: Duration) -> ZkSource {
        self.session_timeout = session;
        self.connect_timeout = connect;
        self
    }

    /// Session counters so far.
    pub fn session_stats(&self) -> ZkSessionStats {
        self.stats
    }

    /// Connects if needed (resuming the old session when the server allows it).
    fn ensure(&mut self) -> Result<&mut ZkClient> {
        if self.conn.is_none() {
            let n = self.endpoints.len();
            if n == 0 {
                return Err(Error::Invalid("no ZooKeeper endpoints".into()));
            }
            let mut last_err = None;
            for i in 0..n {
                let idx = (self.next_ep + i) % n;
                let ep = self.endpoints[idx].clone();
                match self.open(&ep) {
                    Ok(c) => {
                        self.next_ep = idx;
                        self.resume = Some((c.session_id, c.passwd.clone()));
                        self.conn = Some(c);
                        break;
                    }
                    // Settings and refusals are the same on every server.
                    Err(e @ (Error::Invalid(_) | Error::Denied(_))) => return Err(e),
                    Err(e) => last_err = Some(e),
                }
            }
            if self.conn.is_none() {
                self.next_ep = (self.next_ep + 1) % n;
                return Err(
                    last_err.unwrap_or_else(|| Error::Unavailable("no ZooKeeper endpoint".into()))
                );
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Unavailable("not connected".into()))
    }

    fn open(&mut self, ep: &str) -> Result<ZkClient> {
        if let Some((sid, pw)) = self.resume.clone() {
            match ZkClient::connect_session(
                ep,
                self.session_timeout,
                self.connect_timeout,
                Some((sid, &pw)),
                self.tls.as_mut(),
                self.auth.as_ref(),
            )? {
                Connected::Session(c) if c.session_id == sid => {
                    self.stats.resumed += 1;
                    log::info!(
                        "zookeeper {ep}: resumed session 0x{sid:x}; re-reading and re-arming watches"
                    );
                    return Ok(c);
                }
                Connected::Session(c) => {
                    self.stats.sessions += 1;
                    return Ok(c);
                }
                Connected::Expired => {
                    self.stats.expired += 1;
                    self.resume = None;
                    log::warn!(
                        "zookeeper {ep}: session 0x{sid:x} expired; opening a new one and re-arming watches"
                    );
                }
            }
        }
        let c = match ZkClient::connect_session(
            ep,
            self.session_timeout,
            self.connect_timeout,
            None,
            self.tls.as_mut(),
            self.auth.as_ref(),
        )? {
            Connected::Session(c) => c,
            Connected::Expired => {
                return Err(Error::Unavailable(format!("{ep}: new session refused")));
            }
        };
        self.stats.sessions += 1;
        log::info!(target: "fae", "discovery=zookeeper endpoint={ep} session=0x{:x} state=new", c.session_id);
        Ok(c)
    }

    /// Reads the whole tree, arming watches on the root and every pool.
    fn read_all(&mut self) -> Result<Topology> {
        let root = self.root.clone();
        let source = self.describe();
        let c = self.ensure()?;
        let Some(pools) = c.get_children(&root, true)? else {
            // Watch for the root's creation, then report it.
            if c.exists(&root, true)? {
                c.fired = true;
            }
            return Err(Error::Invalid(format!(
                "zookeeper node {root} does not exist (watching for it)"
            )));
        };
        let mut t = Topology::default();
        for pool in pools {
            let p = if root == "/" {
                format!("/{pool}")
            } else {
                format!("{root}/{pool}")
            };
            if let Some(mut servers) = c.get_children(&p, true)? {
                servers.sort();
                if let Some(b) = c
                    .get_data(&p, true)?
                    .map(|data| pool_buckets(&p, &data))
                    .transpose()?
                    .flatten()
                {
                    t.buckets.insert(pool.clone(), b);
                }
                t.pools.insert(pool, servers);
            }
        }
        t.validate(&format!("zookeeper {root}"))?;
        t.source = source;
        Ok(t)
    }

    fn read_checked(&mut self) -> Result<Topology> {
        self.read_all().inspect_err(|e| {
            if matches!(e, Error::Unavailable(_)) {
                self.conn = None;
            }
        })
    }

    fn refresh(&mut self) -> Result<Option<Topology>> {
        let t = self.read_checked()?;
        if self.last.as_ref().is_some_and(|l| l.same_pools(&t)) {
            return Ok(None);
        }
        self.last = Some(t.clone());
        Ok(Some(t))
    }
}

impl Source for ZkSource {
    fn describe(&self) -> String {
        format!("zookeeper:{}{}", self.endpoints.join(","), self.root)
    }

    fn current(&mut self) -> Result<Topology> {
        let t = self.read_checked()?;
        self.last = Some(t.clone());
        Ok(t)
    }

    fn wait_change(&mut self, timeout: Duration) -> Result<Option<Topology>> {
        let deadline = Instant::now() + timeout;
        if self.last.is_none() || self.conn.is_none() {
            // First read, or a reconnect: re-read (re-arming every watch) and compare.
            if let Some(t) = self.refresh()? {
                return Ok(Some(t));
            }
        }
        loop {
            let c = self.ensure()?;
            match c.wait_event(deadline) {
                Ok(true) => {
                    if let Some(t) = self.refresh()? {
                        return Ok(Some(t));
                    }
                }
                Ok(false) => return Ok(None),
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for ZkSource {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }
}
