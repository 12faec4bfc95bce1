//! TLS and authentication against real memcached servers the testkit starts with `-Z` (a
//! CA, server and client certificates generated per run) and `-Y` (an auth file): get, set and
//! multi-get over TLS, mutual TLS, session resumption on reconnect, certificate files re-read on
//! reload; and every way it can go wrong — wrong CA, expired certificate, wrong server name,
//! missing client certificate, wrong password, a plain client to a TLS server and a TLS client
//! to a plain one — each a clear error within the connect deadline, no breaker storm, no panic.
//! Last, a canary secret must appear in no error, log line, stats page or `route_for` output.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fae_core::pool::health::BreakerState;
use fae_core::{Client, Config, ErrorKind, Op, Reason};
use fae_testkit::{Memcached, raw};

use fae_testkit::certs::{Ca, ExtendedKeyUsagePurpose};

/// A CA with a server and a client certificate, as PEM files in a fresh directory.
struct Pki {
    dir: PathBuf,
    ca: Ca,
}

fn fresh_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("fae-tls-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Pki {
    fn new(name: &str) -> Pki {
        let pki = Pki {
            dir: fresh_dir(name),
            ca: Ca::new(&format!("fae test CA {name}")),
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca.pem).unwrap();
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn path_str(&self, file: &str) -> String {
        self.path(file).to_string_lossy().into_owned()
    }

    /// A leaf certificate `<stem>.pem` and key `<stem>.key` for `names` (DNS names; an IP
    /// literal becomes an IP SAN), valid now unless `expired`.
    fn leaf(&self, stem: &str, names: &[&str], client: bool, expired: bool) -> (PathBuf, PathBuf) {
        let usage = if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        };
        let (cert, key) = self.ca.leaf(names, Some(stem), &[usage], expired);
        let (c, k) = (
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        );
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    /// A TLS memcached whose certificate is for `localhost` and 127.0.0.1.
    fn server(&self, client_ca: bool) -> Memcached {
        self.server_with(&["localhost", "127.0.0.1"], false, client_ca, None)
    }

    fn server_with(
        &self,
        names: &[&str],
        expired: bool,
        client_ca: bool,
        auth: Option<(&str, &str)>,
    ) -> Memcached {
        let (c, k) = self.leaf("server", names, false, expired);
        let mut b = Memcached::builder().tls(c, k, client_ca.then(|| self.path("ca.pem")));
        if let Some((u, p)) = auth {
            b = b.auth(u, p);
        }
        b.start()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn config(servers: &[String], extra: &str) -> Config {
    let list: Vec<String> = servers.iter().map(|s| json_str(s)).collect();
    Config::from_json(&format!(
        r#"{{"servers": [{}], "timeouts": {{"connect_ms": 1000, "io_ms": 1000}}{extra}}}"#,
        list.join(",")
    ))
    .unwrap()
}

fn tls_section(pki: &Pki, more: &str) -> String {
    format!(
        r#", "tls": {{"ca_file": {}{more}}}"#,
        json_str(&pki.path_str("ca.pem"))
    )
}

/// Connections the server accepted so far (on its plain control listener, which counts too).
fn total_connections(mc: &Memcached) -> u64 {
    let addr = mc.control_addr().expect("a TLS server");
    raw::stats(&addr)["total_connections"].parse().unwrap()
}

/// [`total_connections`] once every connection made so far is counted. memcached counts a
/// connection when a worker thread takes it over from the listener, which can come a while
/// after the client has already given up on it (a refused handshake); the count has settled
/// when two reads 20 ms apart differ only by the second read's own connection.
fn settled_connections(mc: &Memcached) -> u64 {
    let mut last = total_connections(mc);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let now = total_connections(mc);
        if now == last + 1 {
            return now;
        }
        last = now;
    }
    panic!("memcached's connection count never settled");
}

fn state(c: &Client, server: &str) -> BreakerState {
    c.breaker_states()
        .into_iter()
        .find(|(a, _)| a == server)
        .unwrap()
        .1
}

#[test]
fn get_set_and_multi_get_over_tls_in_both_protocols() {
    let pki = Pki::new("basic");
    let mc = pki.server(false);
    for protocol in ["meta", "text"] {
        let c = Client::new(&config(
            &[mc.addr()],
            &format!(r#", "protocol": "{protocol}"{}"#, tls_section(&pki, "")),
        ))
        .unwrap();
        c.set(b"greeting", b"hello over tls", 7, 0).unwrap();
        let item = c.get(b"greeting").unwrap().unwrap();
        assert_eq!(
            (item.value.as_slice(), item.flags),
            (&b"hello over tls"[..], 7)
        );
        // A value larger than one TLS record (16 KiB) and the read buffer.
        let big = vec![b'x'; 300_000];
        c.set(b"big", &big, 0, 0).unwrap();
        assert_eq!(c.get(b"big").unwrap().unwrap().value, big);
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("{protocol}:{i}").into_bytes())
            .collect();
        for k in &keys {
            c.set(k, k, 0, 0).unwrap();
        }
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let got = c.get_multi(&refs).unwrap();
        for (k, r) in keys.iter().zip(got) {
            assert_eq!(&r.unwrap().unwrap().value, k);
        }
        assert_eq!(c.incr(b"n", 1).unwrap(), None);
        c.set(b"n", b"41", 0, 0).unwrap();
        assert_eq!(c.incr(b"n", 1).unwrap(), Some(42));
        assert!(c.delete(b"n").unwrap());
    }
    // The plain listener sees what the TLS one stored: it is one server.
    assert_eq!(
        raw::get(&mc.control_addr().unwrap(), "greeting").map(|v| v.1),
        Some(b"hello over tls".to_vec())
    );
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new("mtls");
    let mc = pki.server(true);
    let (cert, key) = pki.leaf("client", &["fae-client"], true, false);
    let more = format!(
        r#", "cert_file": {}, "key_file": {}"#,
        json_str(&cert.to_string_lossy()),
        json_str(&key.to_string_lossy())
    );
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, &more))).unwrap();
    c.set(b"k", b"mutual", 0, 0).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"mutual");

    // Without a client certificate the server ends the handshake.
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, ""))).unwrap();
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(e.kind(), ErrorKind::AuthFailed, "{e}");
    assert!(!e.is_retryable());
}

