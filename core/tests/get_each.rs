//! `Client::get_multi_each`: a multi-get whose values are handed to the caller straight from
//! the connection's buffer. Against real memcached (both protocols): the same answers as
//! `get_multi` (hits, misses, flags, CAS, placing keys), every index exactly once, values
//! larger than the read buffer, a lease stub and an empty value; a dead server's keys fail
//! alone. Against the scripted hostile server: a reply broken mid-value or followed by an
//! unasked block never hands out a made-up or partial value as a hit.
//!
//! `Client::get_with`, the single-key form: the same answers as `get`, `gets` and
//! `get_routed`, also when threads share the client (coalesced gets) and when the server
//! breaks its reply.

use base64::Engine as _;
use fae_core::lease::Lease;
use fae_core::{Client, Config, Error, Item, Reason};
use fae_testkit::{Cluster, EVIL, HostileServer, Memcached, Misbehave};

fn client(servers: &[String], protocol: &str) -> Client {
    client_with(servers, protocol, "")
}

fn client_with(servers: &[String], protocol: &str, extra: &str) -> Client {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "protocol": "{protocol}"{extra},
            "health": {{"tko_soft_threshold": 1000000, "background": false}},
            "timeouts": {{"connect_ms": 300, "io_ms": 1000}}}}"#,
        list.join(",")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

/// Each index's result as handed out, checking that every index comes exactly once.
fn each(
    c: &Client,
    keys: &[&[u8]],
    places: Option<&[&[u8]]>,
    cas: bool,
) -> Vec<Result<Option<Item>, Error>> {
    let mut got: Vec<Option<Result<Option<Item>, Error>>> = vec![None; keys.len()];
    c.get_multi_each(keys, places, cas, None, &mut |i, r| {
        assert!(got[i].is_none(), "index {i} handed out twice");
        got[i] = Some(r.map(|o| o.map(|it| it.to_item())));
    })
    .unwrap();
    got.into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| panic!("index {i} never handed out")))
        .collect()
}

fn keys(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{tag}:{i}").into_bytes()).collect()
}

#[test]
fn same_answers_as_get_multi_in_both_protocols() {
    let cluster = Cluster::start(4);
    let addrs = cluster.addrs();
    for proto in ["meta", "text"] {
        let c = client(&addrs, proto);
        c.flush_all(0).unwrap();
        let owned = keys(200, proto);
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        // Every other key stored, with its own flags and size (some empty).
        for (i, k) in refs.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let v = vec![b'a' + (i % 26) as u8; i * 7 % 300];
            c.set(k, &v, i as u32, 0).unwrap();
        }
        for cas in [false, true] {
            let want = c.get_multi_opts(&refs, cas, None).unwrap();
            let got = each(&c, &refs, None, cas);
            assert_eq!(got, want, "{proto} cas={cas}");
            let hits = got.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
            assert_eq!(hits, 100, "{proto}");
            for r in &got {
                if let Ok(Some(it)) = r {
                    assert_eq!(it.cas != 0, cas, "{proto}: CAS only when asked");
                }
            }
        }
        // Placing keys: all on the server of "one", which holds none of these keys.
        let places: Vec<&[u8]> = vec![b"one"; refs.len()];
        let want = c.get_multi_routed(&refs, &places, false).unwrap();
        assert_eq!(each(&c, &refs, Some(&places), false), want, "{proto}");
        // A bad key fails the call before any I/O; mismatched lengths too.
        let bad: Vec<&[u8]> = vec![b"ok", b"has space"];
        let mut called = false;
        let e = c
            .get_multi_each(&bad, None, false, None, &mut |_, _| called = true)
            .unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidKey, "{proto}");
        assert!(!called);
        let e = c
            .get_multi_each(&refs, Some(&places[..1]), false, None, &mut |_, _| ())
            .unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidArgument, "{proto}");
    }
}

/// Values far larger than the connection's 16 KiB read buffer, in one server's reply: the
/// buffer grows and moves while it holds the values read so far.
#[test]
fn large_values_survive_the_buffer_moving() {
    let mc = Memcached::builder().max_item_size("2m").start();
    for proto in ["meta", "text"] {
        let c = client(&[mc.addr()], proto);
        let owned = keys(40, "big");
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let value = |i: usize| -> Vec<u8> {
            (0..(i * 37_000 % 300_000 + 1))
                .map(|j| (j * 31 + i) as u8)
                .collect()
        };
        for (i, k) in refs.iter().enumerate() {
            c.set(k, &value(i), 0, 0).unwrap();
        }
        for (i, r) in each(&c, &refs, None, false).into_iter().enumerate() {
            assert_eq!(r.unwrap().unwrap().value, value(i), "{proto} key {i}");
        }
        // The connection is clean for the next request.
        assert_eq!(c.get(refs[3]).unwrap().unwrap().value, value(3));
    }
}

