//! fork() with Unix-socket servers: a process with a warm client on two socket servers forks
//! children that use the same client while the parent keeps using it. Every child gets correct
//! values (a socket shared with the parent would interleave replies) and dials its own
//! connections. One test per binary: fork() copies only the calling thread.

use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::Memcached;

const CHILDREN: usize = 8;

fn opened(c: &Client, addr: &str) -> u64 {
    c.stats()["destinations"][addr]["connections_opened"]
        .as_u64()
        .unwrap_or(0)
}

fn child(c: &Client, id: usize, addrs: &[String], before: &[u64]) -> i32 {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    for i in 0..100 {
        let key = format!("child:{id}:{i}");
        let val = format!("{pid}:{i}");
        if c.set(key.as_bytes(), val.as_bytes(), 0, 0).is_err() {
            return 2;
        }
        match c.get(key.as_bytes()) {
            Ok(Some(it)) if it.value == val.as_bytes() => {}
            _ => return 3,
        }
    }
    let keys: Vec<String> = (0..50).map(|i| format!("parent:{i}")).collect();
    let ks: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    match c.get_multi(&ks) {
        Ok(rs)
            if rs
                .iter()
                .zip(&keys)
                .all(|(r, k)| matches!(r, Ok(Some(it)) if it.value == k.as_bytes())) => {}
        _ => return 5,
    }
    // The child dialled its own connection to each socket.
    if addrs.iter().zip(before).any(|(a, &b)| opened(c, a) <= b) {
        return 6;
    }
    0
}

#[test]
fn children_share_a_warm_socket_client_with_their_parent() {
    let servers = [
        Memcached::builder().unix_socket().start(),
        Memcached::builder().unix_socket().start(),
    ];
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let json = format!(
        r#"{{"servers": ["{}", "{}"], "timeouts": {{"io_ms": 2000, "connect_ms": 1000}}}}"#,
        addrs[0], addrs[1]
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    for i in 0..50 {
        let k = format!("parent:{i}");
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
    }
    let before: Vec<u64> = addrs.iter().map(|a| opened(&c, a)).collect();
    assert!(before.iter().all(|&n| n >= 1), "warm: {before:?}");

    let mut pids = Vec::new();
    for id in 0..CHILDREN {
        let pid = fae_testkit::fork_child(|| child(&c, id, &addrs, &before));
        pids.push(pid);
    }
    for round in 0..200 {
        let k = format!("parent:{}", round % 50);
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(30));
    assert!(codes.iter().all(|&c| c == 0), "child exit codes: {codes:?}");
    for i in 0..100 {
        let k = format!("child:{}:{i}", CHILDREN - 1);
        assert!(c.get(k.as_bytes()).unwrap().is_some());
    }
}
