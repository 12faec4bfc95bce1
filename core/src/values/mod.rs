//! Stored-value layouts of the client families libfae replaces, and the key-prefix rule.
//!
//! memcached stores opaque bytes plus a 32-bit `flags` word; each client family gives both
//! its own meaning. These modules are pure functions between (bytes, flags) as stored and
//! (type tag, plain payload bytes), compression included, so that every binding frames values
//! the same way and a value written from one language reads back in another. The bindings keep
//! only what needs their runtime: PHP's `serialize()`/igbinary/msgpack/JSON calls, Python's
//! pickle and `str`/`int` conversion.
//!
//! | module | layout | compression |
//! |---|---|---|
//! | [`php`] | php-memcached: type nibble, internal bits 4..7, user flags 16..31 | FastLZ (default) or zlib, 4-byte length prefix; zstd reported as unsupported |
//! | [`pylibmc`] | pylibmc: 0 bytes, 1 pickle, 2 bool, 4 int, 16 text | zlib (8), no prefix |
//! | [`pymemcache`] | pymemcache: 0 bytes, 1 pickle, 2 int, 4 long, 16 text | zlib (8), no prefix |
//! | [`prefix`] | a key prefix, hashed with the key or not | — |
//! | [`encrypt`] | libmemcached's AES encryption of the stored bytes (`setEncodingKey`), flags unchanged | — |
//!
//! Raw bytes with flags 0 is the one layout every family reads alike.

pub mod encrypt;
pub mod fastlz;
pub mod php;
pub mod prefix;
pub mod pylibmc;
pub mod pymemcache;

use std::fmt;
use std::io::{Read, Write};

pub use encrypt::{EncodingKey, Scheme};
pub use prefix::{KeyPrefix, PrefixedKey};

/// What is wrong with a stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueErrorKind {
    /// The bytes do not match their flags (truncated, bad stream, wrong length).
    Corrupt,
    /// A valid layout libfae does not read or write (zstd, a serializer from another runtime).
    Unsupported,
    /// The value is longer than the layout can describe (4 GiB for a length prefix).
    TooLarge,
    /// An encrypted layout whose bytes do not decrypt with the key given (another key, or
    /// a value stored unencrypted).
    Undecryptable,
}

/// A value that could not be framed or read; nothing is lost, the caller reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    kind: ValueErrorKind,
    message: String,
}

impl ValueError {
    /// An error of `kind` with a message naming what was wrong.
    pub fn new(kind: ValueErrorKind, message: impl Into<String>) -> ValueError {
        ValueError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> ValueError {
        ValueError::new(ValueErrorKind::Corrupt, message)
    }

    /// What kind of failure.
    pub fn kind(&self) -> ValueErrorKind {
        self.kind
    }

    /// The message, without a prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// An RFC 1950 zlib stream of `plain` at `level` (0–9, clamped).
pub fn zlib_compress(plain: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = e.write_all(plain);
    e.finish().unwrap_or_default()
}

/// Inflate a zlib stream. With `expected`, the output must be exactly that long (and no more
/// is ever inflated); without, it is read to its end.
pub fn zlib_decompress(stream: &[u8], expected: Option<usize>) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::with_capacity(expected.unwrap_or(stream.len() * 3));
    let mut r = flate2::read::ZlibDecoder::new(stream);
    let read = match expected {
        // One byte more than expected is enough to tell a longer stream apart.
        Some(n) => (&mut r).take(n as u64 + 1).read_to_end(&mut out),
        None => r.read_to_end(&mut out),
    };
    read.map_err(|e| ValueError::corrupt(format!("zlib data is corrupt: {e}")))?;
    match expected {
        Some(n) if out.len() != n => Err(ValueError::corrupt(format!(
            "zlib data inflates to {} bytes, its length prefix says {n}",
            if out.len() > n {
                format!("more than {n}")
            } else {
                out.len().to_string()
            }
        ))),
        _ => Ok(out),
    }
}

/// Bytes no compressor shrinks (xorshift64), for the layouts' tests.
#[cfg(test)]
pub(crate) fn test_noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_round_trips_and_checks_the_length() {
        let text = b"zlib zlib zlib zlib ".repeat(50);
        let z = zlib_compress(&text, 3);
        assert_eq!(&z[..1], &[0x78], "an RFC 1950 header");
        assert_eq!(zlib_decompress(&z, None).unwrap(), text);
        assert_eq!(zlib_decompress(&z, Some(text.len())).unwrap(), text);
        for wrong in [text.len() - 1, text.len() + 1] {
            let e = zlib_decompress(&z, Some(wrong)).unwrap_err();
            assert_eq!(e.kind(), ValueErrorKind::Corrupt, "{e}");
        }
        assert!(zlib_decompress(b"not zlib", None).is_err());
        assert!(
            zlib_decompress(&z[..z.len() / 2], None).is_err(),
            "truncated"
        );
    }
}
