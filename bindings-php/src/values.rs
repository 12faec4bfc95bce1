//! php-memcached's value format: the flags layout and payloads of `s_zval_to_payload` /
//! `php_memc_zval_from_payload` (notes/client-anchors.md §3.4), so values written by
//! php-memcached read back here and the other way round.
//!
//! ```text
//! flags = [ 31..16 user flags | 15..4 internal | 3..0 type ]
//! type: 0 string, 1 long, 2 double, 3 bool, 4 serialize(), 5 igbinary, 6 JSON, 7 msgpack
//! internal: 0x10 compressed, 0x20 zlib, 0x40 fastlz (0x80 zstd: not supported)
//! compressed payload = original length (u32, native endian) ‖ stream
//! ```

use std::io::{Read, Write};

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::types::{ZendCallable, ZendStr, Zval};

use crate::codes::{RES_E2BIG, RES_INVALID_ARGUMENTS, RES_PAYLOAD_FAILURE};
use crate::fastlz;

pub const VAL_STRING: u32 = 0;
pub const VAL_LONG: u32 = 1;
pub const VAL_DOUBLE: u32 = 2;
pub const VAL_BOOL: u32 = 3;
pub const VAL_SERIALIZED: u32 = 4;
pub const VAL_IGBINARY: u32 = 5;
pub const VAL_JSON: u32 = 6;
pub const VAL_MSGPACK: u32 = 7;
const TYPE_MASK: u32 = 0xf;
pub const VAL_COMPRESSED: u32 = 0x10;
pub const VAL_ZLIB: u32 = 0x20;
pub const VAL_FASTLZ: u32 = 0x40;
pub const VAL_ZSTD: u32 = 0x80;

pub const SERIALIZER_PHP: i64 = 1;
pub const SERIALIZER_IGBINARY: i64 = 2;
pub const SERIALIZER_JSON: i64 = 3;
pub const SERIALIZER_JSON_ARRAY: i64 = 4;
pub const SERIALIZER_MSGPACK: i64 = 5;
pub const COMPRESSION_ZLIB: i64 = 1;
pub const COMPRESSION_FASTLZ: i64 = 2;

/// The value-related options (php-memcached's `memc_user_data`), with php-memcached's INI
/// defaults.
#[derive(Clone, Debug)]
pub struct ValueOpts {
    pub compression: bool,
    pub compression_type: i64,
    pub compression_level: i64,
    pub compression_threshold: usize,
    pub compression_factor: f64,
    pub serializer: i64,
    pub user_flags: u32,
    pub item_size_limit: usize,
}

impl Default for ValueOpts {
    fn default() -> Self {
        ValueOpts {
            compression: true,
            compression_type: COMPRESSION_FASTLZ,
            compression_level: 3,
            compression_threshold: 2000,
            compression_factor: 1.3,
            serializer: SERIALIZER_PHP,
            user_flags: 0,
            item_size_limit: 0,
        }
    }
}

/// A failed conversion: a `RES_*` code and a message.
pub type Fail = (i64, String);

fn payload_fail(msg: impl Into<String>) -> Fail {
    (RES_PAYLOAD_FAILURE, msg.into())
}

/// Is the PHP function `name` defined (igbinary, msgpack are optional extensions)?
pub fn have_function(name: &str) -> bool {
    ZendCallable::try_from_name(name).is_ok()
}

fn call(name: &str, args: Vec<&dyn IntoZvalDyn>) -> Result<Zval, Fail> {
    let f = ZendCallable::try_from_name(name)
        .map_err(|_| payload_fail(format!("{name}() is not available")))?;
    f.try_call(args)
        .map_err(|e| payload_fail(format!("{name}() failed: {e}")))
}

pub fn bytes_zval(b: &[u8]) -> Zval {
    let mut z = Zval::new();
    z.set_zend_string(ZendStr::new(b, false));
    z
}

fn zval_bytes(z: &Zval) -> Option<Vec<u8>> {
    z.zend_str().map(|s| s.as_bytes().to_vec())
}

/// PHP's double → text: shortest round trip, with php-memcached's spellings of the
/// non-finite values (its reader accepts "Infinity", "-Infinity" and "NaN").
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{d:?}")
    }
}

fn parse_double(s: &str) -> f64 {
    match s.trim() {
        "Infinity" | "INF" | "inf" => f64::INFINITY,
        "-Infinity" | "-INF" | "-inf" => f64::NEG_INFINITY,
        "NaN" | "NAN" | "nan" => f64::NAN,
        t => t.parse().unwrap_or(0.0),
    }
}

/// Serialize an array, object or null with the configured serializer.
fn serialize(value: &Zval, serializer: i64) -> Result<(Vec<u8>, u32), Fail> {
    let (func, ty): (&str, u32) = match serializer {
        SERIALIZER_PHP => ("serialize", VAL_SERIALIZED),
        SERIALIZER_IGBINARY => ("igbinary_serialize", VAL_IGBINARY),
        SERIALIZER_JSON | SERIALIZER_JSON_ARRAY => ("json_encode", VAL_JSON),
        SERIALIZER_MSGPACK => ("msgpack_pack", VAL_MSGPACK),
        s => return Err((RES_INVALID_ARGUMENTS, format!("unknown serializer {s}"))),
    };
    let arg = value.shallow_clone();
    let out = call(func, vec![&arg])?;
    let bytes = zval_bytes(&out)
        .ok_or_else(|| payload_fail(format!("could not serialize value with {func}()")))?;
    Ok((bytes, ty))
}

