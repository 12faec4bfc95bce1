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

extern "C" fn before_fork() {
    crate::supervisor::before_fork();
    crate::route::background::before_fork();
}

extern "C" fn after_fork_in_parent() {
    crate::route::background::after_fork();
    crate::supervisor::after_fork();
}

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: a single atomic add, no allocation; then release the locks the
    // prepare handler took (background queue, supervisor registry), in reverse order.
    GENERATION.fetch_add(1, Ordering::AcqRel);
    crate::route::background::after_fork();
    crate::supervisor::after_fork();
}

/// Install the `pthread_atfork` handlers (once per process; called when the first client is
/// built, never at load time): the child bumps the generation, and the supervisor registry
/// lock is held across the fork so no vanished thread can own it in the child.
pub fn install() {
    REGISTER.call_once(|| {
        // SAFETY: the handlers are plain `extern "C"` functions that take and release two
        // locks and bump an atomic; they live for the whole process.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

/// The current process generation: 0 in the original process, +1 for each fork since.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}
