//! Python value ⇄ (bytes, flags), in the layouts of the clients users migrate from.
//!
//! | serde | writes | reads |
//! |---|---|---|
//! | `pymemcache` (default) | bytes 0, str 16, int 2, other pickle 1 (exact types, like pymemcache's `pickle_serde`) | 0, 16, 2, 4, 1, +8 zlib |
//! | `pylibmc` | bytes 0, str 16, bool 2, int 4, other pickle 1 (subclasses too, like pylibmc) | same as pymemcache (2 reads as int, as pylibmc does) |
//! | `raw` | bytes only, flags 0 | bytes, whatever the flags |
//! | `interop` | php-memcached's layout: bytes 0, str 0 + user flag 0x8000, int 1, float 2, bool 3, dict/list/None JSON 6, other pickle 0xF; zlib 0x30 with a 4-byte length prefix | that layout, plus pymemcache/pylibmc text (16) and zlib (8) |
//! | an object | `serde.serialize(key, value) -> (bytes, flags)` | `serde.deserialize(key, bytes, flags)` (pymemcache's serde protocol) |
//!
//! Compression (zlib) is opt-in for the Python layouts (`min_compress_len > 0`, as pylibmc's
//! per-call argument and pymemcache's `CompressedSerde`) and on for `interop` above 2000 bytes
//! when it saves 23 % (php-memcached's `compression_threshold` and `compression_factor` 1.3).

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::error::client_error;

/// pymemcache / pylibmc flags.
pub mod py_flags {
    /// Raw bytes.
    pub const BYTES: u32 = 0;
    /// Pickled object.
    pub const PICKLE: u32 = 1;
    /// pymemcache: int; pylibmc: bool.
    pub const INTEGER: u32 = 2;
    /// pylibmc: int; pymemcache reads it as int.
    pub const LONG: u32 = 4;
    /// zlib stream, no length prefix.
    pub const COMPRESSED: u32 = 8;
    /// UTF-8 text.
    pub const TEXT: u32 = 16;
}

/// php-memcached flags (`php_memcached.c`): type nibble, internal bits, user flags ≥ 16.
pub mod php_flags {
    /// Type: string.
    pub const STRING: u32 = 0;
    /// Type: long, decimal text.
    pub const LONG: u32 = 1;
    /// Type: double, shortest round-trip text.
    pub const DOUBLE: u32 = 2;
    /// Type: bool, "1" or "".
    pub const BOOL: u32 = 3;
    /// Type: PHP `serialize()`.
    pub const SERIALIZED: u32 = 4;
    /// Type: igbinary.
    pub const IGBINARY: u32 = 5;
    /// Type: JSON.
    pub const JSON: u32 = 6;
    /// Type: msgpack.
    pub const MSGPACK: u32 = 7;
    /// fae interop: Python pickle (PHP cannot read it; PHP reports an unknown type).
    pub const FAE_PICKLE: u32 = 0xF;
    /// Mask of the type nibble.
    pub const TYPE_MASK: u32 = 0xF;
    /// Internal: compressed.
    pub const COMPRESSED: u32 = 0x10;
    /// Internal: zlib.
    pub const ZLIB: u32 = 0x20;
    /// Internal: fastlz.
    pub const FASTLZ: u32 = 0x40;
    /// Internal: zstd.
    pub const ZSTD: u32 = 0x80;
    /// fae interop: user flag 0x8000 marks a Python `str` stored as a PHP string.
    pub const FAE_TEXT: u32 = 0x8000 << 16;
}

/// php-memcached's default `compression_threshold`.
pub const INTEROP_COMPRESS_THRESHOLD: usize = 2000;

/// Which layout a client uses.
#[derive(Debug)]
pub enum Serde {
    /// pymemcache's `pickle_serde` (Django's `PyMemcacheCache`).
    Pymemcache,
    /// pylibmc's native layout.
    Pylibmc,
    /// Bytes only.
    Raw,
    /// php-memcached's layout, readable from PHP.
    Interop,
    /// A user object with pymemcache's `serialize`/`deserialize` methods.
    Custom(Py<PyAny>),
}

