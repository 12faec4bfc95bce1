//! fork() while other threads of the parent are busy: four start and end threads all the time
//! (an application's thread pool, a test proxy's thread per connection), and the parent's
//! supervisor heartbeats idle connections every 20 ms. Every child must get a working
//! background worker (its shadow copy is sent) and a working supervisor (its heartbeats run),
//! and must not hang. Two ways it failed, each fixed:
//! - std's thread start and exit take a process-wide lock, which a child inherits locked: its
//!   `std::thread`s never ran (1–4 children of 400 per run, 3 runs of 3). libfae now starts
//!   its threads with `pthread_create` (`process::thread`).
//! - a crossbeam queue copied in the middle of the parent supervisor's push or pop: the
//!   child's first request and its supervisor spun in `ArrayQueue::pop` forever (about 1 run
//!   in 17 after the first fix). A child now gets fresh queues (`pool::Queues`); 80 runs of
//!   80 passed after both.
//!
//! One test per binary: fork() copies only the calling thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fae_core::process::background;
use fae_core::{Client, Config};
use fae_testkit::Cluster;

const CHILDREN: usize = 400;
/// Threads in the parent that start and end threads meanwhile.
const CHURNERS: usize = 4;

fn heartbeats_ok(c: &Client) -> u64 {
    let s = c.stats();
    s["destinations"]
        .as_object()
        .map(|d| d.values().filter_map(|v| v["heartbeats_ok"].as_u64()).sum())
        .unwrap_or(0)
}

fn child(c: &Client, id: usize) -> i32 {
    let key = format!("child:{id}");
    if c.set(key.as_bytes(), b"v", 0, 0).is_err() {
        return 2;
    }
    // The shadow copy needs this child's own background worker.
    if !background::drain(Duration::from_secs(5)) {
        return 3;
    }
    // Heartbeats need this child's own supervisor: the connections the set left idle get one
    // every 20 ms.
    let before = heartbeats_ok(c);
    let end = Instant::now() + Duration::from_secs(5);
    while heartbeats_ok(c) <= before {
        if Instant::now() > end {
            return 4;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

#[test]
fn children_forked_during_thread_churn_start_their_own_threads() {
    let cluster = Cluster::start(2);
    let (main, shadow) = (&cluster.addrs()[0], &cluster.addrs()[1]);
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{main}"]}}, "shadow": {{"servers": ["{shadow}"]}}}},
            "route": {{"type": "shadow", "fraction": 1.0, "shadow": "shadow", "route": "main"}},
            "health": {{"heartbeat_interval_ms": 20}}}}"#
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    c.set(b"warm", b"v", 0, 0).unwrap();
    assert!(background::drain(Duration::from_secs(5)));

    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..CHURNERS)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::spawn(|| {}).join().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let mut pids = Vec::new();
    for id in 0..CHILDREN {
        pids.push(fae_testkit::fork_child(|| child(&c, id)));
        std::thread::sleep(Duration::from_millis(1));
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let spawned: u64 = churners.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        spawned > 100,
        "the churn thread started only {spawned} threads"
    );
    assert!(
        codes.iter().all(|&code| code == 0),
        "child exit codes (3: no background worker, 4: no supervisor): {codes:?}"
    );
}
