//! The small part of the ZooKeeper wire protocol the [`super::zookeeper`] source needs:
//! jute encoding (big-endian ints and longs, length-prefixed buffers and strings, `-1` for
//! null) and 4-byte length framing. Decoding never panics: short or inconsistent input is a
//! [`ProtoError`].

use std::fmt;

/// Largest frame accepted from a server (ZooKeeper's default `jute.maxbuffer` is 1 MiB).
pub const MAX_FRAME: usize = 4 << 20;

/// Operation codes (`ZooDefs.OpCode`).
pub mod op {
    /// create
    pub const CREATE: i32 = 1;
    /// delete
    pub const DELETE: i32 = 2;
    /// exists
    pub const EXISTS: i32 = 3;
    /// getData
    pub const GET_DATA: i32 = 4;
    /// setData
    pub const SET_DATA: i32 = 5;
    /// getChildren
    pub const GET_CHILDREN: i32 = 8;
    /// ping
    pub const PING: i32 = 11;
    /// getChildren2 (children and the parent's stat)
    pub const GET_CHILDREN2: i32 = 12;
    /// closeSession
    pub const CLOSE_SESSION: i32 = -11;
    /// auth (`addauth`)
    pub const AUTH: i32 = 100;
}

/// Reserved xids.
pub mod xid {
    /// Watcher notification from the server.
    pub const NOTIFICATION: i32 = -1;
    /// Ping reply.
    pub const PING: i32 = -2;
    /// Auth packet and its reply.
    pub const AUTH: i32 = -4;
}

/// Error codes in reply headers (`KeeperException.Code`).
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The node does not exist.
    pub const NO_NODE: i32 = -101;
    /// The node has children.
    pub const NOT_EMPTY: i32 = -111;
    /// The node already exists.
    pub const NODE_EXISTS: i32 = -110;
    /// The session has expired.
    pub const SESSION_EXPIRED: i32 = -112;
    /// The node's ACL does not admit this session.
    pub const NO_AUTH: i32 = -102;
    /// The server rejected the credentials (and closes the connection).
    pub const AUTH_FAILED: i32 = -115;
}

/// Watcher event types (`Watcher.Event.EventType`).
pub mod event {
    /// No node event (a session state change).
    pub const NONE: i32 = -1;
    /// Node created.
    pub const NODE_CREATED: i32 = 1;
    /// Node deleted.
    pub const NODE_DELETED: i32 = 2;
    /// Node data changed.
    pub const NODE_DATA_CHANGED: i32 = 3;
    /// Node children changed.
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// Undecodable input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zookeeper protocol: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

/// Jute encoder; [`Encoder::frame`] prepends the length.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }
    /// Appends a big-endian i32.
    pub fn int(&mut self, v: i32) -> &mut Encoder {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian i64.
    pub fn long(&mut self, v: i64) -> &mut Encoder {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a boolean (one byte).
    pub fn bool(&mut self, v: bool) -> &mut Encoder {
        self.buf.push(u8::from(v));
        self
    }
    /// Appends a buffer (`-1` length for `None`).
    pub fn buffer(&mut self, v: Option<&[u8]>) -> &mut Encoder {
        match v {
            None => self.int(-1),
            Some(b) => {
                self.int(i32::try_from(b.len()).unwrap_or(i32::MAX));
                self.buf.extend_from_slice(b);
                self
            }
        }
    }
    /// Appends a UTF-8 string.
    pub fn string(&mut self, s: &str) -> &mut Encoder {
        self.buffer(Some(s.as_bytes()))
    }
    /// The payload without a length prefix.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// The payload with its 4-byte big-endian length prefix.
    pub fn frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 4);
        out.extend_from_slice(&(self.buf.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.buf);
        out
    }
}

/// Jute decoder over one frame's payload.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Decodes `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                ProtoError(format!(
                    "short {what}: need {n} bytes at {}, have {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// Bytes not yet decoded.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// A big-endian i32.
    pub fn int(&mut self) -> Result<i32, ProtoError> {
        let b = self.take(4, "int")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A big-endian i64.
    pub fn long(&mut self) -> Result<i64, ProtoError> {
        let b = self.take(8, "long")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, ProtoError> {
        Ok(self.take(1, "bool")?[0] != 0)
    }
    /// A buffer; `None` for length -1.
    pub fn buffer(&mut self) -> Result<Option<&'a [u8]>, ProtoError> {
        let n = self.int()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| ProtoError(format!("negative length {n}")))?;
        Ok(Some(self.take(n, "buffer")?))
    }
    /// A UTF-8 string (null is an error).
    pub fn string(&mut self) -> Result<String, ProtoError> {
        let b = self
            .buffer()?
            .ok_or_else(|| ProtoError("null string".into()))?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError("string is not UTF-8".into()))
    }
    /// A vector of strings (null is an empty vector).
    pub fn strings(&mut self) -> Result<Vec<String>, ProtoError> {
        let n = self.int()?;
        if n == -1 {
            return Ok(Vec::new());
        }
        let n = usize::try_from(n).map_err(|_| ProtoError(format!("negative count {n}")))?;
        // Each string needs at least 4 bytes: refuse counts the frame cannot hold.
        if n > self.remaining() / 4 {
            return Err(ProtoError(format!("vector count {n} exceeds frame")));
        }
        (0..n).map(|_| self.string()).collect()
    }
    /// Skips a `Stat` (68 bytes) and returns `(version, cversion, num_children)`.
    pub fn stat(&mut self) -> Result<Stat, ProtoError> {
        let czxid = self.long()?;
        let mzxid = self.long()?;
        let _ctime = self.long()?;
        let _mtime = self.long()?;
        let version = self.int()?;
        let cversion = self.int()?;
        let _aversion = self.int()?;
        let ephemeral_owner = self.long()?;
        let data_length = self.int()?;
        let num_children = self.int()?;
        let pzxid = self.long()?;
        Ok(Stat {
            czxid,
            mzxid,
            version,
            cversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid,
        })
    }
}