impl Serde {
    /// Parse `serde=`: a name or an object with `serialize` and `deserialize`.
    pub fn from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Serde> {
        if let Ok(name) = obj.cast::<PyString>() {
            return match name.to_str()? {
                "pymemcache" => Ok(Serde::Pymemcache),
                "pylibmc" => Ok(Serde::Pylibmc),
                "raw" => Ok(Serde::Raw),
                "interop" => Ok(Serde::Interop),
                other => Err(client_error(
                    py,
                    "invalid_argument",
                    format!(
                        "unknown serde {other:?}; expected \"pymemcache\", \"pylibmc\", \"raw\", \
                         \"interop\" or an object with serialize/deserialize"
                    ),
                )),
            };
        }
        if obj.hasattr("serialize")? && obj.hasattr("deserialize")? {
            return Ok(Serde::Custom(obj.clone().unbind()));
        }
        Err(client_error(
            py,
            "invalid_argument",
            "serde must be a name or an object with serialize(key, value) and \
             deserialize(key, value, flags)",
        ))
    }

    /// The name shown by `Client.serde`.
    pub fn name(&self) -> &'static str {
        match self {
            Serde::Pymemcache => "pymemcache",
            Serde::Pylibmc => "pylibmc",
            Serde::Raw => "raw",
            Serde::Interop => "interop",
            Serde::Custom(_) => "custom",
        }
    }

    /// The compression threshold when the caller gave none.
    pub fn default_min_compress_len(&self) -> usize {
        match self {
            Serde::Interop => INTEROP_COMPRESS_THRESHOLD,
            _ => 0,
        }
    }
}

/// Bytes to send: borrowed from a Python `bytes` (no copy) or built here.
pub enum Payload<'py> {
    /// A Python bytes object's buffer.
    Borrowed(Bound<'py, PyBytes>),
    /// Serialized or compressed here.
    Owned(Vec<u8>),
}

impl Payload<'_> {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b.as_bytes(),
            Payload::Owned(v) => v,
        }
    }

    /// The bytes as an owned buffer (a copy only when borrowed).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Borrowed(b) => b.as_bytes().to_vec(),
            Payload::Owned(v) => v,
        }
    }
}

/// Options of one encode.
#[derive(Clone, Copy, Debug)]
pub struct EncodeOpts {
    /// Compress when the serialized value is longer than this (0 = never).
    pub min_compress_len: usize,
    /// zlib level 0–9.
    pub compress_level: u32,
    /// Pickle protocol.
    pub pickle_protocol: i32,
}

static PICKLE_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn pickle<'py>(py: Python<'py>, v: &Bound<'py, PyAny>, protocol: i32) -> PyResult<Vec<u8>> {
    let dumps = PICKLE_DUMPS.import(py, "pickle", "dumps")?;
    let out = dumps.call1((v, protocol))?;
    Ok(out.cast::<PyBytes>()?.as_bytes().to_vec())
}

fn unpickle<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let loads = PICKLE_LOADS.import(py, "pickle", "loads")?;
    loads.call1((PyBytes::new(py, data),))
}

fn compress(data: &[u8], level: u32) -> Option<Vec<u8>> {
    let mut e = ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::new(level.min(9)),
    );
    e.write_all(data).ok()?;
    e.finish().ok()
}

fn decompress(py: Python<'_>, data: &[u8]) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 3);
    ZlibDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| client_error(py, "invalid_value", format!("zlib data is corrupt: {e}")))?;
    Ok(out)
}

/// Python float → php-memcached's double text (shortest round trip; PHP's spellings of the
/// non-finite values).
fn php_double(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        // Rust's Display of f64 is the shortest text that round-trips, like Python's repr
        // and David Gay's g_fmt; `{:?}` keeps a ".0" PHP reads back as a double as well.
        format!("{f:?}")
    }
}

