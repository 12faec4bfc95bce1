//! Small conversions between PHP values and Rust/JSON ones.

use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use serde_json::Value;

/// `Fae\Exception` (`MemcachedException` when this extension provides that class, a
/// subclass, so that both `catch` clauses see it) with `msg`.
pub fn exception(msg: impl Into<String>) -> PhpException {
    PhpException::new(msg.into(), 0, exception_ce())
}

/// PHP's `TypeError` with `msg` (a wrong argument type).
pub fn type_error(msg: impl Into<String>) -> PhpException {
    PhpException::new(msg.into(), 0, ext_php_rs::zend::ce::type_error())
}

/// PHP's `ValueError` with `msg` (an argument of the right type but out of range).
pub fn value_error(msg: impl Into<String>) -> PhpException {
    PhpException::new(msg.into(), 0, ext_php_rs::zend::ce::value_error())
}

/// A key argument borrowed when it is a PHP string (the common case: no copy per key), or
/// converted by [`key_bytes`].
pub fn key_cow(z: &Zval) -> PhpResult<std::borrow::Cow<'_, [u8]>> {
    match z.dereference().zend_str() {
        Some(s) => Ok(std::borrow::Cow::Borrowed(s.as_bytes())),
        None => key_bytes(z).map(std::borrow::Cow::Owned),
    }
}

/// A key argument: strings as bytes (binary-safe), ints and floats as PHP prints them.
pub fn key_bytes(z: &Zval) -> PhpResult<Vec<u8>> {
    let z = z.dereference();
    if let Some(s) = z.zend_str() {
        return Ok(s.as_bytes().to_vec());
    }
    if let Some(l) = z.long() {
        return Ok(l.to_string().into_bytes());
    }
    if (z.is_double() || z.is_bool())
        && let Some(s) = z.coerce_to_string()
    {
        return Ok(s.into_bytes());
    }
    if z.is_null() {
        // php-memcached's `string $key` takes null as "" (a deprecation in PHP 8.1+): an
        // empty key, which the call refuses with RES_BAD_KEY_PROVIDED.
        return Ok(Vec::new());
    }
    if let Some(obj) = z.object()
        && !obj.get_class_entry().__tostring.is_null()
        && let Ok(s) = obj.try_call_method("__toString", vec![])
        && let Some(b) = s.zend_str()
    {
        return Ok(b.as_bytes().to_vec());
    }
    Err(type_error(format!(
        "key must be a string, {} given",
        z.get_type()
    )))
}

/// A `$server_key`: an empty one means none (php-memcached places by the key then).
pub fn server_key_bytes(z: Option<&Zval>) -> PhpResult<Option<Vec<u8>>> {
    Ok(z.map(key_bytes).transpose()?.filter(|k| !k.is_empty()))
}

/// A key of an array as [`slots`] reads it.
pub enum SlotKey<'a> {
    Long(i64),
    Str(&'a [u8]),
}

/// The slots of an array in order, each key with its value, read from the array's own
/// storage. ext-php-rs's iterators ask Zend for every key through four calls per element
/// (about 300 instructions: a fifth of a 100-key `getMulti` in the binding) and its
/// `ArrayKey` panics on a string key that is not UTF-8 (`["\xff" => 1]`, a valid memcached
/// key); this reads the slots directly and keeps keys as bytes.
pub fn slots(ht: &ZendHashTable) -> impl Iterator<Item = (SlotKey<'_>, &Zval)> + '_ {
    // zend_types.h: PHP 8.2 (module API 20220829) stores a packed array's values as bare
    // zvals, keyed by position; hashes, and packed arrays before 8.2, store buckets.
    const HASH_FLAG_PACKED: u32 = 1 << 2;
    // SAFETY: `u` is a union of a u32 and four u8 views of it; every bit pattern is valid.
    let flags = unsafe { ht.u.flags };
    let packed_zvals =
        ext_php_rs::ffi::ZEND_MODULE_API_NO >= 20220829 && flags & HASH_FLAG_PACKED != 0;
    let used = ht.nNumUsed as usize;
    (0..used).filter_map(move |i| {
        // SAFETY: `i` < `nNumUsed`, the slots in use of the array's data, which is allocated
        // for at least that many and lives, unchanged, while `ht` is borrowed; the layout is
        // the one the flag says. A slot left by `unset()` holds an UNDEF zval: skipped.
        let (key, z) = unsafe {
            if packed_zvals {
                let z = &*ht.__bindgen_anon_1.arPacked.add(i);
                (SlotKey::Long(i as i64), z)
            } else {
                let b = &*ht.__bindgen_anon_1.arData.add(i);
                let key = match b.key.as_ref() {
                    Some(s) => SlotKey::Str(s.as_bytes()),
                    None => SlotKey::Long(b.h as i64),
                };
                (key, &b.val)
            }
        };
        (z.get_type() != ext_php_rs::flags::DataType::Undef).then_some((key, z))
    })
}

/// The values of an array in order ([`slots`] without the keys).
pub fn values(ht: &ZendHashTable) -> impl Iterator<Item = &Zval> + '_ {
    slots(ht).map(|(_, z)| z)
}

