//! Unix-domain socket servers against real memcached listening on sockets the testkit creates
//! (`memcached -s PATH`): a pool mixing sockets and TCP, stats and `route_for` by path, reload
//! keeping warm connections, heartbeats and recycling, a killed and restarted server, a stopped
//! one (SIGSTOP), a socket file removed and re-created, and paths that do not exist.

use std::time::{Duration, Instant};

use fae_core::pool::health::BreakerState;
use fae_core::{Client, Config, Op, Reason, SetItem};
use fae_testkit::{Memcached, wait_until};

mod support_place;
use support_place::keys_on;

fn sock() -> Memcached {
    Memcached::builder().unix_socket().start()
}

fn config(servers: &[String], extra: &str) -> Config {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "timeouts": {{"connect_ms": 200, "io_ms": 300}}{extra}}}"#,
        list.join(",")
    );
    Config::from_json(&json).unwrap()
}

fn client(servers: &[String], extra: &str) -> Client {
    Client::new(&config(servers, extra)).unwrap()
}

fn state(c: &Client, server: &str) -> BreakerState {
    c.breaker_states()
        .into_iter()
        .find(|(a, _)| a == server)
        .unwrap()
        .1
}

#[test]
fn a_pool_mixing_sockets_and_tcp_stores_where_it_places() {
    let (s1, t1, s2) = (sock(), Memcached::builder().start(), sock());
    assert_eq!(s1.port(), 0);
    assert!(s1.socket_path().unwrap().exists());
    let servers = [s1.addr(), t1.addr(), s2.addr()];
    let c = client(&servers, "");
    assert_eq!(c.servers(), servers.to_vec());

    let keys: Vec<String> = (0..300).map(|i| format!("mixed:{i}")).collect();
    let items: Vec<SetItem<'_>> = keys
        .iter()
        .map(|k| SetItem {
            key: k.as_bytes(),
            value: k.as_bytes(),
            flags: 0,
            exptime: 0,
        })
        .collect();
    for r in c.set_multi(&items).unwrap() {
        r.unwrap();
    }
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    for (k, r) in keys.iter().zip(c.get_multi(&refs).unwrap()) {
        assert_eq!(r.unwrap().unwrap().value, k.as_bytes());
    }
    // Each key is on the server `route_for` names (the socket's path for a socket server),
    // and on no other.
    let mut per_server = [0usize; 3];
    for k in &keys {
        let at = &c.route_for(Op::Get, k.as_bytes()).unwrap()[0];
        let i = servers.iter().position(|s| s == at).unwrap();
        per_server[i] += 1;
        for (j, s) in servers.iter().enumerate() {
            let held = fae_testkit::raw::get(s, k).is_some();
            assert_eq!(held, i == j, "{k} on {s}");
        }
    }
    assert!(per_server.iter().all(|&n| n > 50), "{per_server:?}");

    // Single-key operations over a socket.
    let k = &keys_on(&c, &s1.addr(), 1)[0];
    assert!(c.add(k.as_bytes(), b"x", 0, 0).is_ok());
    c.set(b"n", b"1", 0, 0).unwrap();
    assert_eq!(c.incr(b"n", 41).unwrap(), Some(42));
    assert!(c.delete(k.as_bytes()).unwrap());

    // Stats are labelled by the path.
    let st = c.stats();
    let d = &st["destinations"][&s1.addr()];
    assert!(d["requests"].as_u64().unwrap() > 0, "{st}");
    assert!(d["connections_opened"].as_u64().unwrap() >= 1, "{st}");
    let prom = c.stats_prometheus();
    assert!(
        prom.contains(&format!("destination=\"{}\"", s1.addr())),
        "{prom}"
    );
    // Admin `stats` reaches socket servers too.
    let per = c.server_stats("").unwrap();
    let (addr, r) = &per[0];
    assert_eq!(addr, &s1.addr());
    let pid = r
        .as_ref()
        .unwrap()
        .iter()
        .find(|(n, _)| n == "pid")
        .unwrap();
    assert_eq!(pid.1, s1.pid().unwrap().to_string());
}

#[test]
fn a_reload_keeps_a_sockets_warm_connections() {
    let (s1, s2) = (sock(), sock());
    let c = client(&[s1.addr()], "");
    c.set(b"warm", b"1", 0, 0).unwrap();
    let opened = || c.stats()["destinations"][&s1.addr()]["connections_opened"].as_u64();
    assert_eq!(opened(), Some(1));
    c.reload(&config(&[s1.addr(), s2.addr()], "")).unwrap();
    for i in 0..50 {
        c.get(format!("r:{i}").as_bytes()).unwrap();
    }
    assert_eq!(opened(), Some(1), "the socket's destination was kept");
}

