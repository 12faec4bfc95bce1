//! Fork detection without a syscall on the hot path.
//!
//! php-fpm, gunicorn and uwsgi fork after loading libfae. A child must not use the parent's
//! sockets (both processes would read each other's replies). `pthread_atfork` bumps a process
//! generation in the child; every destination compares it (one relaxed load) on checkout and,
//! in a new generation, drops the inherited connections. `getpid()` would cost a syscall per
//! request (glibc stopped caching it in 2.25).

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: a single atomic add, no allocation, no lock.
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Install the `pthread_atfork` child handler (once per process; called when the first client
/// is built, never at load time).
pub fn install() {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only performs an atomic add; the prepare and parent
        // handlers are null, as pthread_atfork allows.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

/// The current process generation: 0 in the original process, +1 for each fork since.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}
