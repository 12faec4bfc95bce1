//! pymemcache's stored-value layout (`pymemcache/serde.py`; Django's `PyMemcacheCache`), which
//! python-memcached and pylibmc ([`super::pylibmc`]) share bit for bit on read.
//!
//! | flag | value | payload |
//! |---|---|---|
//! | [`BYTES`] | 0 | the bytes |
//! | [`PICKLE`] | 1 | a pickle |
//! | [`INTEGER`] | 2 | an int as decimal text |
//! | [`LONG`] | 4 | an int as decimal text (python-memcached's long, pylibmc's int) |
//! | [`COMPRESSED`] | 8 | with a type bit: the payload is a zlib stream, no length prefix |
//! | [`TEXT`] | 16 | UTF-8 text |
//!
//! Reading follows pymemcache's order: flags 0 are bytes, then text, integer/long, pickle.
//! Compression is opt-in ([`compress`]: longer than `min_compress_len`, kept only if smaller).

use std::borrow::Cow;

use super::ValueError;

/// Raw bytes.
pub const BYTES: u32 = 0;
/// A pickled object.
pub const PICKLE: u32 = 1;
/// An int, as decimal text.
pub const INTEGER: u32 = 2;
/// An int, as decimal text.
pub const LONG: u32 = 4;
/// The payload is a zlib stream (no length prefix).
pub const COMPRESSED: u32 = 8;
/// UTF-8 text.
pub const TEXT: u32 = 16;

/// What a stored value holds, by its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes (flags 0, or no known type bit).
    Bytes,
    /// UTF-8 text.
    Text,
    /// An int as decimal text.
    Int,
    /// A pickle.
    Pickle,
}

/// The kind of value `flags` describe, in pymemcache's order.
pub const fn kind(flags: u32) -> Kind {
    if flags == 0 {
        Kind::Bytes
    } else if flags & TEXT != 0 {
        Kind::Text
    } else if flags & (INTEGER | LONG) != 0 {
        Kind::Int
    } else if flags & PICKLE != 0 {
        Kind::Pickle
    } else {
        Kind::Bytes
    }
}

/// Take a stored value apart: its kind, and its payload inflated if [`COMPRESSED`] is set.
pub fn decode(data: &[u8], flags: u32) -> Result<(Kind, Cow<'_, [u8]>), ValueError> {
    let payload = if flags & COMPRESSED != 0 {
        Cow::Owned(super::zlib_decompress(data, None)?)
    } else {
        Cow::Borrowed(data)
    };
    Ok((kind(flags), payload))
}

/// The compressed payload to store instead of `plain`, or `None` to store it plain: only when
/// `min_compress_len > 0` and `plain` is longer, and only when the zlib stream at `level` is
/// smaller. The caller adds [`COMPRESSED`] to the type flag.
pub fn compress(plain: &[u8], min_compress_len: usize, level: u32) -> Option<Vec<u8>> {
    if min_compress_len == 0 || plain.len() <= min_compress_len {
        return None;
    }
    Some(super::zlib_compress(plain, level)).filter(|z| z.len() < plain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::values::test_noise as noise;

    #[test]
    fn kinds_follow_pymemcache_order() {
        assert_eq!(kind(0), Kind::Bytes);
        assert_eq!(kind(TEXT), Kind::Text);
        assert_eq!(kind(TEXT | COMPRESSED), Kind::Text);
        assert_eq!(kind(INTEGER), Kind::Int);
        assert_eq!(kind(LONG), Kind::Int);
        assert_eq!(kind(PICKLE), Kind::Pickle);
        assert_eq!(kind(COMPRESSED), Kind::Bytes);
        assert_eq!(kind(1 << 20), Kind::Bytes);
    }

    #[test]
    fn compression_is_opt_in_and_kept_only_when_smaller() {
        let text = b"pymemcache ".repeat(100);
        assert_eq!(compress(&text, 0, 6), None, "off");
        assert_eq!(
            compress(&text, text.len(), 6),
            None,
            "not longer than the minimum"
        );
        let z = compress(&text, 10, 6).unwrap();
        let (k, plain) = decode(&z, TEXT | COMPRESSED).unwrap();
        assert_eq!((k, &*plain), (Kind::Text, &text[..]));
        assert_eq!(compress(&noise(500), 10, 6), None, "zlib would grow it");
        assert!(decode(b"garbage", COMPRESSED).is_err());
    }
}
