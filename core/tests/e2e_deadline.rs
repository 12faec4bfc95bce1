//! One deadline per request (`timeouts.io_ms`), whatever the route tree does with it.
//!
//! A request through a tree shares one context: every child, failover, warm-up read and
//! coalesced follower ends by the deadline set when the call began. These trees used to take
//! one `io_ms` per child tried (a `failover` over three dead servers took three).
//!
//! Real memcached servers behind [`FaultProxy`]s that black-hole (accept, never answer) or
//! delay replies. `connect_ms` equals `io_ms`, so a dial to a black hole costs a whole
//! `io_ms` too. The bound is a correctness bound with scheduling slack, not a benchmark; the
//! tests run one at a time so that parallel tests do not eat the slack.

use std::sync::{Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fae_core::{Client, Config, Item, Result};
use fae_testkit::{Cluster, Fault, FaultProxy};

const IO_MS: u64 = 200;
/// `io_ms` plus scheduling slack: what any call here may take.
const BOUND: Duration = Duration::from_millis(300);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `"name": {"servers": [...]}`.
fn pool(name: &str, addrs: &[String]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(r#""{name}": {{"servers": [{}]}}"#, list.join(", "))
}

fn client(pools: &[String], route: &str) -> Client {
    client_with(pools, route, "")
}

/// [`client`] with more top-level fields (`, "health": {...}`).
fn client_with(pools: &[String], route: &str, extra: &str) -> Client {
    let json = format!(
        r#"{{"pools": {{{}}}, "route": {route},
            "timeouts": {{"connect_ms": {IO_MS}, "io_ms": {IO_MS}}}{extra}}}"#,
        pools.join(", ")
    );
    Client::new(&Config::from_json(&json).unwrap_or_else(|e| panic!("{e}: {json}"))).unwrap()
}

/// One proxy per server of `cluster`, passing through.
fn proxies(cluster: &Cluster) -> Vec<FaultProxy> {
    cluster
        .addrs()
        .iter()
        .map(|a| FaultProxy::start(a))
        .collect()
}

/// Run `call`, check it ended within [`BOUND`], and return its result.
fn timed<T>(what: &str, call: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = call();
    let took = t.elapsed();
    assert!(
        took <= BOUND,
        "{what} took {took:?}: more than io_ms ({IO_MS} ms) plus slack"
    );
    r
}

/// A `failover` over three pools whose every server black-holes.
fn black_holed_failover(servers_per_pool: usize) -> (Client, Cluster, Vec<FaultProxy>) {
    let cluster = Cluster::start(3 * servers_per_pool);
    let px = proxies(&cluster);
    let addrs: Vec<String> = px.iter().map(FaultProxy::addr).collect();
    let pools: Vec<String> = ["a", "b", "c"]
        .iter()
        .zip(addrs.chunks(servers_per_pool))
        .map(|(name, a)| pool(name, a))
        .collect();
    let c = client(
        &pools,
        r#"{"type": "failover", "children": ["a", "b", "c"]}"#,
    );
    for p in &px {
        p.set_fault(Fault::BlackHole);
    }
    (c, cluster, px)
}

#[test]
fn failover_over_three_black_holed_servers_ends_within_one_io_ms() {
    let _g = serial();
    let (c, _cluster, _px) = black_holed_failover(1);
    let r = timed("get", || c.get(b"k"));
    assert!(r.is_err(), "every child is dead: {r:?}");
    // A fresh client: its breakers have not heard of the black holes yet.
    let (c, _cluster, _px) = black_holed_failover(1);
    let r = timed("set", || c.set(b"k", b"v", 0, 0));
    assert!(r.is_err(), "every child is dead: {r:?}");
}

#[test]
fn failover_multi_get_over_black_holed_pools_ends_within_one_io_ms() {
    let _g = serial();
    let (c, _cluster, _px) = black_holed_failover(2);
    let keys: Vec<String> = (0..20).map(|i| format!("mk:{i}")).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let out = timed("get_multi", || c.get_multi(&refs)).unwrap();
    assert_eq!(out.len(), keys.len());
    assert!(out.iter().all(|r| r.is_err()), "every key failed: {out:?}");
}

#[test]
fn coalesced_followers_wait_exactly_for_the_leaders_deadline() {
    let _g = serial();
    let (c, _cluster, _px) = black_holed_failover(1);
    let threads = 6;
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    timed("a coalesced get", || c.get(b"hot"))
                })
            })
            .collect();
        for h in handles {
            let r: Result<Option<Item>> = h.join().unwrap();
            assert!(r.is_err(), "every child is dead: {r:?}");
        }
    });
}

/// A `warm_up` whose cold pool answers (a miss) but slowly, 150 ms of the 200, and whose warm
/// pool black-holes: the warm read gets what is left of the deadline, not a new one.
fn slow_cold_black_holed_warm() -> (Client, Cluster, Vec<FaultProxy>) {
    let cluster = Cluster::start(2);
    let px = proxies(&cluster);
    let c = client(
        &[pool("cold", &[px[0].addr()]), pool("warm", &[px[1].addr()])],
        r#"{"type": "warm_up", "cold": "cold", "warm": "warm"}"#,
    );
    // A delete reaches both sides: each has a warm connection before the faults, so only the
    // request itself waits.
    assert!(!c.delete(b"nothing").unwrap());
    px[0].set_fault(Fault::Delay(Duration::from_millis(150)));
    px[1].set_fault(Fault::BlackHole);
    (c, cluster, px)
}

