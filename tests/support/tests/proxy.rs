//! Tests for the fault-injecting proxy, observed through the raw client.

use std::time::{Duration, Instant};

use fae_testkit::{Fault, FaultProxy, GARBAGE, Memcached, raw, wait_until};

const VERSION: &[u8] = b"version\r\n";
/// `VERSION 1.6.18\r\n`
const VERSION_REPLY_LEN: usize = 16;

fn setup() -> (Memcached, FaultProxy) {
    let mc = Memcached::builder().start();
    let proxy = FaultProxy::start(&mc.addr());
    (mc, proxy)
}

fn timed(conn: &mut raw::Conn) -> (Duration, Vec<u8>) {
    let t = Instant::now();
    let r = conn
        .request(VERSION, b"\r\n")
        .expect("version through proxy");
    (t.elapsed(), r)
}

#[test]
fn pass_through_and_counters() {
    let (mc, proxy) = setup();
    assert_eq!(proxy.upstream(), mc.addr());
    assert_eq!(proxy.addr(), format!("127.0.0.1:{}", proxy.port()));
    assert_eq!((proxy.accepted(), proxy.active()), (0, 0));

    raw::set(&proxy.addr(), "k", 3, b"via proxy");
    assert_eq!(raw::get(&mc.addr(), "k"), Some((3, b"via proxy".to_vec())));
    assert_eq!(
        raw::get(&proxy.addr(), "k"),
        Some((3, b"via proxy".to_vec()))
    );

    let mut a = raw::Conn::connect(&proxy.addr()).unwrap();
    let mut b = raw::Conn::connect(&proxy.addr()).unwrap();
    assert_eq!(timed(&mut a).1, b"VERSION 1.6.18\r\n");
    assert_eq!(timed(&mut b).1, b"VERSION 1.6.18\r\n");
    assert!(wait_until(Duration::from_secs(2), || proxy.accepted() == 4));
    assert!(wait_until(Duration::from_secs(2), || proxy.active() == 2));
    drop(a);
    drop(b);
    assert!(wait_until(Duration::from_secs(2), || proxy.active() == 0));
    assert_eq!(proxy.accepted(), 4);

    // Big values are forwarded intact in both directions.
    let big = vec![b'z'; 300_000];
    raw::set(&proxy.addr(), "big", 0, &big);
    assert_eq!(raw::get(&proxy.addr(), "big"), Some((0, big)));
}

#[test]
fn delay_applies_to_existing_connections() {
    let (_mc, proxy) = setup();
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    let (fast, _) = timed(&mut conn);
    assert!(fast < Duration::from_millis(150), "{fast:?}");

    proxy.set_fault(Fault::Delay(Duration::from_millis(200)));
    assert_eq!(proxy.fault(), Fault::Delay(Duration::from_millis(200)));
    let (slow, reply) = timed(&mut conn);
    assert_eq!(reply, b"VERSION 1.6.18\r\n");
    assert!(slow >= Duration::from_millis(200), "{slow:?}");

    proxy.set_fault(Fault::None);
    let (fast, _) = timed(&mut conn);
    assert!(fast < Duration::from_millis(150), "{fast:?}");
}

#[test]
fn delay_every_nth_is_deterministic() {
    let (_mc, proxy) = setup();
    let delay = Duration::from_millis(250);
    proxy.set_fault(Fault::DelayEveryNth {
        delay,
        every_nth: 3,
    });
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    let slow: Vec<bool> = (0..6).map(|_| timed(&mut conn).0 >= delay).collect();
    assert_eq!(slow, [false, false, true, false, false, true]);
}

#[test]
fn black_hole_times_out_then_recovers() {
    let (_mc, proxy) = setup();
    proxy.set_fault(Fault::BlackHole);
    let mut conn = raw::Conn::connect_timeout(&proxy.addr(), Duration::from_millis(300)).unwrap();
    let err = conn.request(VERSION, b"\r\n").unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.partial().is_empty());

    // The swallowed request is gone; new requests on the same connection
    // work once the fault is lifted.
    proxy.set_fault(Fault::None);
    conn.set_timeout(Duration::from_secs(2));
    assert_eq!(timed(&mut conn).1, b"VERSION 1.6.18\r\n");
}

