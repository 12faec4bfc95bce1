//! End-to-end: the client against real memcached processes (started by `fae-testkit`), in both
//! protocols, including dead servers, hostile keys and faults injected by the proxy.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fae_core::{Client, Config, ErrorKind, Reason, SetItem, StoreOutcome};
use fae_testkit::{Cluster, Fault, FaultProxy, Memcached, raw};

fn config(servers: &[String], protocol: &str, extra: &str) -> Config {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "protocol": "{protocol}", "timeouts": {{"connect_ms": 200, "io_ms": 300}}{extra}}}"#,
        list.join(",")
    );
    Config::from_json(&json).unwrap()
}

fn client(servers: &[String], protocol: &str) -> Client {
    Client::new(&config(servers, protocol, "")).unwrap()
}

const PROTOCOLS: [&str; 2] = ["meta", "text"];

#[test]
fn every_command_in_both_protocols() {
    let mc = Memcached::start();
    for proto in PROTOCOLS {
        let c = client(&[mc.addr()], proto);
        c.flush_all(0).unwrap();
        assert_eq!(c.get(b"k").unwrap(), None);
        c.set(b"k", b"hello", 42, 0).unwrap();
        let it = c.get(b"k").unwrap().unwrap();
        assert_eq!(
            (it.value.as_slice(), it.flags),
            (&b"hello"[..], 42),
            "{proto}"
        );

        // add / replace
        assert!(!c.add(b"k", b"x", 0, 0).unwrap());
        assert!(c.add(b"new", b"x", 0, 0).unwrap());
        assert!(c.replace(b"new", b"y", 7, 0).unwrap());
        assert!(!c.replace(b"absent", b"y", 0, 0).unwrap());
        assert_eq!(c.get(b"new").unwrap().unwrap().flags, 7);

        // append / prepend keep the flags
        assert!(c.append(b"k", b" world").unwrap());
        assert!(c.prepend(b"k", b">> ").unwrap());
        assert!(!c.append(b"absent", b"z").unwrap());
        let it = c.get(b"k").unwrap().unwrap();
        assert_eq!(
            (it.value.as_slice(), it.flags),
            (&b">> hello world"[..], 42)
        );

        // cas: stored, exists, not found
        let g = c.gets(b"k").unwrap().unwrap();
        assert_ne!(g.cas, 0);
        assert_eq!(
            c.cas(b"k", b"v2", 1, 0, g.cas).unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(
            c.cas(b"k", b"v3", 1, 0, g.cas).unwrap(),
            StoreOutcome::Exists
        );
        assert_eq!(
            c.cas(b"absent", b"v", 1, 0, 1).unwrap(),
            StoreOutcome::NotFound
        );

        // incr / decr
        c.set(b"n", b"10", 0, 0).unwrap();
        assert_eq!(c.incr(b"n", 5).unwrap(), Some(15));
        assert_eq!(c.decr(b"n", 100).unwrap(), Some(0), "decr stops at 0");
        assert_eq!(c.incr(b"absent", 1).unwrap(), None);
        c.set(b"n", &u64::MAX.to_string().into_bytes(), 0, 0)
            .unwrap();
        assert_eq!(c.incr(b"n", 2).unwrap(), Some(1), "incr wraps at 2^64");
        let e = c.incr(b"k", 1).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::ServerError,
            "incr of a non-number: {e}"
        );
        // The client still works after that error.
        assert!(c.get(b"k").unwrap().is_some());

        // touch / gat / gats
        assert!(c.touch(b"k", 100).unwrap());
        assert!(!c.touch(b"absent", 100).unwrap());
        assert_eq!(c.gat(b"k", 200).unwrap().unwrap().value, b"v2");
        assert!(c.gats(b"k", 200).unwrap().unwrap().cas != 0);
        assert_eq!(c.gat(b"absent", 1).unwrap(), None);

        // expiry really applies
        c.set(b"short", b"x", 0, 1).unwrap();
        assert!(c.get(b"short").unwrap().is_some());

        // delete
        assert!(c.delete(b"k").unwrap());
        assert!(!c.delete(b"k").unwrap());
        assert_eq!(c.get(b"k").unwrap(), None);

        // version / flush_all
        let v = c.version().unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].1.as_ref().unwrap().starts_with("1."), "{v:?}");
        c.flush_all(0).unwrap();
        assert_eq!(c.get(b"new").unwrap(), None);
    }
}