/// The fields of a node's `Stat` this client looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// zxid of the create.
    pub czxid: i64,
    /// zxid of the last data change.
    pub mzxid: i64,
    /// Data version.
    pub version: i32,
    /// Children version.
    pub cversion: i32,
    /// Session owning an ephemeral node, else 0.
    pub ephemeral_owner: i64,
    /// Data length.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// zxid of the last children change.
    pub pzxid: i64,
}

/// Removes and returns the first complete frame's payload from `buf`, if one is there.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if n > MAX_FRAME {
        return Err(ProtoError(format!(
            "frame of {n} bytes exceeds {MAX_FRAME}"
        )));
    }
    if buf.len() < 4 + n {
        return Ok(None);
    }
    let payload = buf[4..4 + n].to_vec();
    buf.drain(..4 + n);
    Ok(Some(payload))
}

/// `ConnectRequest`: a new session (`session_id` 0, zero password) or a resumed one.
pub fn connect_request(timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.int(0) // protocolVersion
        .long(0) // lastZxidSeen: 0, the source re-reads everything after a reconnect
        .int(timeout_ms)
        .long(session_id)
        .buffer(Some(passwd))
        .bool(false); // readOnly
    e.frame()
}

/// `ConnectResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Negotiated session timeout; `<= 0` means the requested session has expired.
    pub timeout_ms: i32,
    /// Session id.
    pub session_id: i64,
    /// Session password (for resuming).
    pub passwd: Vec<u8>,
}

impl ConnectResponse {
    /// Decodes a connect response payload (the trailing `readOnly` byte is optional).
    pub fn decode(payload: &[u8]) -> Result<ConnectResponse, ProtoError> {
        let mut d = Decoder::new(payload);
        let _proto = d.int()?;
        let timeout_ms = d.int()?;
        let session_id = d.long()?;
        let passwd = d.buffer()?.unwrap_or_default().to_vec();
        Ok(ConnectResponse {
            timeout_ms,
            session_id,
            passwd,
        })
    }
}

/// A request frame: header (xid, op) then `body`.
pub fn request(xid: i32, op: i32, body: &Encoder) -> Vec<u8> {
    let mut e = Encoder::new();
    e.int(xid).int(op);
    e.buf.extend_from_slice(body.bytes());
    e.frame()
}

