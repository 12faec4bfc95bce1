//! php-memcached's stored-value layout (`php_memcached.c`: `s_zval_to_payload`,
//! `s_compress_value`, `php_memc_zval_from_payload`, `s_decompress_value`, versions 2.2–3.3),
//! so values written by php-memcached read back through any libfae binding and the other way
//! round.
//!
//! ```text
//! flags = [ 31..16 user flags | 15..8 unused | 7..4 internal | 3..0 type ]
//! ```
//!
//! | type | value | payload |
//! |---|---|---|
//! | [`STRING`] | 0 | the bytes |
//! | [`LONG`] | 1 | decimal text ([`parse_long`]) |
//! | [`DOUBLE`] | 2 | shortest round-trip text; `Infinity`, `-Infinity`, `NaN` ([`format_double`]) |
//! | [`BOOL`] | 3 | `"1"` or `""` ([`bool_payload`]) |
//! | [`SERIALIZED`] | 4 | PHP `serialize()` |
//! | [`IGBINARY`] | 5 | igbinary |
//! | [`JSON`] | 6 | JSON text |
//! | [`MSGPACK`] | 7 | msgpack |
//! | [`FAE_PICKLE`] | 15 | libfae's Python `interop` serde: a pickle (PHP reports an unknown type) |
//!
//! | internal bit | value | meaning |
//! |---|---|---|
//! | [`COMPRESSED`] | 0x10 | the payload is compressed |
//! | [`ZLIB`] | 0x20 | … as an RFC 1950 zlib stream |
//! | [`FASTLZ`] | 0x40 | … as a FastLZ block ([`super::fastlz`]), php-memcached's default |
//! | [`ZSTD`] | 0x80 | … as a zstd frame (php-memcached 3.3 built with zstd): **unsupported**, reading or writing it is a [`ValueErrorKind::Unsupported`] error |
//!
//! A compressed payload is the original length as 4 bytes, little-endian (php-memcached
//! `memcpy`s a native `uint32_t`; every platform it is deployed on is little-endian), then the
//! stream. On read the stream must inflate to exactly that length.
//!
//! Compression (php-memcached's rule, INI defaults in [`Compress::default`]): only strings and
//! serialized types, only when the payload is at least `threshold` bytes long, kept only when
//! `plain length > compressed stream length × factor`.
//!
//! The user flag [`FAE_TEXT`] (0x8000) is libfae's: the Python `interop` serde marks a `str`
//! with it, so it reads back as `str` rather than `bytes`; PHP reads it as a string.

use std::borrow::Cow;

use super::{ValueError, ValueErrorKind, fastlz};

/// Type: a string, stored as is.
pub const STRING: u32 = 0;
/// Type: a PHP int, as decimal text.
pub const LONG: u32 = 1;
/// Type: a PHP float, as shortest round-trip text.
pub const DOUBLE: u32 = 2;
/// Type: a PHP bool, `"1"` or `""`.
pub const BOOL: u32 = 3;
/// Type: PHP `serialize()`.
pub const SERIALIZED: u32 = 4;
/// Type: igbinary.
pub const IGBINARY: u32 = 5;
/// Type: JSON.
pub const JSON: u32 = 6;
/// Type: msgpack.
pub const MSGPACK: u32 = 7;
/// Type (libfae's Python `interop` serde): a Python pickle.
pub const FAE_PICKLE: u32 = 0xF;
/// The type nibble.
pub const TYPE_MASK: u32 = 0xF;
/// Internal: the payload is compressed.
pub const COMPRESSED: u32 = 0x10;
/// Internal: compressed with zlib.
pub const ZLIB: u32 = 0x20;
/// Internal: compressed with FastLZ.
pub const FASTLZ: u32 = 0x40;
/// Internal: compressed with zstd (not supported here).
pub const ZSTD: u32 = 0x80;
/// User flags live in the upper 16 bits.
pub const USER_FLAGS_SHIFT: u32 = 16;
/// libfae's Python `interop` serde: user flag 0x8000 on a string marks a Python `str`.
pub const FAE_TEXT: u32 = 0x8000 << USER_FLAGS_SHIFT;

