//! The hot-key storm across processes (issue 9): 8 forked processes × 8 threads call
//! `get_or_set` on one key at the same instant, at the start and again after each of two
//! expiries. The compute function (5 ms, counted in memcached itself so every process adds to
//! one counter) must run exactly once per expiry, and every caller must get the value. One
//! test per binary: fork() copies only the calling thread.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fae_core::{Client, Config};
use fae_testkit::{Memcached, wait_forked};

const PROCESSES: usize = 8;
const THREADS: usize = 8;
/// Storms: the first miss, then one per expiry.
const STORMS: usize = 3;
/// TTL of the hot key, seconds; storms are this plus a margin apart.
const TTL: u32 = 1;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn client(addr: &str) -> Client {
    let json =
        format!(r#"{{"servers": ["{addr}"], "timeouts": {{"io_ms": 2000, "connect_ms": 1000}}}}"#);
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

/// One storm round in this process: THREADS threads released together at `start_ms`.
/// Returns false if any caller got an error or a wrong value.
fn storm(c: &Arc<Client>, start_ms: u64, round: usize) -> bool {
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (c, barrier) = (Arc::clone(c), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                while now_ms() < start_ms {
                    std::hint::spin_loop();
                }
                let got = c.get_or_set(b"storm:hot", TTL, || {
                    // The "database": counted in memcached, so all processes add up.
                    c.incr(b"storm:computes", 1).map_err(|e| e.to_string())?;
                    std::thread::sleep(Duration::from_millis(5));
                    Ok::<_, String>((format!("value-{round}").into_bytes(), 0))
                });
                matches!(got, Ok(it) if it.value.starts_with(b"value-"))
            })
        })
        .collect();
    handles.into_iter().all(|h| h.join().unwrap_or(false))
}

#[test]
fn one_compute_per_expiry_across_8_processes() {
    let mc = Memcached::start();
    let setup = client(&mc.addr());
    setup.set(b"storm:computes", b"0", 0, 0).unwrap();
    drop(setup);
    // Storm r starts at base + r × (TTL + 1.2 s): the value of storm r - 1 has expired.
    let base = now_ms() + 500;
    let gap = u64::from(TTL) * 1000 + 1200;
    let mut pids = Vec::new();
    for _ in 0..PROCESSES {
        let pid = fae_testkit::fork_child(|| {
            let c = Arc::new(client(&mc.addr()));
            let ok = (0..STORMS).all(|r| storm(&c, base + r as u64 * gap, r));
            if ok { 0 } else { 1 }
        });
        pids.push(pid);
    }
    let t = Instant::now();
    let codes = wait_forked(&pids, Duration::from_secs(60));
    assert!(codes.iter().all(|&c| c == 0), "children: {codes:?}");
    let check = client(&mc.addr());
    let computes = check.get(b"storm:computes").unwrap().unwrap().value;
    let computes: usize = String::from_utf8(computes).unwrap().trim().parse().unwrap();
    println!(
        "{} callers × {STORMS} storms: {computes} computes in {:?}",
        PROCESSES * THREADS,
        t.elapsed()
    );
    assert_eq!(computes, STORMS, "one compute per expiry");
}
