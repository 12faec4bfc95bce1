//! Work done after the reply: shadow copies, `all_async` replicas, warm-up adds, migration
//! copies forward. One worker thread per process, started on the first job (never at load
//! time), fed by a bounded queue; a full queue drops the job and the route counts it
//! (`background_dropped`), so a slow shadow can never grow memory or slow the caller.
//!
//! Fork: the queue lock is held across `fork()` by a `pthread_atfork` prepare handler (see
//! `process::fork`), so the child never inherits it locked. It is a `SpinLock` (not a
//! parking_lot mutex and condvar, whose waiters a child inherits without their threads), held
//! only to move a job in or out: the worker sleeps in `park_timeout` with the lock released,
//! and a producer wakes it with `unpark`. A forked child drops the parent's queued jobs
//! (running them would repeat the parent's writes) and starts its own worker.
//! With `health.background: false` the caller runs the job itself, after its own reply was
//! computed.
//!
//! The worker also reads [`Pending`] requests to their end: the loser of a hedged read, whose
//! caller took the other reply. Their sockets are polled together, between jobs, so a reply
//! that comes late holds up neither the jobs nor the other pending requests, and the
//! connection goes back to its pool instead of being closed and dialled again.

use std::collections::VecDeque;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::process::fork::{self, SpinLock};

/// A job: owns everything it touches.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Queued jobs at most; beyond, new jobs are dropped.
pub const QUEUE_MAX: usize = 4096;

/// An idle worker exits after this long; the next job starts another.
const IDLE_EXIT: Duration = Duration::from_secs(5);

/// Pending requests held at most; beyond, [`adopt`] refuses (the caller discards).
pub const PENDING_MAX: usize = 1024;

/// How long the worker waits on pending sockets before it looks at the queue again.
const PENDING_TICK: Duration = Duration::from_millis(1);

/// A request nobody waits for any more, whose reply the worker reads to its end (the loser of
/// a hedged read). Dropping it gives it up (its connection is then discarded).
pub trait Pending: Send {
    /// The socket and the readiness it waits for.
    fn pollfd(&mut self) -> libc::pollfd;
    /// Serve readiness; `true` once it is finished, either way.
    fn step(&mut self, revents: libc::c_short) -> bool;
    /// When it is given up.
    fn deadline(&self) -> Instant;
    /// The deadline passed without an end; it is dropped right after.
    fn expired(&mut self) {}
}

struct State {
    generation: u64,
    jobs: VecDeque<Job>,
    /// A worker runs, or is being started, for this generation.
    worker: bool,
    /// The worker's thread, to `unpark` it; set by the worker itself once it runs.
    waker: Option<Thread>,
    /// Jobs being run by the worker (per generation: a forked child runs none of the
    /// parent's).
    running: usize,
    /// Pending requests handed over and not yet taken by the worker.
    pending: Vec<Box<dyn Pending>>,
    /// Pending requests the worker holds.
    watching: usize,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    generation: 0,
    jobs: VecDeque::new(),
    worker: false,
    waker: None,
    running: 0,
    pending: Vec::new(),
    watching: 0,
});

/// Queue `job`; `false` when the queue is full (the job is dropped). `inline`: run it now on
/// this thread instead (`health.background: false`).
pub fn spawn(job: Job, inline: bool) -> bool {
    if inline {
        run_one(job);
        return true;
    }
    enqueue(|st| {
        if st.jobs.len() >= QUEUE_MAX {
            return Err(job);
        }
        st.jobs.push_back(job);
        Ok(())
    })
    .is_ok()
}

/// Hand `p` to the worker, which reads it to its end. `Err(p)` when [`PENDING_MAX`] are
/// already held (the caller drops it).
pub fn adopt(p: Box<dyn Pending>) -> Result<(), Box<dyn Pending>> {
    enqueue(|st| {
        if st.pending.len() + st.watching >= PENDING_MAX {
            return Err(p);
        }
        st.pending.push(p);
        Ok(())
    })
}

