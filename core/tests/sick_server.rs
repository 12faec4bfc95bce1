//! Benchmark-style check (not a timed test): does one SIGSTOPped server of four slow down the
//! gets to the three healthy ones? Prints the p50/p99 of healthy-key gets before and during the
//! outage, under 16 threads whose keys span all four servers, and for the outage's first
//! 500 ms (before the breaker opens, while requests wait on the stopped server) and the rest:
//! the healthy gets per second, the process's CPU time (user + system, `getrusage`) per
//! healthy get, and the pool's checkout wake-ups (`checkout_wakeups`: a thread that found every
//! connection busy looking again).
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

/// The process's CPU time so far (user + system).
fn cpu() -> Duration {
    // SAFETY: `getrusage` fills the zeroed struct it is given and keeps no pointer to it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The sum of every destination's `checkout_wakeups`.
fn wakeups(c: &Client) -> u64 {
    let s = c.stats();
    s["destinations"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|d| d["checkout_wakeups"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// What the process spent in a window of a phase: CPU time and checkout wake-ups.
#[derive(Clone, Copy, Debug)]
struct Spent {
    cpu: Duration,
    wakeups: u64,
}

/// Healthy-key gets by `THREADS` threads for `PHASE`: (when, from the phase's start; latency),
/// and what was spent in its first 500 ms and in the rest.
fn phase(c: &Client, keys: &[(Vec<u8>, bool)]) -> (Vec<(Duration, Duration)>, [Spent; 2]) {
    let begin = Instant::now();
    let stop = AtomicBool::new(false);
    let mut all = Vec::new();
    let mark = || Spent {
        cpu: cpu(),
        wakeups: wakeups(c),
    };
    let m0 = mark();
    let mut m1 = m0;
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
        std::thread::sleep(FIRST);
        m1 = mark();
        std::thread::sleep(PHASE - FIRST);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            all.extend(h.join().unwrap());
        }
    });
    let m2 = mark();
    let spent = |a: Spent, b: Spent| Spent {
        cpu: b.cpu - a.cpu,
        wakeups: b.wakeups - a.wakeups,
    };
    (all, [spent(m0, m1), spent(m1, m2)])
}

/// The outage's first part: the breaker is not open yet.
const FIRST: Duration = Duration::from_millis(500);

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
    let (before, spent_before) = phase(&c, &keys);
    cluster[1].pause().unwrap();
    let (during, spent_during) = phase(&c, &keys);
    cluster[1].resume().unwrap();
    let lat = |v: &[(Duration, Duration)], from: Duration, to: Duration| -> Vec<Duration> {
        v.iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, l)| *l)
            .collect()
    };
    let mut before = lat(&before, Duration::ZERO, PHASE);
    // The first half second: the breaker is not open yet; the rest: open, probes running.
    let mut first = lat(&during, Duration::ZERO, FIRST);
    let mut rest = lat(&during, FIRST, PHASE);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let per_get = |s: Spent, n: usize| s.cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    let n_before = before.len();
    eprintln!(
        "before: {:.0} healthy gets/s, {:.1} µs CPU per healthy get, {} checkout wake-ups",
        rate(n_before, PHASE),
        per_get(
            Spent {
                cpu: spent_before[0].cpu + spent_before[1].cpu,
                wakeups: 0
            },
            n_before
        ),
        spent_before[0].wakeups + spent_before[1].wakeups,
    );
    eprintln!(
        "during, first 500 ms: p99 {:?} ({} gets, {:.0}/s, {:.1} µs CPU per healthy get, {} \
         checkout wake-ups); after: p99 {:?} ({} gets, {:.0}/s, {:.1} µs CPU per healthy get, {} \
         checkout wake-ups)",
        quantile(&mut first, 0.99),
        first.len(),
        rate(first.len(), FIRST),
        per_get(spent_during[0], first.len()),
        spent_during[0].wakeups,
        quantile(&mut rest, 0.99),
        rest.len(),
        rate(rest.len(), PHASE - FIRST),
        per_get(spent_during[1], rest.len()),
        spent_during[1].wakeups,
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