/// A compression method (php-memcached's `COMPRESSION_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// FastLZ, php-memcached's default (`memcached.compression_type=fastlz`).
    FastLz,
    /// zlib `compress2` at the given level (0–9).
    Zlib(u32),
    /// zstd: recognised, not supported.
    Zstd,
}

/// When and how to compress, with php-memcached's INI defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Compress {
    /// The method.
    pub method: Method,
    /// Compress payloads of at least this many bytes (`memcached.compression_threshold`).
    pub threshold: usize,
    /// Keep the compressed form only if plain > compressed × factor
    /// (`memcached.compression_factor`).
    pub factor: f64,
}

impl Default for Compress {
    /// FastLZ, threshold 2000 bytes, factor 1.3 (php-memcached's defaults).
    fn default() -> Self {
        Compress {
            method: Method::FastLz,
            threshold: 2000,
            factor: 1.3,
        }
    }
}

/// Does php-memcached ever compress a payload of type `ty`? (Never a long, double or bool.)
pub const fn compressible(ty: u32) -> bool {
    !matches!(ty & TYPE_MASK, LONG | DOUBLE | BOOL)
}

fn unsupported_zstd() -> ValueError {
    ValueError::new(
        ValueErrorKind::Unsupported,
        "zstd-compressed value: zstd is not supported (php-memcached's fastlz and zlib are)",
    )
}

/// Frame a value: `ty` is its type nibble, `plain` its payload, `user_flags` the upper 16
/// bits. Returns the bytes to store (borrowed when not compressed) and the flags.
pub fn encode<'a>(
    ty: u32,
    plain: &'a [u8],
    user_flags: u16,
    compress: Option<&Compress>,
) -> Result<(Cow<'a, [u8]>, u32), ValueError> {
    let mut flags = (ty & TYPE_MASK) | (u32::from(user_flags) << USER_FLAGS_SHIFT);
    let c = match compress {
        Some(c) if compressible(ty) && plain.len() >= c.threshold => c,
        _ => return Ok((Cow::Borrowed(plain), flags)),
    };
    let len = u32::try_from(plain.len()).map_err(|_| {
        ValueError::new(
            ValueErrorKind::TooLarge,
            format!(
                "a value of {} bytes does not fit php-memcached's 4-byte length prefix",
                plain.len()
            ),
        )
    })?;
    let (stream, bit) = match c.method {
        Method::FastLz => (fastlz::compress(plain), FASTLZ),
        Method::Zlib(level) => (super::zlib_compress(plain, level), ZLIB),
        Method::Zstd => return Err(unsupported_zstd()),
    };
    if plain.len() as f64 <= stream.len() as f64 * c.factor {
        return Ok((Cow::Borrowed(plain), flags));
    }
    let mut out = Vec::with_capacity(4 + stream.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&stream);
    flags |= COMPRESSED | bit;
    Ok((Cow::Owned(out), flags))
}

/// A stored value taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The type nibble ([`STRING`] … [`MSGPACK`], [`FAE_PICKLE`], or another the caller rejects).
    pub ty: u32,
    /// The upper 16 bits of the flags.
    pub user_flags: u16,
    /// The plain payload, decompressed if it was compressed (borrowed otherwise).
    pub payload: Cow<'a, [u8]>,
}

/// Take a stored value apart: decompress it if its flags say so (checking the length prefix)
/// and split the flags. A compressed value with no known method (php-memcached's
/// "unrecognised compression type") or a bad stream is [`ValueErrorKind::Corrupt`]; zstd is
/// [`ValueErrorKind::Unsupported`].
pub fn decode(data: &[u8], flags: u32) -> Result<Decoded<'_>, ValueError> {
    let payload = if flags & COMPRESSED != 0 {
        Cow::Owned(decompress(data, flags)?)
    } else {
        Cow::Borrowed(data)
    };
    Ok(Decoded {
        ty: flags & TYPE_MASK,
        user_flags: (flags >> USER_FLAGS_SHIFT) as u16,
        payload,
    })
}