/// Put work in under the lock with `put`, then start or wake the worker.
fn enqueue<E>(put: impl FnOnce(&mut State) -> Result<(), E>) -> Result<(), E> {
    fork::install();
    let generation = fork::generation();
    let mut st = STATE.lock();
    // A forked child: the parent's jobs and worker are not ours. They are dropped once the
    // lock is released (a job's drop runs arbitrary code).
    let inherited = if st.generation != generation {
        st.generation = generation;
        st.worker = false;
        st.running = 0;
        st.watching = 0;
        Some((
            std::mem::take(&mut st.jobs),
            std::mem::take(&mut st.pending),
            st.waker.take(),
        ))
    } else {
        None
    };
    if let Err(e) = put(&mut st) {
        drop(st);
        drop(inherited);
        return Err(e);
    }
    let start = !st.worker;
    st.worker = true;
    let waker = st.waker.clone();
    drop(st);
    drop(inherited);
    if start {
        let spawned = crate::process::thread::spawn("fae-background", move || work(generation));
        if spawned.is_err() {
            // No thread to be had: run what is queued here rather than lose it; pending
            // requests are given up (their connections discarded).
            let (jobs, pending) = {
                let mut st = STATE.lock();
                st.worker = false;
                (
                    std::mem::take(&mut st.jobs),
                    std::mem::take(&mut st.pending),
                )
            };
            drop(pending);
            jobs.into_iter().for_each(run_one);
        }
    } else if let Some(w) = waker {
        w.unpark();
    }
    Ok(())
}

/// Jobs queued and not yet started in this process (tests, stats).
pub fn pending() -> usize {
    let st = STATE.lock();
    if st.generation == fork::generation() {
        st.jobs.len()
    } else {
        0
    }
}

/// Pending requests handed over and not yet finished in this process (tests, stats).
pub fn pending_requests() -> usize {
    let st = STATE.lock();
    if st.generation == fork::generation() {
        st.pending.len() + st.watching
    } else {
        0
    }
}

