//! The php.ini-only switch from php-memcached: with `fae.provide_memcached_classes` on (the
//! default) and the `memcached` extension not loaded, this extension registers `Memcached`
//! (a subclass of `Fae\Client`) and `MemcachedException` (of `Fae\Exception`), so code
//! written for php-memcached runs unchanged. With php-memcached loaded, its classes stay.
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::class::RegisteredClass;
use ext_php_rs::ffi::{
    HashTable, zend_execute_data, zend_hash_str_find, zend_ini_entry, zend_string, zif_handler,
    zval,
};
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::ClassEntry;
use ext_php_rs::zend::ExecuteData;
use ext_php_rs::zend::{IniEntryDef, IniEntryDefs};

use crate::client::FaeClient;

static PROVIDE: AtomicBool = AtomicBool::new(true);
static PROVIDED: AtomicBool = AtomicBool::new(false);
/// `Fae\Exception`, then `MemcachedException` when provided: what `exception_ce` throws.
static EXCEPTION: AtomicPtr<ClassEntry> = AtomicPtr::new(ptr::null_mut());

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

unsafe extern "C" fn on_provide(
    _entry: *mut zend_ini_entry,
    new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    _stage: c_int,
) -> c_int {
    // SAFETY: the engine passes a valid zend_string (or null).
    let bytes = unsafe { new_value.as_ref() }.map_or(&[][..], |s| s.as_bytes());
    match truthy(bytes) {
        Some(b) => {
            PROVIDE.store(b, Ordering::Relaxed);
            0
        }
        None => -1,
    }
}

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

static INI: IniEntryDefs<2> = IniEntryDefs::new([provide_entry(), IniEntryDef::end()]);

/// php-memcached's sess_prefix check: printable, no spaces, at most 249 bytes; a refused
/// value keeps the old one, with php-memcached's warnings.
unsafe extern "C" fn on_sess_prefix(
    _entry: *mut zend_ini_entry,
    new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    _stage: c_int,
) -> c_int {
    // SAFETY: the engine passes a valid zend_string (or null).
    let bytes = unsafe { new_value.as_ref() }.map_or(&[][..], |s| s.as_bytes());
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
}

unsafe extern "C" fn on_hash_type(
    _entry: *mut zend_ini_entry,
    new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    _stage: c_int,
) -> c_int {
    // SAFETY: as above.
    let bytes = unsafe { new_value.as_ref() }.map_or(&[][..], |s| s.as_bytes());
    if matches!(bytes, b"" | b"ketama" | b"ketama_weighted") {
        0
    } else {
        crate::convert::warn(
            "memcached.sess_consistent_hash_type must be ketama or ketama_weighted",
        );
        -1
    }
}

unsafe extern "C" fn on_serializer(
    _entry: *mut zend_ini_entry,
    new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    _stage: c_int,
) -> c_int {
    // SAFETY: as above.
    let bytes = unsafe { new_value.as_ref() }.map_or(&[][..], |s| s.as_bytes());
    match bytes {
        b"php" | b"json" | b"json_array" => 0,
        // Known only once the other extensions are loaded: checked where it is used.
        b"igbinary" | b"msgpack" => 0,
        _ => -1,
    }
}

