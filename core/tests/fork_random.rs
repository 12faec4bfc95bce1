//! Random replica reads after fork(): a client built and used before a pre-fork server forks
//! must not give every worker the same "random" sequence (they would all read the same replica
//! in lockstep). The parent and four children each make 32 random reads and record which
//! replica answered each; no two sequences are equal. One test per binary: fork() copies only
//! the calling thread.

use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::Cluster;

const CHILDREN: usize = 4;
const READS: usize = 32;

/// Which replica served each of `READS` reads: the destination whose request count moved.
fn sequence(c: &Client, servers: &[String]) -> Option<String> {
    let requests = |c: &Client| -> Vec<u64> {
        let s = c.stats();
        servers
            .iter()
            .map(|a| s["destinations"][a]["requests"].as_u64().unwrap_or(0))
            .collect()
    };
    let mut seq = String::new();
    for _ in 0..READS {
        let before = requests(c);
        if c.get(b"k").ok()??.value != b"v" {
            return None;
        }
        let after = requests(c);
        let moved: Vec<usize> = (0..servers.len())
            .filter(|&i| after[i] > before[i])
            .collect();
        let [i] = moved[..] else { return None };
        seq.push(char::from(b'0' + i as u8));
    }
    Some(seq)
}

#[test]
fn forked_workers_read_different_random_replicas() {
    let cluster = Cluster::start(3);
    let servers = cluster.addrs();
    let pools: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#""r{i}": {{"servers": ["{s}"]}}"#))
        .collect();
    let json = format!(
        r#"{{"pools": {{{}}}, "route": {{"type": "replicated", "children": ["r0", "r1", "r2"],
            "read": "random"}}, "timeouts": {{"io_ms": 2000, "connect_ms": 1000}}}}"#,
        pools.join(",")
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();
    // The parent's generator is in use (seeded) before the fork: the case that used to be
    // copied into every child.
    assert!(sequence(&c, &servers).is_some());
    let dir = std::env::temp_dir().join(format!("fae-fork-random-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut pids = Vec::new();
    for id in 0..CHILDREN {
        let pid = fae_testkit::fork_child(|| {
            let Some(seq) = sequence(&c, &servers) else {
                return 2;
            };
            if std::fs::write(dir.join(format!("{id}")), seq).is_ok() {
                0
            } else {
                3
            }
        });
        pids.push(pid);
    }
    let mine = sequence(&c, &servers).unwrap();
    let codes = fae_testkit::wait_forked(&pids, Duration::from_secs(30));
    assert!(codes.iter().all(|&c| c == 0), "child exit codes: {codes:?}");
    let mut all: Vec<String> = (0..CHILDREN)
        .map(|id| std::fs::read_to_string(dir.join(format!("{id}"))).unwrap())
        .collect();
    all.push(mine);
    for (i, a) in all.iter().enumerate() {
        assert!(a.contains('0') && a.contains('1') && a.contains('2'), "{a}");
        for b in &all[i + 1..] {
            assert_ne!(
                a, b,
                "two processes drew the same replica sequence: {all:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
