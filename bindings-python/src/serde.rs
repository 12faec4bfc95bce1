//! Python value ⇄ (bytes, flags), in the layouts of the clients users migrate from.
//!
//! | serde | writes | reads |
//! |---|---|---|
//! | `pymemcache` (default) | bytes 0, str 16, int 2, other pickle 1 (exact types, like pymemcache's `pickle_serde`) | 0, 16, 2, 4, 1, +8 zlib |
//! | `pylibmc` | bytes 0, str 16, bool 2, int 4, other pickle 1 (subclasses too, like pylibmc) | same as pymemcache (2 reads as int, as pylibmc does) |
//! | `raw` | bytes only, flags 0 | bytes, whatever the flags |
//! | `interop` | php-memcached's layout: bytes 0, str 0 + user flag 0x8000, int 1, float 2, bool 3, dict/list/None JSON 6, other pickle 0xF; zlib 0x30 with a 4-byte length prefix | that layout (FastLZ 0x50 too, php-memcached's default), plus pymemcache/pylibmc text (16) and zlib (8) |
//! | an object | `serde.serialize(key, value) -> (bytes, flags)` | `serde.deserialize(key, bytes, flags)` (pymemcache's serde protocol) |
//!
//! Compression (zlib) is opt-in for the Python layouts (`min_compress_len > 0`, as pylibmc's
//! per-call argument and pymemcache's `CompressedSerde`) and on for `interop` from 2000 bytes
//! when it saves 23 % (php-memcached's `compression_threshold` and `compression_factor` 1.3).
//!
//! The layouts themselves (flag bits, compression, php-memcached's length prefix) are the
//! core's `fae_core::values`; this file maps Python objects to (type, payload bytes) and back.

use std::borrow::Cow;

use fae_core::values::php::{self, Compress, Method};
use fae_core::values::pymemcache::{self as pm, Kind};
use fae_core::values::{ValueError, ValueErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::error::client_error;

/// pymemcache's flags; pylibmc's ([`fae_core::values::pylibmc`]) are the same bits.
use pm::{BYTES, COMPRESSED, INTEGER, PICKLE, TEXT};

fn value_error(py: Python<'_>, e: ValueError) -> PyErr {
    let reason = match e.kind() {
        ValueErrorKind::Unsupported => "unsupported_value",
        _ => "invalid_value",
    };
    client_error(py, reason, e.message())
}

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

/// A str's UTF-8 bytes (the 3.9 stable ABI encodes into a new `bytes`); a lone surrogate,
/// which UTF-8 cannot carry, is a `ClientError` with `reason` rather than a `UnicodeEncodeError`.
pub fn utf8<'py>(s: &Bound<'py, PyString>, reason: &str) -> PyResult<Bound<'py, PyBytes>> {
    s.encode_utf8().map_err(|_| {
        client_error(
            s.py(),
            reason,
            "a str with a lone surrogate cannot be encoded as UTF-8",
        )
    })
}

/// A str as Rust text, with [`utf8`]'s error.
pub fn str_text<'a>(s: &'a Bound<'_, PyString>, reason: &str) -> PyResult<Cow<'a, str>> {
    s.to_cow().map_err(|_| {
        client_error(
            s.py(),
            reason,
            "a str with a lone surrogate cannot be encoded as UTF-8",
        )
    })
}

