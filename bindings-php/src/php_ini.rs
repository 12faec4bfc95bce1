//! php.ini settings of the extension: `fae.provide_memcached_classes` and, when this
//! extension provides `Memcached`, php-memcached's `memcached.*` settings with its defaults and
//! checks; reading a setting; which extensions are loaded. A bottom module: it imports nothing
//! of the extension but `convert`'s warning.
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::ffi::{HashTable, zend_hash_str_find, zend_ini_entry, zend_string};
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{IniEntryDef, IniEntryDefs};

/// An ini entry's on-modify handler (the engine's C signature) around a body that sees the
/// new value as bytes and returns 0 to accept it, -1 to refuse it (the old value stays).
macro_rules! on_modify {
    ($name:ident, |$bytes:ident| $body:block) => {
        unsafe extern "C" fn $name(
            _entry: *mut ext_php_rs::ffi::zend_ini_entry,
            new_value: *mut ext_php_rs::ffi::zend_string,
            _a1: *mut std::ffi::c_void,
            _a2: *mut std::ffi::c_void,
            _a3: *mut std::ffi::c_void,
            _stage: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: the engine passes a valid zend_string (or null) for the new value.
            let $bytes = unsafe { new_value.as_ref() }.map_or(&[][..], |s| s.as_bytes());
            $body
        }
    };
}
pub(crate) use on_modify;

pub(crate) static PROVIDE: AtomicBool = AtomicBool::new(true);
pub(crate) static PROVIDED: AtomicBool = AtomicBool::new(false);

/// Whether this process serves `Memcached` itself (for phpinfo and the session handler).
pub fn provides_memcached() -> bool {
    PROVIDED.load(Ordering::Relaxed)
}

fn truthy(bytes: &[u8]) -> Option<bool> {
    match bytes.to_ascii_lowercase().as_slice() {
        b"1" | b"on" | b"yes" | b"true" => Some(true),
        b"" | b"0" | b"off" | b"no" | b"false" | b"none" => Some(false),
        _ => None,
    }
}

on_modify!(on_provide, |bytes| {
    match truthy(bytes) {
        Some(b) => {
            PROVIDE.store(b, Ordering::Relaxed);
            0
        }
        None => -1,
    }
});

const fn provide_entry() -> IniEntryDef {
    // System-wide: the classes exist (or not) from module startup on.
    let mut e = IniEntryDef::new(
        c"fae.provide_memcached_classes",
        c"1",
        IniEntryPermission::System,
    );
    e.on_modify = Some(on_provide);
    e
}

/// `fae.tls*` and `fae.auth_*`: TLS and login for every client of the process whose
/// `$config` has no `tls` / `auth` of its own (and for `Memcached` objects, which have no
/// `$config`); see [`security_defaults`]. Per directory at most: `ini_set()` cannot point a
/// running script at other certificates or credentials.
const fn security_entry(
    name: &'static std::ffi::CStr,
    default: &'static std::ffi::CStr,
) -> IniEntryDef {
    IniEntryDef::new(name, default, IniEntryPermission::PerDir)
}

static INI: IniEntryDefs<12> = IniEntryDefs::new([
    provide_entry(),
    security_entry(c"fae.tls", c"0"),
    security_entry(c"fae.tls_ca_file", c""),
    security_entry(c"fae.tls_cert_file", c""),
    security_entry(c"fae.tls_key_file", c""),
    security_entry(c"fae.tls_server_name", c""),
    security_entry(c"fae.tls_verify", c"1"),
    security_entry(c"fae.auth_username", c""),
    security_entry(c"fae.auth_password_file", c""),
    security_entry(c"fae.auth_password_env", c""),
    // Which libmemcached build's encryption `setEncodingKey` matches (the fleet's, not the
    // script's choice): `libmemcached-1.1` (with OpenSSL) or `libmemcached-1.0`.
    IniEntryDef::new(
        c"fae.encoding_scheme",
        c"libmemcached-1.1",
        IniEntryPermission::PerDir,
    ),
    IniEntryDef::end(),
]);