/// `(key, value)` pairs of an array, keys as bytes (an integer key as PHP prints it).
pub fn entries(ht: &ZendHashTable) -> Vec<(Vec<u8>, &Zval)> {
    slots(ht)
        .map(|(k, v)| {
            let key = match k {
                SlotKey::Long(l) => l.to_string().into_bytes(),
                SlotKey::Str(s) => s.to_vec(),
            };
            (key, v)
        })
        .collect()
}

/// A PHP value as JSON (for `$config`): lists become arrays, other arrays objects. Nesting is
/// limited as for every config (`config::limits::MAX_DEPTH`), which also stops an array that
/// refers to itself before the recursion overflows the stack.
pub fn to_json(z: &Zval) -> PhpResult<Value> {
    to_json_at(z, 1)
}

fn to_json_at(z: &Zval, depth: usize) -> PhpResult<Value> {
    let z = z.dereference();
    if z.is_null() {
        return Ok(Value::Null);
    }
    if let Some(b) = z.bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(l) = z.long() {
        return Ok(Value::from(l));
    }
    if z.is_double() {
        return Ok(Value::from(z.double().unwrap_or(0.0)));
    }
    if let Some(s) = z.zend_str() {
        return Ok(Value::String(
            String::from_utf8_lossy(s.as_bytes()).into_owned(),
        ));
    }
    if let Some(ht) = z.array() {
        if depth > fae_core::config::limits::MAX_DEPTH {
            return Err(exception(format!(
                "invalid_config: $config nests arrays deeper than {} levels (or refers to itself)",
                fae_core::config::limits::MAX_DEPTH
            )));
        }
        if ht.has_sequential_keys() {
            return values(ht)
                .map(|v| to_json_at(v, depth + 1))
                .collect::<PhpResult<Vec<_>>>()
                .map(Value::Array);
        }
        let mut m = serde_json::Map::new();
        for (k, v) in entries(ht) {
            m.insert(
                String::from_utf8_lossy(&k).into_owned(),
                to_json_at(v, depth + 1)?,
            );
        }
        return Ok(Value::Object(m));
    }
    Err(exception(format!(
        "$config: cannot use a value of type {}",
        z.get_type()
    )))
}

