//! Health end to end, against real memcached processes: the breaker on a killed and restarted
//! server, fail-open, `on_down: eject`, heartbeats and recycling of idle connections, and the
//! inline mode (`background: false`). The fault-proxy matrix lives in `faults.rs`.

use std::time::{Duration, Instant};

use fae_core::pool::health::BreakerState;
use fae_core::{Client, Config, Op, Reason};
use fae_testkit::{Cluster, Memcached, wait_until};

mod support_place;
use support_place::keys_on;

fn client(servers: &[String], extra: &str) -> Client {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "timeouts": {{"connect_ms": 200, "io_ms": 300}}{extra}}}"#,
        list.join(",")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

fn state(c: &Client, i: usize) -> BreakerState {
    c.breaker_states()[i].1
}

/// Counter `name` of destination `addr` in `c.stats()`.
fn dest_stat(c: &Client, addr: &str, name: &str) -> u64 {
    c.stats()["destinations"][addr][name].as_u64().unwrap()
}

/// SIGCONT `mc`, then read `key` (stored as `v`) every millisecond: how long until a read hit
/// (`None`: not within 3 s).
fn resume_until_served(c: &Client, mc: &Memcached, key: &str) -> Option<Duration> {
    let resumed = Instant::now();
    mc.resume().unwrap();
    while resumed.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(it)) = c.get(key.as_bytes()) {
            assert_eq!(it.value, b"v");
            return Some(resumed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Four servers (so that fail-open lets one more breaker open besides server 0's), server 0
/// behind a `FaultProxy`; `connect_ms` 400, `io_ms` 500, probes every 50–100 ms, and `health`
/// keys added from `health_extra` (`, "key": value`).
fn four_with_server_0_proxied(health_extra: &str) -> (Cluster, fae_testkit::FaultProxy, Client) {
    let cluster = Cluster::start(4);
    let proxy = fae_testkit::FaultProxy::try_start(&cluster.addrs()[0]).unwrap();
    let mut servers = cluster.addrs();
    servers[0] = proxy.addr();
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let c = Client::new(
        &Config::from_json(&format!(
            r#"{{"servers": [{}], "timeouts": {{"connect_ms": 400, "io_ms": 500}},
                "health": {{"probe_initial_ms": 50, "probe_max_ms": 100{health_extra}}}}}"#,
            list.join(",")
        ))
        .unwrap(),
    )
    .unwrap();
    (cluster, proxy, c)
}

/// A killed server refuses connections: one hard failure opens its breaker, its keys then
/// fail fast, and once it is back a probe and three good trials close the breaker again.
#[test]
fn a_killed_server_opens_the_breaker_at_once_and_a_restart_closes_it() {
    let cluster = Cluster::start(4);
    let c = client(
        &cluster.addrs(),
        r#", "health": {"probe_initial_ms": 50, "probe_max_ms": 400}"#,
    );
    let dead = cluster.addrs()[1].clone();
    let ks = keys_on(&c, &dead, 5);
    for k in &ks {
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
    }
    cluster[1].kill().unwrap();

    // The idle connection notices first (reset, soft) or the dial is refused (hard).
    let mut failures = Vec::new();
    for k in &ks {
        let e = c.get(k.as_bytes()).unwrap_err();
        if e.reason() == Reason::Tko {
            break;
        }
        failures.push(e.reason());
    }
    assert!(failures.len() <= 2, "{failures:?}");
    assert!(failures.contains(&Reason::ConnectRefused), "{failures:?}");
    assert_eq!(state(&c, 1), BreakerState::Open);
    let t = Instant::now();
    assert_eq!(c.get(ks[0].as_bytes()).unwrap_err().reason(), Reason::Tko);
    assert_eq!(
        c.set(ks[0].as_bytes(), b"v", 0, 0).unwrap_err().reason(),
        Reason::Tko
    );
    assert!(
        t.elapsed() < Duration::from_millis(5),
        "tko is immediate: {:?}",
        t.elapsed()
    );

    // While it stays down, probes keep failing with backoff; the breaker stays open.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&c, 1), BreakerState::Open);
    let probes_failed = dest_stat(&c, &dead, "probes_failed");
    assert!(
        (1..=4).contains(&probes_failed),
        "50 ms x 1.5^n with jitter in 300 ms: {probes_failed}"
    );

    cluster[1].restart().unwrap();
    assert!(wait_until(Duration::from_secs(2), || state(&c, 1)
        == BreakerState::HalfOpen));
    // Half-open admits three trials; their success closes it. The restarted server is empty.
    for k in &ks[..3] {
        assert_eq!(c.get(k.as_bytes()).unwrap(), None);
    }
    assert_eq!(state(&c, 1), BreakerState::Closed);
    let d = &c.stats()["destinations"][&dead];
    assert_eq!(
        (
            d["breaker_opened"].as_u64(),
            d["breaker_half_opened"].as_u64()
        ),
        (Some(1), Some(1)),
        "{d}"
    );
    assert_eq!(d["breaker_closed"], 1, "{d}");
}

/// With `max_tko_fraction` 0.5, no more than half of a pool's breakers open: a network blip
/// that takes out most servers must not take the whole cache down.
#[test]
fn fail_open_keeps_most_of_a_pool_closed() {
    let cluster = Cluster::start(4);
    let c = client(&cluster.addrs(), "");
    for i in 0..3 {
        cluster[i].kill().unwrap();
    }
    for i in 0..200 {
        let _ = c.get(format!("f:{i}").as_bytes());
    }
    let states: Vec<BreakerState> = (0..4).map(|i| state(&c, i)).collect();
    let open = states
        .iter()
        .filter(|s| **s != BreakerState::Closed)
        .count();
    assert_eq!(open, 2, "{states:?}");
    let s = c.stats();
    assert_eq!(s["pools"]["default"]["breakers_not_closed"], 2);
    let fail_open: u64 = (0..3)
        .map(|i| {
            s["destinations"][&cluster.addrs()[i]]["fail_open"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(fail_open > 0, "{s}");
    // The live server is unaffected.
    let live = cluster.addrs()[3].clone();
    for k in keys_on(&c, &live, 5) {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
}

/// `on_down: eject`: the down server's keys go to the others while its breaker is open; keys
/// of healthy servers never move; after recovery its keys come home.
#[test]
fn eject_rehashes_only_the_down_servers_keys_and_brings_them_back() {
    let cluster = Cluster::start(4);
    let c = client(
        &cluster.addrs(),
        r#", "on_down": "eject", "health": {"probe_initial_ms": 50, "probe_max_ms": 200}"#,
    );
    let down = cluster.addrs()[2].clone();
    let all: Vec<String> = (0..400).map(|i| format!("e:{i}")).collect();
    let before: Vec<String> = all
        .iter()
        .map(|k| c.route_for(Op::Get, k.as_bytes()).unwrap().remove(0))
        .collect();
    cluster[2].kill().unwrap();
    let victim = all
        .iter()
        .zip(&before)
        .find(|(_, s)| **s == down)
        .unwrap()
        .0
        .clone();
    let e = c.get(victim.as_bytes()).unwrap_err(); // the first failure trips the breaker
    assert!(
        matches!(e.reason(), Reason::ConnectRefused | Reason::Reset),
        "{e}"
    );
    if state(&c, 2) != BreakerState::Open {
        let _ = c.get(victim.as_bytes());
    }
    assert_eq!(state(&c, 2), BreakerState::Open);

    let during: Vec<String> = all
        .iter()
        .map(|k| c.route_for(Op::Get, k.as_bytes()).unwrap().remove(0))
        .collect();
    for ((k, b), d) in all.iter().zip(&before).zip(&during) {
        if *b == down {
            assert_ne!(*d, down, "{k} still routed to the ejected server");
        } else {
            assert_eq!(b, d, "{k} moved although its server is healthy");
        }
    }
    // Reads and writes of the down server's keys work, on their new servers.
    c.set(victim.as_bytes(), b"elsewhere", 0, 0).unwrap();
    assert_eq!(
        c.get(victim.as_bytes()).unwrap().unwrap().value,
        b"elsewhere"
    );
    assert!(dest_stat(&c, &down, "ejected_lookups") > 0);

    cluster[2].restart().unwrap();
    assert!(wait_until(Duration::from_secs(2), || state(&c, 2)
        != BreakerState::Open));
    let after: Vec<String> = all
        .iter()
        .map(|k| c.route_for(Op::Get, k.as_bytes()).unwrap().remove(0))
        .collect();
    assert_eq!(
        after, before,
        "back on the full ring once the probe succeeded"
    );
}

/// Idle connections get heartbeats and are closed after `max_idle_ms`.
#[test]
fn idle_connections_are_heartbeaten_then_recycled() {
    let mc = Memcached::start();
    let c = client(
        &[mc.addr()],
        r#", "health": {"heartbeat_interval_ms": 40, "max_idle_ms": 400}"#,
    );
    c.set(b"k", b"v", 0, 0).unwrap();
    assert_eq!(c.connection_counts()[0].1, 1);
    let d = |name: &str| dest_stat(&c, &mc.addr(), name);
    assert!(
        wait_until(Duration::from_secs(2), || d("heartbeats_ok") >= 2),
        "{}",
        c.stats()
    );
    assert!(
        wait_until(Duration::from_secs(2), || d("connections_recycled") == 1),
        "{}",
        c.stats()
    );
    assert_eq!(c.connection_counts()[0].1, 0, "recycled connection closed");
    // The next request simply dials again.
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
}

/// A heartbeat finds a dead idle connection before a request does, and counts it against the
/// server's health.
#[test]
fn a_failed_heartbeat_discards_the_connection() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], r#", "health": {"heartbeat_interval_ms": 30}"#);
    c.set(b"k", b"v", 0, 0).unwrap();
    mc.kill().unwrap();
    let d = |name: &str| dest_stat(&c, &mc.addr(), name);
    assert!(
        wait_until(Duration::from_secs(2), || d("heartbeats_failed") == 1),
        "{}",
        c.stats()
    );
    assert_eq!(c.connection_counts()[0].1, 0);
    assert_eq!(c.stats()["destinations"][&mc.addr()]["errors"]["reset"], 1);
}

/// Heartbeats of a stopped server's idle connections are all sent, none is waited for on the
/// supervisor, and they fail together once `connect_ms` (200 ms here) has passed: each
/// connection is closed and counted in `heartbeats_failed`, and the breaker hears of it once
/// per sweep.
/// (They used to run one after another on the supervisor, each holding it for `connect_ms`.)
#[test]
fn a_stopped_servers_heartbeats_fail_together_and_close_its_idle_connections() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], r#", "health": {"heartbeat_interval_ms": 50}"#);
    c.set(b"k", b"v", 0, 0).unwrap();
    hold_connections(&c, &["k0".into(), "k1".into(), "k2".into()]);
    // (the supervisor's sweep takes each idle one out and back: count the open ones)
    assert_eq!(c.connection_counts()[0].1, 3, "three connections");
    let d = |name: &str| dest_stat(&c, &mc.addr(), name);
    mc.pause().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || c.connection_counts()[0].1 == 0),
        "{}",
        c.stats()
    );
    assert_eq!(d("heartbeats_failed"), 3);
    assert_eq!(d("connections_discarded"), 0);
    // Told to the breaker once per sweep, not once per connection: twice if the pause fell
    // inside a sweep (one heartbeat answered before it, the others not).
    let told = c.stats()["destinations"][&mc.addr()]["errors"]["timeout"]
        .as_u64()
        .unwrap();
    assert!((1..=2).contains(&told), "{told}");
    mc.resume().unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
}

