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
    guard_methods();
    uncloneable();
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
        .registration(|ce, _| of_memcached_module(ce))
        .register();
    let exception = ClassBuilder::new("MemcachedException")
        .extends((fae_exception, "\\Fae\\Exception"))
        .registration(|ce, _| {
            of_memcached_module(ce);
            EXCEPTION.store(ptr::from_mut(ce), Ordering::Release);
        })
        .register();
    if let Err(e) = client.and(exception) {
        log::warn!("fae: level=warn event=memcached_classes_not_registered reason={e}");
    } else {
        PROVIDED.store(true, Ordering::Relaxed);
    }
    builder
}

/// php-memcached's classes belong to the `memcached` module entry (when registered), so
/// `ReflectionClass::getExtensionName()` and `ReflectionExtension('memcached')->getClasses()`
/// answer as with php-memcached.
fn of_memcached_module(ce: &mut ClassEntry) {
    let alias = crate::php_ini::ALIAS.load(Ordering::Acquire);
    if !alias.is_null() {
        // An internal class's `info` is its `internal` variant; the module entry lives as
        // long as the process (see `register_module_alias`).
        ce.info.internal.module = alias;
    }
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

/// `clone $m` throws the engine's own "Trying to clone an uncloneable object of class
/// Memcached" (naming the object's class, as php-memcached's objects do): ext-php-rs' clone
/// handler names `Fae\Client` whatever the subclass, so the class has none.
fn uncloneable() {
    let handlers = FaeClient::get_metadata().handlers();
    // SAFETY: MINIT, single-threaded, before any object exists. The handler table is plain C
    // data the engine only reads through a const pointer; objects keep pointing at this same
    // table (ext-php-rs recognises its objects by that pointer), only one slot changes.
    unsafe { (*ptr::from_ref(handlers).cast_mut()).clone_obj = None };
}

/// `zend_class_entry.type` of a class defined by an extension (Zend/zend_compile.h).
const ZEND_INTERNAL_CLASS: std::ffi::c_char = 1;

/// The original handlers of `Fae\Client`'s instance methods, by function name pointer
/// (interned: a subclass's inherited copy of a method has the same one), sorted. Replaced
/// (the old table leaked) if the module starts again in the same process.
type MethodTable = Vec<(usize, zif_handler)>;
static METHODS: std::sync::atomic::AtomicPtr<MethodTable> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// A subclass whose constructor never called `parent::__construct()` has no client behind
/// it; php-memcached then throws `Error("Memcached constructor was not called")` from every
/// method. ext-php-rs would throw a plain Exception about `$this`, so every instance method
/// (except the constructor) is wrapped with that check, before the subclasses inherit them.
fn guard_methods() {
    let ce = FaeClient::get_metadata().ce();
    let mut table = Vec::new();
    for (_, zv) in ce.function_table.iter() {
        // SAFETY: a class's function table holds IS_PTR zvals to its zend_functions.
        let Some(f) = (unsafe {
            zv.value
                .ptr
                .cast::<ext_php_rs::ffi::zend_function>()
                .as_mut()
        }) else {
            continue;
        };
        // SAFETY: `common` is valid for every function type; `internal_function` only read
        // and written for internal ones.
        unsafe {
            let internal = u32::from(f.type_) == ext_php_rs::ffi::ZEND_INTERNAL_FUNCTION;
            let is_static = f.common.fn_flags & ext_php_rs::ffi::ZEND_ACC_STATIC != 0;
            let name = f.common.function_name;
            let ctor = name
                .as_ref()
                .is_some_and(|n| n.as_bytes().eq_ignore_ascii_case(b"__construct"));
            if !internal || is_static || ctor || name.is_null() {
                continue;
            }
            table.push((name as usize, f.internal_function.handler));
            f.internal_function.handler = Some(guarded_method);
        }
    }
    table.sort_unstable_by_key(|e| e.0);
    METHODS.store(Box::leak(Box::new(table)), Ordering::Release);
}

unsafe extern "C" fn guarded_method(ex: *mut zend_execute_data, rv: *mut zval) {
    // SAFETY: the engine passes its live frame, whose `func` is the method being called.
    let name = unsafe { ex.as_ref().and_then(|e| e.func.as_ref()) }
        .map_or(0, |f| unsafe { f.common.function_name } as usize);
    // SAFETY: null or a leaked table, never freed.
    let orig = unsafe { METHODS.load(Ordering::Acquire).as_ref() }.and_then(|t| {
        t.binary_search_by_key(&name, |e| e.0)
            .ok()
            .and_then(|i| t[i].1)
    });
    // SAFETY: as above; `ExecuteData` is that struct.
    let Some(frame) = (unsafe { ex.cast::<ExecuteData>().as_mut() }) else {
        return;
    };
    if frame.get_object::<FaeClient>().is_none() {
        let class = frame
            .get_self()
            .and_then(|o| {
                let mut ce = Some(o.get_class_entry());
                while let Some(c) = ce
                    && c.type_ != ZEND_INTERNAL_CLASS
                {
                    ce = c.parent();
                }
                ce.and_then(ClassEntry::name).map(str::to_string)
            })
            .unwrap_or_else(|| "Memcached".into());
        ext_php_rs::exception::PhpException::new(
            format!("{class} constructor was not called"),
            0,
            ext_php_rs::zend::ce::error(),
        )
        .throw();
        return;
    }
    if let Some(orig) = orig {
        // SAFETY: the engine's arguments, passed on unchanged to the handler they were for.
        unsafe { orig(ex, rv) };
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
    // Zend/zend_API.c: numbers a module entry, marks it persistent and adds it to the registry.
    fn zend_register_internal_module(
        module: *mut ext_php_rs::zend::ModuleEntry,
    ) -> *mut ext_php_rs::zend::ModuleEntry;
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

/// The version `phpversion('memcached')` reports: the php-memcached API this extension serves
/// (frameworks compare it, e.g. Symfony requires ≥ 3.1.6).
pub const MEMCACHED_API_VERSION: &std::ffi::CStr = c"3.2.0";

/// MINIT, when this extension provides `Memcached`: registers a second, empty module entry
/// named `memcached`, so code that detects php-memcached by name (`extension_loaded`,
/// `phpversion('memcached')`, `@requires extension memcached`, `php --ri memcached`) finds
/// it; its phpinfo section is php-memcached's. It has no functions, classes or handlers
/// (ours serve everything) and no shared-object handle, so the engine never unloads it; it
/// is destroyed before this module (the registry is torn down in reverse order). Returns its
/// module number, under which the `memcached.*` settings are declared.
pub fn register_module_alias() -> Option<i32> {
    // SAFETY: MINIT runs single-threaded; `current_module` is this extension's entry while
    // its MINIT runs (startup and `dl` alike).
    let ours = unsafe { ext_php_rs::ffi::executor_globals.current_module };
    // SAFETY: the engine's entry for this module, alive for the process.
    let mut alias = *unsafe { ours.as_ref() }?;
    if u32::from(alias.type_) != ext_php_rs::ffi::MODULE_PERSISTENT {
        // Loaded by `dl()` for one request: unloaded at its end, while an entry registered
        // here would stay and point into the unloaded code.
        return None;
    }
    alias.name = c"memcached".as_ptr();
    alias.version = MEMCACHED_API_VERSION.as_ptr();
    alias.functions = ptr::null();
    alias.ini_entry = ptr::null();
    alias.deps = ptr::null();
    alias.module_startup_func = None;
    alias.module_shutdown_func = None;
    alias.request_startup_func = None;
    alias.request_shutdown_func = None;
    alias.info_func = Some(alias_info);
    alias.globals_size = 0;
    alias.globals_ptr = ptr::null_mut();
    alias.globals_ctor = None;
    alias.globals_dtor = None;
    alias.post_deactivate_func = None;
    alias.module_started = 0;
    alias.handle = ptr::null_mut();
    // The registry keeps the pointer: the entry lives as long as the process (one per MINIT).
    let alias = Box::leak(Box::new(alias));
    // SAFETY: MINIT, single-threaded. The engine numbers the entry and marks it persistent.
    // It resets `current_module` to null on the way out, which would leave the classes
    // registered after this without their module: restored. The registry is walked by index
    // during startup, so adding to it from a MINIT is safe (the engine then starts the new
    // entry, a no-op).
    let registered = unsafe {
        let r = zend_register_internal_module(ptr::from_mut(alias));
        ext_php_rs::ffi::executor_globals.current_module = ours;
        r
    };
    // SAFETY: null, or the entry just leaked (the registry holds it), never freed.
    let entry = unsafe { registered.as_mut() }?;
    crate::php_ini::ALIAS.store(ptr::from_mut(entry), Ordering::Release);
    Some(entry.module_number)
}

/// `phpinfo()`'s `memcached` section: php-memcached's rows, then the `memcached.*` settings.
extern "C" fn alias_info(module: *mut ext_php_rs::zend::ModuleEntry) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    ext_php_rs::info_table_start!();
    ext_php_rs::info_table_row!("memcached support", "enabled");
    ext_php_rs::info_table_row!("Version", MEMCACHED_API_VERSION.to_str().unwrap_or(""));
    ext_php_rs::info_table_row!(
        "served by",
        concat!("fae ", env!("CARGO_PKG_VERSION"), " (libfae)")
    );
    ext_php_rs::info_table_row!("SASL support", "no");
    ext_php_rs::info_table_row!("Session support", "yes");
    ext_php_rs::info_table_row!("igbinary support", yes_no(module_loaded("igbinary")));
    ext_php_rs::info_table_row!("json support", "yes");
    ext_php_rs::info_table_row!("msgpack support", yes_no(module_loaded("msgpack")));
    ext_php_rs::info_table_end!();
    // SAFETY: the engine's entry for the alias, passed to its info function.
    unsafe { display_ini_entries(module) };
}