#[test]
fn reconnects_resume_the_tls_session() {
    let pki = Pki::new("resume");
    let mc = pki.server(false);
    let c = Client::new(&config(
        &[mc.addr()],
        &format!(r#", "max_connections": 1{}"#, tls_section(&pki, "")),
    ))
    .unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();
    for _ in 0..3 {
        c.disconnect_idle();
        assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
    }
    let d = &c.stats()["destinations"][&mc.addr()];
    assert_eq!(d["connections_opened"], 4, "{d}");
    assert!(d["tls_resumed"].as_u64().unwrap() >= 3, "{d}");
}

/// A client whose every dial fails on TLS or login: the error, its time, and proof that the
/// server is not asked again (no reconnect loop, no breaker).
fn assert_refused(c: &Client, mc: &Memcached, reason: Reason, needle: &str) -> fae_core::Error {
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(e.reason(), reason, "{e}");
    assert_eq!(e.kind(), ErrorKind::AuthFailed);
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(needle), "{e}");
    assert_eq!(e.destination(), Some(mc.addr().as_str()));
    let before = mc.control_addr().map(|_| settled_connections(mc));
    for _ in 0..20 {
        let again = c.get(b"k").unwrap_err();
        assert_eq!(
            again.reason(),
            reason,
            "fails fast with the same error: {again}"
        );
        assert!(c.set(b"k", b"v", 0, 0).is_err());
    }
    if let Some(before) = before {
        // +1: the stats connection of this check itself.
        assert_eq!(
            total_connections(mc),
            before + 1,
            "no new connection was tried"
        );
    }
    assert_eq!(
        state(c, &mc.addr()),
        BreakerState::Closed,
        "no breaker storm"
    );
    e
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let (pki, other) = (Pki::new("ca1"), Pki::new("ca2"));
    let mc = pki.server(false);
    let c = Client::new(&config(&[mc.addr()], &tls_section(&other, ""))).unwrap();
    assert_refused(&c, &mc, Reason::TlsFailed, "UnknownIssuer");
}