impl Serde {
    /// Parse `serde=`: a name or an object with `serialize` and `deserialize`.
    pub fn from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Serde> {
        if let Ok(name) = obj.cast::<PyString>() {
            return match &*str_text(name, "invalid_config")? {
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
            // php-memcached's default `compression_threshold` (2000).
            Serde::Interop => Compress::default().threshold,
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

fn decimal(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(v.str()?.encode_utf8()?.as_bytes().to_vec())
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
            Ok(b) => (Payload::Borrowed(b.clone()), BYTES),
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
                (Payload::Borrowed(v.cast::<PyBytes>()?.clone()), BYTES)
            } else if v.is_exact_instance_of::<PyString>() {
                (
                    Payload::Borrowed(utf8(v.cast::<PyString>()?, "invalid_value")?),
                    TEXT,
                )
            } else if v.is_exact_instance_of::<PyInt>() {
                (Payload::Owned(decimal(v)?), INTEGER)
            } else {
                (Payload::Owned(pickle(py, v, opts.pickle_protocol)?), PICKLE)
            }
        }
        Serde::Pylibmc => {
            use fae_core::values::pylibmc as f;
            if let Ok(b) = v.cast::<PyBytes>() {
                (Payload::Borrowed(b.clone()), f::NONE)
            } else if let Ok(s) = v.cast::<PyString>() {
                (Payload::Borrowed(utf8(s, "invalid_value")?), f::TEXT)
            } else if let Ok(b) = v.cast::<PyBool>() {
                let bytes = if b.is_true() { b"1" } else { b"0" };
                (Payload::Owned(bytes.to_vec()), f::INTEGER)
            } else if v.is_instance_of::<PyInt>() {
                (Payload::Owned(decimal(v)?), f::LONG)
            } else {
                (
                    Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
                    f::PICKLE,
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
                Payload::Borrowed(utf8(s, "invalid_value")?)
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
    let plain = payload.as_slice();
    match py.detach(|| pm::compress(plain, opts.min_compress_len, opts.compress_level)) {
        Some(packed) => Ok((Payload::Owned(packed), flags | COMPRESSED)),
        None => Ok((payload, flags)),
    }
}

fn encode_interop<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyAny>,
    opts: EncodeOpts,
) -> PyResult<(Payload<'py>, u32)> {
    let pickled = |v: &Bound<'py, PyAny>| -> PyResult<(Payload<'py>, u32, u16)> {
        Ok((
            Payload::Owned(pickle(py, v, opts.pickle_protocol)?),
            php::FAE_PICKLE,
            0,
        ))
    };
    let (payload, ty, user_flags) = if let Ok(b) = v.cast::<PyBytes>() {
        (Payload::Borrowed(b.clone()), php::STRING, 0)
    } else if let Ok(s) = v.cast::<PyString>() {
        (
            Payload::Borrowed(utf8(s, "invalid_value")?),
            php::STRING,
            (php::FAE_TEXT >> php::USER_FLAGS_SHIFT) as u16,
        )
    } else if let Ok(b) = v.cast::<PyBool>() {
        let bytes = php::bool_payload(b.is_true());
        (Payload::Owned(bytes.to_vec()), php::BOOL, 0)
    } else if let Ok(i) = v.cast::<PyInt>() {
        // PHP's long is 64-bit; a larger int goes as a pickle (PHP cannot read it).
        match i.extract::<i64>() {
            Ok(n) => (Payload::Owned(n.to_string().into_bytes()), php::LONG, 0),
            Err(_) => pickled(v)?,
        }
    } else if let Ok(x) = v.cast::<PyFloat>() {
        let text = php::format_double(x.value());
        (Payload::Owned(text.into_bytes()), php::DOUBLE, 0)
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
                Payload::Borrowed(utf8(text.cast::<PyString>()?, "invalid_value")?),
                php::JSON,
                0,
            ),
            // Not JSON-serializable (a set inside, a non-str key …): keep it exact.
            Err(_) => pickled(v)?,
        }
    } else {
        pickled(v)?
    };
    // zlib, which every php-memcached build reads whatever its own compression_type.
    let compress = (opts.min_compress_len > 0).then(|| Compress {
        method: Method::Zlib(opts.compress_level),
        threshold: opts.min_compress_len,
        ..Compress::default()
    });
    let plain = payload.as_slice();
    let (stored, flags) = py
        .detach(|| php::encode(ty, plain, user_flags, compress.as_ref()))
        .map_err(|e| value_error(py, e))?;
    Ok(match stored {
        Cow::Owned(v) => (Payload::Owned(v), flags),
        Cow::Borrowed(_) => (payload, flags),
    })
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

/// (bytes, flags) → Python value. The bytes are borrowed: a read buffer's or an item's.
pub fn decode<'py>(
    serde: &Serde,
    py: Python<'py>,
    key: &[u8],
    data: &[u8],
    flags: u32,
) -> PyResult<Bound<'py, PyAny>> {
    match serde {
        Serde::Raw => Ok(PyBytes::new(py, data).into_any()),
        Serde::Custom(obj) => obj.bind(py).call_method1(
            "deserialize",
            (PyBytes::new(py, key), PyBytes::new(py, data), flags),
        ),
        Serde::Interop => decode_interop(py, data, flags),
        Serde::Pymemcache | Serde::Pylibmc => {
            // pymemcache's order: text, integer, long, pickle. pylibmc's types are the same
            // bits, so the same order reads its values (its bool "1"/"0" reads as int, as
            // pylibmc itself returns it).
            let (kind, data) = pm::decode(data, flags).map_err(|e| value_error(py, e))?;
            from_kind(py, kind, &data)
        }
    }
}

fn from_kind<'py>(py: Python<'py>, kind: Kind, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match kind {
        Kind::Bytes => Ok(PyBytes::new(py, data).into_any()),
        Kind::Text => text(py, data),
        Kind::Int => parse_int(py, data),
        Kind::Pickle => unpickle(py, data),
    }
}

fn decode_interop<'py>(py: Python<'py>, data: &[u8], flags: u32) -> PyResult<Bound<'py, PyAny>> {
    // pymemcache/pylibmc values PHP never writes: text 16 (0x10 alone would be "compressed,
    // no method" in PHP), zlib 8 and 24.
    let low = flags & 0xFFFF;
    if low == TEXT || low == COMPRESSED || low == COMPRESSED | TEXT {
        let (kind, data) = pm::decode(data, low).map_err(|e| value_error(py, e))?;
        return from_kind(py, kind, &data);
    }
    let d = php::decode(data, flags).map_err(|e| value_error(py, e))?;
    let data = &d.payload[..];
    match d.ty {
        php::STRING if flags & php::FAE_TEXT != 0 => text(py, data),
        php::STRING => Ok(PyBytes::new(py, data).into_any()),
        php::LONG => parse_int(py, data),
        php::DOUBLE => match php::parse_double(data) {
            Some(x) => Ok(PyFloat::new(py, x).into_any()),
            None => Err(client_error(
                py,
                "invalid_value",
                format!("not a double: {:?}", String::from_utf8_lossy(data)),
            )),
        },
        php::BOOL => Ok(PyBool::new(py, php::parse_bool(data)).to_owned().into_any()),
        php::JSON => {
            let loads = JSON_LOADS.import(py, "json", "loads")?;
            loads.call1((PyBytes::new(py, data),))
        }
        php::FAE_PICKLE => unpickle(py, data),
        t @ (php::SERIALIZED | php::IGBINARY | php::MSGPACK) => {
            let name = match t {
                php::SERIALIZED => "PHP serialize()",
                php::IGBINARY => "igbinary",
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
