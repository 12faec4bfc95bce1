//! The core's `log` records (target `fae…`: breaker transitions, reloads, discovery, stats
//! export), written to PHP's error log.
//!
//! The core logs from its supervisor thread too, where no Zend API may be called. So the
//! logger only formats a record and parks it in a bounded lock-free queue: a fixed array of
//! slots, each published or taken with one atomic swap. A full queue drops the record and
//! counts it; nothing ever blocks or holds a lock, so a `fork()` at any moment leaves the
//! child with a usable queue (a record being written is at worst leaked). The queue is drained
//! on the request thread, at the start and end of every `Fae\Client` / `Fae\SessionHandler`
//! call and at request shutdown, through `php_log_err_with_severity` (what userland
//! `error_log()` calls): the `error_log` ini file, else the SAPI's log (stderr in php-cli,
//! the pool's log in php-fpm). Records queued before a fork are written by the parent only.
//!
//! Level: the `fae.log_level` ini entry ("warn" by default, "info" or "debug"); errors and
//! warnings are always written. The logger is installed at the first client construction, not
//! at module load.

use std::ffi::{CString, c_char, c_int};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::zend::{IniEntryDef, IniEntryDefs};
use log::{Level, LevelFilter, Log, Metadata, Record};

unsafe extern "C" {
    /// `main/main.c`; `error_log($msg)` and `php_log_err()` end here.
    fn php_log_err_with_severity(log_message: *const c_char, syslog_type_int: c_int);
}

/// Queue capacity, in records.
const SLOTS: usize = 256;

struct Entry {
    seq: u64,
    pid: u32,
    severity: c_int,
    line: String,
}

static QUEUE: [AtomicPtr<Entry>; SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS];
/// Records in (or being put into) the queue: lets a drain with nothing to do return at once.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// Records dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SEQ: AtomicU64 = AtomicU64::new(0);
/// The `fae.log_level` in force, as a `LevelFilter` number (Warn = 2, Info = 3, Debug = 4).
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Warn as usize);
static INSTALL: Once = Once::new();

fn level() -> LevelFilter {
    match LEVEL.load(Ordering::Relaxed) {
        4 => LevelFilter::Debug,
        3 => LevelFilter::Info,
        _ => LevelFilter::Warn,
    }
}

fn parse_level(s: &[u8]) -> Option<LevelFilter> {
    match s.to_ascii_lowercase().as_slice() {
        b"" | b"warn" | b"warning" => Some(LevelFilter::Warn),
        b"info" => Some(LevelFilter::Info),
        b"debug" => Some(LevelFilter::Debug),
        _ => None,
    }
}

struct PhpLog;

static LOGGER: PhpLog = PhpLog;

impl Log for PhpLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("fae") && m.level() <= level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let (name, severity) = match r.level() {
            Level::Error => ("error", libc::LOG_ERR),
            Level::Warn => ("warn", libc::LOG_WARNING),
            Level::Info => ("info", libc::LOG_INFO),
            Level::Debug | Level::Trace => ("debug", libc::LOG_DEBUG),
        };
        push(Entry {
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            pid: std::process::id(),
            severity,
            line: format!("fae: level={name} {}", r.args()),
        });
    }

    fn flush(&self) {}
}

fn push(e: Entry) {
    PENDING.fetch_add(1, Ordering::AcqRel);
    let start = (e.seq as usize) % SLOTS;
    let p = Box::into_raw(Box::new(e));
    for i in 0..SLOTS {
        let slot = &QUEUE[(start + i) % SLOTS];
        if slot
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    // SAFETY: `p` came from Box::into_raw above and was published nowhere.
    drop(unsafe { Box::from_raw(p) });
    PENDING.fetch_sub(1, Ordering::AcqRel);
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// Install the logger (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level());
        }
    });
}

fn write(line: &str, severity: c_int) {
    let Ok(c) = CString::new(line.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: called on the request thread only (see `drain`); `c` outlives the call.
    unsafe { php_log_err_with_severity(c.as_ptr(), severity) };
}

/// Write the queued records to PHP's error log. Request thread only: it calls into PHP.
pub fn drain() {
    if PENDING.load(Ordering::Acquire) == 0 && DROPPED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut out = Vec::new();
    for slot in &QUEUE {
        let p = slot.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            PENDING.fetch_sub(1, Ordering::AcqRel);
            // SAFETY: every non-null slot holds a Box::into_raw pointer, taken exactly once.
            out.push(unsafe { Box::from_raw(p) });
        }
    }
    out.sort_by_key(|e| e.seq);
    let pid = std::process::id();
    for e in out.iter().filter(|e| e.pid == pid) {
        write(&e.line, e.severity);
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        write(
            &format!("fae: level=warn log_records_dropped={dropped} reason=queue_full"),
            libc::LOG_WARNING,
        );
    }
}

// `fae.log_level`'s on-modify handler: at registration, `ini_set()` and the end-of-request
// restore. An unknown value is refused (the old one stays).
crate::php_ini::on_modify!(on_log_level, |bytes| {
    match parse_level(bytes) {
        Some(l) => {
            LEVEL.store(l as usize, Ordering::Relaxed);
            if INSTALL.is_completed() {
                log::set_max_level(l);
            }
            0
        }
        None => -1,
    }
});

const fn log_level_entry() -> IniEntryDef {
    let mut e = IniEntryDef::new(c"fae.log_level", c"warn", IniEntryPermission::All);
    e.on_modify = Some(on_log_level);
    e
}

static INI: IniEntryDefs<2> = IniEntryDefs::new([log_level_entry(), IniEntryDef::end()]);

/// MINIT: register `fae.log_level`.
pub extern "C" fn module_startup(_ty: i32, module_number: i32) -> i32 {
    IniEntryDef::register(INI.as_slice(), module_number);
    0
}

/// RSHUTDOWN: write what the last calls left queued.
pub extern "C" fn request_shutdown(_ty: i32, _module_number: i32) -> i32 {
    drain();
    0
}
