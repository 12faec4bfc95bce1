//! Native session save handlers: `session.save_handler = fae`, and `= memcached` when this
//! extension provides `Memcached`, so a php.ini line switches sessions without code. Each
//! request's handler is a `FaeSessionHandler` configured from `memcached.sess_*`, with the
//! servers of `session.save_path` (`host:port[:weight],…`); the semantics (keys, locking,
//! TTL) are `session.rs`'s, which are php-memcached's.
use std::ffi::{CStr, c_char, c_int, c_void};

use ext_php_rs::boxed::ZBox;
use ext_php_rs::ffi::zend_string;
use ext_php_rs::types::ZendStr;

use crate::convert::warn;
use crate::session::FaeSessionHandler;

const SUCCESS: c_int = 0;
const FAILURE: c_int = -1;

/// ext/session's `ps_module` (php_session.h, PHP 8.x).
#[repr(C)]
pub struct PsModule {
    name: *const c_char,
    open: unsafe extern "C" fn(*mut *mut c_void, *const c_char, *const c_char) -> c_int,
    close: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
    read: unsafe extern "C" fn(
        *mut *mut c_void,
        *mut zend_string,
        *mut *mut zend_string,
        i64,
    ) -> c_int,
    write: unsafe extern "C" fn(*mut *mut c_void, *mut zend_string, *mut zend_string, i64) -> c_int,
    destroy: unsafe extern "C" fn(*mut *mut c_void, *mut zend_string) -> c_int,
    gc: unsafe extern "C" fn(*mut *mut c_void, i64, *mut i64) -> i64,
    create_sid: unsafe extern "C" fn(*mut *mut c_void) -> *mut zend_string,
    validate_sid: unsafe extern "C" fn(*mut *mut c_void, *mut zend_string) -> c_int,
    update_timestamp:
        unsafe extern "C" fn(*mut *mut c_void, *mut zend_string, *mut zend_string, i64) -> c_int,
}

// SAFETY: the table is immutable and its pointers are to statics and functions.
unsafe impl Sync for PsModule {}

unsafe extern "C" {
    fn php_session_register_module(m: *const PsModule) -> c_int;
    fn php_session_create_id(mod_data: *mut *mut c_void) -> *mut zend_string;
}

const fn module(name: &'static CStr) -> PsModule {
    PsModule {
        name: name.as_ptr(),
        open: ps_open,
        close: ps_close,
        read: ps_read,
        write: ps_write,
        destroy: ps_destroy,
        gc: ps_gc,
        create_sid: ps_create_sid,
        validate_sid: ps_validate_sid,
        update_timestamp: ps_update_timestamp,
    }
}

static FAE: PsModule = module(c"fae");
static MEMCACHED: PsModule = module(c"memcached");

/// MINIT: register `fae`, and `memcached` when this extension provides that class.
pub fn register(memcached: bool) {
    // SAFETY: MINIT; the session extension (built in) started before us; the tables live
    // for the process.
    unsafe {
        php_session_register_module(&raw const FAE);
        if memcached {
            php_session_register_module(&raw const MEMCACHED);
        }
    }
}

fn bytes(s: *mut zend_string) -> Vec<u8> {
    // SAFETY: the engine passes a live zend_string (or null).
    unsafe { s.as_ref() }.map_or_else(Vec::new, |z| z.as_bytes().to_vec())
}

/// The request's handler in `*mod_data`.
unsafe fn handler<'a>(mod_data: *mut *mut c_void) -> Option<&'a mut FaeSessionHandler> {
    // SAFETY: `*mod_data` is null or the box `ps_open` leaked, alive until `ps_close`.
    unsafe {
        mod_data
            .as_ref()
            .and_then(|p| p.cast::<FaeSessionHandler>().as_mut())
    }
}

/// Run `f` with the handler, never letting a panic cross into the engine.
fn with<T>(mod_data: *mut *mut c_void, fail: T, f: impl FnOnce(&mut FaeSessionHandler) -> T) -> T {
    // SAFETY: see `handler`.
    let Some(h) = (unsafe { handler(mod_data) }) else {
        return fail;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(h))).unwrap_or(fail)
}

