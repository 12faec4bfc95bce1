//! fork() with a route tree: the background worker (shadow copies) is busy and the local near
//! cache is in use by other threads when the process forks. Every child gets its own worker
//! and an empty local cache, its shadow copies arrive, none of the parent's queued copies is
//! replayed by a child, and nothing hangs. One test per binary: fork() copies only the calling
//! thread.

use std::time::Duration;

use fae_core::process::background;
use fae_core::{Client, Config};
use fae_testkit::{Cluster, FaultProxy, proxy::Fault};

const CHILDREN: usize = 8;

fn child(c: &Client, id: usize) -> i32 {
    for i in 0..50 {
        let key = format!("child:{id}:{i}");
        if c.set(key.as_bytes(), key.as_bytes(), 0, 0).is_err() {
            return 2;
        }
        match c.get(key.as_bytes()) {
            Ok(Some(it)) if it.value == key.as_bytes() => {}
            _ => return 3,
        }
    }
    // The local cache started empty here: a key the parent had cached is a local miss.
    let misses = || {
        c.stats()["routes"]["route.route"]["local_misses"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = misses();
    match c.get(b"parent:0") {
        Ok(Some(it)) if it.value == b"parent:0" => {}
        _ => return 6,
    }
    if misses() != before + 1 {
        return 4;
    }
    if !background::drain(Duration::from_secs(20)) {
        // Say what was left, on fd 2 itself (the test harness's capture of this thread's
        // output dies with the child). This once caught a child whose worker thread never
        // started (1 run in ~50): std's thread-start lock, inherited locked from a parent
        // whose test proxy was starting a thread at the fork (`process::thread`).
        let s = c.stats();
        let msg = format!(
            "child {id}: drain timed out: {} jobs queued, {} pending requests; \
             destinations: {}; supervisor: {}\n",
            background::pending(),
            background::pending_requests(),
            s["destinations"],
            s["supervisor"],
        );
        // SAFETY: writes a live buffer of `msg.len()` bytes to stderr.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        return 5;
    }
    0
}

#[test]
fn children_get_their_own_background_worker_and_local_cache() {
    let cluster = Cluster::start(2);
    let (main, shadow_server) = (&cluster.addrs()[0], &cluster.addrs()[1]);
    // The shadow is slow, so copies are queued while the parent forks.
    let slow = FaultProxy::start(shadow_server);
    slow.set_fault(Fault::Delay(Duration::from_millis(5)));
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{main}"]}}, "shadow": {{"servers": ["{}"]}}}},
            "route": {{"type": "shadow", "fraction": 1.0, "shadow": "shadow",
                       "route": {{"type": "local", "ttl_ms": 60000, "route": "main"}}}},
            "timeouts": {{"io_ms": 2000, "connect_ms": 1000}}}}"#,
        slow.addr()
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    for i in 0..100 {
        let k = format!("parent:{i}");
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
        c.get(k.as_bytes()).unwrap();
        c.get(k.as_bytes()).unwrap();
    }
    assert!(
        c.stats()["routes"]["route.route"]["local_hits"]
            .as_u64()
            .unwrap()
            >= 100
    );
    assert!(
        background::pending() > 0,
        "copies should still be queued at fork time"
    );

    let mut pids = Vec::new();
    for id in 0..CHILDREN {
        let pid = fae_testkit::fork_child(|| child(&c, id));
        pids.push(pid);
    }
    // The parent keeps using the tree (and its worker) meanwhile.
    for i in 0..100 {
        let k = format!("parent:{i}");
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(60));
    assert!(codes.iter().all(|&c| c == 0), "child exit codes: {codes:?}");
    assert!(background::drain(Duration::from_secs(30)));
    // Every child's keys reached the shadow (sets and gets were mirrored by the children's
    // own workers); the shadow saw the parent's 300 requests once, not once per child.
    let shadow =
        Client::new(&Config::with_servers(&[shadow_server.as_str()], Default::default()).unwrap())
            .unwrap();
    for id in 0..CHILDREN {
        for i in [0, 49] {
            let k = format!("child:{id}:{i}");
            assert!(
                shadow.get(k.as_bytes()).unwrap().is_some(),
                "{k} not shadowed"
            );
        }
    }
    let stats = shadow.server_stats("").unwrap();
    let sets: u64 = stats[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .find(|(k, _)| k == "cmd_set")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert_eq!(
        sets,
        100 + (CHILDREN as u64) * 50,
        "no queued copy replayed by a child"
    );
}
