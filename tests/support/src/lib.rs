//! Test support for libfae: real memcached processes and a fault-injecting
//! TCP proxy, plus a tiny blocking text-protocol client for assertions.
//!
//! This crate deliberately does **not** depend on `fae-core`: the core's own
//! tests depend on it, and the assertion helpers in [`raw`] must not share code
//! (or bugs) with the client under test.
//!
//! # Overview
//!
//! * [`Memcached`] — a real `memcached` child process on a free
//!   `127.0.0.1` port, with `kill`/`pause`/`resume`/`restart` for failure
//!   tests. Honors `FAE_TEST_SERVER=host:port` (see [`Memcached::start`]).
//! * [`Cluster`] — `n` such servers.
//! * [`HostileServer`] — a scripted fake server that answers with duplicate
//!   blocks, other keys, wrong opaques, impossible lengths, garbage and more.
//! * [`raw`] — `command`, `stats`, `keys` (via `lru_crawler metadump all`),
//!   `get`, `set`, `delete`, `flush`, and a persistent [`raw::Conn`].
//! * [`certs`] — a CA and certificates generated per run (rcgen) for TLS servers.
//! * [`FaultProxy`] — a TCP proxy in front of one upstream whose behaviour
//!   ([`Fault`]) can be switched while it runs: delays, black holes, resets,
//!   truncation, garbage, slow drip and refused connects.
//!
//! Everything listens on and connects to `127.0.0.1` only, and every wait is
//! bounded by a timeout.
//!
//! ```no_run
//! use fae_testkit::{raw, Fault, FaultProxy, Memcached};
//! use std::time::Duration;
//!
//! let mc = Memcached::start();
//! raw::set(&mc.addr(), "k", 7, b"v");
//! assert_eq!(raw::get(&mc.addr(), "k"), Some((7, b"v".to_vec())));
//!
//! let proxy = FaultProxy::start(&mc.addr());
//! proxy.set_fault(Fault::Delay(Duration::from_millis(50)));
//! // point the client under test at proxy.addr() ...
//! ```
//!
//! # Environment variables
//!
//! * `FAE_TEST_SERVER=host:port` — [`Memcached::start`] returns a handle to
//!   this already-running server instead of starting one.
//! * `FAE_MEMCACHED_BIN=/path/to/memcached` — the binary to run (default:
//!   `memcached` found on `PATH`, else `/usr/bin/memcached`).
#![deny(missing_docs)]

pub mod certs;
mod child;
pub mod coord_tls;
pub mod etcd;
pub mod hostile;
pub mod memcached;
pub mod proxy;
pub mod raw;
mod sys;
pub mod zookeeper;

pub use coord_tls::ServerTls;
pub use etcd::Etcd;
pub use hostile::{EVIL, HostileServer, Misbehave};
pub use memcached::{Cluster, Memcached, MemcachedBuilder};
pub use proxy::{Fault, FaultProxy, GARBAGE};
pub use zookeeper::ZooKeeper;

use std::time::{Duration, Instant};

/// Polls `cond` (about every 5 ms) until it returns `true` or `timeout`
/// elapses. Returns whether `cond` became true.
///
/// Useful for counters that settle asynchronously, e.g.
/// `wait_until(Duration::from_secs(1), || proxy.active() == 0)`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether this process runs with effective uid 0 (memcached then needs
/// `-u root`, which [`Memcached`] adds automatically).
pub fn is_root() -> bool {
    sys::is_root()
}

/// Wait for forked children `pids` (forked by the calling test) to exit, for at most `limit`
/// in all; a child still running then is killed (SIGKILL, by its PID) and the call panics
/// naming it. Returns each child's exit code (-1 when it died of a signal), in `pids` order.
pub fn wait_forked(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = std::time::Instant::now() + limit;
    pids.iter()
        .map(|&pid| {
            let mut status = 0;
            loop {
                // SAFETY: waits for the caller's own child; status points to a live i32.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: kills the caller's own child process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    panic!("child {pid} hung");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            }
        })
        .collect()
}

/// Fork a child that runs `f` and leaves with its result as exit code (9 if it panicked),
/// through `_exit`: nothing of the test harness runs in the child. Returns the child's PID
/// (wait for it with [`wait_forked`]). `fork()` copies only the calling thread, so `f` must
/// not wait for another thread of the parent.
pub fn fork_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `f` and leaves with _exit, as a forked child of a multi-threaded
    // process should.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(9);
        // SAFETY: terminates the child immediately.
        unsafe { libc::_exit(code) };
    }
    pid
}