#[test]
fn a_killed_socket_server_is_refused_then_comes_back_on_restart() {
    let (s1, s2) = (sock(), sock());
    let dead = s2.addr();
    let c = client(
        &[s1.addr(), dead.clone()],
        r#", "health": {"probe_initial_ms": 50, "probe_max_ms": 400}"#,
    );
    let ks = keys_on(&c, &dead, 5);
    for k in &ks {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
    s2.kill().unwrap();
    // The idle connection sees a reset, a new dial is refused (the socket file stays, nobody
    // listens): a clear error naming the path, then the breaker fails fast.
    let mut failures = Vec::new();
    for k in &ks {
        let e = c.get(k.as_bytes()).unwrap_err();
        if e.reason() == Reason::Tko {
            break;
        }
        assert_eq!(e.destination(), Some(dead.as_str()), "{e}");
        failures.push(e.reason());
    }
    assert!(failures.contains(&Reason::ConnectRefused), "{failures:?}");
    assert_eq!(state(&c, &dead), BreakerState::Open);

    s2.restart().unwrap();
    assert!(wait_until(Duration::from_secs(3), || state(&c, &dead)
        == BreakerState::HalfOpen));
    for k in &ks[..3] {
        assert_eq!(
            c.get(k.as_bytes()).unwrap(),
            None,
            "a restarted server is empty"
        );
    }
    assert_eq!(state(&c, &dead), BreakerState::Closed);
}

#[test]
fn a_stopped_socket_server_times_out_within_the_deadline() {
    let s1 = sock();
    let c = client(&[s1.addr()], r#", "health": {"tko_soft_threshold": 100}"#);
    c.set(b"k", b"v", 0, 0).unwrap();
    s1.pause().unwrap();
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert_eq!(e.reason(), Reason::Timeout, "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    // A new connection (the old one was dropped after the timeout) is accepted by the kernel
    // but never validated: a connect timeout within connect_ms, not a hang.
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert!(
        matches!(e.reason(), Reason::ConnectTimeout | Reason::Timeout),
        "{e}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    s1.resume().unwrap();
    assert!(wait_until(Duration::from_secs(2), || c.get(b"k").is_ok()));
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
}

#[test]
fn a_removed_socket_file_fails_new_dials_until_it_is_recreated() {
    let s1 = sock();
    let path = s1.socket_path().unwrap();
    let c = client(
        &[s1.addr()],
        r#", "max_connections": 1, "health": {"probe_initial_ms": 50, "probe_max_ms": 200}"#,
    );
    c.set(b"k", b"v", 0, 0).unwrap();
    std::fs::remove_file(&path).unwrap();
    // The warm connection is unaffected: the server still runs.
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
    // A fresh client must dial: no such file, named in the error, at once.
    let fresh = client(&[s1.addr()], "");
    let t = Instant::now();
    let e = fresh.get(b"k").unwrap_err();
    assert_eq!(e.reason(), Reason::ConnectFailed, "{e}");
    let text = e.to_string();
    assert!(text.contains(&s1.addr()), "{text}");
    assert!(text.contains("No such file"), "{text}");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );

    // The server restarts and creates the file again: both clients work.
    s1.restart().unwrap();
    assert!(path.exists());
    assert!(wait_until(Duration::from_secs(3), || fresh
        .get(b"k")
        .is_ok()));
    assert!(wait_until(Duration::from_secs(3), || c
        .set(b"k", b"w", 0, 0)
        .is_ok()));
    assert_eq!(fresh.get(b"k").unwrap().unwrap().value, b"w");
}

#[test]
fn a_path_nobody_created_is_a_clear_connect_error() {
    let c = client(&["/nonexistent-dir/memcached.sock".to_string()], "");
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert_eq!(e.reason(), Reason::ConnectFailed, "{e}");
    assert_eq!(e.destination(), Some("/nonexistent-dir/memcached.sock"));
    assert!(t.elapsed() < Duration::from_millis(100));
    assert!(c.set(b"k", b"v", 0, 0).is_err());
    // A regular file is not a socket: refused, not a crash.
    let dir = std::env::temp_dir().join(format!("fae-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plain");
    std::fs::write(&file, b"").unwrap();
    let c = client(&[file.to_string_lossy().into_owned()], "");
    let e = c.get(b"k").unwrap_err();
    assert_eq!(e.reason(), Reason::ConnectRefused, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_socket_connections_are_heartbeaten_then_recycled() {
    let s1 = sock();
    let c = client(
        &[s1.addr()],
        r#", "health": {"heartbeat_interval_ms": 40, "max_idle_ms": 400}"#,
    );
    c.set(b"k", b"v", 0, 0).unwrap();
    let d = |name: &str| {
        c.stats()["destinations"][&s1.addr()][name]
            .as_u64()
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(2), || d("heartbeats_ok") >= 2));
    assert!(wait_until(Duration::from_secs(2), || d(
        "connections_recycled"
    ) == 1));
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
}