fn decimal(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(v.str()?.to_str()?.as_bytes().to_vec())
}

/// Python value → (bytes, flags).
pub fn encode<'py>(
    serde: &Serde,
    py: Python<'py>,
    key: &[u8],
    v: &Bound<'py, PyAny>,
    opts: EncodeOpts,
) -> PyResult<(Payload<'py>, u32)> {
    let (payload, flags) = match serde {
        Serde::Raw => match v.cast::<PyBytes>() {
            Ok(b) => (Payload::Borrowed(b.clone()), py_flags::BYTES),
            Err(_) => {
                return Err(client_error(
                    py,
                    "invalid_value",
                    format!(
                        "serde=\"raw\" stores bytes only, not {}",
                        v.get_type().name()?
                    ),
                ));
            }
        },
        Serde::Pymemcache => {
            // Exact types, as pymemcache: a str or int subclass is pickled and comes back as
            // its own class.
            if v.is_exact_instance_of::<PyBytes>() {
                (
                    Payload::Borrowed(v.cast::<PyBytes>()?.clone()),
                    py_flags::BYTES,
                )
            } else if v.is_exact_instance_of::<PyString>() {
                let s = v.cast::<PyString>()?.to_str()?;
                (Payload::Owned(s.as_bytes().to_vec()), py_flags::TEXT)
            } else if v.is_exact_instance_of::<PyInt>() {
                (Payload::Owned(decimal(v)?), py_flags::INTEGER)
            } else {
                (
                    Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
                    py_flags::PICKLE,
                )
            }
        }
        Serde::Pylibmc => {
            if let Ok(b) = v.cast::<PyBytes>() {
                (Payload::Borrowed(b.clone()), py_flags::BYTES)
            } else if let Ok(s) = v.cast::<PyString>() {
                (
                    Payload::Owned(s.to_str()?.as_bytes().to_vec()),
                    py_flags::TEXT,
                )
            } else if let Ok(b) = v.cast::<PyBool>() {
                let bytes = if b.is_true() { b"1" } else { b"0" };
                (Payload::Owned(bytes.to_vec()), py_flags::INTEGER)
            } else if v.is_instance_of::<PyInt>() {
                (Payload::Owned(decimal(v)?), py_flags::LONG)
            } else {
                (
                    Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
                    py_flags::PICKLE,
                )
            }
        }
        Serde::Interop => return encode_interop(py, v, opts),
        Serde::Custom(obj) => {
            let out = obj
                .bind(py)
                .call_method1("serialize", (PyBytes::new(py, key), v))?;
            let (data, flags): (Bound<'py, PyAny>, u32) = out.extract()?;
            let payload = if let Ok(b) = data.cast::<PyBytes>() {
                Payload::Borrowed(b.clone())
            } else if let Ok(s) = data.cast::<PyString>() {
                Payload::Owned(s.to_str()?.as_bytes().to_vec())
            } else {
                return Err(client_error(
                    py,
                    "invalid_value",
                    "serde.serialize must return (bytes, int)",
                ));
            };
            return Ok((payload, flags));
        }
    };
    if opts.min_compress_len > 0 && payload.as_slice().len() > opts.min_compress_len {
        let plain = payload.as_slice();
        let packed = py.detach(|| compress(plain, opts.compress_level));
        if let Some(packed) = packed.filter(|p| p.len() < plain.len()) {
            return Ok((Payload::Owned(packed), flags | py_flags::COMPRESSED));
        }
    }
    Ok((payload, flags))
}

fn encode_interop<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyAny>,
    opts: EncodeOpts,
) -> PyResult<(Payload<'py>, u32)> {
    use php_flags as f;
    let (payload, flags, compressible) = if let Ok(b) = v.cast::<PyBytes>() {
        (Payload::Borrowed(b.clone()), f::STRING, true)
    } else if let Ok(s) = v.cast::<PyString>() {
        (
            Payload::Owned(s.to_str()?.as_bytes().to_vec()),
            f::STRING | f::FAE_TEXT,
            true,
        )
    } else if let Ok(b) = v.cast::<PyBool>() {
        let bytes: &[u8] = if b.is_true() { b"1" } else { b"" };
        (Payload::Owned(bytes.to_vec()), f::BOOL, false)
    } else if let Ok(i) = v.cast::<PyInt>() {
        // PHP's long is 64-bit; a larger int goes as a pickle (PHP cannot read it).
        match i.extract::<i64>() {
            Ok(n) => (Payload::Owned(n.to_string().into_bytes()), f::LONG, false),
            Err(_) => (
                Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
                f::FAE_PICKLE,
                true,
            ),
        }
    } else if let Ok(x) = v.cast::<PyFloat>() {
        (
            Payload::Owned(php_double(x.value()).into_bytes()),
            f::DOUBLE,
            false,
        )
    } else if v.is_none()
        || v.is_exact_instance_of::<PyDict>()
        || v.is_exact_instance_of::<PyList>()
    {
        let dumps = JSON_DUMPS.import(py, "json", "dumps")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("separators", PyTuple::new(py, [",", ":"])?)?;
        kwargs.set_item("allow_nan", false)?;
        match dumps.call((v,), Some(&kwargs)) {
            Ok(text) => (
                Payload::Owned(text.cast::<PyString>()?.to_str()?.as_bytes().to_vec()),
                f::JSON,
                true,
            ),
            // Not JSON-serializable (a set inside, a non-str key …): keep it exact.
            Err(_) => (
                Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
                f::FAE_PICKLE,
                true,
            ),
        }
    } else {
        (
            Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
            f::FAE_PICKLE,
            true,
        )
    };
    let plain = payload.as_slice();
    if compressible && opts.min_compress_len > 0 && plain.len() >= opts.min_compress_len {
        let packed = py.detach(|| compress(plain, opts.compress_level));
        // php-memcached keeps the compressed form only if plain > compressed × 1.3.
        if let Some(packed) = packed.filter(|p| plain.len() as f64 > p.len() as f64 * 1.3) {
            let len = u32::try_from(plain.len()).unwrap_or(u32::MAX);
            let mut out = Vec::with_capacity(packed.len() + 4);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&packed);
            return Ok((Payload::Owned(out), flags | f::COMPRESSED | f::ZLIB));
        }
    }
    Ok((payload, flags))
}

