//! The `negative` route end to end, against a real memcached (issue 9 item 4). What the
//! server counted (`get_misses`, `cmd_get`) is the evidence, not only what the client answers:
//!
//! - 1000 gets of 100 absent keys (single gets, then multi-gets) reach the server as the first
//!   round only;
//! - this client's own set, delete, incr, touch and lease fill are seen at once;
//! - gets, gat and lease reads always reach the server and remember nothing;
//! - another client's set is seen once `ttl_ms` has passed, and not before;
//! - `flush_all` forgets everything; stats and Prometheus carry the counters;
//! - a child forked while other threads use the negative cache starts with an empty one.
//!
//! One test in this binary: it forks, and fork() copies only the calling thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fae_core::lease::Lease;
use fae_core::{Client, Config, Op, process::background};
use fae_testkit::{Cluster, raw};

const TTL_MS: u64 = 500;

fn client(addr: &str, route: &str) -> Client {
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{addr}"]}}}}, "route": {route},
            "timeouts": {{"connect_ms": 200, "io_ms": 500}}}}"#
    );
    Client::new(&Config::from_json(&json).unwrap_or_else(|e| panic!("{e}: {json}"))).unwrap()
}

fn negative(addr: &str, ttl_ms: u64) -> Client {
    client(
        addr,
        &format!(
            r#"{{"type": "negative", "ttl_ms": {ttl_ms}, "max_keys": 10000, "route": "main"}}"#
        ),
    )
}

fn server_stat(addr: &str, name: &str) -> u64 {
    raw::stats(addr)[name].parse().unwrap()
}

fn route_stat(c: &Client, name: &str) -> u64 {
    c.stats()["routes"]["route"][name].as_u64().unwrap()
}

fn get(c: &Client, key: &str) -> Option<Vec<u8>> {
    c.get(key.as_bytes())
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|i| i.value)
}

