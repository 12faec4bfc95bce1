//! `stats.listen` with `stats.dir` under a pre-fork server: a parent builds the client and
//! forks three workers (gunicorn's `--preload`, php-fpm). Each worker writes its snapshot to
//! the dir; whichever holds the port serves the merged view of all of them; when it exits,
//! another worker takes the port over, and the counters it serves never go down. One test per
//! binary: fork() copies only the calling thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::{Cluster, wait_until};

const WORKERS: usize = 3;
const REQUESTS: u64 = 20;

fn http_json(addr: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// A worker: its requests, then idle (the supervisor keeps writing snapshots and serving) until
/// its stop file appears, bounded at 30 s.
fn worker(c: &Client, id: usize, dir: &Path) -> i32 {
    for i in 0..REQUESTS {
        if c.set(format!("w{id}:{i}").as_bytes(), b"v", 0, 0).is_err() {
            return 2;
        }
    }
    let stop = dir.join(format!("stop-{id}"));
    for _ in 0..3000 {
        if stop.exists() {
            // Two snapshot intervals: the last counters are on disk before the exit.
            std::thread::sleep(Duration::from_millis(100));
            return 0;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    3
}

fn requests(v: &serde_json::Value, server: &str) -> u64 {
    v["destinations"][server]["requests"].as_u64().unwrap_or(0)
}

#[test]
fn the_worker_holding_the_port_serves_every_workers_numbers() {
    let cluster = Cluster::start(1);
    let server = cluster.addrs()[0].clone();
    let dir = std::env::temp_dir().join(format!("fae-fork-stats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let json = format!(
        r#"{{"servers": ["{server}"], "timeouts": {{"io_ms": 2000, "connect_ms": 1000}},
            "stats": {{"listen": "{addr}", "dir": "{}", "interval_ms": 30}}}}"#,
        dir.display()
    );
    // Built before the fork and never used by the parent (no supervisor runs in it).
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    let mut pids = Vec::new();
    for id in 0..WORKERS {
        let pid = fae_testkit::fork_child(|| worker(&c, id, &dir));
        pids.push(pid);
        if id == 0 {
            // Worker 0 binds the port before the others start: it is the one that exits first.
            assert!(
                wait_until(Duration::from_secs(5), || http_json(&addr).is_some()),
                "worker 0 never served {addr}"
            );
        }
    }
    let total = (WORKERS as u64) * REQUESTS;
    assert!(
        wait_until(Duration::from_secs(5), || http_json(&addr).is_some_and(
            |v| requests(&v, &server) == total && v["process"]["processes"] == WORKERS
        )),
        "the port holder serves all workers' requests: {:?}",
        http_json(&addr)
    );
    // The holder exits (php-fpm recycling it): another worker takes the port over within the
    // retry period, and the counters it serves include the dead worker's.
    std::fs::write(dir.join("stop-0"), b"").unwrap();
    assert_eq!(
        fae_testkit::wait_forked(&pids[..1], Duration::from_secs(5)),
        [0]
    );
    let mut seen_down = false;
    assert!(
        wait_until(Duration::from_secs(10), || match http_json(&addr) {
            Some(v) => {
                seen_down |= requests(&v, &server) < total;
                v["process"]["retired_processes"] == 1 && v["process"]["processes"] == 2
            }
            None => false,
        }),
        "no worker took the port over: {:?}",
        http_json(&addr)
    );
    assert!(!seen_down, "a served counter went down");
    assert_eq!(requests(&http_json(&addr).unwrap(), &server), total);
    for id in 1..WORKERS {
        std::fs::write(dir.join(format!("stop-{id}")), b"").unwrap();
    }
    let codes = fae_testkit::wait_forked(&pids[1..], Duration::from_secs(10));
    assert!(
        codes.iter().all(|&c| c == 0),
        "worker exit codes: {codes:?}"
    );
    let merged = fae_core::export::aggregate_dir(&dir).unwrap();
    assert_eq!(requests(&merged, &server), total, "{merged}");
    assert_eq!(merged["process"]["retired_processes"], WORKERS);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
