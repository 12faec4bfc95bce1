//! What a get returns: the value bytes, the 32-bit client flags and the CAS token.
//!
//! The core never interprets `flags`: each binding encodes its language's types into them the
//! way the client it replaces does (php-memcached, pymemcache, pylibmc), so old entries read back.

/// A value read from memcached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The client flags stored with the value.
    pub flags: u32,
    /// The CAS token (0 when the request did not ask for it).
    pub cas: u64,
    /// Remaining lifetime in seconds, when the read asked for it and the server could say
    /// (meta protocol): `-1` never expires. `None` otherwise.
    pub ttl: Option<i64>,
}
