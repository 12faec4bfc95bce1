//! A child forked while another parent thread was reloading the client can still reload: the
//! reload's lock belonged to a thread the child does not have. With a plain mutex it stayed
//! locked in the child for good, and every reload there (a `Client::reload`, a watched config
//! file, a new topology snapshot) failed with "another reload is still running". One test per
//! binary: fork() copies only the calling thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::{Cluster, fork_child, wait_forked};

const CHILDREN: usize = 8;

#[test]
fn a_child_forked_mid_reload_can_reload() {
    let cluster = Cluster::start(1);
    let json = format!(r#"{{"servers": ["{}"]}}"#, cluster.addrs()[0]);
    let cfg = Config::from_json(&json).unwrap();
    let c = Client::new(&cfg).unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();
    let stop = AtomicBool::new(false);
    let reloads = AtomicU64::new(0);
    let codes = std::thread::scope(|s| {
        // Reloads back to back: the reload lock is held most of the time, so most forks
        // below land while this thread holds it.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                c.reload(&cfg).unwrap();
                reloads.fetch_add(1, Ordering::Relaxed);
            }
        });
        while reloads.load(Ordering::Relaxed) < 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut pids = Vec::new();
        for _ in 0..CHILDREN {
            let pid = fork_child(|| {
                if c.reload(&cfg).is_err() {
                    return 1;
                }
                match c.get(b"k") {
                    Ok(Some(it)) if it.value == b"v" => 0,
                    _ => 2,
                }
            });
            pids.push(pid);
            std::thread::sleep(Duration::from_millis(3));
        }
        let codes = wait_forked(&pids, Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        codes
    });
    assert_eq!(
        codes,
        vec![0; CHILDREN],
        "exit codes (1: the child's reload failed)"
    );
}