#[test]
fn an_expired_certificate_is_refused() {
    let pki = Pki::new("expired");
    let mc = pki.server_with(&["localhost", "127.0.0.1"], true, false, None);
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, ""))).unwrap();
    assert_refused(&c, &mc, Reason::TlsFailed, "xpired");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let pki = Pki::new("name");
    let mc = pki.server_with(&["cache.example"], false, false, None);
    // By address (127.0.0.1, not in the certificate) and by a wrong server_name.
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, ""))).unwrap();
    assert_refused(&c, &mc, Reason::TlsFailed, "not valid for name");
    let c = Client::new(&config(
        &[mc.addr()],
        &tls_section(&pki, r#", "server_name": "other.example""#),
    ))
    .unwrap();
    assert_refused(&c, &mc, Reason::TlsFailed, "not valid for name");
    // The right server_name works.
    let c = Client::new(&config(
        &[mc.addr()],
        &tls_section(&pki, r#", "server_name": "cache.example""#),
    ))
    .unwrap();
    c.set(b"k", b"named", 0, 0).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"named");
    // verify: false encrypts without checking the certificate.
    let c = Client::new(&config(&[mc.addr()], r#", "tls": {"verify": false}"#)).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"named");
}

#[test]
fn a_plain_client_to_a_tls_server_fails_clearly() {
    let pki = Pki::new("plain2tls");
    let mc = pki.server(false);
    let c = Client::new(&config(&[mc.addr()], "")).unwrap();
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(e.kind(), ErrorKind::ConnectFailed, "{e}");
    assert!(
        e.to_string().contains("\"tls\""),
        "names the likely cause: {e}"
    );
}

#[test]
fn a_tls_client_to_a_plain_server_fails_clearly() {
    let pki = Pki::new("tls2plain");
    let mc = Memcached::builder().start();
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, ""))).unwrap();
    let t = Instant::now();
    let e = c.get(b"k").unwrap_err();
    // Bounded by connect_ms (1 s) whatever the server does with a ClientHello.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(
        matches!(e.reason(), Reason::TlsFailed | Reason::ConnectTimeout),
        "{e}"
    );
    assert!(e.to_string().contains("-Z"), "names the likely cause: {e}");
}

