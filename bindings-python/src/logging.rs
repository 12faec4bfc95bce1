//! The core's `log` records, handed to Python's `logging` (logger `"fae"`).
//!
//! The core logs events, not requests: breaker transitions, reloads, discovery, stats export,
//! each one `key=value` line. They come from request threads (which released the GIL in
//! `py.detach`) and from the supervisor thread (never a Python thread). [`PyLogger`]:
//!
//! - drops a record without touching Python when the cached threshold says the `"fae"` logger
//!   is not enabled for its level. The threshold (`getEffectiveLevel()`, and `logging.disable`)
//!   is refreshed whenever a record is handed over, when a client is built or reloaded (the GIL
//!   is held then anyway), and at most [`REFRESH_MS`] after the last refresh otherwise — so a
//!   `setLevel` takes effect within a second and disabled logging costs an atomic load and a
//!   clock read per record;
//! - holds no lock of its own: everything shared is an atomic, and the logger object is looked
//!   up once at import. A thread that waits for the GIL here holds nothing another thread
//!   could wait on, and a `fork()` at any moment leaves the child nothing to unlock;
//! - uses `Python::try_attach` and stops for good once `atexit` ran ([`_logging_shutdown`],
//!   registered by `fae/__init__.py`): a record that arrives while the interpreter finalizes is
//!   dropped rather than blocking or crashing the thread;
//! - never panics into the core (a failed `logging` call is reported as unraisable).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// Longest time a cached threshold is trusted without asking Python again.
pub const REFRESH_MS: u64 = 1000;

/// Records below this Python level are dropped. 0 (`NOTSET`) until the first refresh.
static THRESHOLD: AtomicI32 = AtomicI32::new(0);
/// When [`THRESHOLD`] was last read from Python, ms since [`epoch`] (+1, so 0 means never).
static REFRESHED_MS: AtomicU64 = AtomicU64::new(0);
/// Set by `atexit`: the interpreter is going away, hand nothing over any more.
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);
thread_local! {
    /// This thread is handing a record to Python right now.
    static IN_LOG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
/// `logging.getLogger("fae")`, looked up once (the logging module keeps it forever).
static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// The Python `logging` level of a `log` level.
pub fn py_level(level: log::Level) -> i32 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug | log::Level::Trace => 10,
    }
}

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOGGER
        .get_or_try_init(py, || {
            PyResult::Ok(
                py.import("logging")?
                    .call_method1("getLogger", ("fae",))?
                    .unbind(),
            )
        })
        .map(|l| l.bind(py))
}

/// Re-read the `"fae"` logger's effective level (and `logging.disable`) into the cache.
pub fn refresh(py: Python<'_>) {
    let read = || -> PyResult<i32> {
        let l = logger(py)?;
        let effective: i32 = l.call_method0("getEffectiveLevel")?.extract()?;
        let disabled: i32 = l.getattr("manager")?.getattr("disable")?.extract()?;
        Ok(effective.max(disabled.saturating_add(1)))
    };
    // A logging module in an odd state (monkeypatched, half torn down): check every record.
    THRESHOLD.store(read().unwrap_or(0), Ordering::Relaxed);
    REFRESHED_MS.store(now_ms(), Ordering::Relaxed);
}

/// Would a record at this level be dropped, by the cache alone?
fn cached_disabled(level: i32) -> bool {
    level < THRESHOLD.load(Ordering::Relaxed)
        && now_ms().saturating_sub(REFRESHED_MS.load(Ordering::Relaxed)) < REFRESH_MS
}

/// The `key=value` fields of a core log line, for `extra={"fae": {...}}`: values that are
/// integers become ints, `"quoted"` and `Some("quoted")` values (the core's `{:?}` of a detail)
/// are unquoted, a trailing `;` or `,` is not part of a value. Words without `=` are skipped.
pub fn parse_fields(msg: &str) -> Vec<(&str, Field)> {
    let mut out = Vec::new();
    let b = msg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
            i += 1;
        }
        if i == start || i >= b.len() || b[i] != b'=' {
            // Not a key=value word: skip it.
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            continue;
        }
        let key = &msg[start..i];
        i += 1;
        let rest = &msg[i..];
        let (value, used) = if let Some(q) = rest.strip_prefix("Some(\"") {
            match quoted(q) {
                Some((v, n)) if q[n..].starts_with(')') => (Field::Str(v), 6 + n + 1),
                _ => word(rest),
            }
        } else if let Some(q) = rest.strip_prefix('"') {
            match quoted(q) {
                Some((v, n)) => (Field::Str(v), 1 + n),
                None => word(rest),
            }
        } else {
            word(rest)
        };
        i += used;
        out.push((key, value));
        // Whatever sticks to the value (`;`, `,`) up to the next space is not part of it.
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    out
}

