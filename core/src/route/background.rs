//! Work done after the reply: shadow copies, `all_async` replicas, warm-up adds, migration
//! copies forward. One worker thread per process, started on the first job (never at load
//! time), fed by a bounded queue; a full queue drops the job and the route counts it
//! (`background_dropped`), so a slow shadow can never grow memory or slow the caller.
//!
//! Fork: the queue lock is held across `fork()` by a `pthread_atfork` prepare handler (see
//! `pool::fork`), so the child never inherits it locked. A forked child drops the parent's
//! queued jobs (running them would repeat the parent's writes) and starts its own worker.
//! With `health.background: false` the caller runs the job itself, after its own reply was
//! computed.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::pool::fork;

/// A job: owns everything it touches.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Queued jobs at most; beyond, new jobs are dropped.
pub const QUEUE_MAX: usize = 4096;

/// An idle worker exits after this long; the next job starts another.
const IDLE_EXIT: Duration = Duration::from_secs(5);

struct State {
    generation: u64,
    jobs: VecDeque<Job>,
    worker: bool,
    /// Jobs being run by the worker (per generation: a forked child runs none of the
    /// parent's).
    running: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    generation: 0,
    jobs: VecDeque::new(),
    worker: false,
    running: 0,
});
static WAKE: Condvar = Condvar::new();

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
    if st.generation != generation {
        // A forked child: the parent's jobs and worker are not ours.
        st.generation = generation;
        st.jobs.clear();
        st.worker = false;
        st.running = 0;
    }
    if st.jobs.len() >= QUEUE_MAX {
        return false;
    }
    st.jobs.push_back(job);
    if !st.worker {
        let spawned = std::thread::Builder::new()
            .name("fae-background".into())
            .spawn(move || work(generation));
        match spawned {
            Ok(_) => st.worker = true,
            Err(_) => {
                // No thread to be had: run what is queued here rather than lose it.
                let jobs: Vec<Job> = st.jobs.drain(..).collect();
                drop(st);
                jobs.into_iter().for_each(run_one);
                return true;
            }
        }
    }
    drop(st);
    WAKE.notify_one();
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
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
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
    let mut st = STATE.lock();
    loop {
        if fork::generation() != generation || st.generation != generation {
            return;
        }
        match st.jobs.pop_front() {
            Some(job) => {
                st.running += 1;
                drop(st);
                run_one(job);
                st = STATE.lock();
                if st.generation == generation {
                    st.running -= 1;
                }
            }
            None => {
                if WAKE.wait_for(&mut st, IDLE_EXIT).timed_out() && st.jobs.is_empty() {
                    st.worker = false;
                    return;
                }
            }
        }
    }
}

/// `pthread_atfork` prepare: hold the queue lock so no other thread holds it across fork.
pub(crate) fn before_fork() {
    std::mem::forget(STATE.lock());
}

/// `pthread_atfork` parent and child: release what `before_fork` took.
pub(crate) fn after_fork() {
    // SAFETY: `before_fork` locked STATE on this same thread and forgot the guard; nothing
    // else can have unlocked it, so it is locked and ours to release.
    unsafe { STATE.force_unlock() };
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
