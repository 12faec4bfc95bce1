//! fork(): php-fpm, gunicorn and uwsgi load libfae and then fork. A process with a warm client
//! forks 20 children that use the same client while the parent keeps using it: every child
//! gets correct values, never sends on a socket inherited from its parent (its pooled
//! connections have local ports the parent's did not), starts its own supervisor, and nothing
//! hangs. One test per binary: fork() copies only the calling thread.

use std::collections::HashSet;
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::Cluster;

const CHILDREN: usize = 20;

fn child(c: &Client, id: usize, parent_ports: &HashSet<u16>) -> i32 {
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
        // The parent's keys, written before the fork.
        let pk = format!("parent:{}", i % 50);
        match c.get(pk.as_bytes()) {
            Ok(Some(it)) if it.value == pk.as_bytes() => {}
            _ => return 4,
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
    let mine: HashSet<u16> = c.idle_local_addrs().iter().map(|a| a.port()).collect();
    if mine.is_empty() || !mine.is_disjoint(parent_ports) {
        return 6; // a parent socket was reused
    }
    if c.stats()["supervisor"]["running"] != true {
        return 7;
    }
    0
}

#[test]
fn twenty_children_share_a_warm_client_with_their_parent() {
    let cluster = Cluster::start(2);
    let list: Vec<String> = cluster.addrs().iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "timeouts": {{"io_ms": 2000, "connect_ms": 1000}}}}"#,
        list.join(",")
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    for i in 0..50 {
        let k = format!("parent:{i}");
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
    }
    // Warm: several pooled connections per server, and the supervisor running.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..50 {
                    c.get(format!("parent:{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let parent_ports: HashSet<u16> = c.idle_local_addrs().iter().map(|a| a.port()).collect();
    assert!(!parent_ports.is_empty());

    let mut pids = Vec::new();
    for id in 0..CHILDREN {
        let pid = fae_testkit::fork_child(|| child(&c, id, &parent_ports));
        pids.push(pid);
    }

    // The parent keeps working on its own connections meanwhile.
    for round in 0..200 {
        let k = format!("parent:{}", round % 50);
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
    }

    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(30));
    assert!(codes.iter().all(|&c| c == 0), "child exit codes: {codes:?}");
    // The parent's connections are still its own and still in sync.
    for i in 0..50 {
        let k = format!("parent:{i}");
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
    }
    for i in 0..100 {
        let k = format!("child:{}:{i}", CHILDREN - 1);
        assert!(c.get(k.as_bytes()).unwrap().is_some());
    }
}