/// Reads of `keys` hold a connection each at the same time, so that many exist on their
/// server (with a CAS: a plain get may share another's request and run its callback after
/// the connection went back).
fn hold_connections(c: &Client, keys: &[String]) {
    let held = std::sync::Barrier::new(keys.len());
    std::thread::scope(|s| {
        for k in keys {
            let held = &held;
            s.spawn(move || {
                c.get_with(k.as_bytes(), None, true, |_| {
                    held.wait();
                });
            });
        }
    });
}

/// A slow server's heartbeats do not hold up another server's recovery: server 0 answers
/// everything 300 ms late (a `FaultProxy` delay, within `connect_ms`), so each of its three
/// idle connections' heartbeats, due every 50 ms, takes 300 ms. They ran one after another on
/// the supervisor, which then looked at server 1's parked probe only between them: a stopped
/// server 1 that resumed was served again up to 900 ms later.
#[test]
fn a_slow_servers_heartbeats_do_not_hold_up_another_servers_recovery() {
    let (cluster, proxy, c) = four_with_server_0_proxied(r#", "heartbeat_interval_ms": 50"#);
    let victim = cluster.addrs()[1].clone();
    let ks = keys_on(&c, &victim, 2);
    for k in &ks {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
    hold_connections(&c, &keys_on(&c, &proxy.addr(), 3));
    proxy.set_fault(fae_testkit::Fault::Delay(Duration::from_millis(300)));
    let beats = || dest_stat(&c, &proxy.addr(), "heartbeats_ok");
    let before = beats();
    cluster[1].pause().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || c
            .get(ks[0].as_bytes())
            .is_err_and(|e| e.reason() == Reason::Tko)),
        "server 1's breaker opened"
    );
    let probes_failed = || dest_stat(&c, &victim, "probes_failed");
    // Server 1's probes are failing on schedule (one is parked), and server 0's slow
    // heartbeats succeed.
    assert!(
        wait_until(Duration::from_secs(10), || probes_failed() >= 2
            && beats() >= before + 6),
        "{}",
        c.stats()
    );
    let served = resume_until_served(&c, &cluster[1], &ks[1]);
    eprintln!("SIGCONT -> first hit {served:?}");
    let served = served.expect("the resumed server is served again within 3 s");
    assert!(
        served < Duration::from_millis(100),
        "SIGCONT -> first hit took {served:?}: held up behind server 0's heartbeats"
    );
    assert_eq!(
        c.connection_counts()[0].1,
        3,
        "server 0 kept its three connections"
    );
}