const fn entry(name: &'static std::ffi::CStr, default: &'static std::ffi::CStr) -> IniEntryDef {
    IniEntryDef::new(name, default, IniEntryPermission::All)
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

/// MINIT (before the classes): read `fae.provide_memcached_classes`, and declare the
/// `memcached.*` settings when this extension will provide `Memcached`.
pub fn register_ini(module_number: i32) {
    IniEntryDef::register(INI.as_slice(), module_number);
    if PROVIDE.load(Ordering::Relaxed) && !memcached_loaded() {
        IniEntryDef::register(MEMCACHED_INI.as_slice(), module_number);
    }
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

/// The class our errors are thrown as.
pub fn exception_ce() -> &'static ClassEntry {
    // SAFETY: set in MINIT to a class entry the engine keeps for the process' life; a
    // throw happens only in a request, after MINIT.
    unsafe { EXCEPTION.load(Ordering::Acquire).as_ref() }
        .unwrap_or_else(ext_php_rs::zend::ce::exception)
}

unsafe extern "C" {
    // SPL's RuntimeException, which php-memcached's MemcachedException extends (SPL is
    // built into PHP and starts before any shared extension).
    static spl_ce_RuntimeException: *mut ClassEntry;
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

fn memcached_loaded() -> bool {
    module_loaded("memcached")
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

fn runtime_exception() -> &'static ClassEntry {
    // SAFETY: SPL set this in its MINIT, which ran before ours; never freed.
    unsafe { spl_ce_RuntimeException.as_ref() }.unwrap_or_else(ext_php_rs::zend::ce::exception)
}

fn fae_exception() -> &'static ClassEntry {
    // SAFETY: as in `exception_ce`; called only after `Fae\Exception` was registered.
    unsafe { EXCEPTION.load(Ordering::Acquire).as_ref() }.unwrap_or_else(runtime_exception)
}

/// Builder modifier of the class registered after `Fae\Client` (ext-php-rs registers
/// classes in order, so its entry exists here): registers `Fae\Exception` (a plain
/// RuntimeException, constructible from PHP) and the php-memcached class names when wanted.
pub fn register_classes(builder: ClassBuilder) -> ClassBuilder {
    wrap_constructor();
    crate::session_module::register(PROVIDE.load(Ordering::Relaxed) && !memcached_loaded());
    PROVIDED.store(false, Ordering::Relaxed);
    EXCEPTION.store(ptr::null_mut(), Ordering::Release);
    let fae = ClassBuilder::new("Fae\\Exception")
        .extends((runtime_exception, "\\RuntimeException"))
        .registration(|ce, _| EXCEPTION.store(ptr::from_mut(ce), Ordering::Release))
        .register();
    if let Err(e) = fae {
        log::warn!("fae: level=warn event=exception_class_not_registered reason={e}");
    }
    if !PROVIDE.load(Ordering::Relaxed) || memcached_loaded() {
        return builder;
    }
    let client = ClassBuilder::new("Memcached")
        .extends((|| FaeClient::get_metadata().ce(), "\\Fae\\Client"))
        .registration(|_, _| {})
        .register();
    let exception = ClassBuilder::new("MemcachedException")
        .extends((fae_exception, "\\Fae\\Exception"))
        .registration(|ce, _| EXCEPTION.store(ptr::from_mut(ce), Ordering::Release))
        .register();
    if let Err(e) = client.and(exception) {
        log::warn!("fae: level=warn event=memcached_classes_not_registered reason={e}");
    } else {
        PROVIDED.store(true, Ordering::Relaxed);
    }
    builder
}

/// `Fae\Client::__construct` as ext-php-rs generated it (it builds the Rust object).
static CONSTRUCT: std::sync::OnceLock<zif_handler> = std::sync::OnceLock::new();

/// php-memcached calls its on-new-object callback with the constructed object, which an
/// ext-php-rs constructor (returning `Self`) cannot do: so `Fae\Client::__construct` (and with
/// it every subclass's, `Memcached` included, which share the internal function) is wrapped
/// to run the callback once the object exists.
fn wrap_constructor() {
    let ce = FaeClient::get_metadata().ce();
    // SAFETY: MINIT, single-threaded; the constructor is the internal function ext-php-rs
    // registered for the class just before, and lives as long as the class.
    unsafe {
        let Some(f) = ce.constructor.as_mut() else {
            return;
        };
        let orig = f.internal_function.handler;
        let current = *CONSTRUCT.get_or_init(|| orig);
        if current.is_some() {
            f.internal_function.handler = Some(construct);
        }
    }
}

unsafe extern "C" fn construct(ex: *mut zend_execute_data, rv: *mut zval) {
    if let Some(Some(orig)) = CONSTRUCT.get() {
        // SAFETY: the engine's arguments, passed on unchanged to the handler they were for.
        unsafe { orig(ex, rv) };
    }
    if ext_php_rs::zend::ExecutorGlobals::has_exception() {
        return;
    }
    // SAFETY: the engine passes its live frame; `ExecuteData` is that struct.
    let Some(ex) = (unsafe { ex.cast::<ExecuteData>().as_mut() }) else {
        return;
    };
    if let Some(obj) = ex.get_object::<FaeClient>() {
        FaeClient::run_init_callback(obj);
    }
}

unsafe extern "C" {
    // ext/standard/info.c: the module's php.ini table, which phpinfo() shows by default.
    fn display_ini_entries(module: *mut ext_php_rs::zend::ModuleEntry);
}

/// `phpinfo()`: what this extension serves, then its php.ini settings.
pub extern "C" fn module_info(module: *mut ext_php_rs::zend::ModuleEntry) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    ext_php_rs::info_table_start!();
    ext_php_rs::info_table_row!("fae support", "enabled");
    ext_php_rs::info_table_row!("libfae version", env!("CARGO_PKG_VERSION"));
    ext_php_rs::info_table_row!(
        "provides Memcached, MemcachedException",
        yes_no(provides_memcached())
    );
    ext_php_rs::info_table_row!(
        "session save handlers",
        if provides_memcached() {
            "fae, memcached"
        } else {
            "fae"
        }
    );
    ext_php_rs::info_table_row!("igbinary support", yes_no(module_loaded("igbinary")));
    ext_php_rs::info_table_row!("msgpack support", yes_no(module_loaded("msgpack")));
    ext_php_rs::info_table_end!();
    // SAFETY: the engine's module entry for this extension, passed to its info function.
    unsafe { display_ini_entries(module) };
}
