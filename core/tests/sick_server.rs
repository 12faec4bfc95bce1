//! Benchmark-style check (not a timed test): does one SIGSTOPped server of four slow down the
//! gets to the three healthy ones? Prints the p50/p99 of healthy-key gets before and during the
//! outage, under 16 threads whose keys span all four servers.
//!
//! `cargo test --release -p fae-core --test sick_server -- --ignored --nocapture`

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fae_core::{Client, Config};
use fae_testkit::Cluster;

const THREADS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * q) as usize]
}

/// Healthy-key gets by `THREADS` threads for `PHASE`: (when, from the phase's start; latency).
fn phase(c: &Client, keys: &[(Vec<u8>, bool)]) -> Vec<(Duration, Duration)> {
    let begin = Instant::now();
    let stop = AtomicBool::new(false);
    let mut all = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let mut mine = Vec::with_capacity(100_000);
                    let mut i = t * 31;
                    while !stop.load(Ordering::Relaxed) {
                        let (k, healthy) = &keys[i % keys.len()];
                        i += 1;
                        let t0 = Instant::now();
                        let _ = c.get(k);
                        if *healthy {
                            mine.push((t0 - begin, t0.elapsed()));
                        }
                    }
                    mine
                })
            })
            .collect();
        std::thread::sleep(PHASE);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            all.extend(h.join().unwrap());
        }
    });
    all
}

#[test]
#[ignore = "benchmark: run in release with --nocapture"]
fn healthy_keys_during_an_outage() {
    let cluster = Cluster::start(4);
    let list: Vec<String> = cluster.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let json = format!(r#"{{"servers": [{}]}}"#, list.join(", "));
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    let sick = cluster.addrs()[1].clone();
    let keys: Vec<(Vec<u8>, bool)> = (0..400)
        .map(|i| {
            let k = format!("h:{i}").into_bytes();
            c.set(&k, b"v", 0, 0).unwrap();
            let on = c.route_for(fae_core::Op::Get, &k).unwrap().remove(0);
            (k, on != sick)
        })
        .collect();
    let before = phase(&c, &keys);
    cluster[1].pause().unwrap();
    let during = phase(&c, &keys);
    cluster[1].resume().unwrap();
    let lat = |v: &[(Duration, Duration)], from: Duration, to: Duration| -> Vec<Duration> {
        v.iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, l)| *l)
            .collect()
    };
    let mut before = lat(&before, Duration::ZERO, PHASE);
    // The first half second: the breaker is not open yet; the rest: open, probes running.
    let mut first = lat(&during, Duration::ZERO, Duration::from_millis(500));
    let mut rest = lat(&during, Duration::from_millis(500), PHASE);
    eprintln!(
        "during, first 500 ms: p99 {:?} ({} gets); after: p99 {:?} ({} gets)",
        quantile(&mut first, 0.99),
        first.len(),
        quantile(&mut rest, 0.99),
        rest.len()
    );
    let mut during = lat(&during, Duration::ZERO, PHASE);
    let (b50, b99) = (quantile(&mut before, 0.5), quantile(&mut before, 0.99));
    let (d50, d99) = (quantile(&mut during, 0.5), quantile(&mut during, 0.99));
    eprintln!(
        "healthy gets: before p50 {b50:?} p99 {b99:?} ({} gets); during p50 {d50:?} p99 {d99:?} \
         ({} gets); p99 ratio {:.2}",
        before.len(),
        during.len(),
        d99.as_secs_f64() / b99.as_secs_f64()
    );
}
