//! ZooKeeper source, with a minimal synchronous client of the wire protocol
//! ([`super::zk_proto`]); no threads, no async runtime, every wait bounded.
//!
//! # Layout in ZooKeeper
//!
//! Under a root node (e.g. `/fae/pools`), one child per pool; that pool node's **children are
//! the server strings** (`host:port[:weight]`); node data is ignored:
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
//! A read sets one-shot watches on the root (`getChildren`) and on every pool
//! (`getChildren`); any watch event re-reads the whole tree, which re-arms every watch (ZooKeeper
//! coalesces changes between events, and re-reading catches them). If the root is missing an
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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::zk_proto::{
    self as proto, ConnectResponse, Decoder, Encoder, ReplyHeader, WatcherEvent,
};
use super::{Error, Result, Source, Topology};

/// Keeper state in a notification that says the session expired.
const STATE_EXPIRED: i32 = -112;

fn proto_err(ep: &str, e: proto::ProtoError) -> Error {
    Error::Unavailable(format!("{ep}: {e}"))
}

/// A ZooKeeper session over one TCP connection. One request at a time.
#[derive(Debug)]
pub struct ZkClient {
    ep: String,
    sock: TcpStream,
    raw: Vec<u8>,
    session_id: i64,
    passwd: Vec<u8>,
    timeout: Duration,
    xid: i32,
    last_recv: Instant,
    last_send: Instant,
    fired: bool,
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
        match ZkClient::connect_session(endpoint, session_timeout, connect_timeout, None)? {
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
    ) -> Result<Connected> {
        let deadline = Instant::now() + connect_timeout;
        let mut sock = super::connect(endpoint, connect_timeout)?;
        let (sid, pw) = resume.unwrap_or((0, &[0u8; 16]));
        let ms = i32::try_from(session_timeout.as_millis()).unwrap_or(i32::MAX);
        let _ = sock.set_write_timeout(Some(connect_timeout));
        sock.write_all(&proto::connect_request(ms, sid, pw))
            .map_err(|e| Error::Unavailable(format!("{endpoint}: send connect: {e}")))?;
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
        };
        let payload = c.read_frame(deadline)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "{endpoint}: no connect response within {connect_timeout:?}"
            ))
        })?;
        let r = ConnectResponse::decode(&payload).map_err(|e| proto_err(endpoint, e))?;
        if r.timeout_ms <= 0 {
            return Ok(Connected::Expired);
        }
        c.session_id = r.session_id;
        c.passwd = r.passwd;
        c.timeout = Duration::from_millis(r.timeout_ms as u64);
        Ok(Connected::Session(c))
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
            let _ = self
                .sock
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))));
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
                Err(e) => return Err(Error::Unavailable(format!("{}: read: {e}", self.ep))),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> Result<()> {
        let _ = self
            .sock
            .set_write_timeout(Some(self.read_timeout().max(Duration::from_millis(100))));
        self.sock
            .write_all(frame)
            .map_err(|e| Error::Unavailable(format!("{}: send: {e}", self.ep)))?;
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
        }
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
        let c = ZkClient::connect(ep, self.session_timeout, self.connect_timeout)?;
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