/// PHP value → (payload, flags).
pub fn encode(value: &Zval, o: &ValueOpts) -> Result<(Vec<u8>, u32), Fail> {
    let value = value.dereference();
    let (mut payload, mut flags) = if let Some(s) = value.zend_str() {
        (s.as_bytes().to_vec(), VAL_STRING)
    } else if let Some(l) = value.long() {
        (l.to_string().into_bytes(), VAL_LONG)
    } else if value.is_double() {
        let d = value.double().unwrap_or(0.0);
        (format_double(d).into_bytes(), VAL_DOUBLE)
    } else if value.is_bool() {
        let b = value.bool().unwrap_or(false);
        (if b { b"1".to_vec() } else { Vec::new() }, VAL_BOOL)
    } else {
        serialize(value, o.serializer)?
    };
    let compressible = !matches!(flags, VAL_LONG | VAL_DOUBLE | VAL_BOOL);
    if o.compression
        && compressible
        && payload.len() >= o.compression_threshold
        && let Some((c, cflag)) = compress(&payload, o)?
    {
        payload = c;
        flags |= VAL_COMPRESSED | cflag;
    }
    if o.item_size_limit > 0 && payload.len() > o.item_size_limit {
        return Err((
            RES_E2BIG,
            format!(
                "value of {} bytes exceeds OPT_ITEM_SIZE_LIMIT {}",
                payload.len(),
                o.item_size_limit
            ),
        ));
    }
    flags |= o.user_flags << 16;
    Ok((payload, flags))
}

/// Compress; `None` when it does not pay (`plain > compressed × factor` fails).
fn compress(plain: &[u8], o: &ValueOpts) -> Result<Option<(Vec<u8>, u32)>, Fail> {
    let len = u32::try_from(plain.len()).map_err(|_| payload_fail("value too large"))?;
    let (stream, flag) = match o.compression_type {
        COMPRESSION_ZLIB => {
            let level = u32::try_from(o.compression_level.clamp(0, 9)).unwrap_or(3);
            let mut e = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(plain.len() / 2),
                flate2::Compression::new(level),
            );
            e.write_all(plain)
                .and_then(|()| e.finish())
                .map(|v| (v, VAL_ZLIB))
                .map_err(|err| payload_fail(format!("zlib: {err}")))?
        }
        COMPRESSION_FASTLZ => (fastlz::compress(plain), VAL_FASTLZ),
        t => {
            return Err((
                RES_INVALID_ARGUMENTS,
                format!("unknown compression type {t}"),
            ));
        }
    };
    if (plain.len() as f64) <= (stream.len() as f64) * o.compression_factor {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(stream.len() + 4);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&stream);
    Ok(Some((out, flag)))
}

fn decompress(data: &[u8], flags: u32) -> Result<Vec<u8>, Fail> {
    if data.len() < 4 {
        return Err(payload_fail(
            "compressed value shorter than its length prefix",
        ));
    }
    let want = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let stream = &data[4..];
    if flags & VAL_ZLIB != 0 {
        let mut out = Vec::with_capacity(want);
        flate2::read::ZlibDecoder::new(stream)
            .take(want as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| payload_fail(format!("could not decompress value (zlib): {e}")))?;
        if out.len() != want {
            return Err(payload_fail("could not decompress value: length mismatch"));
        }
        Ok(out)
    } else if flags & VAL_FASTLZ != 0 {
        fastlz::decompress(stream, want)
            .map_err(|e| payload_fail(format!("could not decompress value: {e}")))
    } else if flags & VAL_ZSTD != 0 {
        Err(payload_fail("zstd-compressed value: zstd is not supported"))
    } else {
        Err(payload_fail("unrecognised compression type"))
    }
}

/// (payload, flags) → PHP value.
pub fn decode(data: &[u8], flags: u32, serializer: i64) -> Result<Zval, Fail> {
    let owned;
    let data = if flags & VAL_COMPRESSED != 0 {
        owned = decompress(data, flags)?;
        &owned[..]
    } else {
        data
    };
    let mut z = Zval::new();
    match flags & TYPE_MASK {
        VAL_STRING => return Ok(bytes_zval(data)),
        VAL_LONG => {
            let s = String::from_utf8_lossy(data);
            z.set_long(s.trim().parse::<i64>().unwrap_or(0));
        }
        VAL_DOUBLE => z.set_double(parse_double(&String::from_utf8_lossy(data))),
        VAL_BOOL => z.set_bool(data.first() == Some(&b'1')),
        VAL_SERIALIZED => {
            let arg = bytes_zval(data);
            let out = call("unserialize", vec![&arg])?;
            if out.is_false() && data != b"b:0;" {
                return Err(payload_fail("could not unserialize value"));
            }
            return Ok(out);
        }
        VAL_IGBINARY => {
            let arg = bytes_zval(data);
            return call("igbinary_unserialize", vec![&arg]);
        }
        VAL_MSGPACK => {
            let arg = bytes_zval(data);
            return call("msgpack_unpack", vec![&arg]);
        }
        VAL_JSON => {
            let arg = bytes_zval(data);
            let assoc = serializer == SERIALIZER_JSON_ARRAY;
            let out = call("json_decode", vec![&arg, &assoc])?;
            if out.is_null() && data.trim_ascii() != b"null" {
                return Err(payload_fail("could not decode JSON value"));
            }
            return Ok(out);
        }
        t => return Err(payload_fail(format!("unknown payload type {t}"))),
    }
    Ok(z)
}