/// A multi-get reads text on a meta pool, where a lease stub looks like an empty value: it
/// is asked again over meta and is a miss; a real empty value stays a hit.
#[test]
fn a_lease_stub_is_a_miss_and_an_empty_value_a_hit() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], "meta");
    let Lease::Miss { token } = c.get_or_lease(b"stub").unwrap() else {
        panic!("the first reader wins the lease")
    };
    assert_ne!(token, 0);
    c.set(b"empty", b"", 0, 0).unwrap();
    c.set(b"full", b"v", 5, 0).unwrap();
    let refs: Vec<&[u8]> = vec![b"stub", b"empty", b"full", b"none"];
    let got = each(&c, &refs, None, false);
    assert_eq!(got[0], Ok(None));
    assert_eq!(got[1].as_ref().unwrap().as_ref().unwrap().value, b"");
    let full = got[2].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(
        (full.value.as_slice(), full.flags, full.cas),
        (&b"v"[..], 5, 0)
    );
    assert_eq!(got[3], Ok(None));
    assert_eq!(got, c.get_multi(&refs).unwrap());
}

/// A dead server's keys fail with its error; the other servers' keys are answered.
#[test]
fn a_dead_server_fails_only_its_keys() {
    for proto in ["meta", "text"] {
        let (a, b) = (Memcached::start(), Memcached::start());
        let c = client(&[a.addr(), b.addr()], proto);
        let owned = keys(50, proto);
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        for k in &refs {
            c.set(k, b"v", 0, 0).unwrap();
        }
        b.kill().unwrap();
        let got = each(&c, &refs, None, false);
        let ok = got.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        let failed = got.iter().filter(|r| r.is_err()).count();
        assert_eq!(ok + failed, refs.len(), "{proto}: no key missed");
        assert!(ok > 0 && failed > 0, "{proto}: {ok} ok, {failed} failed");
        // The live server's connection went back clean.
        let hits = |v: Vec<Result<Option<Item>, Error>>| -> Vec<Option<Item>> {
            v.into_iter().map(|r| r.ok().flatten()).collect()
        };
        assert_eq!(
            hits(each(&c, &refs, None, false)),
            hits(c.get_multi(&refs).unwrap())
        );
    }
}

fn hostile_pair() -> (HostileServer, HostileServer) {
    (HostileServer::start(), HostileServer::start())
}

/// The ways a reply can be broken that must fail its keys: every scripted behaviour but the
/// honest one and the slow but well-formed ones (another test's). A behaviour added to the
/// testkit is tested here until it is named below.
fn broken() -> impl Iterator<Item = Misbehave> {
    Misbehave::ALL.into_iter().filter(|m| {
        !matches!(
            m,
            Misbehave::Honest | Misbehave::Late | Misbehave::SlowDrip | Misbehave::Stall
        )
    })
}

/// Every way a server can break its reply: no made-up or partial value is ever a hit, the
/// honest server's keys are all answered, and a protocol error fails all of its server's
/// keys (values read before it too).
#[test]
fn broken_replies_never_hand_out_a_wrong_value() {
    // A multi-get reads over text (one `get` line per server) unless a key needs base64:
    // "meta" keys have a space, so that each key is its own `mg`.
    for proto in ["meta", "text"] {
        for how in broken() {
            let (a, b) = hostile_pair();
            let extra = if proto == "meta" {
                r#", "binary_keys": true"#
            } else {
                ""
            };
            let c = client_with(&[a.addr(), b.addr()], proto, extra);
            let tag = if proto == "meta" { "h h" } else { "h" };
            let owned = keys(30, tag);
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            for k in &refs {
                // The hostile server keeps keys as sent: a base64 key under its base64 form.
                let sent = if proto == "meta" {
                    base64::engine::general_purpose::STANDARD
                        .encode(k)
                        .into_bytes()
                } else {
                    k.to_vec()
                };
                a.put(&sent, 1, b"good");
                b.put(&sent, 1, b"good");
            }
            // The third key command of server a misbehaves (text: its one `get` line).
            if proto == "meta" {
                a.script([Misbehave::Honest, Misbehave::Honest, how]);
            } else {
                a.script([how]);
            }
            let got = each(&c, &refs, None, false);
            let mut failed = 0;
            for (i, r) in got.iter().enumerate() {
                match r {
                    Ok(Some(it)) => {
                        assert_eq!(it.value, b"good", "{proto} {how:?} key {i}");
                        assert!(!it.value.windows(EVIL.len()).any(|w| w == EVIL));
                    }
                    Ok(None) => panic!("{proto} {how:?}: key {i} missed"),
                    Err(e) => {
                        failed += 1;
                        if e.reason() == Reason::Protocol {
                            // A protocol error taints its server's whole reply.
                            for (j, r) in got.iter().enumerate() {
                                if c.route_for(fae_core::Op::Get, refs[j])
                                    == c.route_for(fae_core::Op::Get, refs[i])
                                {
                                    assert!(r.is_err(), "{proto} {how:?}: key {j} kept");
                                }
                            }
                        }
                    }
                }
            }
            assert!(
                failed > 0,
                "{proto} {how:?}: the broken reply failed nothing"
            );
            assert!(
                failed < refs.len(),
                "{proto} {how:?}: the honest server failed"
            );
        }
    }
}

