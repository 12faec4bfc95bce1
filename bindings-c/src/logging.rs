//! `fae_set_log_callback`: libfae's log records (breaker transitions, reloads, discovery,
//! stats export) delivered to a C function.
//!
//! The callback lives behind one atomic pointer, so installing, replacing or removing it takes
//! no lock, and a `fork()` at any moment leaves the child with a usable logger (the parent's
//! callback and userdata stay in force in the child, as every other process-wide setting of a
//! C library does). A replaced callback's small record is leaked on purpose: a thread may be
//! calling it at that very moment, and the swap is rare.

use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::panic::ffi_panic_boundary;
use crate::result::fae_result;

/// Severity of a log record, most severe first; a callback set for one level receives that
/// level and the more severe ones.
///
/// cbindgen:prefix-with-name=false
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum fae_log_level {
    /// A failure libfae could not work around (the supervisor thread could not start).
    FaeLogError = 1,
    /// A server's breaker opened, a reload was rejected, a discovery file is missing.
    FaeLogWarn = 2,
    /// Recoveries and reloads: breaker half-open/closed, reload applied.
    FaeLogInfo = 3,
    /// Detail for debugging.
    FaeLogDebug = 4,
}

/// Receives one log record. `message` is one line of `key=value` fields, for example
/// `destination=10.0.0.1:11211 breaker=open reason=connect_refused`: `message_len` bytes,
/// followed by a NUL, borrowed until the callback returns.
///
/// It may be called from any thread, including libfae's supervisor thread and threads inside
/// a libfae call, so it must be thread-safe and quick, must not call libfae, and must not
/// unwind (C++ exceptions, `longjmp`) through libfae.
#[allow(non_camel_case_types)]
pub type fae_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: fae_log_level,
        message: *const c_char,
        message_len: usize,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, fae_log_level, *const c_char, usize),
    userdata: *mut c_void,
}

static SINK: AtomicPtr<Sink> = AtomicPtr::new(ptr::null_mut());
static MAX_LEVEL: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
/// Did `log::set_logger` take ours?
static OWNED: AtomicBool = AtomicBool::new(false);

struct CLog;

static LOGGER: CLog = CLog;

fn level_of(l: Level) -> fae_log_level {
    match l {
        Level::Error => fae_log_level::FaeLogError,
        Level::Warn => fae_log_level::FaeLogWarn,
        Level::Info => fae_log_level::FaeLogInfo,
        Level::Debug | Level::Trace => fae_log_level::FaeLogDebug,
    }
}

impl Log for CLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("fae")
            && level_of(m.level()) as usize <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let sink = SINK.load(Ordering::Acquire);
        if sink.is_null() {
            return;
        }
        // SAFETY: a published Sink is never freed (see the module doc).
        let sink = unsafe { &*sink };
        let mut line = r.args().to_string().replace('\0', "\\0");
        let len = line.len();
        line.push('\0');
        // SAFETY: the caller's callback with the caller's userdata, as documented on
        // `fae_set_log_callback`; `line` outlives the call.
        unsafe {
            (sink.callback)(
                sink.userdata,
                level_of(r.level()),
                line.as_ptr().cast(),
                len,
            );
        }
    }

    fn flush(&self) {}
}

/// Deliver libfae's log records of `max_level` and more severe ones to `callback`, with
/// `userdata` passed back unchanged. `callback` NULL stops delivery. Process-wide: the last
/// call wins. Without a callback nothing is logged (libfae never writes to stdout/stderr).
///
/// Fails with `FAE_RESULT_INVALID_ARGUMENT` when `max_level` is not a `fae_log_level`, and
/// when another logger of the Rust `log` crate already owns this process (a Rust program that
/// links libfae and installed its own: libfae's records go to that one).
///
/// # Safety
/// `callback` must be NULL or a function of the documented signature that stays callable,
/// with `userdata`, until it is replaced or the process exits.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fae_set_log_callback(
    max_level: u32,
    callback: fae_log_callback,
    userdata: *mut c_void,
) -> fae_result {
    ffi_panic_boundary! {
        if !(1..=4).contains(&max_level) {
            crate::result::set_last_error(format!(
                "invalid_argument: log level {max_level} (1 error .. 4 debug)"
            ));
            return fae_result::InvalidArgument;
        }
        INSTALL.call_once(|| OWNED.store(log::set_logger(&LOGGER).is_ok(), Ordering::Release));
        if !OWNED.load(Ordering::Acquire) {
            crate::result::set_last_error(
                "invalid_argument: another Rust logger is installed in this process".into(),
            );
            return fae_result::InvalidArgument;
        }
        let sink = match callback {
            Some(callback) => Box::into_raw(Box::new(Sink { callback, userdata })),
            None => ptr::null_mut(),
        };
        MAX_LEVEL.store(max_level as usize, Ordering::Relaxed);
        // The previous Sink is leaked, never freed: another thread may be inside it.
        SINK.store(sink, Ordering::Release);
        log::set_max_level(match max_level {
            1 => LevelFilter::Error,
            2 => LevelFilter::Warn,
            3 => LevelFilter::Info,
            _ => LevelFilter::Debug,
        });
        fae_result::Ok
    }
}
