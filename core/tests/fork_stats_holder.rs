//! `stats.listen` + `stats.dir` when the parent of a pre-fork server holds the port (it used
//! the client before forking): it serves the merged view of its workers; the workers close the
//! copy of its listening socket that fork() gave them, so when the parent lets go of the port
//! a worker can bind it and serves the same numbers. One test per binary: fork() copies only
//! the calling thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::{Cluster, wait_until};

const WORKERS: usize = 2;
const REQUESTS: u64 = 20;

fn http_json(addr: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn worker(c: &Client, id: usize, dir: &Path) -> i32 {
    for i in 0..REQUESTS {
        if c.set(format!("w{id}:{i}").as_bytes(), b"v", 0, 0).is_err() {
            return 2;
        }
    }
    let stop = dir.join(format!("stop-{id}"));
    for _ in 0..3000 {
        if stop.exists() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    3
}

#[test]
fn workers_take_over_the_port_their_parent_held() {
    let cluster = Cluster::start(1);
    let server = cluster.addrs()[0].clone();
    let dir = std::env::temp_dir().join(format!("fae-fork-holder-{}", std::process::id()));
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
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    c.set(b"parent", b"v", 0, 0).unwrap(); // starts the supervisor, which binds
    assert!(wait_until(Duration::from_secs(5), || http_json(&addr).is_some()));
    let mut pids = Vec::new();
    for id in 0..WORKERS {
        let pid = fae_testkit::fork_child(|| worker(&c, id, &dir));
        pids.push(pid);
    }
    // A worker inherits its parent's counters at the fork, but its snapshot files count only
    // its own requests (a baseline is taken at its first one): the parent's request once.
    let total = 1 + WORKERS as u64 * REQUESTS;
    let merged = |v: &serde_json::Value| {
        v["destinations"][&server]["requests"].as_u64() == Some(total)
            && v["process"]["processes"] == WORKERS + 1
    };
    assert!(
        wait_until(Duration::from_secs(5), || http_json(&addr)
            .is_some_and(|v| merged(&v))),
        "the parent serves its workers' numbers: {:?}",
        http_json(&addr)
    );
    // The parent lets go of the port (its client is dropped): a worker binds it and serves the
    // same merged view. Had the workers kept the inherited socket open, the port would stay
    // taken by a socket nobody accepts on.
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || http_json(&addr)
            .is_some_and(|v| merged(&v))),
        "no worker took the port over: {:?}",
        http_json(&addr)
    );
    for id in 0..WORKERS {
        std::fs::write(dir.join(format!("stop-{id}")), b"").unwrap();
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(10));
    assert!(
        codes.iter().all(|&c| c == 0),
        "worker exit codes: {codes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