fn decompress(data: &[u8], flags: u32) -> Result<Vec<u8>, ValueError> {
    if flags & (FASTLZ | ZLIB | ZSTD) == 0 {
        return Err(ValueError::corrupt(format!(
            "unrecognised compression type (flags {flags:#x})"
        )));
    }
    if flags & ZSTD != 0 && flags & (FASTLZ | ZLIB) == 0 {
        return Err(unsupported_zstd());
    }
    let (prefix, stream) = match data.split_first_chunk::<4>() {
        Some(split) => split,
        None => {
            return Err(ValueError::corrupt(
                "compressed value shorter than its 4-byte length prefix",
            ));
        }
    };
    let want = u32::from_le_bytes(*prefix) as usize;
    // php-memcached tests FastLZ before zlib.
    if flags & FASTLZ != 0 {
        fastlz::decompress(stream, want)
            .map_err(|e| ValueError::corrupt(format!("could not decompress value: {e}")))
    } else {
        super::zlib_decompress(stream, Some(want))
    }
}

/// php-memcached's text of a double: the shortest text that reads back as the same double,
/// and `Infinity`, `-Infinity`, `NaN` for the non-finite values (its reader accepts those).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // `{:?}` is the shortest round trip and keeps a ".0", so it reads back as a double.
        format!("{d:?}")
    }
}

/// A double payload back to a double (`None` when it is not a number). Accepts what
/// [`format_double`] writes and PHP's own spellings (`INF`, `-INF`, `NAN`).
pub fn parse_double(payload: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(payload).ok()?.trim();
    match s {
        "Infinity" | "INF" => Some(f64::INFINITY),
        "-Infinity" | "-INF" => Some(f64::NEG_INFINITY),
        "NaN" | "NAN" => Some(f64::NAN),
        // Rust's parser also takes "inf", "infinity", "nan" in any case.
        _ => s.parse().ok(),
    }
}

/// A long payload back to an int (`None` when it is not a decimal i64).
pub fn parse_long(payload: &[u8]) -> Option<i64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

/// The payload of a bool: `"1"` or `""`.
pub const fn bool_payload(b: bool) -> &'static [u8] {
    if b { b"1" } else { b"" }
}

