//! The memcached wire protocols, sans I/O: requests are encoded into a `Vec<u8>`, replies are
//! decoded from a byte slice. Nothing here touches a socket.
//!
//! - [`text`]: the classic ASCII protocol (`get`, `gets`, `gat`, `set`, `cas`, `incr`, …).
//! - [`meta`]: memcached ≥ 1.6 meta commands (`mg`, `ms`, `md`, `ma`, `mn`), the default.
//!
//! Replies of both protocols are told apart by their first token (`VALUE` vs `VA`, `END` vs
//! `MN`, `STORED` vs `HD`), so one context-free [`Decoder`] reads either. The caller (the
//! connection) knows which request a reply answers and maps the generic [`Response`] to an
//! outcome. Decoding is incremental: `Ok(None)` means "need more bytes", and a reply split at
//! any byte boundary decodes the same as whole. Garbage, truncated or oversized replies give a
//! [`ProtocolError`], never a panic or an unbounded allocation.

pub mod decode;
pub mod meta;
mod num;
pub mod text;
mod tokenize;

pub use decode::Decoder;

use std::fmt;

/// Which wire protocol a pool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Classic ASCII protocol: works with every memcached and with proxies.
    Text,
    /// Meta commands (memcached ≥ 1.6): opaque tokens, quiet mode, binary keys.
    #[default]
    Meta,
}

impl Protocol {
    /// Stable name (`"text"`, `"meta"`), as in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Meta => "meta",
        }
    }
}

/// Which storage command a [`Request::Store`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Store unconditionally.
    Set,
    /// Store only if the key is absent.
    Add,
    /// Store only if the key is present.
    Replace,
    /// Append to an existing value (flags and TTL of the request are ignored by memcached).
    Append,
    /// Prepend to an existing value.
    Prepend,
    /// Store only if the item's CAS still equals this token.
    Cas(u64),
}

/// One request. Keys have been validated by [`crate::key::check`] before they get here; the
/// encoders base64-encode keys that need it (meta only, `b` flag).
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    /// Fetch one or more keys. `cas` asks for CAS tokens (`gets`); `touch` also updates the TTL
    /// (`gat`/`gats`). Text: one `get k1 k2 …` line, ended by `END`. Meta: one `mg` per key
    /// with `O<opaque + index>` and `k` (return key, checked against the request). Several keys
    /// are asked in quiet mode (`q`, hits only) and followed by `mn`, whose `MN` ends the batch;
    /// a single key is asked without either (see [`meta::quiet_get`]): its one reply, `VA`,
    /// `EN` or an error line, ends it. Binary (base64) keys are sent without `k`: memcached
    /// 1.6.18 returns the raw key for an item rebuilt by append/prepend/incr, which would break
    /// framing; they are matched by opaque alone (see `meta.rs`).
    Get {
        /// Keys to fetch.
        keys: &'a [&'a [u8]],
        /// Meta: the opaque of the first key; key `i` is sent with `opaque + i` (wrapping). A
        /// connection never reuses one soon ([`crate::pool`] counts them per connection), so a
        /// late or duplicated reply to an earlier request names an opaque not asked now.
        opaque: u32,
        /// Ask for CAS tokens.
        cas: bool,
        /// New TTL to set on hits (get-and-touch).
        touch: Option<u32>,
        /// Ask for the remaining TTL (meta `t`; the text protocol cannot say and ignores it).
        ttl: bool,
        /// Lease on a miss (meta `N<ttl>`): the server creates an empty stub living `ttl`
        /// seconds and answers `W` (this client fills the key) or, to everyone after, `Z`.
        /// Meta only: the text encoder ignores it (callers refuse leases on text pools).
        lease: Option<u32>,
        /// Early recache (meta `R<ttl>`): the first read that finds less than `ttl` seconds
        /// left wins (`W`), later ones see `Z`. Meta only.
        recache: Option<u32>,
    },
    /// A storage command.
    Store {
        /// set/add/replace/append/prepend/cas.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// The value (may be empty).
        value: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Expiry: 0 = never, ≤ 30 days = relative seconds, larger = unix time.
        exptime: u32,
        /// Ask the server not to reply (`noreply` / meta `q`). Errors are still sent.
        noreply: bool,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: &'a [u8],
        /// Ask the server not to reply.
        noreply: bool,
        /// Invalidate instead of removing (meta `md I`): the item stays, marked stale with a
        /// new CAS, for this many more seconds (`T`; 0 = keep its TTL). Lease readers are then
        /// served the stale value while one of them refills; an outstanding lease's set fails.
        /// Meta only: the text encoder sends a plain `delete`.
        invalidate: Option<u32>,
        /// Only if the item's CAS is still this (meta `C`; `EX` otherwise). Meta only: the text
        /// encoder sends a plain `delete` (callers never ask it of a text pool).
        cas: Option<u64>,
    },
    /// `incr`/`decr`. Text replies with the new value or `NOT_FOUND`; meta asks for `v`, so the
    /// new value comes back as a `VA` whose data is the decimal number.
    Arith {
        /// The key.
        key: &'a [u8],
        /// true for incr, false for decr (decr stops at 0; incr wraps at 2^64).
        incr: bool,
        /// The amount.
        delta: u64,
        /// Ask the server not to reply.
        noreply: bool,
    },
    /// Update a key's TTL.
    Touch {
        /// The key.
        key: &'a [u8],
        /// New expiry.
        exptime: u32,
        /// Ask the server not to reply.
        noreply: bool,
    },
    /// `flush_all [delay]`.
    FlushAll {
        /// Seconds before the flush takes effect (0 = now).
        delay: u32,
        /// Ask the server not to reply.
        noreply: bool,
    },
    /// `version` (both protocols: meta servers accept text commands).
    Version,
    /// A no-op that only produces an end marker: meta `mn` → `MN`. Text has no no-op, so the
    /// text encoder writes `version`, and the caller reads a [`Response::Version`].
    Noop,
}