/// Connections older than `max_age_ms` are replaced while idle.
#[test]
fn old_connections_are_recycled() {
    let mc = Memcached::start();
    let c = client(
        &[mc.addr()],
        r#", "health": {"heartbeat_interval_ms": 20, "max_age_ms": 150}"#,
    );
    c.set(b"k", b"v", 0, 0).unwrap();
    let d = |name: &str| dest_stat(&c, &mc.addr(), name);
    assert!(
        wait_until(Duration::from_secs(2), || d("connections_recycled") == 1),
        "{}",
        c.stats()
    );
}

/// `background: false`: no supervisor thread; a request runs the due probe itself.
#[test]
fn inline_mode_probes_on_the_request_path() {
    let cluster = Cluster::start(2);
    let c = client(
        &cluster.addrs(),
        r#", "health": {"background": false, "probe_initial_ms": 30, "max_tko_fraction": 1.0}"#,
    );
    let s = c.stats();
    assert_eq!(s["supervisor"]["background"], false);
    let down = cluster.addrs()[0].clone();
    let ks = keys_on(&c, &down, 4);
    cluster[0].kill().unwrap();
    assert_eq!(
        c.get(ks[0].as_bytes()).unwrap_err().reason(),
        Reason::ConnectRefused
    );
    assert_eq!(c.get(ks[0].as_bytes()).unwrap_err().reason(), Reason::Tko);
    cluster[0].restart().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    // Due now: this request probes (inline), the probe succeeds, and it runs as a trial.
    assert_eq!(c.get(ks[1].as_bytes()).unwrap(), None);
    assert_eq!(c.stats()["destinations"][&down]["probes_ok"], 1);
    assert_ne!(state(&c, 0), BreakerState::Open);
}