#[test]
fn login_with_password_file_or_env_and_a_wrong_password() {
    let dir = fresh_dir("auth");
    let mc = Memcached::builder().auth("app", "s3cret-pw").start();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let by_file = format!(
        r#", "auth": {{"username": "app", "password_file": {}}}"#,
        json_str(&pw.to_string_lossy())
    );
    for protocol in ["meta", "text"] {
        let c = Client::new(&config(
            &[mc.addr()],
            &format!(r#", "protocol": "{protocol}"{by_file}"#),
        ))
        .unwrap();
        c.set(b"k", b"authenticated", 0, 0).unwrap();
        assert_eq!(c.get(b"k").unwrap().unwrap().value, b"authenticated");
        let got = c.get_multi(&[b"k", b"missing"]).unwrap();
        assert!(got[0].as_ref().unwrap().is_some() && got[1].as_ref().unwrap().is_none());
    }
    // SAFETY: std serialises its own environment access (the client reads the variable
    // with std::env::var); nothing in this test binary reads it through libc, and the name
    // is unique to this test.
    unsafe { std::env::set_var("FAE_TLS_TEST_PW", "s3cret-pw") };
    let c = Client::new(&config(
        &[mc.addr()],
        r#", "auth": {"username": "app", "password_env": "FAE_TLS_TEST_PW"}"#,
    ))
    .unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"authenticated");

    std::fs::write(&pw, "wrong\n").unwrap();
    let c = Client::new(&config(&[mc.addr()], &by_file)).unwrap();
    let e = assert_refused(
        &c,
        &mc,
        Reason::AuthFailed,
        "rejected the login of user \"app\"",
    );
    assert!(!e.to_string().contains("wrong"), "{e}");

    // No auth against a server that requires it: refused as well, naming the setting.
    let c = Client::new(&config(&[mc.addr()], "")).unwrap();
    assert_refused(&c, &mc, Reason::AuthFailed, "configure \"auth\"");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_login_is_not_sent_to_a_server_without_auth() {
    let dir = fresh_dir("noauth");
    let mc = Memcached::builder().start();
    let pw = dir.join("pw");
    std::fs::write(&pw, "never-stored").unwrap();
    let c = Client::new(&config(
        &[mc.addr()],
        &format!(
            r#", "auth": {{"username": "app", "password_file": {}}}"#,
            json_str(&pw.to_string_lossy())
        ),
    ))
    .unwrap();
    c.set(b"k", b"v", 0, 0).unwrap();
    // The login goes out as a `set`: a server without -Y would have stored the password.
    assert_eq!(raw::get(&mc.addr(), "fae_auth"), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_and_login_together() {
    let pki = Pki::new("both");
    let mc = pki.server_with(&["127.0.0.1"], false, false, Some(("app", "pw-both")));
    // SAFETY: as in `login_with_password_file_or_env_and_a_wrong_password`.
    unsafe { std::env::set_var("FAE_TLS_TEST_PW_BOTH", "pw-both") };
    let c = Client::new(&config(
        &[mc.addr()],
        &format!(
            r#"{}, "auth": {{"username": "app", "password_env": "FAE_TLS_TEST_PW_BOTH"}}"#,
            tls_section(&pki, "")
        ),
    ))
    .unwrap();
    c.set(b"k", b"both", 0, 0).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"both");
}

#[test]
fn a_reload_reads_the_certificate_files_again() {
    let (pki, other) = (Pki::new("reload1"), Pki::new("reload2"));
    let mc = pki.server(false);
    let ca = fresh_dir("reload-ca").join("ca.pem");
    std::fs::copy(other.path("ca.pem"), &ca).unwrap();
    let cfg = config(
        &[mc.addr()],
        &format!(
            r#", "tls": {{"ca_file": {}}}"#,
            json_str(&ca.to_string_lossy())
        ),
    );
    let c = Client::new(&cfg).unwrap();
    assert_eq!(c.get(b"k").unwrap_err().reason(), Reason::TlsFailed);
    // The right CA arrives under the same name; the same config text, loaded again, reads it.
    std::fs::copy(pki.path("ca.pem"), &ca).unwrap();
    let reloaded = config(
        &[mc.addr()],
        &format!(
            r#", "tls": {{"ca_file": {}}}"#,
            json_str(&ca.to_string_lossy())
        ),
    );
    assert_ne!(cfg, reloaded, "new file contents make a different config");
    c.reload(&reloaded).unwrap();
    c.set(b"k", b"rotated", 0, 0).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"rotated");
    // Loading unchanged files keeps the destination and its warm connection.
    let opened = c.stats()["destinations"][&mc.addr()]["connections_opened"].clone();
    c.reload(&config(
        &[mc.addr()],
        &format!(
            r#", "tls": {{"ca_file": {}}}"#,
            json_str(&ca.to_string_lossy())
        ),
    ))
    .unwrap();
    c.get(b"k").unwrap();
    assert_eq!(
        c.stats()["destinations"][&mc.addr()]["connections_opened"],
        opened
    );
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

#[test]
fn bad_tls_and_auth_settings_are_config_errors_naming_the_key() {
    let pki = Pki::new("badcfg");
    let bad = |extra: &str| {
        Config::from_json(&format!(r#"{{"servers": ["127.0.0.1:1"]{extra}}}"#)).unwrap_err()
    };
    let e = bad(r#", "tls": {"ca_file": "/nonexistent/ca.pem"}"#);
    assert_eq!(e.reason(), Reason::InvalidConfig);
    assert!(
        e.to_string()
            .contains("tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    let e = bad(&tls_section(&pki, r#", "cert_file": "/x.pem""#));
    assert!(e.to_string().contains("cert_file needs key_file"), "{e}");
    let e = bad(r#", "auth": {"username": "app"}"#);
    assert!(
        e.to_string().contains("password_file and password_env"),
        "{e}"
    );
    let e = bad(r#", "auth": {"username": "app", "password_env": "FAE_TLS_TEST_UNSET_VAR"}"#);
    assert!(
        e.to_string().contains("FAE_TLS_TEST_UNSET_VAR is not set"),
        "{e}"
    );
    let e = bad(r#", "tls": {"verify": false, "cert_fil": "x"}"#);
    assert!(e.to_string().contains("cert_fil"), "{e}");
    // A per-pool section overrides the top-level one and names its own path.
    let e = Config::from_json(
        r#"{"pools": {"main": {"servers": ["127.0.0.1:1"], "tls": {"ca_file": "/nope"}}}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("pools.main.tls.ca_file"), "{e}");
    let e = Config::from_json(r#"{"servers": ["/run/mc.sock"], "tls": {"verify": false}}"#)
        .unwrap_err();
    assert!(e.to_string().contains("needs tls.server_name"), "{e}");
}

/// Every log record of this test binary, for the canary test.
fn captured_logs() -> &'static Mutex<String> {
    static LOGS: OnceLock<Mutex<String>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(String::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        use std::fmt::Write;
        let mut logs = captured_logs().lock().unwrap();
        let _ = writeln!(logs, "{} {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

#[test]
fn a_canary_secret_shows_in_no_output() {
    const CANARY: &str = "CANARY-7f3a9c-secret";
    static LOGGER: Capture = Capture;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);

    let pki = Pki::new("canary");
    let mc = pki.server_with(&["127.0.0.1"], false, false, Some(("app", CANARY)));
    let wrong = pki.server_with(&["127.0.0.1"], false, false, Some(("app", "other")));
    let pw = pki.path("pw");
    std::fs::write(&pw, format!("{CANARY}\n")).unwrap();
    // A key file whose body is the canary: the config error must not quote it.
    let junk_key = pki.path("junk.key");
    std::fs::write(
        &junk_key,
        format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let (cert, key) = pki.leaf("client", &["c"], true, false);
    let _ = key;
    let mut outputs: Vec<String> = Vec::new();
    let junk = Config::from_json(&format!(
        r#"{{"servers": ["127.0.0.1:1"], "tls": {{"ca_file": {}, "cert_file": {}, "key_file": {}}}}}"#,
        json_str(&pki.path_str("ca.pem")),
        json_str(&cert.to_string_lossy()),
        json_str(&junk_key.to_string_lossy())
    ))
    .unwrap_err();
    outputs.push(format!("{junk} {junk:?}"));

    let cfg = config(
        &[mc.addr(), wrong.addr()],
        &format!(
            r#"{}, "auth": {{"username": "app", "password_file": {}}}"#,
            tls_section(&pki, ""),
            json_str(&pw.to_string_lossy())
        ),
    );
    outputs.push(format!("{cfg:?}"));
    let c = Client::new(&cfg).unwrap();
    for i in 0..50 {
        let k = format!("canary:{i}");
        match c.set(k.as_bytes(), b"v", 0, 0) {
            Ok(()) => {}
            Err(e) => outputs.push(format!("{e} {e:?}")),
        }
        if let Err(e) = c.get(k.as_bytes()) {
            outputs.push(format!("{e} {e:?}"));
        }
        outputs.push(format!("{:?}", c.route_for(Op::Get, k.as_bytes())));
    }
    assert!(
        outputs.iter().any(|o| o.contains("auth_failed")),
        "the wrong server refused"
    );
    for (addr, r) in c.server_stats("").unwrap() {
        outputs.push(format!("{addr} {r:?}"));
    }
    outputs.push(c.stats().to_string());
    outputs.push(c.stats_prometheus());
    outputs.push(format!("{:?}", c.breaker_states()));
    outputs.push(captured_logs().lock().unwrap().clone());
    assert!(
        outputs.last().unwrap().contains("refused=true"),
        "the refusal is logged"
    );
    for o in &outputs {
        assert!(!o.contains(CANARY), "the canary leaked: {o}");
    }
}

#[test]
fn stats_of_a_tls_server_go_over_tls() {
    let pki = Pki::new("stats");
    let mc = pki.server(false);
    let c = Client::new(&config(&[mc.addr()], &tls_section(&pki, ""))).unwrap();
    let stats = c.server_stats("").unwrap();
    let (_, r) = &stats[0];
    let r = r.as_ref().unwrap();
    assert!(r.iter().any(|(k, _)| k == "pid"), "{r:?}");
}

#[test]
fn heartbeats_and_a_failover_route_run_over_tls() {
    let pki = Pki::new("routes");
    let (a, b) = (pki.server(false), pki.server(false));
    let ca = json_str(&pki.path_str("ca.pem"));
    let cfg = Config::from_json(&format!(
        r#"{{"pools": {{"a": {{"servers": [{}]}}, "b": {{"servers": [{}]}}}},
            "route": {{"type": "failover", "children": ["a", "b"]}},
            "tls": {{"ca_file": {ca}}},
            "timeouts": {{"connect_ms": 1000, "io_ms": 1000}},
            "health": {{"heartbeat_interval_ms": 20}}}}"#,
        json_str(&a.addr()),
        json_str(&b.addr())
    ))
    .unwrap();
    let c = Client::new(&cfg).unwrap();
    c.set(b"k", b"first", 0, 0).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"first");
    // Idle TLS connections are heartbeaten (`mn` over TLS) and stay usable.
    let beat = |c: &Client| c.stats()["destinations"][&a.addr()]["heartbeats_ok"].as_u64();
    assert!(fae_testkit::wait_until(Duration::from_secs(5), || beat(&c).is_some_and(|n| n > 0)));
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"first");
    // The first child dies: the route fails over to the second, over TLS too.
    a.kill().unwrap();
    c.set(b"k2", b"second", 0, 0).unwrap();
    assert_eq!(c.get(b"k2").unwrap().unwrap().value, b"second");
    assert_eq!(
        raw::get(&b.control_addr().unwrap(), "k2").map(|v| v.1),
        Some(b"second".to_vec())
    );
}