/// A key a reply echoes (`VALUE <key>`, meta `k`): read as `&[u8]` (it derefs to one).
/// It is only compared with the key asked and dropped, so a short one is held inline: a
/// multi-get's replies then allocate nothing for their keys (100 allocations and frees per
/// 100-key read).
#[derive(Clone)]
pub struct EchoedKey(EchoedRepr);

/// Keys up to this long are held inline (`EchoedKey` is then as large as a `Vec` and a half).
const ECHOED_INLINE: usize = 38;

#[derive(Clone)]
enum EchoedRepr {
    Inline(u8, [u8; ECHOED_INLINE]),
    Heap(Vec<u8>),
}

impl From<&[u8]> for EchoedKey {
    fn from(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(n) if key.len() <= ECHOED_INLINE => {
                let mut b = [0; ECHOED_INLINE];
                b[..key.len()].copy_from_slice(key);
                EchoedKey(EchoedRepr::Inline(n, b))
            }
            _ => EchoedKey(EchoedRepr::Heap(key.to_vec())),
        }
    }
}

impl From<Vec<u8>> for EchoedKey {
    fn from(key: Vec<u8>) -> Self {
        if key.len() <= ECHOED_INLINE {
            EchoedKey::from(&key[..])
        } else {
            EchoedKey(EchoedRepr::Heap(key))
        }
    }
}

impl std::ops::Deref for EchoedKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            EchoedRepr::Inline(n, b) => &b[..usize::from(*n)],
            EchoedRepr::Heap(v) => v,
        }
    }
}

impl PartialEq for EchoedKey {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for EchoedKey {}

impl fmt::Debug for EchoedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

/// A value line and its data: `VALUE <key> <flags> <bytes> [<cas>]` (text) or
/// `VA <bytes> <flags>*` (meta).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Value {
    /// The key, when the reply names it (text always; meta with `k`, base64-decoded if `b`).
    pub key: Option<EchoedKey>,
    /// Meta opaque token `O<n>`, when present and numeric.
    pub opaque: Option<u32>,
    /// Client flags (`f` in meta; 0 when absent).
    pub flags: u32,
    /// CAS token, when asked for.
    pub cas: Option<u64>,
    /// Remaining TTL in seconds (`t` in meta; −1 = never expires).
    pub ttl: Option<i64>,
    /// Meta `W`: this client won the right to recache.
    pub win: bool,
    /// Meta `X`: the item is stale.
    pub stale: bool,
    /// Meta `Z`: another client already holds the win.
    pub win_taken: bool,
    /// The data.
    pub data: Vec<u8>,
}

/// The status lines of both protocols, mapped to one meaning each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `STORED`, `DELETED`, `TOUCHED`, `OK`, meta `HD`.
    Success,
    /// `NOT_STORED`, meta `NS`.
    NotStored,
    /// `EXISTS`, meta `EX`.
    Exists,
    /// `NOT_FOUND`, meta `NF`.
    NotFound,
    /// Meta `EN` (miss, when not quiet).
    Miss,
}

/// Which kind of error line the server sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// `ERROR`: unknown command.
    Error,
    /// `CLIENT_ERROR <msg>`: the server rejected our input.
    ClientError,
    /// `SERVER_ERROR <msg>`: the server failed (out of memory, too large, …).
    ServerError,
}

/// One decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A hit.
    Value(Value),
    /// `END` (text get batch) or `MN` (meta no-op).
    End,
    /// A status line. Meta `HD` may carry flags (`c<cas>`, `O<opaque>`, `k<key>`): only the CAS
    /// and opaque are kept.
    Status {
        /// The status.
        status: Status,
        /// `c<cas>` on a meta status line.
        cas: Option<u64>,
        /// `O<n>` on a meta status line.
        opaque: Option<u32>,
    },
    /// A bare decimal line: the text reply to `incr`/`decr`.
    Number(u64),
    /// `VERSION <string>`.
    Version(String),
    /// An error line.
    Error {
        /// Which error line.
        kind: ServerErrorKind,
        /// The message after the keyword (may be empty).
        message: String,
    },
}

/// One reply decoded by [`Decoder::decode_in_place`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// A hit: its header (with an empty [`Value::data`]) and where its data lies in the
    /// decoded bytes.
    Value(Value, std::ops::Range<usize>),
    /// Any other reply, as [`Decoder::decode`] gives it.
    Other(Response),
}

/// Why a reply could not be decoded. The connection it came from must be discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Append the wire bytes of `req` to `out`.
pub fn encode(protocol: Protocol, req: &Request<'_>, out: &mut Vec<u8>) {
    match protocol {
        Protocol::Text => text::encode(req, out),
        Protocol::Meta => meta::encode(req, out),
    }
}