/// A server that answers `SERVER_ERROR` is alive: errors it returns do not open the breaker.
#[test]
fn server_errors_are_not_health_failures() {
    let cluster = Cluster::start(2);
    let c = client(
        &cluster.addrs(),
        r#", "health": {"tko_soft_threshold": 1, "max_tko_fraction": 1.0}"#,
    );
    for i in 0..10 {
        let k = format!("n:{i}");
        c.set(k.as_bytes(), b"not a number", 0, 0).unwrap();
        assert_eq!(
            c.incr(k.as_bytes(), 1).unwrap_err().kind(),
            fae_core::ErrorKind::ServerError
        );
    }
    assert!((0..2).all(|i| state(&c, i) == BreakerState::Closed));
}

/// Graceful degrade, `disabled`: every request fails fast with `disabled`, nothing is dialled.
#[test]
fn a_disabled_pool_fails_fast_without_io() {
    let mc = Memcached::start();
    let conns = || -> u64 {
        fae_testkit::raw::stats(&mc.addr())["total_connections"]
            .parse()
            .unwrap()
    };
    let before = conns();
    let c = client(&[mc.addr()], r#", "disabled": true"#);
    let t = Instant::now();
    for r in [
        c.get(b"k").err(),
        c.set(b"k", b"v", 0, 0).err(),
        c.delete(b"k").err(),
    ] {
        assert_eq!(r.map(|e| e.reason()), Some(Reason::Disabled));
    }
    let multi = c.get_multi(&[b"a", b"b"]).unwrap();
    assert!(
        multi
            .iter()
            .all(|r| r.as_ref().unwrap_err().reason() == Reason::Disabled)
    );
    assert!(t.elapsed() < Duration::from_millis(5));
    assert_eq!(c.connection_counts()[0].1, 0, "no connection was made");
    assert_eq!(c.stats()["pools"]["default"]["disabled"], true);
    assert_eq!(
        conns(),
        before + 1,
        "the only new connection is this stats call's own"
    );
}

/// Graceful degrade, `read_only`: writes are answered locally as not stored and counted;
/// reads and deletes still reach the servers.
#[test]
fn a_read_only_pool_drops_writes_but_reads_and_deletes() {
    let mc = Memcached::start();
    fae_testkit::raw::set(&mc.addr(), "k", 7, b"from before");
    let c = client(&[mc.addr()], r#", "read_only": true"#);
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"from before");
    assert_eq!(
        c.set(b"k", b"new", 0, 0).unwrap_err().reason(),
        Reason::ReadOnly
    );
    assert!(!c.add(b"other", b"x", 0, 0).unwrap());
    assert_eq!(
        c.store(fae_core::StoreOp::Replace, b"k", b"x", 0, 0)
            .unwrap(),
        fae_core::StoreOutcome::NotStored
    );
    assert_eq!(c.incr(b"n", 1).unwrap(), None);
    assert!(!c.touch(b"k", 10).unwrap());
    let items = [fae_core::SetItem {
        key: b"m",
        value: b"v",
        flags: 0,
        exptime: 0,
    }];
    assert_eq!(
        c.set_multi(&items).unwrap()[0].as_ref().unwrap(),
        &fae_core::StoreOutcome::NotStored
    );
    assert_eq!(
        fae_testkit::raw::get(&mc.addr(), "k").unwrap().1,
        b"from before",
        "nothing was written"
    );
    assert!(fae_testkit::raw::get(&mc.addr(), "other").is_none());
    // Deletes still invalidate.
    assert!(c.delete(b"k").unwrap());
    assert!(fae_testkit::raw::get(&mc.addr(), "k").is_none());
    assert_eq!(c.stats()["destinations"][&mc.addr()]["writes_dropped"], 6);
}

/// Issue 17, item 7: requests that find every connection to a stopped server busy wait for one
/// to come back. They used to look again every 50 µs until their deadline (≈ 6,000 times per
/// waiting thread per 300 ms `io_ms`), CPU taken from the requests to the healthy servers. Now they
/// park until a connection comes back, looking again at most every millisecond.
#[test]
fn requests_waiting_on_a_stopped_servers_busy_connections_sleep() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], r#", "max_connections": 1"#);
    for i in 0..4 {
        c.set(format!("k{i}").as_bytes(), b"v", 0, 0).unwrap();
    }
    let wakeups = || c.stats()["destinations"][&mc.addr()]["checkout_wakeups"].as_u64();
    let before = wakeups().expect("checkout_wakeups in the destination's stats");
    mc.pause().unwrap();
    let t0 = Instant::now();
    let errors: Vec<Reason> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let t = Instant::now();
                    let e = c.get(format!("k{i}").as_bytes()).unwrap_err();
                    eprintln!("thread {i}: {e} after {:?}", t.elapsed());
                    e.reason()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t0.elapsed();
    mc.resume().unwrap();
    let woke = wakeups().unwrap() - before;
    eprintln!("4 threads, 1 connection stuck for {took:?}: {errors:?}, {woke} checkout wake-ups");
    // One thread holds the connection until its deadline; three wait for it and fail by the
    // same deadline (`pool_timeout`, or `connect_timeout` when the slot came back too late).
    assert!(took < Duration::from_millis(400), "{took:?}");
    assert!(errors.iter().all(|r| matches!(
        r,
        Reason::Timeout | Reason::PoolTimeout | Reason::ConnectTimeout
    )));
    // At most one look per millisecond per waiter (≈ 3 × 300), plus the first few yields.
    assert!(woke < 1500, "{woke} wake-ups in {took:?}");
}

