//! Fork detection without a syscall on the hot path.
//!
//! php-fpm, gunicorn and uwsgi fork after loading libfae. A child must not use the parent's
//! sockets (both processes would read each other's replies). `pthread_atfork` bumps a process
//! generation in the child; every destination compares it (one relaxed load) on checkout and,
//! in a new generation, drops the inherited connections. `getpid()` would cost a syscall per
//! request (glibc stopped caching it in 2.25).
//!
//! The process-wide locks (supervisor registry, background queue, socket list) are
//! `SpinLock`s, held by the prepare handler across `fork()` and reset in the child; see there
//! for why not parking_lot.
//!
//! Sockets: every connection's socket (and the stats listener) is listed here while it is
//! open (`track`). The child's handler turns its copy of each into `/dev/null` at once, so
//! no child keeps the parent's TCP connections or listening port open, including those
//! checked out or lent by parent threads the child does not have (their owners never close
//! them in the child).

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn before_fork() {
    crate::process::supervisor::before_fork();
    crate::process::background::before_fork();
    SOCKETS.before_fork();
}

extern "C" fn after_fork_in_parent() {
    // SAFETY: `before_fork` took SOCKETS on this thread.
    unsafe { SOCKETS.after_fork() };
    crate::process::background::after_fork();
    crate::process::supervisor::after_fork();
}

extern "C" fn after_fork_in_child() {
    // Async-signal-safe: an atomic add, the listed sockets replaced with open/dup3/close (no
    // allocation), then the locks the prepare handler took reset: atomic stores.
    GENERATION.fetch_add(1, Ordering::AcqRel);
    {
        // SAFETY: `before_fork` took SOCKETS on this thread in the parent; only this thread
        // exists here, so reading the list without the lock races nothing.
        let fds: &Vec<RawFd> = unsafe { &*SOCKETS.value.get() };
        release_inherited(fds);
        // SAFETY: as above.
        unsafe { SOCKETS.after_fork() };
    }
    crate::process::background::after_fork();
    crate::process::supervisor::after_fork();
}

/// The sockets this process has open ([`track`]), in no order.
static SOCKETS: SpinLock<Vec<RawFd>> = SpinLock::new(Vec::new());

/// List `fd`, a socket just opened, for a forked child to let go of ([`release_inherited`]).
/// Its owner calls [`untrack`] *before* closing it: a number still listed after its close could
/// be reused for another file, which the next child would then lose.
pub(crate) fn track(fd: RawFd) {
    install();
    SOCKETS.lock().push(fd);
}

/// Take `fd` off the list (before it is closed; see [`track`]).
pub(crate) fn untrack(fd: RawFd) {
    let mut fds = SOCKETS.lock();
    if let Some(i) = fds.iter().rposition(|&f| f == fd) {
        fds.swap_remove(i);
    }
}

/// Close the sockets behind `fds` in this process, leaving each number open on `/dev/null`
/// (`dup3` replaces it atomically, close-on-exec kept) for whatever still owns it to close
/// when it goes: the number is never free while an owner may close it later. The socket
/// itself lives on in the other processes that hold it (the parent's copy is untouched).
/// Async-signal-safe (open, dup3, close). Without `/dev/null` (a bare chroot) nothing changes.
pub(crate) fn release_inherited(fds: &[RawFd]) {
    if fds.is_empty() {
        return;
    }
    // SAFETY: a NUL-terminated path and plain flags; the result is checked.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        return;
    }
    for &fd in fds {
        if fd != null {
            // SAFETY: `fd` is open (listed sockets are untracked before they are closed) and
            // `null` was just opened: dup3 closes the socket behind `fd` in this process and
            // makes `fd` a copy of `null`; no other descriptor changes.
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
    }
    // SAFETY: `null` is ours to close.
    unsafe { libc::close(null) };
}

