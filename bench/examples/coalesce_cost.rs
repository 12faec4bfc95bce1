//! What request coalescing (`stampede.coalesce`) costs a get that has nobody to share with:
//! single-threaded gets with it off and on, interleaved rounds, medians. Near-cache hits (a
//! `local` route in front of a pool: in-process, so the bookkeeping shows) and memcached hits
//! (loopback). Figures in docs/BENCHMARKS.md "Stampede".
//!
//! ```sh
//! cargo run --release -p fae-bench --example coalesce_cost
//! ```

use fae_core::{Client, Config};
use std::time::Instant;
fn main() {
    let mc = fae_testkit::Memcached::start();
    let mk = |co: bool| {
        Client::new(
            &Config::from_json(&format!(
                r#"{{"servers": ["{}"], "stampede": {{"coalesce": {co}}}}}"#,
                mc.addr()
            ))
            .unwrap(),
        )
        .unwrap()
    };
    let (on, off) = (mk(true), mk(false));
    on.set(b"k", &[b'x'; 100], 0, 0).unwrap();
    let n = 20000;
    let mut res = [Vec::new(), Vec::new()];
    for round in 0..10 {
        for (i, c) in [&off, &on].iter().enumerate() {
            let t = Instant::now();
            for _ in 0..n {
                c.get(b"k").unwrap().unwrap();
            }
            res[i].push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        let _ = round;
    }
    for r in &mut res {
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let addr = mc.addr();
    let mkl = |co: bool| {
        Client::new(&Config::from_json(&format!(r#"{{"pools": {{"main": {{"servers": ["{addr}"]}}}}, "route": {{"type": "local", "ttl_ms": 600000, "route": "main"}}, "stampede": {{"coalesce": {co}}}}}"#)).unwrap()).unwrap()
    };
    let (lon, loff) = (mkl(true), mkl(false));
    lon.set(b"k", &[b'x'; 100], 0, 0).unwrap();
    loff.set(b"k", &[b'x'; 100], 0, 0).unwrap();
    let mut lres = [Vec::new(), Vec::new()];
    let m = 500000;
    for _ in 0..10 {
        for (i, c) in [&loff, &lon].iter().enumerate() {
            let t = Instant::now();
            for _ in 0..m {
                c.get(b"k").unwrap().unwrap();
            }
            lres[i].push(t.elapsed().as_nanos() as f64 / m as f64);
        }
    }
    for r in &mut lres {
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "near-cache hit (local in front of a pool), 1 thread, 10 rounds x {m}: coalesce off median {:.0} ns, on median {:.0} ns (+{:.0} ns)",
        lres[0][5],
        lres[1][5],
        lres[1][5] - lres[0][5]
    );
    println!(
        "single get, 1 thread, 10 rounds x {n}: coalesce off median {:.0} ns, on median {:.0} ns, ratio {:.3}",
        res[0][5],
        res[1][5],
        res[1][5] / res[0][5]
    );
}