/// Issue 17: a SIGSTOPped server that resumes is served again at once, not at the next
/// scheduled probe (up to `probe_max_ms` + 25 % later). A probe that timed out on the stopped
/// server stays parked on its socket; the server's first act on SIGCONT is to answer it, and
/// that answer half-opens the breaker. Resumed right after a failed probe, when the old
/// behaviour waited ≥ 560 ms for the next one (250 ms × 1.5², the defaults).
fn a_resumed_server_is_served_again_at_once(background: bool) {
    let cluster = Cluster::start(4);
    let list: Vec<String> = cluster.addrs().iter().map(|s| format!("\"{s}\"")).collect();
    // The library's defaults: connect_ms 100, io_ms 250, probe_initial_ms 250, probe_max_ms 1000.
    let c = Client::new(
        &Config::from_json(&format!(
            r#"{{"servers": [{}], "health": {{"background": {background}}}}}"#,
            list.join(",")
        ))
        .unwrap(),
    )
    .unwrap();
    let victim = cluster.addrs()[1].clone();
    let ks = keys_on(&c, &victim, 3);
    for k in &ks {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
    let counter = |name: &str| dest_stat(&c, &victim, name);
    cluster[1].pause().unwrap();
    // Timeouts open the breaker (each request ends by its io_ms).
    let opened = wait_until(Duration::from_secs(10), || {
        c.get(ks[0].as_bytes())
            .is_err_and(|e| e.reason() == Reason::Tko)
    });
    assert!(opened, "the breaker opened on the stopped server");
    // Two scheduled probes fail (inline mode: requests run them), then SIGCONT at once.
    let probed = wait_until(Duration::from_secs(10), || {
        let _ = c.get(ks[0].as_bytes());
        counter("probes_failed") >= 2
    });
    assert!(
        probed,
        "two probes failed: {}",
        c.stats()["destinations"][&victim]
    );
    assert_eq!(state(&c, 1), BreakerState::Open);
    let served = resume_until_served(&c, &cluster[1], &ks[1]);
    let d = &c.stats()["destinations"][&victim];
    eprintln!("background {background}: SIGCONT -> first hit {served:?}; {d}");
    let served = served.expect("the resumed server is served again within 3 s");
    assert!(
        served < Duration::from_millis(100),
        "SIGCONT -> first hit took {served:?} (the next scheduled probe was >= 560 ms away)"
    );
    assert!(d["probes_parked"].as_u64() >= Some(1), "{d}");
    assert_eq!(d["probe_wakeups"], 1, "{d}");
    assert!(d["breaker_half_opened"].as_u64() >= Some(1), "{d}");
    let prom = c.stats_prometheus();
    for line in [
        format!("fae_destination_probe_wakeups_total{{destination=\"{victim}\"}} 1"),
        format!(
            "fae_destination_probes_parked_total{{destination=\"{victim}\"}} {}",
            d["probes_parked"]
        ),
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} in\n{prom}");
    }
    // The parked connection's reply was read whole: the trials close the breaker as usual.
    for k in &ks {
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, b"v");
    }
    assert_eq!(state(&c, 1), BreakerState::Closed);
}

