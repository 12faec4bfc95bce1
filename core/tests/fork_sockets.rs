//! A forked child keeps none of its parent's server connections: not the idle ones in the
//! pool, and not one a parent thread had checked out at the fork (that thread does not exist
//! in the child, so nothing there would ever close it, and the server would see the
//! connection open for as long as the child lives). The child's copies become `/dev/null` at
//! the fork; the parent's sockets are untouched, and the child dials its own. One test per
//! binary: fork() copies only the calling thread.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::{Cluster, fork_child, wait_forked};

/// Socket inodes of this process's TCP connections to 127.0.0.1:`port`.
fn inodes_to(port: u16) -> HashSet<u64> {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[2] == remote).then(|| f[9].parse().ok())?
        })
        .collect()
}

/// This process's descriptors that are sockets connected to 127.0.0.1:`port`.
fn fds_to(port: u16) -> Vec<i32> {
    let inodes = inodes_to(port);
    let mut fds = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        let ino = link
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if ino.is_some_and(|i| inodes.contains(&i)) {
            fds.push(fd);
        }
    }
    fds
}

/// Fork a child that checks it holds no socket to `port` (and that `was` now names
/// `/dev/null`), then reads `key` through `c`, dialling its own connection. Its exit code: 0
/// fine, 1 a parent's socket is still open, 2 a descriptor is not `/dev/null`, 3 the read
/// failed.
fn fork_and_check(c: &Client, port: u16, was: &[i32], key: &[u8]) -> i32 {
    let pid = fork_child(|| {
        if !fds_to(port).is_empty() {
            return 1;
        }
        for fd in was {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
            if link.ok().as_deref() != Some(std::path::Path::new("/dev/null")) {
                return 2;
            }
        }
        match c.get(key) {
            Ok(Some(it)) if it.value == b"v" => 0,
            _ => 3,
        }
    });
    wait_forked(&[pid], Duration::from_secs(10))[0]
}

#[test]
fn a_child_keeps_none_of_the_parents_connections() {
    let cluster = Cluster::start(1);
    let addr = cluster.addrs()[0].clone();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let json = format!(r#"{{"servers": ["{addr}"], "timeouts": {{"io_ms": 2000}}}}"#);
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();

    // 1. A parent thread holds the connection (its read's callback runs before the
    // connection goes back to the pool) while this thread forks.
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let c = &c;
        let reader = s.spawn(move || {
            c.get_with(b"k", None, false, |r| {
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                r.map(|o| o.map(|it| it.value.to_vec()))
            })
        });
        held_rx.recv().unwrap();
        let out = fds_to(port);
        assert_eq!(out.len(), 1, "one connection, checked out: {out:?}");
        let code = fork_and_check(c, port, &out, b"k");
        go_tx.send(()).unwrap();
        assert_eq!(code, 0, "child with a checked-out parent connection");
        let got = reader.join().unwrap().unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&b"v"[..]),
            "the parent's read finished"
        );
    });

    // 2. The connection is idle in the pool: the child lets go of it before any request.
    let idle = fds_to(port);
    assert_eq!(idle.len(), 1, "the parent's connection is back in its pool");
    assert_eq!(
        fork_and_check(&c, port, &idle, b"k"),
        0,
        "child with an idle parent connection"
    );

    // The parent's socket is untouched by its children: the same connection serves it.
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
    assert_eq!(
        fds_to(port),
        idle,
        "the parent still uses its own connection"
    );
}
