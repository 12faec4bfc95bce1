//! The supervisor: one background thread per process that probes open breakers, heartbeats
//! idle connections and recycles old ones. It never sits on the request path.
//!
//! - Started lazily, on a client's first request, never at load time: php-fpm, gunicorn and
//!   uwsgi load libfae and then fork, and a forked child has no threads. Each process
//!   generation ([`crate::process::fork::generation`]) starts its own on first use.
//! - Clients register a `Weak` handle; the thread upgrades them each tick, maintains them and
//!   drops the dead ones. It exits when no client is left, and the next request starts it again.
//! - Between ticks it sleeps in `poll(2)` on the sockets of parked breaker probes (at most one
//!   per destination, see `pool`): a stopped server that runs again is served the moment it
//!   answers, not at the next probe. Still one thread, whatever the number of servers.
//! - The registry lock is taken by a `pthread_atfork` prepare handler and released in both
//!   parent and child, so `fork()` can never leave it held by a thread the child does not have.
//!   It is a `SpinLock` (`process::fork`), not a parking_lot mutex (see there why), so nothing slow happens
//!   under it: the thread is spawned after it is released.
//! - If the thread cannot be spawned, [`is_running`] is false again and requests do the work
//!   inline, as with `background: false`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::process::fork::{self, SpinLock};

/// Something with periodic background work.
pub(crate) trait Maintain: Send + Sync {
    /// Do the due work. `false`: this client is closed; drop it from the registry.
    fn maintain(&self) -> bool;

    /// Sockets whose readiness is work to do at once, not at the next tick: parked breaker
    /// probes (a stopped server answering again) and heartbeats awaiting their answer.
    /// Pushed onto `fds`.
    fn wake_fds(&self, fds: &mut Vec<i32>) {
        let _ = fds;
    }
}

/// How often the thread wakes. Probe and heartbeat schedules are kept by each destination;
/// this only bounds how late they run. Between ticks it waits in `poll(2)` on the sockets of
/// parked probes ([`Maintain::wake_fds`]), so a reply to one is served at once.
const TICK: Duration = Duration::from_millis(20);

/// The shortest time between two rounds when a socket woke the thread early: a socket that
/// stays readable without being served (its destination gone, the fd number reused) costs
/// at most this often a round, never a spin.
const MIN_ROUND: Duration = Duration::from_millis(1);

const NOT_RUNNING: u64 = u64::MAX;

pub(crate) static REGISTRY: SpinLock<Vec<Weak<dyn Maintain>>> = SpinLock::new(Vec::new());
/// The generation whose thread is running, or `NOT_RUNNING`.
static RUNNING: AtomicU64 = AtomicU64::new(NOT_RUNNING);
/// Threads started so far (all generations), for tests and stats.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Register a client's background work (does not start the thread).
pub(crate) fn register(w: Weak<dyn Maintain>) {
    fork::install();
    REGISTRY.lock().push(w);
}

/// Is the supervisor running in this process?
#[inline]
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire) == fork::generation()
}

/// Supervisor threads started so far in this process's lineage.
pub fn threads_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// Start the thread for this process generation if it is not running. Cheap when it is: two
/// atomic loads.
#[inline]
pub(crate) fn ensure_running() {
    if !is_running() {
        start();
    }
}

#[cold]
fn start() {
    let generation = fork::generation();
    {
        let reg = REGISTRY.lock();
        if RUNNING.load(Ordering::Acquire) == generation || reg.is_empty() {
            return;
        }
        // Claimed under the lock, so one caller spawns; the spawn itself is done unlocked.
        RUNNING.store(generation, Ordering::Release);
    }
    let spawned = crate::process::thread::spawn("fae-supervisor", move || run(generation));
    match spawned {
        Ok(_) => {
            STARTED.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // Give the claim back (unless a fork since made it moot); requests work inline
            // and the next one tries again.
            let _ = RUNNING.compare_exchange(
                generation,
                NOT_RUNNING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            log::error!(target: "fae", "supervisor thread not started: {e}; doing its work inline");
        }
    }
}

fn run(generation: u64) {
    let mut fds: Vec<i32> = Vec::new();
    loop {
        wait(&fds);
        let clients: Vec<Arc<dyn Maintain>> = {
            let mut reg = REGISTRY.lock();
            reg.retain(|w| w.strong_count() > 0);
            if reg.is_empty() || fork::generation() != generation {
                RUNNING.store(NOT_RUNNING, Ordering::Release);
                return;
            }
            reg.iter().filter_map(Weak::upgrade).collect()
        };
        let closed: Vec<*const ()> = clients
            .iter()
            .filter(|c| !c.maintain())
            .map(|c| Arc::as_ptr(c) as *const ())
            .collect();
        if !closed.is_empty() {
            REGISTRY
                .lock()
                .retain(|w| !closed.contains(&(w.as_ptr() as *const ())));
        }
        // Collected while the clients are held; polled after they are let go (so a client's
        // last handle is never dropped on this thread mid-wait).
        fds.clear();
        for c in &clients {
            c.wake_fds(&mut fds);
        }
    }
}

/// Sleep a tick, or less if one of `fds` becomes readable (or hangs up) first.
fn wait(fds: &[i32]) {
    if fds.is_empty() {
        std::thread::sleep(TICK);
        return;
    }
    let start = Instant::now();
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live, exclusively borrowed vector of `pollfd` whose length is passed
    // alongside it. A stale fd number is harmless: poll reports POLLNVAL or a wake for nothing.
    let n = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            TICK.as_millis() as libc::c_int,
        )
    };
    if n != 0 {
        // Woken early (or interrupted): no faster than MIN_ROUND.
        let spent = start.elapsed();
        if spent < MIN_ROUND {
            std::thread::sleep(MIN_ROUND - spent);
        }
    }
}

/// `pthread_atfork` prepare: hold the registry so no other thread holds it across fork.
pub(crate) fn before_fork() {
    REGISTRY.before_fork();
}

/// `pthread_atfork` parent and child: release what `before_fork` took.
pub(crate) fn after_fork() {
    // SAFETY: the prepare handler (`before_fork`) took REGISTRY on this same thread, and only
    // this handler releases it.
    unsafe { REGISTRY.after_fork() };
}