/// A reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Request id, or [`xid::NOTIFICATION`] / [`xid::PING`].
    pub xid: i32,
    /// Server zxid.
    pub zxid: i64,
    /// Error code ([`code`]).
    pub err: i32,
}

impl ReplyHeader {
    /// Decodes the header at the start of a reply payload.
    pub fn decode(d: &mut Decoder<'_>) -> Result<ReplyHeader, ProtoError> {
        Ok(ReplyHeader {
            xid: d.int()?,
            zxid: d.long()?,
            err: d.int()?,
        })
    }
}

/// A watcher notification body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    /// Event type ([`event`]).
    pub kind: i32,
    /// Keeper state.
    pub state: i32,
    /// The node.
    pub path: String,
}

impl WatcherEvent {
    /// Decodes the body after a notification's reply header.
    pub fn decode(d: &mut Decoder<'_>) -> Result<WatcherEvent, ProtoError> {
        Ok(WatcherEvent {
            kind: d.int()?,
            state: d.int()?,
            path: d.string()?,
        })
    }
}

/// The ACL `world:anyone` with all permissions, as a jute vector.
pub fn open_acl(e: &mut Encoder) {
    e.int(1).int(31).string("world").string("anyone");
}

/// The ACL `auth::` with all permissions: the server replaces it with the creating session's
/// authenticated identities (e.g. `digest:user:hash`), so only they may read the node.
pub fn creator_acl(e: &mut Encoder) {
    e.int(1).int(31).string("auth").string("");
}

/// An `AuthPacket` (`addauth SCHEME AUTH`), framed, with the reserved auth xid.
pub fn auth_request(scheme: &str, auth: &[u8]) -> Vec<u8> {
    let mut b = Encoder::new();
    b.int(0).string(scheme).buffer(Some(auth));
    request(xid::AUTH, op::AUTH, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_roundtrip_and_partial() {
        let mut e = Encoder::new();
        e.int(-2)
            .long(0x0102_0304_0506_0708)
            .bool(true)
            .string("/fae")
            .buffer(None);
        let f = e.frame();
        assert_eq!(&f[..4], &(f.len() as u32 - 4).to_be_bytes());
        let mut buf = f[..7].to_vec();
        assert_eq!(take_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&f[7..]);
        buf.extend_from_slice(&[0, 0]);
        let p = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!(buf, vec![0, 0], "the rest stays");
        let mut d = Decoder::new(&p);
        assert_eq!(d.int().unwrap(), -2);
        assert_eq!(d.long().unwrap(), 0x0102_0304_0506_0708);
        assert!(d.bool().unwrap());
        assert_eq!(d.string().unwrap(), "/fae");
        assert_eq!(d.buffer().unwrap(), None);
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn connect_request_layout() {
        let f = connect_request(2000, 0, &[0; 16]);
        // len + proto + zxid + timeout + session + (len + 16) + readOnly
        assert_eq!(f.len(), 4 + 4 + 8 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(&f[16..20], &2000i32.to_be_bytes());
        let mut r = Encoder::new();
        r.int(0).int(4000).long(77).buffer(Some(&[9; 16]));
        let c = ConnectResponse::decode(r.bytes()).unwrap();
        assert_eq!((c.timeout_ms, c.session_id, c.passwd.len()), (4000, 77, 16));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut big = vec![0xff, 0xff, 0xff, 0xff];
        assert!(take_frame(&mut big).is_err());
        for junk in [&[][..], &[0, 0, 0], &[0, 0, 0, 1, 0xff], &[0xff; 40]] {
            let mut d = Decoder::new(junk);
            let _ = d.strings();
            let mut d = Decoder::new(junk);
            let _ = d.stat();
            let _ = ConnectResponse::decode(junk);
            let mut d = Decoder::new(junk);
            let _ = ReplyHeader::decode(&mut d).and_then(|_| WatcherEvent::decode(&mut d));
        }
        let mut e = Encoder::new();
        e.int(1_000_000);
        assert!(Decoder::new(e.bytes()).strings().is_err());
        let mut e = Encoder::new();
        e.int(-5);
        assert!(Decoder::new(e.bytes()).buffer().is_err());
    }
}