#[test]
fn value_sizes_from_0_bytes_to_1_mib() {
    let mc = Memcached::builder().max_item_size("2m").start();
    for proto in PROTOCOLS {
        let c = client(&[mc.addr()], proto);
        for size in [
            0usize,
            1,
            2,
            100,
            1023,
            1024,
            16 * 1024,
            100_000,
            512 * 1024,
            1024 * 1024,
        ] {
            let value: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let key = format!("size:{size}");
            c.set(key.as_bytes(), &value, 3, 0).unwrap();
            let it = c.get(key.as_bytes()).unwrap().unwrap();
            assert_eq!(it.value.len(), size, "{proto}");
            assert!(it.value == value, "{proto} size {size}: bytes differ");
        }
        let too_big = vec![0u8; 1024 * 1024 + 1];
        let e = c.set(b"big", &too_big, 0, 0).unwrap_err();
        assert_eq!(e.reason(), Reason::ValueTooLarge);
    }
}

#[test]
fn keys_land_on_the_server_route_for_names() {
    let cluster = Cluster::start(4);
    let c = client(&cluster.addrs(), "meta");
    for i in 0..200 {
        let key = format!("place:{i}");
        c.set(key.as_bytes(), b"v", 0, 0).unwrap();
        let server = c
            .route_for(fae_core::Op::Get, key.as_bytes())
            .unwrap()
            .remove(0);
        assert!(
            raw::get(&server, key.as_bytes()).is_some(),
            "{key} not on {server}"
        );
        for other in cluster.addrs().iter().filter(|a| **a != server) {
            assert!(
                raw::get(other, key.as_bytes()).is_none(),
                "{key} also on {other}"
            );
        }
    }
}

#[test]
fn multi_key_calls_across_four_servers_with_one_dead() {
    let cluster = Cluster::start(4);
    for proto in PROTOCOLS {
        let c = client(&cluster.addrs(), proto);
        let keys: Vec<String> = (0..100).map(|i| format!("{proto}:m:{i}")).collect();
        let values: Vec<String> = keys.iter().map(|k| format!("value of {k}")).collect();
        let items: Vec<SetItem<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| SetItem {
                key: k.as_bytes(),
                value: v.as_bytes(),
                flags: 5,
                exptime: 0,
            })
            .collect();
        let stored = c.set_multi(&items).unwrap();
        assert!(
            stored
                .iter()
                .all(|r| *r.as_ref().unwrap() == StoreOutcome::Stored)
        );

        // Every other key exists; misses come back as Ok(None), in input order.
        let mut asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        asked.push(b"never-set");
        asked.push(keys[0].as_bytes()); // duplicates are answered twice
        let got = c.get_multi(&asked).unwrap();
        for (i, r) in got.iter().enumerate().take(100) {
            let it = r.as_ref().unwrap().as_ref().unwrap();
            assert_eq!(it.value, values[i].as_bytes());
            assert_eq!(it.flags, 5);
        }
        assert_eq!(got[100].as_ref().unwrap(), &None);
        assert_eq!(
            got[101].as_ref().unwrap().as_ref().unwrap().value,
            values[0].as_bytes()
        );

        let deleted = c.delete_multi(&asked[..50]).unwrap();
        assert!(deleted.iter().all(|r| *r.as_ref().unwrap()));
        let got = c.get_multi(&asked[..100]).unwrap();
        assert_eq!(got.iter().filter(|r| matches!(r, Ok(None))).count(), 50);
    }

    // Kill one server: its keys fail, the others still answer, within the deadline.
    let dead = cluster.addrs()[1].clone();
    let c = client(&cluster.addrs(), "meta");
    let keys: Vec<String> = (0..100).map(|i| format!("d:{i}")).collect();
    for k in &keys {
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
    }
    cluster[1].kill().unwrap();
    let asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let t = Instant::now();
    let got = c.get_multi(&asked).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "took {:?}",
        t.elapsed()
    );
    let mut failed = 0;
    for (k, r) in keys.iter().zip(&got) {
        let server = c
            .route_for(fae_core::Op::Get, k.as_bytes())
            .unwrap()
            .remove(0);
        if server == dead {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.destination(), Some(dead.as_str()));
            assert!(e.should_failover(), "{e}");
            failed += 1;
        } else {
            assert_eq!(r.as_ref().unwrap().as_ref().unwrap().value, k.as_bytes());
        }
    }
    assert!(
        failed > 0 && failed < 100,
        "{failed} keys on the dead server"
    );

    // Restarted on the same port: empty, and reachable again.
    cluster[1].restart().unwrap();
    let got = c.get_multi(&asked).unwrap();
    assert!(
        got.iter().all(|r| r.is_ok()),
        "{:?}",
        got.iter().find(|r| r.is_err())
    );
}

