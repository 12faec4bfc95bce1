//! The library's own threads (supervisor, background worker, probes), started with
//! `pthread_create` rather than `std::thread`.
//!
//! Why: std's thread start and thread exit take a process-wide mutex (the stack-overflow
//! handler's table of threads, `std::sys::pal::unix::stack_overflow::thread_info`, in Rust 1.95).
//! When any thread of a process is starting or exiting at the moment another thread calls
//! `fork()`, the child inherits that mutex locked, and every `std::thread` it starts then
//! blocks before running its first line. A forked php-fpm, gunicorn or uwsgi worker would be
//! left with no supervisor (an open breaker never probed again) and no background worker
//! (shadow copies queued until the queue is full), for good. Seen in `tests/fork_routes.rs`:
//! 1 run in ~50, with both new threads of a child parked in `set_current_info`, while the
//! parent's test proxy started a thread per connection.
//!
//! A thread from `pthread_create` takes no std lock to start or to exit: in a child it starts
//! whatever the parent's threads were doing at the fork, and in a parent it is never the
//! holder of std's lock at a fork. It has no Rust-side guard-page report (a stack overflow
//! is still a SIGSEGV on the guard page, as in C), and it is detached: nothing joins it.

use std::ffi::CString;
use std::io;

/// Stack size: std's default for spawned threads.
const STACK: usize = 2 << 20;

type Body = Box<dyn FnOnce() + Send + 'static>;

/// Start a detached thread named `name` (at most 15 bytes are kept, the kernel's limit)
/// running `f`. A panic in `f` ends the thread, as it would a `std::thread`; it never unwinds
/// into the C start routine.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let short: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    let name = CString::new(short).ok();
    let body: Box<Body> = Box::new(Box::new(move || {
        if let Some(c) = &name {
            // SAFETY: names the calling thread with a NUL-terminated string of at most 16
            // bytes (the kernel's limit).
            unsafe { libc::pthread_setname_np(libc::pthread_self(), c.as_ptr()) };
        }
        f();
    }));
    let arg = Box::into_raw(body).cast::<libc::c_void>();
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut tid: libc::pthread_t = 0;
    // SAFETY: `attr` is initialised by pthread_attr_init before any other use and destroyed
    // once; `tid` and `attr` outlive the calls that write them; `start` takes ownership of
    // `arg` (a `Box<Body>` leaked above) exactly once, and if the thread is not created `arg`
    // is reclaimed here instead.
    let rc = unsafe {
        let a = attr.as_mut_ptr();
        let mut rc = libc::pthread_attr_init(a);
        if rc == 0 {
            libc::pthread_attr_setstacksize(a, STACK);
            libc::pthread_attr_setdetachstate(a, libc::PTHREAD_CREATE_DETACHED);
            rc = libc::pthread_create(&mut tid, a, start, arg);
            libc::pthread_attr_destroy(a);
        }
        if rc != 0 {
            drop(Box::from_raw(arg.cast::<Body>()));
        }
        rc
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `Box<Body>` that `spawn` leaked for this thread alone.
    let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(*body));
    std::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_named_and_contains_a_panic() {
        let (tx, rx) = mpsc::channel();
        spawn("fae-test-thread-long-name", move || {
            let mut name = [0u8; 16];
            // SAFETY: `name` has room for the 16 bytes the kernel may write.
            unsafe { libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), 16) };
            let me = std::thread::current();
            tx.send((name, me.id())).unwrap();
        })
        .unwrap();
        let (name, id) = rx.recv().unwrap();
        assert_ne!(id, std::thread::current().id());
        let end = name.iter().position(|&b| b == 0).unwrap_or(16);
        assert_eq!(&name[..end], b"fae-test-thread");
        spawn("fae-test-panic", || panic!("contained")).unwrap();
        let (tx, rx) = mpsc::channel();
        spawn("fae-test-after", move || tx.send(()).unwrap()).unwrap();
        rx.recv().unwrap();
    }
}
