//! PHP values ⇄ php-memcached's stored layout. The layout itself (flags, compression, the
//! length prefix) is the core's `fae_core::values::php`; this file only turns zvals into
//! (type, payload) and back, calling PHP's own serializers.

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::types::{ZendCallable, ZendStr, Zval};
use fae_core::values::php::{self, Compress, Method};
use fae_core::values::{EncodingKey, ValueError, ValueErrorKind};
use std::sync::Arc;

use crate::codes::{RES_E2BIG, RES_INVALID_ARGUMENTS, RES_NOTFOUND, RES_PAYLOAD_FAILURE};

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
    /// `setEncodingKey`: libmemcached's encryption of the stored bytes (its `Debug` shows no key).
    pub encoding_key: Option<Arc<EncodingKey>>,
}

impl Default for ValueOpts {
    fn default() -> Self {
        ValueOpts {
            compression: true,
            compression_type: COMPRESSION_FASTLZ,
            compression_level: 3,
            compression_threshold: Compress::default().threshold,
            compression_factor: Compress::default().factor,
            serializer: SERIALIZER_PHP,
            user_flags: 0,
            item_size_limit: 0,
            encoding_key: None,
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

/// Serialize an array, object or null with the configured serializer.
fn serialize(value: &Zval, serializer: i64) -> Result<(Vec<u8>, u32), Fail> {
    let (func, ty): (&str, u32) = match serializer {
        SERIALIZER_PHP => ("serialize", php::SERIALIZED),
        SERIALIZER_IGBINARY => ("igbinary_serialize", php::IGBINARY),
        SERIALIZER_JSON | SERIALIZER_JSON_ARRAY => ("json_encode", php::JSON),
        SERIALIZER_MSGPACK => ("msgpack_pack", php::MSGPACK),
        s => return Err((RES_INVALID_ARGUMENTS, format!("unknown serializer {s}"))),
    };
    let arg = value.shallow_clone();
    let out = call(func, vec![&arg])?;
    let bytes = zval_bytes(&out)
        .ok_or_else(|| payload_fail(format!("could not serialize value with {func}()")))?;
    Ok((bytes, ty))
}

impl ValueOpts {
    /// The core's compression settings, `None` when compression is off.
    fn compress(&self) -> Option<Compress> {
        self.compression.then(|| Compress {
            method: match self.compression_type {
                COMPRESSION_ZLIB => {
                    Method::Zlib(u32::try_from(self.compression_level.clamp(0, 9)).unwrap_or(3))
                }
                _ => Method::FastLz,
            },
            threshold: self.compression_threshold,
            factor: self.compression_factor,
        })
    }
}

fn value_fail(e: ValueError) -> Fail {
    let code = match e.kind() {
        ValueErrorKind::TooLarge => RES_E2BIG,
        // libmemcached's fetch ends with NOTFOUND when nothing decrypted (php-memcached: false).
        ValueErrorKind::Undecryptable => RES_NOTFOUND,
        _ => RES_PAYLOAD_FAILURE,
    };
    (code, e.message().to_string())
}

/// PHP value → (payload, flags).
pub fn encode(value: &Zval, o: &ValueOpts) -> Result<(Vec<u8>, u32), Fail> {
    let value = value.dereference();
    let (plain, ty) = if let Some(s) = value.zend_str() {
        (s.as_bytes().to_vec(), php::STRING)
    } else if let Some(l) = value.long() {
        (l.to_string().into_bytes(), php::LONG)
    } else if value.is_double() {
        let d = value.double().unwrap_or(0.0);
        (php::format_double(d).into_bytes(), php::DOUBLE)
    } else if value.is_bool() {
        let b = value.bool().unwrap_or(false);
        (php::bool_payload(b).to_vec(), php::BOOL)
    } else {
        serialize(value, o.serializer)?
    };
    // OPT_USER_FLAGS is checked to be 0..=65535 when set.
    let user_flags = u16::try_from(o.user_flags).unwrap_or(u16::MAX);
    let (stored, flags) =
        php::encode(ty, &plain, user_flags, o.compress().as_ref()).map_err(value_fail)?;
    let payload = match stored {
        std::borrow::Cow::Owned(v) => v,
        std::borrow::Cow::Borrowed(_) => plain,
    };
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
    // libmemcached encrypts what php-memcached hands it (the limit above is php-memcached's,
    // on the plain payload); the flags stay as they are.
    let payload = match &o.encoding_key {
        Some(k) => k.encrypt(&payload),
        None => payload,
    };
    Ok((payload, flags))
}

/// The failure of a PHP-serialized value that does not unserialize (php-memcached warns with
/// this text; the caller does, where the method name is known).
pub const UNSERIALIZE_FAILED: &str = "could not unserialize value";

/// (payload, flags) → PHP value, decrypted first when `o` has an encoding key.
pub fn decode(data: &[u8], flags: u32, o: &ValueOpts) -> Result<Zval, Fail> {
    decode_plain(data, flags, o)?.into_zval(o)
}

/// A value decoded as far as it can be without PHP code: a string or scalar, or the payload
/// of a serialized one (its type and bytes, decompressed) for [`unserialize`].
pub enum Plain {
    Value(Zval),
    Serialized(u32, Vec<u8>),
}

impl Plain {
    /// The PHP value: a serialized one through PHP's unserializer (which can run user code).
    pub fn into_zval(self, o: &ValueOpts) -> Result<Zval, Fail> {
        match self {
            Plain::Value(z) => Ok(z),
            Plain::Serialized(ty, payload) => unserialize(ty, &payload, o.serializer),
        }
    }
}

/// [`decode`] without calling PHP's unserializers (which may run user code, e.g. a
/// `__wakeup` calling this client): a multi-get decodes while the core holds connections.
pub fn decode_plain(data: &[u8], flags: u32, o: &ValueOpts) -> Result<Plain, Fail> {
    let decrypted;
    let data = match &o.encoding_key {
        Some(k) => {
            decrypted = k.decrypt(data).map_err(value_fail)?;
            &decrypted[..]
        }
        None => data,
    };
    let d = php::decode(data, flags).map_err(value_fail)?;
    let data = &d.payload[..];
    let mut z = Zval::new();
    match d.ty {
        php::STRING => return Ok(Plain::Value(bytes_zval(data))),
        // php-memcached reads with strtol/zend_strtod: text that is not a number reads as 0.
        php::LONG => z.set_long(php::parse_long(data).unwrap_or(0)),
        php::DOUBLE => z.set_double(php::parse_double(data).unwrap_or(0.0)),
        php::BOOL => z.set_bool(php::parse_bool(data)),
        ty => return Ok(Plain::Serialized(ty, d.payload.into_owned())),
    }
    Ok(Plain::Value(z))
}

/// The PHP value of a serialized payload of type `ty` ([`decode_plain`]).
pub fn unserialize(ty: u32, data: &[u8], serializer: i64) -> Result<Zval, Fail> {
    match ty {
        php::SERIALIZED => {
            let arg = bytes_zval(data);
            let out = call("unserialize", vec![&arg]);
            // php-memcached warns on any failure, also when `__unserialize` threw (the
            // exception then leaves the call).
            let thrown = ext_php_rs::zend::ExecutorGlobals::has_exception();
            match out {
                Ok(out) if !thrown && (!out.is_false() || data == b"b:0;") => Ok(out),
                _ => Err(payload_fail(UNSERIALIZE_FAILED)),
            }
        }
        php::IGBINARY => {
            let arg = bytes_zval(data);
            call("igbinary_unserialize", vec![&arg])
        }
        php::MSGPACK => {
            let arg = bytes_zval(data);
            call("msgpack_unpack", vec![&arg])
        }
        php::JSON => {
            let arg = bytes_zval(data);
            let assoc = serializer == SERIALIZER_JSON_ARRAY;
            let out = call("json_decode", vec![&arg, &assoc])?;
            if out.is_null() && data.trim_ascii() != b"null" {
                return Err(payload_fail("could not decode JSON value"));
            }
            Ok(out)
        }
        t => Err(payload_fail(format!("unknown payload type {t}"))),
    }
}
