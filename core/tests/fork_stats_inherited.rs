//! `stats.dir` after fork: a worker forked from a process that already made requests inherits
//! that process's counters, but its snapshot files count only its own requests (a baseline is
//! taken at its first request), so `fae stats --dir` does not count the parent's requests once
//! per worker (gunicorn `--preload` with a warm-up in the master). One test per binary: fork()
//! copies only the calling thread.

use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::Cluster;

#[test]
fn forked_workers_count_only_their_own_requests() {
    let cluster = Cluster::start(1);
    let server = cluster.addrs()[0].clone();
    let dir = std::env::temp_dir().join(format!("fae-fork-inherit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = format!(
        r#"{{"servers": ["{server}"], "stats": {{"dir": "{}", "interval_ms": 20}}}}"#,
        dir.display()
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    for i in 0..10 {
        c.set(format!("p{i}").as_bytes(), b"v", 0, 0).unwrap();
    }
    let mut pids = Vec::new();
    for id in 0..2 {
        let pid = fae_testkit::fork_child(|| {
            for i in 0..5 {
                if c.set(format!("c{id}:{i}").as_bytes(), b"v", 0, 0).is_err() {
                    return 2;
                }
            }
            // A few snapshot intervals: the worker's file holds its 5 requests.
            std::thread::sleep(Duration::from_millis(200));
            0
        });
        pids.push(pid);
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(10));
    assert_eq!(codes, [0, 0]);
    // The parent's own file is written by its supervisor every 20 ms.
    std::thread::sleep(Duration::from_millis(100));
    let merged = fae_core::export::aggregate_dir(&dir).unwrap();
    assert_eq!(
        merged["destinations"][&server]["requests"], 20,
        "10 in the parent + 5 in each worker, not the parent's 10 again per worker: {merged}"
    );
    assert_eq!(merged["process"]["retired_processes"], 2);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