#[test]
fn black_hole_holds_connections_even_without_upstream() {
    let (mc, proxy) = setup();
    mc.kill().unwrap();
    proxy.set_fault(Fault::BlackHole);
    let err =
        raw::try_command(&proxy.addr(), VERSION, b"\r\n", Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[test]
fn dead_upstream_resets_clients() {
    let (mc, proxy) = setup();
    mc.kill().unwrap();
    let err =
        raw::try_command(&proxy.addr(), VERSION, b"\r\n", Duration::from_secs(2)).unwrap_err();
    assert!(err.is_reset() || err.is_eof(), "{err}");
}

#[test]
fn reset_on_accept() {
    let (_mc, proxy) = setup();
    let mut established = raw::Conn::connect(&proxy.addr()).unwrap();
    // Only connections the proxy has accepted are "established" for it.
    assert!(wait_until(Duration::from_secs(1), || proxy.accepted() == 1));
    proxy.set_fault(Fault::ResetOnAccept);
    let err =
        raw::try_command(&proxy.addr(), VERSION, b"\r\n", Duration::from_secs(2)).unwrap_err();
    assert!(err.is_reset() || err.is_eof(), "{err}");
    assert!(wait_until(Duration::from_secs(1), || proxy.accepted() == 2));
    // Established connections are unaffected.
    assert_eq!(timed(&mut established).1, b"VERSION 1.6.18\r\n");
}

#[test]
fn reset_on_data() {
    let (_mc, proxy) = setup();
    proxy.set_fault(Fault::ResetOnData);
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    let err = conn.request(VERSION, b"\r\n").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(wait_until(Duration::from_secs(1), || proxy.active() == 0));
}

#[test]
fn truncate_gives_a_short_reply_then_eof() {
    let (_mc, proxy) = setup();
    proxy.set_fault(Fault::Truncate { after: 5 });
    let err =
        raw::try_command(&proxy.addr(), VERSION, b"\r\n", Duration::from_secs(2)).unwrap_err();
    assert!(err.is_eof(), "{err}");
    assert_eq!(err.partial(), b"VERSI");

    // Counted across replies on one connection: 16 + 4 bytes.
    proxy.set_fault(Fault::Truncate { after: 20 });
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    assert_eq!(timed(&mut conn).1, b"VERSION 1.6.18\r\n");
    let err = conn.request(VERSION, b"\r\n").unwrap_err();
    assert!(err.is_eof(), "{err}");
    assert_eq!(err.partial(), b"VERS");
}

#[test]
fn garbage_replaces_replies() {
    let (mc, proxy) = setup();
    proxy.set_fault(Fault::Garbage);
    let reply = raw::command(&proxy.addr(), b"set k 0 0 1\r\nx\r\n", b"\r\n");
    assert_eq!(reply, GARBAGE);
    // Nothing reached the server.
    assert_eq!(raw::get(&mc.addr(), "k"), None);
}

#[test]
fn slow_drip_takes_n_intervals() {
    let (_mc, proxy) = setup();
    let interval = Duration::from_millis(20);
    proxy.set_fault(Fault::SlowDrip { interval });
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    let (took, reply) = timed(&mut conn);
    assert_eq!(reply, b"VERSION 1.6.18\r\n");
    assert!(took >= interval * VERSION_REPLY_LEN as u32, "{took:?}");

    // Bytes really arrive one at a time.
    conn.send(VERSION).unwrap();
    let first = conn.read_exact(1).unwrap();
    assert_eq!(first, b"V");
    let early = conn.read_for(Duration::from_millis(30));
    assert!(early.len() < 5, "{early:?}");
}

#[test]
fn refuse_then_reopen_on_the_same_port() {
    let (_mc, proxy) = setup();
    let mut established = raw::Conn::connect(&proxy.addr()).unwrap();
    let addr = proxy.addr();
    proxy.set_fault(Fault::Refuse);
    let err = raw::Conn::connect(&addr).unwrap_err();
    assert!(err.is_refused(), "{err}");
    assert_eq!(timed(&mut established).1, b"VERSION 1.6.18\r\n");

    proxy.set_fault(Fault::None);
    assert_eq!(proxy.addr(), addr);
    assert_eq!(
        raw::try_version(&addr, Duration::from_secs(2)).unwrap(),
        "1.6.18"
    );
}

#[test]
fn reset_all_breaks_established_connections() {
    let (_mc, proxy) = setup();
    let mut conn = raw::Conn::connect(&proxy.addr()).unwrap();
    timed(&mut conn);
    proxy.reset_all();
    let err = conn.request(VERSION, b"\r\n").unwrap_err();
    assert!(err.is_reset() || err.is_eof(), "{err}");
    assert!(wait_until(Duration::from_secs(1), || proxy.active() == 0));
}

#[test]
fn drop_closes_connections_promptly() {
    let (_mc, proxy) = setup();
    let mut conns: Vec<raw::Conn> = (0..3)
        .map(|_| raw::Conn::connect(&proxy.addr()).unwrap())
        .collect();
    for c in &mut conns {
        timed(c);
    }
    // One connection is mid-drip and one is black-holed when we drop.
    proxy.set_fault(Fault::SlowDrip {
        interval: Duration::from_millis(500),
    });
    conns[0].send(VERSION).unwrap();
    let addr = proxy.addr();
    let t = Instant::now();
    drop(proxy);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for c in &mut conns {
        let _ = c.read_for(Duration::from_secs(1));
        assert!(c.saw_eof() || c.send(VERSION).is_err());
    }
    let err = raw::Conn::connect(&addr).unwrap_err();
    assert!(err.is_refused(), "{err}");
}