/// Install the `pthread_atfork` handlers (once per process; called when the first client is
/// built, never at load time): the child bumps the generation, and the supervisor registry
/// and background queue locks are held across the fork so no vanished thread can own them in
/// the child.
pub fn install() {
    REGISTER.call_once(|| {
        // SAFETY: the handlers are plain `extern "C"` functions that take and release two
        // spin locks and bump an atomic; they live for the whole process.
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

/// State that belongs to one process generation ([`PerProcess`]).
pub(crate) trait Generational {
    /// The generation it was made in.
    fn generation(&self) -> u64;
    /// No lock inside it is held, so it may be dropped.
    fn unlocked(&self) -> bool;
}

/// Process-local state behind locks (a near cache's shards, the coalescing tables) that a
/// forked child must not share. A lock held at `fork()` would stay locked forever in the
/// child, so no call ever waits on a lock it might have inherited: the state is tagged with
/// the [`generation`] it was made in, and a call that sees another generation swaps in a fresh
/// value first. The hot path is one atomic load and a compare.
pub(crate) struct PerProcess<T> {
    cell: ArcSwap<T>,
}

impl<T: Generational> PerProcess<T> {
    /// `value` for this process; installs the atfork handlers (without them the generation
    /// never moves and a child would reuse the parent's state).
    pub(crate) fn new(value: T) -> PerProcess<T> {
        install();
        PerProcess {
            cell: ArcSwap::from_pointee(value),
        }
    }

    /// The state of this process ([`generation`]); `fresh(generation)` makes a new one.
    pub(crate) fn current(&self, fresh: impl FnOnce(u64) -> T) -> Guard<Arc<T>> {
        self.at(generation(), fresh)
    }

    /// The state for `generation`, replacing one made in another (earlier) process.
    pub(crate) fn at(&self, generation: u64, fresh: impl FnOnce(u64) -> T) -> Guard<Arc<T>> {
        let seen = self.cell.load();
        if seen.generation() == generation {
            return seen;
        }
        self.reset(seen, fresh(generation))
    }

    #[cold]
    fn reset(&self, seen: Guard<Arc<T>>, fresh: T) -> Guard<Arc<T>> {
        let prev = self.cell.compare_and_swap(&seen, Arc::new(fresh));
        if Arc::ptr_eq(&prev, &seen) {
            // We replaced it; another thread that raced us lost the swap and just reloads.
            drop(seen);
            let inherited = Guard::into_inner(prev);
            // A lock held at fork can only belong to a thread that no longer exists (no
            // thread of this process has used the old state): its maps may be mid-update,
            // and even dropping it could touch freed or half-moved memory.
            if inherited.unlocked() {
                drop(inherited);
            } else {
                std::mem::forget(inherited);
            }
        }
        self.cell.load()
    }

    /// The state as it is, whatever its generation (tests).
    #[cfg(test)]
    pub(crate) fn load_full(&self) -> Arc<T> {
        self.cell.load_full()
    }
}

impl<T> std::fmt::Debug for PerProcess<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerProcess")
    }
}

/// A try-lock (nobody ever waits for it) that a forked child can take over: it names the
/// process generation that holds it. A flag set by a parent's thread that was inside its
/// section at `fork()` would otherwise stay set in the child for good, where that thread
/// does not exist (a destination never maintained again, a breaker never probed again).
#[derive(Debug, Default)]
pub struct TryFlag(AtomicU64);

impl TryFlag {
    /// A free flag.
    pub const fn new() -> TryFlag {
        TryFlag(AtomicU64::new(0))
    }

    /// Take it unless a thread of this process holds it.
    pub fn try_take(&self) -> bool {
        let me = generation().wrapping_add(1).max(1);
        let held = self.0.load(Ordering::Acquire);
        held != me
            && self
                .0
                .compare_exchange(held, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Give it back (only its holder calls this).
    pub fn give_back(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Spins before each `yield_now` once the lock has been seen taken this many times.
const SPINS: u32 = 64;

/// A lock for the state the `pthread_atfork` handlers hold across `fork()`.
///
/// Not parking_lot: a thread that waits on a parking_lot mutex parks in parking_lot_core's
/// global hash table. The child inherits that table with the waiting threads still queued,
/// but not the threads; unlocking in the child then wakes (and, on a fair unlock, hands the
/// lock to) a thread that does not exist, so the child's next `lock()` blocks forever. A
/// bucket lock of that table held by another parent thread at fork time would hang it too.
/// Here the whole state is one flag, so the child just clears it.
///
/// Critical sections must stay short (no I/O, no thread spawning, no blocking, no dropping
/// of foreign values): waiters spin, then yield.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and `locked` (acquire on lock, release
// on unlock) lets one guard exist at a time, so moving `T` between threads is all it takes.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        SpinGuard {
            lock: self,
            _value: PhantomData,
        }
    }

    fn acquire(&self) {
        let mut seen = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Wait on a plain load (the line stays shared) until it looks free.
            while self.locked.load(Ordering::Relaxed) {
                if seen < SPINS {
                    seen += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// `pthread_atfork` prepare: take the lock without a guard, so no other thread holds it
    /// across `fork()`. Release it with [`after_fork`](Self::after_fork).
    pub(crate) fn before_fork(&self) {
        self.acquire();
    }

    /// `pthread_atfork` parent and child: release what [`before_fork`](Self::before_fork)
    /// took. In the child this is a reset: the child has only the forking thread, and no
    /// other thread's state is tied to the flag.
    ///
    /// # Safety
    ///
    /// `before_fork` must have taken the lock on this thread (in this process or in the
    /// parent it was forked from), with no release since.
    pub(crate) unsafe fn after_fork(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Holds a [`SpinLock`]; releases it on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// Send and Sync as a `&mut T` is.
    _value: PhantomData<&'a mut T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no `&mut T` exists elsewhere.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use crate::process::background;
    use crate::process::supervisor::REGISTRY;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn spin_lock_excludes_and_resets() {
        let n = SpinLock::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let mut g = n.lock();
                        let v = *g;
                        std::hint::spin_loop();
                        *g = v + 1;
                    }
                });
            }
        });
        assert_eq!(*n.lock(), 40_000);
        n.before_fork();
        // SAFETY: taken by `before_fork` just above, on this thread.
        unsafe { n.after_fork() };
        *n.lock() += 1;
        assert_eq!(*n.lock(), 40_001);
    }

    /// Threads hammer the two locks the fork handlers hold while this thread forks, so
    /// waiters are queued on them at almost every fork. With parking_lot mutexes the child's
    /// unlock handed the lock to such a waiter (a fair unlock, to a thread the child does not
    /// have), and the child hung on its next lock: 29 to 58 of the 100 children in each of 5
    /// runs. Each child takes both locks, runs a background job on a worker of its own and
    /// exits.
    #[test]
    fn fork_while_threads_contend_for_the_handler_locks() {
        super::install();
        // 64 MiB of touched pages make each fork() take a millisecond or more (page tables
        // are copied), longer than parking_lot's fairness interval: without it the old code
        // hung only a few children per run.
        let mut ballast = vec![0u8; 64 << 20];
        ballast.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..4 {
                let stop = &stop;
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if t % 2 == 0 {
                            drop(REGISTRY.lock());
                        } else {
                            background::pending();
                        }
                    }
                });
            }
            let mut pids = Vec::new();
            for _ in 0..100 {
                // SAFETY: the child touches only our own locks, the allocator and a thread of
                // its own, and leaves with _exit, so nothing of the test harness runs in it.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    drop(REGISTRY.lock());
                    let code = if background::pending() != 0 {
                        2 // the parent's queue leaked into the child
                    } else if !background::spawn(Box::new(|| {}), false)
                        || !background::drain(Duration::from_secs(5))
                    {
                        3
                    } else {
                        0
                    };
                    // SAFETY: terminates the child immediately.
                    unsafe { libc::_exit(code) };
                }
                pids.push(pid);
            }
            stop.store(true, Ordering::Relaxed);
            drop(ballast);
            let codes = reap(&pids, Duration::from_secs(20));
            let hung = codes.iter().filter(|c| c.is_none()).count();
            assert_eq!(hung, 0, "{hung} of {} children hung", pids.len());
            assert!(codes.iter().all(|&c| c == Some(0)), "exit codes: {codes:?}");
        });
    }

    /// Each child's exit code (-1: killed by a signal), waiting until `limit`; the children
    /// still running then are killed and reaped, and reported as `None`.
    fn reap(pids: &[i32], limit: Duration) -> Vec<Option<i32>> {
        let deadline = Instant::now() + limit;
        let mut codes = vec![None; pids.len()];
        let mut left: Vec<usize> = (0..pids.len()).collect();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&i| {
                let mut status = 0;
                // SAFETY: waits for our own child; status points to a live i32.
                if unsafe { libc::waitpid(pids[i], &mut status, libc::WNOHANG) } != pids[i] {
                    return true;
                }
                codes[i] = Some(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    -1
                });
                false
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        for &i in &left {
            let mut status = 0;
            // SAFETY: kills and reaps our own child; status points to a live i32.
            unsafe {
                libc::kill(pids[i], libc::SIGKILL);
                libc::waitpid(pids[i], &mut status, 0);
            }
        }
        codes
    }
}
