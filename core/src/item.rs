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
    /// Lease reads only (meta `W`): this client won the right to (re)fill the key.
    pub win: bool,
    /// Meta `X`: the item was invalidated (`md I`) and is served stale until refilled.
    pub stale: bool,
    /// Lease reads only (meta `Z`): another client already holds the win.
    pub win_taken: bool,
}

impl Item {
    /// An empty stub left by a lease read on a miss (meta `N`): no data, flags 0, and a win
    /// handed out. A real empty value with flags 0 looks the same while it is being
    /// recached; it is then refilled once more, which is harmless.
    pub fn is_lease_stub(&self) -> bool {
        self.value.is_empty() && self.flags == 0 && (self.win || self.win_taken)
    }
}

impl Item {
    /// The item, its value borrowed.
    pub fn borrowed(&self) -> ItemRef<'_> {
        ItemRef {
            value: &self.value,
            flags: self.flags,
            cas: self.cas,
            ttl: self.ttl,
            win: self.win,
            stale: self.stale,
            win_taken: self.win_taken,
        }
    }
}

/// An [`Item`] whose value is borrowed: what [`crate::Client::get_multi_each`] hands its
/// caller, the value still in the connection's read buffer (valid for that call only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemRef<'a> {
    /// The stored bytes.
    pub value: &'a [u8],
    /// The client flags stored with the value.
    pub flags: u32,
    /// The CAS token (0 when the request did not ask for it).
    pub cas: u64,
    /// As [`Item::ttl`].
    pub ttl: Option<i64>,
    /// As [`Item::win`].
    pub win: bool,
    /// As [`Item::stale`].
    pub stale: bool,
    /// As [`Item::win_taken`].
    pub win_taken: bool,
}

impl ItemRef<'_> {
    /// An owned copy.
    pub fn to_item(&self) -> Item {
        self.to_item_in(Vec::new())
    }

    /// An owned copy whose value is copied into `buf` (cleared first): a caller that keeps a
    /// buffer per thread makes the copy without allocating.
    pub fn to_item_in(&self, mut buf: Vec<u8>) -> Item {
        buf.clear();
        buf.extend_from_slice(self.value);
        Item {
            value: buf,
            flags: self.flags,
            cas: self.cas,
            ttl: self.ttl,
            win: self.win,
            stale: self.stale,
            win_taken: self.win_taken,
        }
    }
}

/// What a multi-get hands its caller per key ([`crate::Client::get_multi_each`]): the key's
/// index in the request and `Ok(Some)` hit, `Ok(None)` miss, `Err` its server failed.
pub type OnItem<'f> = dyn FnMut(usize, crate::Result<Option<ItemRef<'_>>>) + 'f;

/// Hand an owned result to `on` (the routes that build their results as lists).
pub(crate) fn hand_owned(on: &mut OnItem<'_>, i: usize, r: crate::Result<Option<Item>>) {
    match r {
        Ok(Some(it)) => on(i, Ok(Some(it.borrowed()))),
        Ok(None) => on(i, Ok(None)),
        Err(e) => on(i, Err(e)),
    }
}