fn timeouts_of(c: &Client, addr: &str) -> u64 {
    c.stats()["destinations"][addr]["errors"]["timeout"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn warm_up_with_a_black_holed_warm_side_ends_within_one_io_ms() {
    let _g = serial();
    let (c, _cluster, px) = slow_cold_black_holed_warm();
    let r = timed("get", || c.get(b"absent"));
    assert_eq!(r.unwrap(), None, "cold's miss is the answer");
    assert!(timeouts_of(&c, &px[1].addr()) >= 1, "warm was asked");

    let (c, _cluster, px) = slow_cold_black_holed_warm();
    let keys: Vec<String> = (0..10).map(|i| format!("absent:{i}")).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let out = timed("get_multi", || c.get_multi(&refs)).unwrap();
    assert!(
        out.iter().all(|r| matches!(r, Ok(None))),
        "cold's misses are the answers: {out:?}"
    );
    assert!(timeouts_of(&c, &px[1].addr()) >= 1, "warm was asked");
}

/// The other side of one deadline: a child that timed out used it up, so the backup is not
/// asked in the same request; once the dead server's breaker is open (a connect timeout opens
/// it at once; `max_tko_fraction` 1.0 lets a one-server pool open), its keys go to the backup
/// without waiting.
#[test]
fn after_a_timeout_the_backup_serves_once_the_breaker_is_open() {
    let _g = serial();
    let cluster = Cluster::start(2);
    let px = proxies(&cluster);
    let pools = [pool("a", &[px[0].addr()]), pool("b", &[px[1].addr()])];
    client(&pools, r#""b""#).set(b"k", b"from-b", 0, 0).unwrap();
    px[0].set_fault(Fault::BlackHole);
    let c = client_with(
        &pools,
        r#"{"type": "failover", "children": ["a", "b"]}"#,
        r#", "health": {"max_tko_fraction": 1.0}"#,
    );
    let r = timed("the first get", || c.get(b"k"));
    assert!(r.is_err(), "a's timeout used up the deadline: {r:?}");
    let r = timed("a get past the open breaker", || c.get(b"k"));
    assert_eq!(r.unwrap().map(|i| i.value), Some(b"from-b".to_vec()));
}

/// A server SIGSTOPped and resumed again and again under 32 threads (more than the pool's 8
/// connections, so threads also wait for a connection): no request may end later than its
/// deadline plus [`STOP_SLACK`]. Bounded: three stop/resume cycles. Probes on the supervisor
/// thread, then inline (`background: false`), where a probe is part of a request.
#[test]
fn a_stopped_server_keeps_every_request_within_its_deadline() {
    let _s = serial();
    for background in [true, false] {
        stopped_server_run(background);
    }
}

fn stopped_server_run(background: bool) {
    let mc = fae_testkit::Memcached::start();
    let json = format!(
        r#"{{"servers": ["{}"], "timeouts": {{"connect_ms": {STOP_IO_MS}, "io_ms": {STOP_IO_MS}}},
            "health": {{"probe_initial_ms": 50, "probe_max_ms": 200, "background": {background}}}}}"#,
        mc.addr()
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let worst = Mutex::new((Duration::ZERO, String::new()));
    let requests = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..32 {
            let (c, stop, worst, requests) = (&c, &stop, &worst, &requests);
            s.spawn(move || {
                let mut mine = (Duration::ZERO, String::new());
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("k{}", (t * 7 + i) % 64);
                    let start = Instant::now();
                    let r = if i.is_multiple_of(4) {
                        c.set(key.as_bytes(), b"v", 0, 0).map(|_| ())
                    } else {
                        c.get(key.as_bytes()).map(|_| ())
                    };
                    let took = start.elapsed();
                    if took > mine.0 {
                        mine = (took, format!("{r:?}"));
                    }
                    i += 1;
                }
                requests.fetch_add(i, std::sync::atomic::Ordering::Relaxed);
                let mut w = worst.lock().unwrap();
                if mine.0 > w.0 {
                    *w = mine;
                }
            });
        }
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(400));
            mc.pause().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            mc.resume().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let (worst, outcome) = worst.into_inner().unwrap();
    eprintln!(
        "background {background}: {} requests, worst {worst:?}: {outcome} (io_ms {STOP_IO_MS})",
        requests.into_inner()
    );
    assert!(
        worst <= Duration::from_millis(STOP_IO_MS) + STOP_SLACK,
        "worst request took {worst:?}: io_ms is {STOP_IO_MS} ms"
    );
}

const STOP_IO_MS: u64 = 250;
/// The client itself keeps within `io_ms` + 10 ms; 32 threads on a shared 2-core CI runner
/// add their own scheduling delay on top (a thread ready at its deadline waits for a core).
const STOP_SLACK: Duration = Duration::from_millis(40);