#[test]
fn negative_cache_in_front_of_a_pool() {
    let cluster = Cluster::start(1);
    let m = cluster.addrs()[0].clone();
    // A long ttl_ms first, so no step below depends on timing; TTL_MS for the staleness bound.
    let neg = Arc::new(negative(&m, 60_000));
    let other = client(&m, r#""main""#);
    assert_eq!(neg.route_for(Op::Get, b"k").unwrap(), vec![m.clone()]);
    let misses = || server_stat(&m, "get_misses");

    // 1000 gets of 100 absent keys: the server sees the first 100.
    let keys: Vec<String> = (0..100).map(|i| format!("absent:{i}")).collect();
    let before = misses();
    for _ in 0..5 {
        for k in &keys {
            assert_eq!(get(&neg, k), None);
        }
    }
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    for _ in 0..5 {
        for chunk in refs.chunks(20) {
            let out = neg.get_multi(chunk).unwrap();
            assert!(out.iter().all(|r| matches!(r, Ok(None))));
        }
    }
    let seen = misses() - before;
    println!("1000 gets of 100 absent keys: {seen} misses on the server");
    assert_eq!(seen, 100, "only the first round reached the server");
    assert_eq!(route_stat(&neg, "negative_adds"), 100);
    assert_eq!(route_stat(&neg, "negative_hits"), 900);
    assert_eq!(neg.stats()["routes"]["route"]["keys"], 100);

    // A multi-get mixing remembered and unknown keys: one batch for the unknown ones.
    other.set(b"present", b"p", 0, 0).unwrap();
    let (gets, hits) = (server_stat(&m, "cmd_get"), server_stat(&m, "get_hits"));
    let out = neg
        .get_multi(&[b"absent:0", b"present", b"absent:1", b"new:0"])
        .unwrap();
    assert!(matches!(out[0], Ok(None)) && matches!(out[2], Ok(None)));
    assert_eq!(out[1].as_ref().unwrap().as_ref().unwrap().value, b"p");
    assert!(matches!(out[3], Ok(None)));
    assert_eq!(
        server_stat(&m, "cmd_get") - gets,
        2,
        "present and new:0 only"
    );
    assert_eq!(server_stat(&m, "get_hits") - hits, 1);

    // This client's own writes are seen at once, even over an absence remembered before
    // another client wrote the key.
    neg.set(b"absent:0", b"mine", 0, 0).unwrap();
    assert_eq!(get(&neg, "absent:0").as_deref(), Some(&b"mine"[..]));
    assert!(neg.delete(b"absent:0").unwrap());
    assert_eq!(get(&neg, "absent:0"), None);
    let before = misses();
    assert_eq!(get(&neg, "absent:0"), None);
    assert_eq!(misses(), before, "remembered again after the delete's miss");
    other.set(b"absent:1", b"5", 0, 0).unwrap();
    assert_eq!(get(&neg, "absent:1"), None, "remembered: not seen yet");
    assert_eq!(neg.incr(b"absent:1", 1).unwrap(), Some(6));
    assert_eq!(get(&neg, "absent:1").as_deref(), Some(&b"6"[..]));
    other.set(b"absent:2", b"t", 0, 0).unwrap();
    assert!(neg.touch(b"absent:2", 100).unwrap());
    assert_eq!(get(&neg, "absent:2").as_deref(), Some(&b"t"[..]));

    // gets, gat and lease reads reach the server (a lease must be granted by memcached) and
    // remember nothing.
    assert_eq!(get(&neg, "absent:3"), None);
    let before = misses();
    assert!(neg.gets(b"absent:3").unwrap().is_none());
    assert!(neg.gat(b"absent:3", 10).unwrap().is_none());
    assert_eq!(misses() - before, 2);
    let Lease::Miss { token } = neg.get_or_lease(b"absent:3").unwrap() else {
        panic!("the lease read reached memcached and won the lease")
    };
    assert!(token > 0);
    assert_eq!(
        get(&neg, "absent:3"),
        None,
        "a stub is a miss to a plain read"
    );
    assert!(
        neg.set_with_lease(b"absent:3", b"filled", 0, 0, token)
            .unwrap()
    );
    assert_eq!(get(&neg, "absent:3").as_deref(), Some(&b"filled"[..]));
    let before = misses();
    assert!(neg.gets(b"never").unwrap().is_none());
    assert!(neg.gets(b"never").unwrap().is_none());
    assert_eq!(misses() - before, 2, "gets are never answered locally");
    assert!(route_stat(&neg, "negative_bypassed") >= 5);

    // flush_all forgets everything.
    neg.flush_all(0).unwrap();
    let before = misses();
    assert_eq!(get(&neg, "absent:50"), None);
    assert_eq!(misses() - before, 1);

    // Another client's set is seen once ttl_ms has passed, not before.
    let short = negative(&m, TTL_MS);
    assert_eq!(get(&short, "late"), None);
    let remembered = Instant::now();
    other.set(b"late", b"v", 0, 0).unwrap();
    let early = get(&short, "late");
    if remembered.elapsed() < Duration::from_millis(TTL_MS / 2) {
        assert_eq!(early, None, "answered from memory within ttl_ms");
    }
    std::thread::sleep(Duration::from_millis(TTL_MS + 50).saturating_sub(remembered.elapsed()));
    assert_eq!(get(&short, "late").as_deref(), Some(&b"v"[..]));
    println!(
        "another client's set seen after {:?} (ttl_ms {TTL_MS})",
        remembered.elapsed()
    );

    // Prometheus: one row per counter of the table, this route's included.
    let text = neg.stats_prometheus();
    for name in [
        "negative_hits",
        "negative_adds",
        "negative_evictions",
        "negative_raced",
    ] {
        let row = format!("fae_route_{name}_total{{route=\"route\",type=\"negative\"}}");
        assert!(text.contains(&row), "{row} missing:\n{text}");
    }

    fork_while_in_use(&neg, &m);
}

/// A child forked while two threads read remembered keys starts with an empty negative cache
/// (its first read of a key the parent remembered reaches the server) and never hangs on a
/// lock those threads held.
fn fork_while_in_use(neg: &Arc<Client>, m: &str) {
    for i in 0..100 {
        assert_eq!(get(neg, &format!("fork:{i}")), None);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (neg, stop) = (Arc::clone(neg), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    for i in 0..100 {
                        assert_eq!(get(&neg, &format!("fork:{i}")), None);
                    }
                }
            })
        })
        .collect();
    let requests = |c: &Client| c.stats()["destinations"][m]["requests"].as_u64().unwrap();
    let mut pids = Vec::new();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(5));
        let pid = fae_testkit::fork_child(|| {
            let before = requests(neg);
            if get(neg, "fork:0").is_some() {
                return 2;
            }
            if requests(neg) != before + 1 {
                return 3; // answered from the parent's memory
            }
            if get(neg, "fork:0").is_some() || requests(neg) != before + 1 {
                return 4; // not remembered in the child
            }
            if !background::drain(Duration::from_secs(5)) {
                return 5;
            }
            0
        });
        pids.push(pid);
    }
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(30));
    stop.store(true, Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(codes.iter().all(|&c| c == 0), "child exit codes: {codes:?}");
    // The parent still answers from memory.
    let before = requests(neg);
    assert_eq!(get(neg, "fork:7"), None);
    assert_eq!(requests(neg), before);
}
