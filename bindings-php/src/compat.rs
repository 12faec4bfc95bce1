//! The php.ini-only switch from php-memcached: with `fae.provide_memcached_classes` on (the
//! default) and the `memcached` extension not loaded, this extension registers `Memcached`
//! (a subclass of `Fae\Client`) and `MemcachedException` (of `Fae\Exception`), so code
//! written for php-memcached runs unchanged. With php-memcached loaded, its classes stay.
use std::ptr;
use std::sync::atomic::Ordering;

use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::class::RegisteredClass;
use ext_php_rs::ffi::{zend_execute_data, zif_handler, zval};
use ext_php_rs::zend::ClassEntry;
use ext_php_rs::zend::ExecuteData;

use crate::client::FaeClient;
use crate::convert::EXCEPTION;
use crate::php_ini::{PROVIDED, module_loaded, provides_memcached, wants_memcached_classes};

unsafe extern "C" {
    // SPL's RuntimeException, which php-memcached's MemcachedException extends (SPL is
    // built into PHP and starts before any shared extension).
    static spl_ce_RuntimeException: *mut ClassEntry;
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
    PROVIDED.store(false, Ordering::Relaxed);
    EXCEPTION.store(ptr::null_mut(), Ordering::Release);
    let fae = ClassBuilder::new("Fae\\Exception")
        .extends((runtime_exception, "\\RuntimeException"))
        .registration(|ce, _| EXCEPTION.store(ptr::from_mut(ce), Ordering::Release))
        .register();
    if let Err(e) = fae {
        log::warn!("fae: level=warn event=exception_class_not_registered reason={e}");
    }
    if !wants_memcached_classes() {
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
