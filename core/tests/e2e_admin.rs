//! End-to-end: the admin additions used by the Python binding (`disconnect_idle`,
//! `server_stats`) against real memcached processes.

use fae_core::{Client, Config, Reason};
use fae_testkit::Memcached;

fn client(servers: &[String]) -> Client {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "timeouts": {{"connect_ms": 200, "io_ms": 500}}}}"#,
        list.join(",")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

#[test]
fn disconnect_idle_keeps_the_client_usable() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()]);
    c.set(b"k", b"v", 0, 0).unwrap();
    assert_eq!(
        c.connection_counts()[0].2,
        1,
        "one idle connection after a request"
    );
    c.disconnect_idle();
    assert_eq!(c.connection_counts()[0].1, 0, "no connection left open");
    assert!(!c.is_closed());
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
}

#[test]
fn server_stats_per_server_in_config_order() {
    let (a, b) = (Memcached::start(), Memcached::start());
    let c = client(&[a.addr(), b.addr()]);
    c.set(b"k", b"v", 0, 0).unwrap();
    let stats = c.server_stats("").unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0].0, a.addr());
    assert_eq!(stats[1].0, b.addr());
    for (_, r) in &stats {
        let kv = r.as_ref().unwrap();
        assert!(kv.iter().any(|(k, _)| k == "pid"));
        assert!(kv.iter().any(|(k, _)| k == "curr_connections"));
    }
    let settings = c.server_stats("settings").unwrap();
    let kv = settings[0].1.as_ref().unwrap();
    assert!(kv.iter().any(|(k, _)| k == "maxbytes"), "{kv:?}");
    // An unknown subcommand is the server's error, per server.
    let bad = c.server_stats("nope").unwrap();
    assert!(bad[0].1.is_err());
    // Arguments cannot inject a second command.
    let e = c.server_stats("items\r\nflush_all").unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidArgument);
}

#[test]
fn server_stats_reports_a_dead_server_and_fails_when_closed() {
    let a = Memcached::start();
    let dead = {
        let m = Memcached::start();
        m.addr()
    }; // dropped: stopped
    let c = client(&[a.addr(), dead]);
    let stats = c.server_stats("").unwrap();
    assert!(stats[0].1.is_ok());
    assert!(stats[1].1.is_err());
    c.close();
    assert_eq!(c.server_stats("").unwrap_err().reason(), Reason::Closed);
}

#[test]
fn server_stats_keeps_its_connection_for_the_next_call() {
    let a = Memcached::start();
    let c = client(&[a.addr()]);
    let total = |c: &Client| -> String {
        let s = c.server_stats("").unwrap();
        let kv = s[0].1.as_ref().unwrap();
        kv.iter()
            .find(|(k, _)| k == "total_connections")
            .unwrap()
            .1
            .clone()
    };
    let first = total(&c);
    assert_eq!(
        total(&c),
        first,
        "the second call reuses the first one's connection"
    );
    assert_eq!(total(&c), first, "and the third");
    // A server error drops the connection; the next call dials again and works.
    assert!(c.server_stats("nope").unwrap()[0].1.is_err());
    let after = total(&c);
    assert_ne!(after, first, "a new connection after the error");
    assert_eq!(total(&c), after);
    c.disconnect_idle();
    assert_ne!(total(&c), after, "disconnect_idle closes it too");
}