unsafe extern "C" fn ps_open(
    mod_data: *mut *mut c_void,
    path: *const c_char,
    name: *const c_char,
) -> c_int {
    let text = |p: *const c_char| {
        if p.is_null() {
            return String::new();
        }
        // SAFETY: a non-null NUL-terminated string from the engine, live for this call.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    let (path, name) = (text(path), text(name));
    let opened = std::panic::catch_unwind(|| {
        if path.trim().is_empty() {
            warn("failed to parse session.save_path");
            return None;
        }
        if path.contains("PERSISTENT=") {
            warn(
                "failed to parse session.save_path: PERSISTENT is replaced by memcached.sess_persistent = On",
            );
            return None;
        }
        let mut h = match FaeSessionHandler::from_ini() {
            Ok(h) => h,
            Err(e) => {
                warn(&e);
                return None;
            }
        };
        match h.open(path.clone(), name) {
            Ok(true) => Some(h),
            _ => {
                warn(&format!(
                    "failed to parse session.save_path: {}",
                    h.last_error()
                ));
                None
            }
        }
    });
    match opened {
        Ok(Some(h)) => {
            // SAFETY: the engine's slot for this module's data.
            unsafe { *mod_data = Box::into_raw(Box::new(h)).cast() };
            SUCCESS
        }
        _ => FAILURE,
    }
}

unsafe extern "C" fn ps_close(mod_data: *mut *mut c_void) -> c_int {
    // SAFETY: the box `ps_open` leaked, taken back once; the slot is cleared.
    unsafe {
        if let Some(p) = mod_data.as_mut()
            && !p.is_null()
        {
            let mut h = Box::from_raw(p.cast::<FaeSessionHandler>());
            *p = std::ptr::null_mut();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.close()));
        }
    }
    SUCCESS
}

unsafe extern "C" fn ps_read(
    mod_data: *mut *mut c_void,
    key: *mut zend_string,
    val: *mut *mut zend_string,
    _maxlifetime: i64,
) -> c_int {
    let id = String::from_utf8_lossy(&bytes(key)).into_owned();
    let data = with(mod_data, None, |h| match h.read(id) {
        Ok(b) => Some(Vec::<u8>::from(b)),
        Err(_) => {
            warn(h.last_error());
            None
        }
    });
    match data {
        Some(d) => {
            let s: ZBox<ZendStr> = ZendStr::new(&d, false);
            // SAFETY: the engine's out-parameter; it owns the string from here.
            unsafe { *val = s.into_raw() };
            SUCCESS
        }
        None => FAILURE,
    }
}

unsafe extern "C" fn ps_write(
    mod_data: *mut *mut c_void,
    key: *mut zend_string,
    val: *mut zend_string,
    _maxlifetime: i64,
) -> c_int {
    let id = String::from_utf8_lossy(&bytes(key)).into_owned();
    let data = bytes(val);
    if with(mod_data, false, |h| h.write_bytes(&id, &data)) {
        SUCCESS
    } else {
        FAILURE
    }
}

unsafe extern "C" fn ps_destroy(mod_data: *mut *mut c_void, key: *mut zend_string) -> c_int {
    let id = String::from_utf8_lossy(&bytes(key)).into_owned();
    if with(mod_data, false, |h| h.destroy(id).unwrap_or(false)) {
        SUCCESS
    } else {
        FAILURE
    }
}

unsafe extern "C" fn ps_gc(
    _mod_data: *mut *mut c_void,
    _maxlifetime: i64,
    nrdels: *mut i64,
) -> i64 {
    // memcached expires sessions itself (TTL = gc_maxlifetime).
    // SAFETY: the engine's out-parameter (or null).
    if let Some(n) = unsafe { nrdels.as_mut() } {
        *n = 0;
    }
    0
}

unsafe extern "C" fn ps_create_sid(mod_data: *mut *mut c_void) -> *mut zend_string {
    // SAFETY: PHP's default id generator, as php-memcached uses it.
    unsafe { php_session_create_id(mod_data) }
}

unsafe extern "C" fn ps_validate_sid(mod_data: *mut *mut c_void, key: *mut zend_string) -> c_int {
    let id = String::from_utf8_lossy(&bytes(key)).into_owned();
    if with(mod_data, false, |h| h.validate_id(id).unwrap_or(false)) {
        SUCCESS
    } else {
        FAILURE
    }
}

unsafe extern "C" fn ps_update_timestamp(
    mod_data: *mut *mut c_void,
    key: *mut zend_string,
    _val: *mut zend_string,
    _maxlifetime: i64,
) -> c_int {
    let id = String::from_utf8_lossy(&bytes(key)).into_owned();
    if with(mod_data, false, |h| h.touch(&id)) {
        SUCCESS
    } else {
        FAILURE
    }
}