fn parse_int<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let text = std::str::from_utf8(data)
        .map_err(|_| client_error(py, "invalid_value", "integer value is not ASCII"))?
        .trim();
    if let Ok(n) = text.parse::<i64>() {
        return Ok(n.into_pyobject(py)?.into_any());
    }
    // Larger than i64 (pylibmc stores 2**70 as "1180591620717411303424"): Python's int().
    py.get_type::<PyInt>()
        .call1((text,))
        .map_err(|_| client_error(py, "invalid_value", format!("not an integer: {text:?}")))
}

fn text<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match std::str::from_utf8(data) {
        Ok(s) => Ok(PyString::new(py, s).into_any()),
        Err(_) => Err(client_error(
            py,
            "invalid_value",
            "a value flagged as text is not UTF-8",
        )),
    }
}

/// (bytes, flags) → Python value.
pub fn decode<'py>(
    serde: &Serde,
    py: Python<'py>,
    key: &[u8],
    data: Vec<u8>,
    flags: u32,
) -> PyResult<Bound<'py, PyAny>> {
    use py_flags as f;
    match serde {
        Serde::Raw => Ok(PyBytes::new(py, &data).into_any()),
        Serde::Custom(obj) => obj.bind(py).call_method1(
            "deserialize",
            (PyBytes::new(py, key), PyBytes::new(py, &data), flags),
        ),
        Serde::Interop => decode_interop(py, data, flags),
        Serde::Pymemcache | Serde::Pylibmc => {
            if flags == 0 {
                return Ok(PyBytes::new(py, &data).into_any());
            }
            let data = if flags & f::COMPRESSED != 0 {
                decompress(py, &data)?
            } else {
                data
            };
            // pymemcache's order: text, integer, long, pickle. pylibmc's types are disjoint
            // bits, so the same order reads its values (its bool "1"/"0" reads as int, as
            // pylibmc itself returns it).
            if flags & f::TEXT != 0 {
                text(py, &data)
            } else if flags & (f::INTEGER | f::LONG) != 0 {
                parse_int(py, &data)
            } else if flags & f::PICKLE != 0 {
                unpickle(py, &data)
            } else {
                Ok(PyBytes::new(py, &data).into_any())
            }
        }
    }
}