pub fn json_to_zval(v: &Value) -> Zval {
    let mut z = Zval::new();
    match v {
        Value::Null => z.set_null(),
        Value::Bool(b) => z.set_bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                z.set_long(i);
            } else {
                z.set_double(n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => z.set_zend_string(ext_php_rs::types::ZendStr::new(s.as_bytes(), false)),
        Value::Array(a) => {
            let mut ht = ZendHashTable::new();
            for x in a {
                let _ = ht.push(json_to_zval(x));
            }
            z.set_hashtable(ht);
        }
        Value::Object(o) => {
            let mut ht = ZendHashTable::new();
            for (k, x) in o {
                let _ = ht.insert(k.as_str(), json_to_zval(x));
            }
            z.set_hashtable(ht);
        }
    }
    z
}

pub fn array_zval(ht: ZBox<ZendHashTable>) -> Zval {
    let mut z = Zval::new();
    z.set_hashtable(ht);
    z
}

pub fn bool_zval(b: bool) -> Zval {
    let mut z = Zval::new();
    z.set_bool(b);
    z
}

pub fn long_zval(l: i64) -> Zval {
    let mut z = Zval::new();
    z.set_long(l);
    z
}

pub fn str_zval(s: &str) -> Zval {
    crate::values::bytes_zval(s.as_bytes())
}

/// Insert under a binary-safe key (numeric strings become int keys, as PHP does).
pub fn insert_bytes(ht: &mut ZendHashTable, key: &[u8], v: Zval) {
    let zs = ext_php_rs::types::ZendStr::new(key, false);
    let _ = ht.insert(&*zs, v);
}

/// [`insert_bytes`] under the key the caller passed as `arg`: its own PHP string when it is
/// one (shared, not copied), else `key`, its bytes.
pub fn insert_arg_key(ht: &mut ZendHashTable, arg: &Zval, key: &[u8], v: Zval) {
    match arg.dereference().zend_str() {
        Some(zs) => {
            let _ = ht.insert(zs, v);
        }
        None => insert_bytes(ht, key, v),
    }
}

unsafe extern "C" {
    fn zend_error(ty: std::ffi::c_int, format: *const std::ffi::c_char, ...);
}

/// The class and method being called, as php-memcached names them in its messages: the
/// methods are `Fae\Client`'s, which `Memcached` inherits, so the class is `Memcached` for a
/// `Memcached` object (or a subclass's: php-memcached names its own class then too) and the
/// method's class for the others.
pub fn called_method() -> (String, String) {
    let eg = ext_php_rs::zend::ExecutorGlobals::get();
    // SAFETY: called from inside a method call, whose frame, object and function (names
    // interned by the engine) are live; null pointers are checked.
    let (class, method, is_memcached) = unsafe {
        let ex = eg.current_execute_data.as_ref();
        let mut is_memcached = false;
        let mut ce = ex
            .and_then(|ex| ex.This.object())
            .and_then(|o| o.ce.as_ref());
        while let Some(c) = ce {
            if c.name
                .as_ref()
                .is_some_and(|n| n.as_bytes() == b"Memcached")
            {
                is_memcached = true;
                break;
            }
            ce = c.parent();
        }
        let f = ex.and_then(|ex| ex.func.as_ref());
        let method = f
            .and_then(|f| f.common.function_name.as_ref())
            .map_or(String::new(), |n| {
                String::from_utf8_lossy(n.as_bytes()).into_owned()
            });
        let class = f
            .and_then(|f| f.common.scope.as_ref())
            .and_then(|c| c.name.as_ref())
            .map_or(String::new(), |n| {
                String::from_utf8_lossy(n.as_bytes()).into_owned()
            });
        (class, method, is_memcached)
    };
    if class == "Fae\\Client" && is_memcached {
        ("Memcached".to_string(), method)
    } else {
        (class, method)
    }
}

/// An `E_WARNING` as php-memcached raises them: "Memcached::method(): `msg`".
pub fn warn(msg: &str) {
    let (class, method) = called_method();
    let text = if method.is_empty() {
        msg.to_string()
    } else if class.is_empty() {
        format!("{method}(): {msg}")
    } else {
        format!("{class}::{method}(): {msg}")
    };
    let Ok(c) = std::ffi::CString::new(text) else {
        return;
    };
    // SAFETY: a "%s" format with one NUL-terminated string argument.
    unsafe {
        zend_error(
            ext_php_rs::ffi::E_WARNING as std::ffi::c_int,
            c"%s".as_ptr(),
            c.as_ptr(),
        );
    }
}

/// A value's type as PHP's own TypeErrors name it (`null`, `int`, `stdClass`, …).
pub fn php_type_name(z: &Zval) -> String {
    let z = z.dereference();
    if z.is_null() {
        "null".into()
    } else if z.is_bool() {
        "bool".into()
    } else if z.is_long() {
        "int".into()
    } else if z.is_double() {
        "float".into()
    } else if z.is_string() {
        "string".into()
    } else if z.is_array() {
        "array".into()
    } else if let Some(o) = z.object() {
        o.get_class_name().unwrap_or_else(|_| "object".into())
    } else {
        format!("{}", z.get_type()).to_lowercase()
    }
}

/// `Fae\Exception`, then `MemcachedException` when provided: what [`exception_ce`] throws
/// (set by the class registration in MINIT).
pub(crate) static EXCEPTION: std::sync::atomic::AtomicPtr<ext_php_rs::zend::ClassEntry> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// The class our errors are thrown as.
pub fn exception_ce() -> &'static ext_php_rs::zend::ClassEntry {
    // SAFETY: set in MINIT to a class entry the engine keeps for the process' life; a
    // throw happens only in a request, after MINIT.
    unsafe {
        EXCEPTION
            .load(std::sync::atomic::Ordering::Acquire)
            .as_ref()
    }
    .unwrap_or_else(ext_php_rs::zend::ce::exception)
}