/// A parsed field value.
#[derive(Debug, PartialEq, Eq)]
pub enum Field {
    Int(i64),
    Str(String),
}

/// A bare value: up to whitespace, without a trailing `;` or `,`. Returns (value, bytes used).
fn word(s: &str) -> (Field, usize) {
    let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    let v = s[..end].trim_end_matches([';', ',']);
    let f = match v.parse::<i64>() {
        Ok(n) => Field::Int(n),
        Err(_) => Field::Str(v.to_string()),
    };
    (f, v.len())
}

/// The body of a Rust `{:?}` string after its opening quote: (unescaped text, bytes used
/// including the closing quote), or None when it never closes.
fn quoted(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn emit(py: Python<'_>, level: i32, msg: &str) -> PyResult<()> {
    let l = logger(py)?;
    if !l.call_method1("isEnabledFor", (level,))?.is_truthy()? {
        return Ok(());
    }
    let fields = PyDict::new(py);
    for (k, v) in parse_fields(msg) {
        match v {
            Field::Int(n) => fields.set_item(k, n)?,
            Field::Str(s) => fields.set_item(k, s)?,
        }
    }
    let kwargs = PyDict::new(py);
    let extra = PyDict::new(py);
    extra.set_item("fae", fields)?;
    kwargs.set_item("extra", extra)?;
    l.call_method("log", (level, msg), Some(&kwargs))?;
    Ok(())
}

/// The `log::Log` of the Python binding.
#[derive(Debug)]
struct PyLogger;

impl log::Log for PyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        !SHUT_DOWN.load(Ordering::Relaxed) && !cached_disabled(py_level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A handler that itself uses fae (and so logs again) must not recurse.
        if IN_LOG.try_with(|f| f.replace(true)).unwrap_or(true) {
            return;
        }
        let level = py_level(record.level());
        let msg = record.args().to_string();
        // Never unwind into the core, whatever Python does.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Python::try_attach(|py| {
                if SHUT_DOWN.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = emit(py, level, &msg) {
                    e.write_unraisable(py, None);
                }
                refresh(py);
            })
        }));
        let _ = IN_LOG.try_with(|f| f.set(false));
    }

    fn flush(&self) {}
}

/// Install the logger (once per process; a second call, e.g. a re-import, keeps the first).
/// Starts no thread.
pub fn install(py: Python<'_>) {
    epoch();
    refresh(py);
    static LOG: PyLogger = PyLogger;
    if log::set_logger(&LOG).is_ok() {
        // The level check is ours (the cached threshold); the facade lets everything through.
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// `atexit` hook (registered by `fae/__init__.py`): from now on records are dropped, so no
/// thread tries to take the GIL while the interpreter finalizes.
#[pyfunction]
pub fn _logging_shutdown() {
    SHUT_DOWN.store(true, Ordering::Relaxed);
}

/// Re-read the `"fae"` logger's level now instead of within a second (tests, and code that
/// calls `setLevel` right before an operation whose records it wants).
#[pyfunction]
pub fn _logging_refresh(py: Python<'_>) {
    refresh(py);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(py_level(log::Level::Error), 40);
        assert_eq!(py_level(log::Level::Warn), 30);
        assert_eq!(py_level(log::Level::Info), 20);
        assert_eq!(py_level(log::Level::Debug), 10);
        assert_eq!(py_level(log::Level::Trace), 10);
    }

    #[test]
    fn fields() {
        let f = parse_fields("destination=127.0.0.1:11211 breaker=open reason=connect_failed");
        assert_eq!(
            f,
            vec![
                ("destination", Field::Str("127.0.0.1:11211".into())),
                ("breaker", Field::Str("open".into())),
                ("reason", Field::Str("connect_failed".into())),
            ]
        );
        let f = parse_fields("reload=ok config_version=2 destinations_kept=1");
        assert_eq!(f[1], ("config_version", Field::Int(2)));
        let f = parse_fields(
            "reload=failed reason=invalid_config detail=Some(\"a \\\"b\\\" c\"); the old config stays in force",
        );
        assert_eq!(
            f,
            vec![
                ("reload", Field::Str("failed".into())),
                ("reason", Field::Str("invalid_config".into())),
                ("detail", Field::Str("a \"b\" c".into())),
            ]
        );
        let f = parse_fields("stats.dir=/tmp/x write failed: boom");
        assert_eq!(f, vec![("stats.dir", Field::Str("/tmp/x".into()))]);
        let f = parse_fields("detail=None; x");
        assert_eq!(f, vec![("detail", Field::Str("None".into()))]);
        assert!(parse_fields("").is_empty());
        assert_eq!(
            parse_fields("=x a= b"),
            vec![("a", Field::Str(String::new()))]
        );
    }
}