/// Wait until the queue is empty, the last job finished and no pending request is left, at
/// most `limit` (tests).
pub fn drain(limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        {
            let st = STATE.lock();
            let ours = st.generation == fork::generation();
            if !ours
                || (st.jobs.is_empty()
                    && st.running == 0
                    && st.pending.is_empty()
                    && st.watching == 0)
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn run_one(job: Job) {
    // A panicking job must not take the worker (or an inline caller) down with it.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}

fn work(generation: u64) {
    let me = std::thread::current();
    STATE.lock().waker = Some(me);
    // Since when the queue has been seen empty.
    let mut idle_since: Option<Instant> = None;
    let mut watched: Vec<Box<dyn Pending>> = Vec::new();
    loop {
        let job = {
            let mut st = STATE.lock();
            if fork::generation() != generation || st.generation != generation {
                return;
            }
            watched.append(&mut st.pending);
            st.watching = watched.len();
            let job = st.jobs.pop_front();
            match job {
                Some(_) => st.running += 1,
                None if watched.is_empty()
                    && idle_since.is_some_and(|t| t.elapsed() >= IDLE_EXIT) =>
                {
                    // Decided under the lock: a job queued after this starts a new worker.
                    st.worker = false;
                    let me = st.waker.take();
                    drop(st);
                    drop(me);
                    return;
                }
                None => {}
            }
            job
        };
        if !watched.is_empty() {
            idle_since = None;
            // Between jobs, only what is ready; with no job, wait a tick for replies.
            let wait = if job.is_some() {
                Duration::ZERO
            } else {
                PENDING_TICK
            };
            serve(&mut watched, wait);
            let mut st = STATE.lock();
            if st.generation == generation {
                st.watching = watched.len();
            }
        }
        match job {
            Some(job) => {
                idle_since = None;
                run_one(job);
                let mut st = STATE.lock();
                if st.generation == generation {
                    st.running -= 1;
                }
            }
            None if watched.is_empty() => {
                // An `unpark` since the queue was seen empty makes this return at once, so no
                // job is missed; spurious wake-ups just go round again.
                let since = *idle_since.get_or_insert_with(Instant::now);
                std::thread::park_timeout(IDLE_EXIT.saturating_sub(since.elapsed()));
            }
            None => {}
        }
    }
}

/// Poll the pending requests for at most `wait` (less when a deadline comes first), serve
/// those that are ready, and drop those finished or past their deadline.
fn serve(watched: &mut Vec<Box<dyn Pending>>, wait: Duration) {
    let now = Instant::now();
    let first_deadline = watched.iter().map(|p| p.deadline()).min().unwrap_or(now);
    let wait = wait.min(first_deadline.saturating_duration_since(now));
    let mut fds: Vec<libc::pollfd> = watched.iter_mut().map(|p| p.pollfd()).collect();
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a live, exclusively borrowed vector of `pollfd` whose length is passed
    // alongside it, `ts` lives across the call, and a null signal mask leaves the thread's
    // mask as it is.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    let now = Instant::now();
    let mut i = watched.len();
    while i > 0 {
        i -= 1;
        let done = if n > 0 && fds[i].revents != 0 {
            let p = &mut watched[i];
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.step(fds[i].revents)))
                .unwrap_or(true)
        } else {
            false
        };
        if done {
            drop(watched.swap_remove(i));
        } else if watched[i].deadline() <= now {
            let mut p = watched.swap_remove(i);
            p.expired();
        }
    }
}

/// `pthread_atfork` prepare: hold the queue lock so no other thread holds it across fork.
pub(crate) fn before_fork() {
    STATE.before_fork();
}

/// `pthread_atfork` parent and child: release what `before_fork` took.
pub(crate) fn after_fork() {
    // SAFETY: the prepare handler (`before_fork`) took STATE on this same thread, and only
    // this handler releases it.
    unsafe { STATE.after_fork() };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_off_the_caller_thread_and_inline() {
        let n = Arc::new(AtomicUsize::new(0));
        let caller = std::thread::current().id();
        for _ in 0..10 {
            let n = Arc::clone(&n);
            assert!(spawn(
                Box::new(move || {
                    assert_ne!(std::thread::current().id(), caller);
                    n.fetch_add(1, Ordering::SeqCst);
                }),
                false
            ));
        }
        assert!(drain(Duration::from_secs(5)));
        assert_eq!(n.load(Ordering::SeqCst), 10);
        let m = Arc::clone(&n);
        spawn(
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
            true,
        );
        assert_eq!(n.load(Ordering::SeqCst), 11);
        // A panicking job is contained.
        spawn(Box::new(|| panic!("job")), false);
        assert!(drain(Duration::from_secs(5)));
    }

    /// A pending request on one end of a pipe: finished when a byte arrives.
    struct Piped {
        fd: i32,
        deadline: Instant,
        done: Arc<AtomicUsize>,
        expired: Arc<AtomicUsize>,
    }

    impl Pending for Piped {
        fn pollfd(&mut self) -> libc::pollfd {
            libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            }
        }

        fn step(&mut self, _revents: libc::c_short) -> bool {
            self.done.fetch_add(1, Ordering::SeqCst);
            true
        }

        fn deadline(&self) -> Instant {
            self.deadline
        }

        fn expired(&mut self) {
            self.expired.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn pending_requests_finish_when_ready_or_expire_at_their_deadline() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (done, expired) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let piped = |fd, after| Piped {
            fd,
            deadline: Instant::now() + after,
            done: Arc::clone(&done),
            expired: Arc::clone(&expired),
        };
        // One waits on the read end and gets a byte; one waits on the other pipe's read end
        // that never gets one, and expires.
        let mut quiet = [0i32; 2];
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pipe(quiet.as_mut_ptr()) }, 0);
        assert!(adopt(Box::new(piped(fds[0], Duration::from_secs(5)))).is_ok());
        assert!(adopt(Box::new(piped(quiet[0], Duration::from_millis(30)))).is_ok());
        assert!(pending_requests() >= 1);
        // SAFETY: writes one byte from a live local to the pipe's write end.
        assert_eq!(unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) }, 1);
        assert!(drain(Duration::from_secs(5)));
        assert_eq!(pending_requests(), 0);
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(expired.load(Ordering::SeqCst), 1);
        for fd in fds.into_iter().chain(quiet) {
            // SAFETY: each descriptor came from pipe(2) above and is closed once.
            unsafe { libc::close(fd) };
        }
    }
}