#[test]
fn sixteen_threads_share_one_client() {
    let cluster = Cluster::start(4);
    let c = Arc::new(client(&cluster.addrs(), "meta"));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..300 {
                    let key = format!("t{t}:{i}");
                    let val = format!("{t}-{i}-{}", "x".repeat(i % 50));
                    c.set(key.as_bytes(), val.as_bytes(), t, 0).unwrap();
                    let it = c.get(key.as_bytes()).unwrap().unwrap();
                    assert_eq!(it.value, val.as_bytes());
                    assert_eq!(it.flags, t);
                    if i % 10 == 0 {
                        let keys: Vec<String> = (i.saturating_sub(9)..=i)
                            .map(|j| format!("t{t}:{j}"))
                            .collect();
                        let ks: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                        for r in c.get_multi(&ks).unwrap() {
                            assert!(r.unwrap().is_some());
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (addr, open, _idle) in c.connection_counts() {
        assert!(
            open <= 8,
            "{addr}: {open} connections, max_connections is 8"
        );
    }
}

#[test]
fn hostile_keys_are_rejected_and_nothing_stray_reaches_a_server() {
    let cluster = Cluster::start(2);
    for proto in PROTOCOLS {
        let c = client(&cluster.addrs(), proto);
        c.flush_all(0).unwrap();
        let long = vec![b'k'; 251];
        let hostile: Vec<&[u8]> = vec![
            b"",
            b"a b",
            b"a\r\nset evil 0 0 1\r\nx",
            b"a\rb",
            b"a\nb",
            b"a\0b",
            b"a\x7fb",
            b"\tkey",
            &long,
        ];
        for key in &hostile {
            for r in [
                c.set(key, b"x", 0, 0).err(),
                c.get(key).err(),
                c.delete(key).err(),
                c.incr(key, 1).err(),
                c.touch(key, 1).err(),
                c.add(key, b"x", 0, 0).err(),
                c.get_multi(&[b"fine", key]).err(),
                c.delete_multi(&[key]).err(),
                c.route_for(fae_core::Op::Get, key).err(),
            ] {
                assert_eq!(
                    r.map(|e| e.reason()),
                    Some(Reason::InvalidKey),
                    "{proto} {key:?}"
                );
            }
            let e = c
                .set_multi(&[SetItem {
                    key,
                    value: b"x",
                    flags: 0,
                    exptime: 0,
                }])
                .unwrap_err();
            assert_eq!(e.reason(), Reason::InvalidKey);
        }
        // A multi-key call with one bad key sends nothing at all.
        assert!(c.get_multi(&[b"fine", b"bad key"]).is_err());
        for addr in cluster.addrs() {
            let keys = raw::keys(&addr);
            assert!(keys.is_empty(), "{proto}: stray keys on {addr}: {keys:?}");
        }
    }
}

#[test]
fn binary_keys_travel_base64_in_meta_mode() {
    let mc = Memcached::start();
    let c = Client::new(&config(&[mc.addr()], "meta", r#", "binary_keys": true"#)).unwrap();
    let keys: [&[u8]; 3] = [b"with space", b"nul\0inside", b"\r\nset evil 0 0 1\r\nx"];
    for k in keys {
        c.set(k, k, 1, 0).unwrap();
    }
    for k in keys {
        assert_eq!(c.get(k).unwrap().unwrap().value, k);
    }
    let got = c.get_multi(&keys).unwrap();
    for (k, r) in keys.iter().zip(got) {
        assert_eq!(r.unwrap().unwrap().value, *k);
    }
    // Only the three base64-carried keys exist; no command was injected.
    let stored: HashSet<Vec<u8>> = raw::keys(&mc.addr()).into_iter().collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(!stored.contains(b"evil".as_slice()));
}

#[test]
fn a_closed_client_refuses_work() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], "meta");
    c.set(b"k", b"v", 0, 0).unwrap();
    c.close();
    assert!(c.is_closed());
    assert_eq!(c.get(b"k").unwrap_err().kind(), ErrorKind::ClientClosed);
    assert_eq!(
        c.set(b"k", b"v", 0, 0).unwrap_err().kind(),
        ErrorKind::ClientClosed
    );
    assert_eq!(
        c.get_multi(&[b"k"]).unwrap_err().kind(),
        ErrorKind::ClientClosed
    );
    assert_eq!(c.connection_counts()[0].1, 0, "idle connections closed");
}

#[test]
fn nothing_listening_is_a_fast_connect_error() {
    let mc = Memcached::start();
    let addr = mc.addr();
    drop(mc);
    let c = client(&[addr], "meta");
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert_eq!(e.reason(), Reason::ConnectRefused, "{e}");
    assert!(t.elapsed() < Duration::from_millis(100));
}

/// A reply cut off by a timeout leaves bytes in flight: that connection must be discarded, and
/// the next request must get its own answer on a new connection.
#[test]
fn a_timeout_mid_reply_discards_the_connection() {
    let mc = Memcached::start();
    let proxy = FaultProxy::start(&mc.addr());
    for proto in PROTOCOLS {
        let c = client(&[proxy.addr()], proto);
        let big = vec![b'v'; 64 * 1024];
        c.set(b"big", &big, 0, 0).unwrap();
        c.set(b"small", b"s", 0, 0).unwrap();
        let before = proxy.accepted();

        proxy.set_fault(Fault::SlowDrip {
            interval: Duration::from_millis(5),
        });
        let t = Instant::now();
        let e = c.get(b"big").unwrap_err();
        assert_eq!(e.reason(), Reason::Timeout, "{proto}: {e}");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(450),
            "{took:?}"
        );

        proxy.set_fault(Fault::None);
        // The answer is `small`'s own value, from a fresh connection.
        assert_eq!(c.get(b"small").unwrap().unwrap().value, b"s", "{proto}");
        assert_eq!(
            proxy.accepted(),
            before + 1,
            "{proto}: the cut connection was reused"
        );
        assert_eq!(c.get(b"big").unwrap().unwrap().value, big);
    }
}

#[test]
fn truncated_and_garbage_replies_are_protocol_or_reset_errors() {
    let mc = Memcached::start();
    let proxy = FaultProxy::start(&mc.addr());
    for proto in PROTOCOLS {
        let c = client(&[proxy.addr()], proto);
        c.set(b"k", &[b'x'; 1000], 0, 0).unwrap();

        proxy.set_fault(Fault::Truncate { after: 100 });
        let e = c.get(b"k").unwrap_err();
        assert!(
            matches!(
                e.reason(),
                Reason::Reset | Reason::Timeout | Reason::Protocol
            ),
            "{proto}: {e}"
        );

        proxy.set_fault(Fault::Garbage);
        let e = c.get(b"k").unwrap_err();
        assert!(
            matches!(e.reason(), Reason::Protocol | Reason::Reset),
            "{proto}: {e}"
        );

        proxy.set_fault(Fault::BlackHole);
        let t = Instant::now();
        let e = c.set(b"k", b"v", 0, 0).unwrap_err();
        // A new connection that never answers its validation `mn` is a connect timeout.
        assert!(
            matches!(e.reason(), Reason::Timeout | Reason::ConnectTimeout),
            "{proto}: {e}"
        );
        assert!(t.elapsed() < Duration::from_millis(450));

        proxy.set_fault(Fault::None);
        assert_eq!(
            c.get(b"k").unwrap().unwrap().value.len(),
            1000,
            "{proto}: recovers"
        );
    }
}

/// A server frozen by SIGSTOP (a GC pause, a swapped-out host) costs its own keys at most a
/// couple of deadlines: the breaker opens, its keys then fail fast with `tko`, other servers'
/// keys are unaffected, and after SIGCONT a probe lets it back in.
#[test]
fn a_paused_server_trips_the_breaker_and_recovers() {
    let cluster = Cluster::start(4);
    let c = client(&cluster.addrs(), "meta");
    let keys: Vec<String> = (0..40).map(|i| format!("p:{i}")).collect();
    for k in &keys {
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
    }
    let paused = cluster.addrs()[2].clone();
    cluster[2].pause().unwrap();
    let on_paused = |k: &String| c.route_for(fae_core::Op::Get, k.as_bytes()).unwrap()[0] == paused;
    let paused_keys: Vec<&String> = keys.iter().filter(|k| on_paused(k)).collect();

    // The pooled connection times out at io_ms (300, soft); the next request's new connection
    // fails validation at connect_ms (200): a stopped server's kernel still accepts the TCP
    // handshake, and a connect timeout is a hard failure that opens the breaker.
    let mut timed_out = 0;
    for k in &paused_keys {
        let t = Instant::now();
        let e = c.get(k.as_bytes()).unwrap_err();
        let took = t.elapsed();
        if e.reason() == Reason::Tko {
            assert!(
                took < Duration::from_millis(5),
                "tko must not touch a socket: {took:?}"
            );
            break;
        }
        assert!(
            matches!(e.reason(), Reason::Timeout | Reason::ConnectTimeout),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(195) && took < Duration::from_millis(400),
            "{took:?}"
        );
        timed_out += 1;
    }
    assert!(
        timed_out <= 3,
        "{timed_out} timed-out requests before the breaker opened"
    );
    assert_eq!(
        c.breaker_states()[2].1,
        fae_core::pool::health::BreakerState::Open
    );

    for k in keys.iter().filter(|k| !on_paused(k)) {
        assert_eq!(c.get(k.as_bytes()).unwrap().unwrap().value, k.as_bytes());
    }
    let asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let t = Instant::now();
    let got = c.get_multi(&asked).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "open breaker: no waiting, {:?}",
        t.elapsed()
    );
    for (k, r) in keys.iter().zip(&got) {
        if on_paused(k) {
            assert_eq!(r.as_ref().unwrap_err().reason(), Reason::Tko);
        } else {
            assert_eq!(r.as_ref().unwrap().as_ref().unwrap().value, k.as_bytes());
        }
    }

    cluster[2].resume().unwrap();
    let t = Instant::now();
    let back = fae_testkit::wait_until(Duration::from_secs(3), || {
        paused_keys.iter().all(|k| {
            c.get(k.as_bytes())
                .is_ok_and(|v| v.is_some_and(|i| i.value == k.as_bytes()))
        })
    });
    assert!(back, "keys of the resumed server readable again");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "recovered in {:?}",
        t.elapsed()
    );
    assert_eq!(
        c.breaker_states()[2].1,
        fae_core::pool::health::BreakerState::Closed
    );
    let s = c.stats();
    let d = &s["destinations"][&paused];
    assert_eq!(d["breaker_opened"], 1, "{d}");
    assert_eq!(d["breaker_closed"], 1, "{d}");
    assert!(d["tko_rejected"].as_u64().unwrap() > 0, "{d}");
}

