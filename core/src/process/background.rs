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
}

static STATE: SpinLock<State> = SpinLock::new(State {
    generation: 0,
    jobs: VecDeque::new(),
    worker: false,
    waker: None,
    running: 0,
});

/// Queue `job`; `false` when the queue is full (the job is dropped). `inline`: run it now on
/// this thread instead (`health.background: false`).
pub fn spawn(job: Job, inline: bool) -> bool {
    if inline {
        run_one(job);
        return true;
    }
    fork::install();
    let generation = fork::generation();
    let mut st = STATE.lock();
    // A forked child: the parent's jobs and worker are not ours. They are dropped once the
    // lock is released (a job's drop runs arbitrary code).
    let inherited = if st.generation != generation {
        st.generation = generation;
        st.worker = false;
        st.running = 0;
        Some((std::mem::take(&mut st.jobs), st.waker.take()))
    } else {
        None
    };
    if st.jobs.len() >= QUEUE_MAX {
        drop(st);
        return false;
    }
    st.jobs.push_back(job);
    let start = !st.worker;
    st.worker = true;
    let waker = st.waker.clone();
    drop(st);
    drop(inherited);
    if start {
        let spawned = std::thread::Builder::new()
            .name("fae-background".into())
            .spawn(move || work(generation));
        if spawned.is_err() {
            // No thread to be had: run what is queued here rather than lose it.
            let jobs = {
                let mut st = STATE.lock();
                st.worker = false;
                std::mem::take(&mut st.jobs)
            };
            jobs.into_iter().for_each(run_one);
        }
    } else if let Some(w) = waker {
        w.unpark();
    }
    true
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

/// Wait until the queue is empty and the last job finished, at most `limit` (tests).
pub fn drain(limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        {
            let st = STATE.lock();
            let ours = st.generation == fork::generation();
            if !ours || (st.jobs.is_empty() && st.running == 0) {
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
    loop {
        let job = {
            let mut st = STATE.lock();
            if fork::generation() != generation || st.generation != generation {
                return;
            }
            let job = st.jobs.pop_front();
            match job {
                Some(_) => st.running += 1,
                None if idle_since.is_some_and(|t| t.elapsed() >= IDLE_EXIT) => {
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
        match job {
            Some(job) => {
                idle_since = None;
                run_one(job);
                let mut st = STATE.lock();
                if st.generation == generation {
                    st.running -= 1;
                }
            }
            None => {
                // An `unpark` since the queue was seen empty makes this return at once, so no
                // job is missed; spurious wake-ups just go round again.
                let since = *idle_since.get_or_insert_with(Instant::now);
                std::thread::park_timeout(IDLE_EXIT.saturating_sub(since.elapsed()));
            }
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
}