#[test]
fn a_resumed_server_is_served_again_at_once_by_the_supervisor() {
    a_resumed_server_is_served_again_at_once(true);
}

#[test]
fn a_resumed_server_is_served_again_at_once_inline() {
    a_resumed_server_is_served_again_at_once(false);
}

/// The supervisor is not held up by another server's probe: with server 0 behind a proxy
/// that black-holes every connection (each probe waits its whole `connect_ms` for the `mn`
/// answer), a stopped server 1 that resumes is still served again at once. Probes used to run
/// on the supervisor thread itself, so server 1's parked probe was looked at only between
/// server 0's probes: up to `connect_ms` (400 ms here) late.
#[test]
fn a_black_holed_servers_probes_do_not_hold_up_another_servers_recovery() {
    // A probe of server 0 takes its whole connect_ms, 400 ms.
    let (cluster, proxy, c) = four_with_server_0_proxied("");
    let victim = cluster.addrs()[1].clone();
    let ks = keys_on(&c, &victim, 2);
    for k in &ks {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
    let black = keys_on(&c, &proxy.addr(), 1);
    proxy.set_fault(fae_testkit::Fault::BlackHole);
    let tko = |k: &str| {
        wait_until(Duration::from_secs(10), || {
            c.get(k.as_bytes())
                .is_err_and(|e| e.reason() == Reason::Tko)
        })
    };
    assert!(tko(&black[0]), "server 0's breaker opened");
    cluster[1].pause().unwrap();
    assert!(tko(&ks[0]), "server 1's breaker opened");
    let failed = |i: &str| dest_stat(&c, i, "probes_failed");
    // Both servers' probes are failing on schedule (server 0's take 400 ms each).
    assert!(wait_until(Duration::from_secs(10), || failed(&victim) >= 2
        && failed(&proxy.addr()) >= 2));
    let served = resume_until_served(&c, &cluster[1], &ks[1]);
    eprintln!("SIGCONT -> first hit {served:?}");
    let served = served.expect("the resumed server is served again within 3 s");
    assert!(
        served < Duration::from_millis(100),
        "SIGCONT -> first hit took {served:?}: held up behind server 0's probe"
    );
}