/// A multi-key read goes out as one `get k1 k2 …` line per server: 2 000 keys of 240 bytes
/// make a ~480 KB line, which memcached must (and does) take whole.
#[test]
fn a_huge_multi_get_line_is_answered_whole() {
    let mc = Memcached::start();
    for proto in PROTOCOLS {
        let c = client(&[mc.addr()], proto);
        let keys: Vec<String> = (0..2000).map(|i| format!("{proto}{i:0>236}")).collect();
        for k in keys.iter().step_by(2) {
            c.set(k.as_bytes(), &k.as_bytes()[..8], 0, 0).unwrap();
        }
        let asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let got = c.get_multi(&asked).unwrap();
        for (i, (k, r)) in keys.iter().zip(got).enumerate() {
            let r = r.unwrap();
            if i % 2 == 0 {
                assert_eq!(r.unwrap().value, &k.as_bytes()[..8]);
            } else {
                assert!(r.is_none());
            }
        }
    }
}

/// Graceful close: a request already running finishes; new ones fail at once with `closed`;
/// then every connection is closed, including the one that request comes back with.
#[test]
fn close_lets_in_flight_requests_finish_then_closes_everything() {
    let mc = Memcached::start();
    let proxy = FaultProxy::start(&mc.addr());
    let c = Arc::new(
        Client::new(&config(
            &[proxy.addr()],
            "meta",
            r#", "max_connections": 2"#,
        ))
        .unwrap(),
    );
    c.set(b"k", b"v", 0, 0).unwrap();
    c.set(b"k2", b"v2", 0, 0).unwrap();
    proxy.set_fault(Fault::Delay(Duration::from_millis(150)));
    let slow = {
        let c = Arc::clone(&c);
        std::thread::spawn(move || c.get(b"k"))
    };
    std::thread::sleep(Duration::from_millis(30)); // the get is now waiting on the delayed reply
    let t = Instant::now();
    let drained = c.close_within(Duration::from_secs(1));
    assert!(
        drained,
        "the in-flight request finished within the grace period"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "close waited for it: {:?}",
        t.elapsed()
    );
    assert_eq!(
        slow.join().unwrap().unwrap().unwrap().value,
        b"v",
        "it got its answer"
    );
    assert_eq!(c.get(b"k2").unwrap_err().reason(), Reason::Closed);
    assert_eq!(c.connection_counts()[0].1, 0, "every connection closed");
}