/// `get_with`'s answer as an owned item.
fn with(c: &Client, key: &[u8], place: Option<&[u8]>, cas: bool) -> Result<Option<Item>, Error> {
    c.get_with(key, place, cas, |r| r.map(|o| o.map(|it| it.to_item())))
}

#[test]
fn get_with_answers_as_get_gets_and_get_routed() {
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    for proto in ["meta", "text"] {
        let c = client(&addrs, proto);
        c.flush_all(0).unwrap();
        let big = vec![b'b'; 300_000];
        c.set(b"small", b"v", 7, 0).unwrap();
        c.set(b"empty", b"", 0, 0).unwrap();
        c.set(b"big", &big, 9, 0).unwrap();
        for key in [&b"small"[..], b"empty", b"big", b"none"] {
            assert_eq!(with(&c, key, None, false), c.get(key), "{proto} {key:?}");
            assert_eq!(with(&c, key, None, true), c.gets(key), "{proto} {key:?}");
            let routed = with(&c, key, Some(b"elsewhere"), false);
            assert_eq!(routed, c.get_routed(b"elsewhere", key, false), "{proto}");
        }
        assert_eq!(with(&c, b"big", None, false).unwrap().unwrap().value, big);
        assert_ne!(with(&c, b"small", None, true).unwrap().unwrap().cas, 0);
        assert_eq!(with(&c, b"small", None, false).unwrap().unwrap().cas, 0);
        // A bad key fails before any I/O, as `get` does.
        let bad = with(&c, b"a b", None, false).unwrap_err();
        assert_eq!(bad.reason(), c.get(b"a b").unwrap_err().reason(), "{proto}");
        c.close();
        assert_eq!(
            with(&c, b"small", None, false).unwrap_err().reason(),
            Reason::Closed
        );
    }
}

/// A lease stub is a miss to a plain single-key read, and a dead server's error comes out.
#[test]
fn get_with_hides_a_lease_stub_and_reports_a_dead_server() {
    let mc = Memcached::start();
    let c = client(&[mc.addr()], "meta");
    let Lease::Miss { .. } = c.get_or_lease(b"stub").unwrap() else {
        panic!("the first reader wins the lease")
    };
    assert_eq!(with(&c, b"stub", None, false), Ok(None));
    assert_eq!(with(&c, b"stub", None, false), c.get(b"stub"));
    mc.kill().unwrap();
    assert!(with(&c, b"stub", None, false).is_err());
}

/// Threads sharing a client take the coalescing path (a get may join another's flight):
/// every answer is still the key's own value.
#[test]
fn get_with_from_many_threads_gets_each_keys_own_value() {
    let mc = Memcached::start();
    let c = client_with(&[mc.addr()], "meta", r#", "stampede": {"coalesce": true}"#);
    for i in 0..20 {
        c.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), 0, 0)
            .unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..8 {
            let c = &c;
            s.spawn(move || {
                for n in 0..300 {
                    let i = (n + t) % 20;
                    let got = with(c, format!("k{i}").as_bytes(), None, false).unwrap();
                    assert_eq!(got.unwrap().value, format!("v{i}").into_bytes());
                }
            });
        }
    });
}

/// A single-key read of a server that breaks its reply never hands out a wrong value.
#[test]
fn get_with_never_hands_out_a_broken_reply() {
    for how in broken() {
        for proto in ["meta", "text"] {
            let h = HostileServer::start();
            let c = client(&[h.addr()], proto);
            h.put(b"k", 1, b"good");
            h.script([how]);
            match with(&c, b"k", None, false) {
                Ok(Some(it)) => assert_eq!(it.value, b"good", "{proto} {how:?}"),
                Ok(None) => panic!("{proto} {how:?}: a stored key missed"),
                Err(_) => {}
            }
            // The connection that carried the broken reply was not reused.
            assert_eq!(with(&c, b"k", None, false).unwrap().unwrap().value, b"good");
        }
    }
}