fn decode_interop<'py>(py: Python<'py>, data: Vec<u8>, flags: u32) -> PyResult<Bound<'py, PyAny>> {
    use php_flags as f;
    let low = flags & 0xFFFF;
    // pymemcache/pylibmc values PHP never writes: text 16 (0x10 alone would be "compressed,
    // no method" in PHP), zlib 8 and 24.
    if low == py_flags::TEXT {
        return text(py, &data);
    }
    if low == py_flags::COMPRESSED || low == py_flags::COMPRESSED | py_flags::TEXT {
        let plain = decompress(py, &data)?;
        return if low & py_flags::TEXT != 0 {
            text(py, &plain)
        } else {
            Ok(PyBytes::new(py, &plain).into_any())
        };
    }
    let data = if flags & f::COMPRESSED != 0 {
        if flags & f::ZLIB != 0 {
            if data.len() < 4 {
                return Err(client_error(
                    py,
                    "invalid_value",
                    "php-memcached zlib value shorter than its length prefix",
                ));
            }
            decompress(py, &data[4..])?
        } else {
            let method = if flags & f::FASTLZ != 0 {
                "fastlz"
            } else if flags & f::ZSTD != 0 {
                "zstd"
            } else {
                "unknown"
            };
            return Err(client_error(
                py,
                "unsupported_value",
                format!(
                    "php-memcached value compressed with {method} (flags {flags:#x}); set \
                     memcached.compression_type=zlib in PHP to share compressed values"
                ),
            ));
        }
    } else {
        data
    };
    match flags & f::TYPE_MASK {
        f::STRING if flags & f::FAE_TEXT != 0 => text(py, &data),
        f::STRING => Ok(PyBytes::new(py, &data).into_any()),
        f::LONG => parse_int(py, &data),
        f::DOUBLE => {
            let s = std::str::from_utf8(&data).unwrap_or("").trim();
            // Rust parses "Infinity", "-Infinity", "NaN", "INF" and decimal/exponent text.
            let x: f64 = s
                .parse()
                .map_err(|_| client_error(py, "invalid_value", format!("not a double: {s:?}")))?;
            Ok(PyFloat::new(py, x).into_any())
        }
        f::BOOL => Ok(PyBool::new(py, !data.is_empty() && data != b"0")
            .to_owned()
            .into_any()),
        f::JSON => {
            let loads = JSON_LOADS.import(py, "json", "loads")?;
            loads.call1((PyBytes::new(py, &data),))
        }
        f::FAE_PICKLE => unpickle(py, &data),
        t @ (f::SERIALIZED | f::IGBINARY | f::MSGPACK) => {
            let name = match t {
                f::SERIALIZED => "PHP serialize()",
                f::IGBINARY => "igbinary",
                _ => "msgpack",
            };
            Err(client_error(
                py,
                "unsupported_value",
                format!(
                    "value written by PHP with {name} (flags {flags:#x}); store it as JSON \
                     (Memcached::SERIALIZER_JSON) to read it from Python"
                ),
            ))
        }
        _ => Err(client_error(
            py,
            "unsupported_value",
            format!("unknown value type in flags {flags:#x}"),
        )),
    }
}