/// The config sections the `fae.tls*` / `fae.auth_*` settings stand for: `("tls", {...})`
/// when `fae.tls` is on, `("auth", {...})` when `fae.auth_username` is set. The core checks
/// and loads them like any `$config` section (errors name `tls.ca_file` etc.).
pub fn security_defaults() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::{Map, Value};
    let set = |name: &str| {
        ini(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out = Vec::new();
    if ini_bool("fae.tls") == Some(true) {
        let mut tls = Map::new();
        for (key, name) in [
            ("ca_file", "fae.tls_ca_file"),
            ("cert_file", "fae.tls_cert_file"),
            ("key_file", "fae.tls_key_file"),
            ("server_name", "fae.tls_server_name"),
        ] {
            if let Some(v) = set(name) {
                tls.insert(key.into(), Value::from(v));
            }
        }
        if ini_bool("fae.tls_verify") == Some(false) {
            tls.insert("verify".into(), Value::from(false));
        }
        out.push(("tls", Value::Object(tls)));
    }
    if let Some(user) = set("fae.auth_username") {
        let mut auth = Map::new();
        auth.insert("username".into(), Value::from(user));
        for (key, name) in [
            ("password_file", "fae.auth_password_file"),
            ("password_env", "fae.auth_password_env"),
        ] {
            if let Some(v) = set(name) {
                auth.insert(key.into(), Value::from(v));
            }
        }
        out.push(("auth", Value::Object(auth)));
    }
    out
}

// php-memcached's sess_prefix check: printable, no spaces, at most 249 bytes; a refused
// value keeps the old one, with php-memcached's warnings.
on_modify!(on_sess_prefix, |bytes| {
    if bytes.len() > 249 {
        crate::convert::warn("memcached.sess_prefix too long (max: 249)");
        return -1;
    }
    if !bytes.iter().all(u8::is_ascii_graphic) {
        crate::convert::warn(
            "memcached.sess_prefix cannot contain whitespace or control characters",
        );
        return -1;
    }
    0
});

on_modify!(on_hash_type, |bytes| {
    if matches!(bytes, b"" | b"ketama" | b"ketama_weighted") {
        0
    } else {
        crate::convert::warn(
            "memcached.sess_consistent_hash_type must be ketama or ketama_weighted",
        );
        -1
    }
});

on_modify!(on_serializer, |bytes| {
    match bytes {
        b"php" | b"json" | b"json_array" => 0,
        // Known only once the other extensions are loaded: checked where it is used.
        b"igbinary" | b"msgpack" => 0,
        _ => -1,
    }
});

// Takes any value. The engine's `ini_restore()` only restores an entry whose handler accepts
// the old value (an entry without one keeps the value set), so every entry has one.
on_modify!(on_any, |_bytes| { 0 });

const fn entry(name: &'static std::ffi::CStr, default: &'static std::ffi::CStr) -> IniEntryDef {
    checked(name, default, on_any)
}

const fn checked(
    name: &'static std::ffi::CStr,
    default: &'static std::ffi::CStr,
    check: unsafe extern "C" fn(
        *mut zend_ini_entry,
        *mut zend_string,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        c_int,
    ) -> c_int,
) -> IniEntryDef {
    let mut e = IniEntryDef::new(name, default, IniEntryPermission::All);
    e.on_modify = Some(check);
    e
}

/// php-memcached's `memcached.*` settings with its defaults, declared when this extension
/// provides `Memcached` (php-memcached declares them itself otherwise). Read with `ini()`
/// where they apply: new `Memcached` objects and the `memcached` session handler.
static MEMCACHED_INI: IniEntryDefs<27> = IniEntryDefs::new([
    entry(c"memcached.sess_locking", c"1"),
    entry(c"memcached.sess_lock_wait_min", c"150"),
    entry(c"memcached.sess_lock_wait_max", c"150"),
    entry(c"memcached.sess_lock_retries", c"5"),
    entry(c"memcached.sess_lock_expire", c"0"),
    entry(c"memcached.sess_binary_protocol", c"1"),
    entry(c"memcached.sess_consistent_hash", c"1"),
    checked(
        c"memcached.sess_consistent_hash_type",
        c"ketama",
        on_hash_type,
    ),
    entry(c"memcached.sess_number_of_replicas", c"0"),
    entry(c"memcached.sess_randomize_replica_read", c"0"),
    entry(c"memcached.sess_remove_failed_servers", c"0"),
    entry(c"memcached.sess_server_failure_limit", c"0"),
    entry(c"memcached.sess_connect_timeout", c"0"),
    entry(c"memcached.sess_sasl_username", c""),
    entry(c"memcached.sess_sasl_password", c""),
    entry(c"memcached.sess_persistent", c"0"),
    checked(c"memcached.sess_prefix", c"memc.sess.key.", on_sess_prefix),
    entry(c"memcached.compression_type", c"fastlz"),
    entry(c"memcached.compression_factor", c"1.3"),
    entry(c"memcached.compression_threshold", c"2000"),
    checked(c"memcached.serializer", c"php", on_serializer),
    entry(c"memcached.store_retry_count", c"0"),
    entry(c"memcached.default_consistent_hash", c"0"),
    entry(c"memcached.default_binary_protocol", c"0"),
    entry(c"memcached.default_connect_timeout", c"0"),
    entry(c"memcached.sess_lock_wait", c"not set"),
    IniEntryDef::end(),
]);

/// MINIT (before the classes): declare and read `fae.provide_memcached_classes`.
pub fn register_ini(module_number: i32) {
    IniEntryDef::register(INI.as_slice(), module_number);
}

/// MINIT, when this extension provides `Memcached`: declare php-memcached's `memcached.*`
/// settings under `module_number` (the `memcached` module entry, so `ini_get_all('memcached')`
/// and `php --ri memcached` list them as with php-memcached).
pub fn register_memcached_ini(module_number: i32) {
    IniEntryDef::register(MEMCACHED_INI.as_slice(), module_number);
}

/// A php.ini setting's current value (`ini_get`), if declared.
pub fn ini(name: &str) -> Option<String> {
    ext_php_rs::types::ZendCallable::try_from_name("ini_get")
        .ok()
        .and_then(|f| f.try_call(vec![&name]).ok())
        .and_then(|z| z.str().map(str::to_string))
}

/// php.ini's idea of true ("1", "on", "yes", "true").
pub fn ini_bool(name: &str) -> Option<bool> {
    ini(name).and_then(|v| truthy(v.trim().as_bytes()))
}

unsafe extern "C" {
    // The engine's table of loaded modules (Zend/zend_API.c); filled from every
    // `extension=` line before any module starts, so order in php.ini does not matter.
    static mut module_registry: HashTable;
}

/// Whether the extension `name` (lower case) is loaded; valid from MINIT on.
pub fn module_loaded(name: &str) -> bool {
    // SAFETY: MINIT runs single-threaded after every extension was loaded (later the table
    // is only read); the lookup only reads it.
    !unsafe { zend_hash_str_find(&raw const module_registry, name.as_ptr().cast(), name.len()) }
        .is_null()
}

/// The module entry this extension registered under php-memcached's name (null if none).
pub(crate) static ALIAS: AtomicPtr<ext_php_rs::zend::ModuleEntry> =
    AtomicPtr::new(std::ptr::null_mut());

/// Whether php-memcached itself is loaded (the `memcached` module entry is not ours).
pub(crate) fn memcached_loaded() -> bool {
    let name = "memcached";
    // SAFETY: as in `module_loaded`; a found entry is a zval holding the module pointer.
    let zv =
        unsafe { zend_hash_str_find(&raw const module_registry, name.as_ptr().cast(), name.len()) };
    // SAFETY: the registry's values are IS_PTR zvals.
    let Some(zv) = (unsafe { zv.as_ref() }) else {
        return false;
    };
    // SAFETY: module_registry holds IS_PTR zvals; reading the pointer member only.
    let entry = unsafe { zv.value.ptr };
    entry.cast() != ALIAS.load(Ordering::Acquire)
}

/// Builder modifier of `Fae\Client`: php-memcached's `HAVE_IGBINARY` and `HAVE_MSGPACK`,
/// which depend on the extensions loaded with this one.
pub fn client_constants(builder: ClassBuilder) -> ClassBuilder {
    let mut b = builder;
    for (name, ext) in [("HAVE_IGBINARY", "igbinary"), ("HAVE_MSGPACK", "msgpack")] {
        let flags = ext_php_rs::flags::ConstantFlags::Public;
        b = match b.constant(name, module_loaded(ext), &[], flags) {
            Ok(b) => b,
            Err(_) => unreachable!("a bool always converts"),
        };
    }
    b
}

/// Whether this extension will provide `Memcached` (the setting is on and php-memcached is
/// not loaded); valid from MINIT on.
pub fn wants_memcached_classes() -> bool {
    PROVIDE.load(Ordering::Relaxed) && !memcached_loaded()
}