/// A bool payload back to a bool: php-memcached reads true when the first byte is `'1'`.
pub fn parse_bool(payload: &[u8]) -> bool {
    payload.first() == Some(&b'1')
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::values::test_noise as noise;

    fn roundtrip(ty: u32, plain: &[u8], c: Option<&Compress>) -> (Vec<u8>, u32) {
        let (stored, flags) = encode(ty, plain, 0, c).unwrap();
        let d = decode(&stored, flags).unwrap();
        assert_eq!(d.ty, ty);
        assert_eq!(&*d.payload, plain);
        (stored.into_owned(), flags)
    }

    #[test]
    fn small_values_and_scalars_are_stored_as_is() {
        let c = Compress::default();
        assert_eq!(roundtrip(STRING, b"abc", Some(&c)), (b"abc".to_vec(), 0));
        let long = b"1".repeat(5000);
        // Never compressed, whatever their length: long, double, bool.
        for ty in [LONG, DOUBLE, BOOL] {
            assert_eq!(roundtrip(ty, &long, Some(&c)).1, ty);
        }
        assert_eq!(roundtrip(STRING, &long, None).1, 0, "compression off");
    }

    #[test]
    fn default_compression_is_fastlz_with_a_little_endian_length_prefix() {
        let text = b"php-memcached default ".repeat(100); // 2200 bytes ≥ 2000
        let (stored, flags) = roundtrip(SERIALIZED, &text, Some(&Compress::default()));
        assert_eq!(flags, SERIALIZED | COMPRESSED | FASTLZ);
        assert_eq!(stored[..4], 2200u32.to_le_bytes());
        assert_eq!(fastlz::decompress(&stored[4..], 2200).unwrap(), text);
    }

    #[test]
    fn zlib_compression_writes_an_rfc1950_stream() {
        let c = Compress {
            method: Method::Zlib(3),
            ..Compress::default()
        };
        let text = b"zlib ".repeat(1000);
        let (stored, flags) = roundtrip(STRING, &text, Some(&c));
        assert_eq!(flags, COMPRESSED | ZLIB);
        assert_eq!(stored[..4], 5000u32.to_le_bytes());
        assert_eq!(
            super::super::zlib_decompress(&stored[4..], None).unwrap(),
            text
        );
    }

    #[test]
    fn threshold_and_factor_follow_php_memcached() {
        let c = Compress {
            threshold: 100,
            ..Compress::default()
        };
        assert_eq!(roundtrip(STRING, &[b'a'; 99], Some(&c)).1, 0, "below");
        assert_ne!(
            roundtrip(STRING, &[b'a'; 100], Some(&c)).1,
            0,
            "at the threshold"
        );
        // Incompressible data: kept plain because plain ≤ compressed × 1.3.
        assert_eq!(roundtrip(STRING, &noise(3000), Some(&c)).1, 0);
        // A factor the compressed form cannot beat keeps it plain too.
        let strict = Compress { factor: 1e9, ..c };
        assert_eq!(roundtrip(STRING, &[b'a'; 5000], Some(&strict)).1, 0);
    }

    #[test]
    fn user_flags_take_the_upper_16_bits() {
        let (_, flags) = encode(JSON, b"[]", 0xbeef, None).unwrap();
        assert_eq!(flags, 0xbeef_0006);
        let d = decode(b"[]", flags).unwrap();
        assert_eq!((d.ty, d.user_flags), (JSON, 0xbeef));
        assert_eq!(FAE_TEXT, 0x8000_0000);
    }

    /// What php-memcached 3.2 stored for `str_repeat("hello fastlz ", 4) . "end"` with
    /// `memcached.compression_threshold=10`: flags 0x50 and these bytes.
    #[test]
    fn reads_a_value_php_memcached_compressed() {
        let stored = [
            0x37, 0, 0, 0, 0x0c, b'h', b'e', b'l', b'l', b'o', b' ', b'f', b'a', b's', b't', b'l',
            b'z', b' ', 0xe0, 0x1e, 0x0c, 0x02, b'e', b'n', b'd',
        ];
        let d = decode(&stored, 0x50).unwrap();
        assert_eq!(d.ty, STRING);
        assert_eq!(
            &*d.payload,
            [&b"hello fastlz ".repeat(4)[..], b"end"].concat()
        );
    }

    #[test]
    fn bad_compressed_values_are_errors() {
        let text = b"abc".repeat(1000);
        let (mut stored, flags) = roundtrip(STRING, &text, Some(&Compress::default()));
        let corrupt = |data: &[u8], flags| decode(data, flags).unwrap_err().kind();
        assert_eq!(corrupt(&stored[..3], flags), ValueErrorKind::Corrupt);
        assert_eq!(
            corrupt(&stored, COMPRESSED),
            ValueErrorKind::Corrupt,
            "no method"
        );
        assert_eq!(corrupt(&stored, COMPRESSED | ZLIB), ValueErrorKind::Corrupt);
        assert_eq!(
            corrupt(&stored, COMPRESSED | ZSTD),
            ValueErrorKind::Unsupported
        );
        stored[..4].copy_from_slice(&2999u32.to_le_bytes());
        assert_eq!(
            corrupt(&stored, flags),
            ValueErrorKind::Corrupt,
            "length prefix"
        );
        let zstd = Compress {
            method: Method::Zstd,
            ..Compress::default()
        };
        let e = encode(STRING, &text, 0, Some(&zstd)).unwrap_err();
        assert_eq!(e.kind(), ValueErrorKind::Unsupported);
        assert!(e.message().contains("zstd"), "{e}");
    }

    #[test]
    fn scalar_payloads() {
        for (d, text) in [
            (0.1, "0.1"),
            (3.0, "3.0"),
            (-2.5e-300, "-2.5e-300"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_double(d), text);
            assert_eq!(parse_double(text.as_bytes()), Some(d));
        }
        assert_eq!(format_double(f64::NAN), "NaN");
        assert!(parse_double(b"NaN").unwrap().is_nan());
        assert_eq!(parse_double(b"-INF"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"x"), None);
        assert_eq!(parse_long(b"-42"), Some(-42));
        assert_eq!(parse_long(b"99999999999999999999"), None);
        assert!(parse_bool(bool_payload(true)) && !parse_bool(bool_payload(false)));
        assert!(!parse_bool(b"0"));
    }
}
