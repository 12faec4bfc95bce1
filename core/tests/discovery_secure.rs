//! Discovery over TLS with authentication, against real servers the testkit starts: etcd with
//! TLS, client certificates and user/password auth; ZooKeeper with a TLS port (client
//! certificates required) and digest ACLs. Every refusal must be a clear error within the
//! timeouts — no hang, no panic — and no output may carry the password.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fae_core::discovery::{Error, EtcdSource, Source, ZkClient, ZkSource};
use fae_core::tls::{AuthSection, TlsSection};
use fae_testkit::{Etcd, ZooKeeper, wait_until};

use fae_testkit::certs::Pki;

/// The password under test; no output may contain it.
const CANARY: &str = "canary-pw-7Qx93LmZ";

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fae-disc-sec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pw_file(d: &Path, name: &str, pw: &str) -> PathBuf {
    let p = d.join(name);
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

fn tls(pki: &Pki) -> TlsSection {
    TlsSection::with_ca(&pki.ca).client_cert(&pki.client_cert, &pki.client_key)
}

/// Asserts a refusal: the expected kind, within a bound, naming `needle`, without the canary.
fn refused(
    r: Result<impl std::fmt::Debug, Error>,
    t0: Instant,
    denied: bool,
    needle: &str,
) -> String {
    let e = r.expect_err("must fail");
    let msg = e.to_string();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}: {msg}",
        t0.elapsed()
    );
    if denied {
        assert!(matches!(e, Error::Denied(_)), "want Denied: {e:?}");
    }
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(!msg.contains(CANARY), "password leaked: {msg}");
    eprintln!("as expected: {msg}");
    msg
}

/// A server that answers anything with plain HTTP: the TLS client must not take it for TLS.
fn plain_http_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut b = [0u8; 512];
            let _ = std::io::Read::read(&mut s, &mut b);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    addr
}

/// `fae watch ARGS --once`: exit code and everything it printed.
fn fae_watch_once(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fae"))
        .arg("watch")
        .args(args)
        .arg("--once")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run fae watch");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn etcd_tls_client_cert_and_login() {
    if !Etcd::available() {
        eprintln!("SKIPPED: etcd/etcdctl not installed (run scripts/setup.sh)");
        return;
    }
    let d = dir("etcd");
    let pki = Pki::new(&d.join("pki"));
    let etcd = Etcd::start_secure(pki.server(true));
    etcd.put("/fae/pools/main", r#"["10.0.0.1:11211"]"#);
    etcd.enable_auth("root-pw-not-the-canary");
    etcd.add_reader("fae", CANARY, "/fae/pools/");
    let ep = etcd.endpoint();
    let good_pw = pw_file(&d, "pw", CANARY);
    let bad_pw = pw_file(&d, "bad-pw", "not-it");
    let src = |t: TlsSection, pw: Option<&Path>| {
        let s = EtcdSource::new(vec![ep.clone()], "/fae/pools/")
            .timeouts(Duration::from_secs(1), Duration::from_secs(2))
            .tls(t)
            .unwrap();
        match pw {
            Some(p) => s.auth(AuthSection::password_file("fae", p)).unwrap(),
            None => s,
        }
    };

    // TLS + client certificate + login: reads and watches.
    let mut s = src(tls(&pki), Some(&good_pw));
    let t = s.current().expect("read over TLS with login");
    assert_eq!(t.pools["main"], vec!["10.0.0.1:11211"]);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(CANARY), "Debug leaks the password: {dbg}");
    assert!(!dbg.contains("Authorization"), "{dbg}");
    // Nor the client key: no line of its PEM body, and no run of its bytes.
    let key_pem = std::fs::read_to_string(&pki.client_key).unwrap();
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!dbg.contains(line), "Debug leaks the key: {dbg}");
    }
    let h = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(t)) = s.wait_change(Duration::from_millis(500)) {
                return Some(t);
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(300));
    etcd.put("/fae/pools/main", r#"["10.0.0.1:11211","10.0.0.2:11211"]"#);
    let t = h.join().unwrap().expect("watch over TLS sees the put");
    assert_eq!(t.pools["main"].len(), 2);

    // Revoked tokens ("invalid auth token"): the source logs in again and retries; the
    // caller sees no error.
    let mut s = src(tls(&pki), Some(&good_pw));
    s.current().expect("first read");
    etcd.revoke_tokens();
    s.current()
        .expect("read after the tokens were revoked: re-login");

    // Refusals: each a clear error within the timeouts.
    let t0 = Instant::now();
    refused(
        src(tls(&pki), Some(&bad_pw)).current(),
        t0,
        true,
        "wrong user name or password",
    );
    let t0 = Instant::now();
    // No login: etcd checks the gateway's certificate identity, which has no permission.
    refused(
        src(tls(&pki), None).current(),
        t0,
        true,
        "permission denied",
    );
    let t0 = Instant::now();
    let other = TlsSection::with_ca(&pki.other_ca).client_cert(&pki.client_cert, &pki.client_key);
    refused(
        src(other, Some(&good_pw)).current(),
        t0,
        true,
        "certificate",
    );
    let t0 = Instant::now();
    refused(
        src(
            tls(&pki).server_name("etcd.elsewhere.example"),
            Some(&good_pw),
        )
        .current(),
        t0,
        true,
        "tls.server_name",
    );
    let t0 = Instant::now();
    refused(
        src(TlsSection::with_ca(&pki.ca), Some(&good_pw)).current(),
        t0,
        false,
        "TLS",
    );
    // A changed CA file is picked up at the next connect (certificate rotation).
    let ca_copy = d.join("ca-copy.pem");
    std::fs::copy(&pki.ca, &ca_copy).unwrap();
    let rot = TlsSection::with_ca(&ca_copy).client_cert(&pki.client_cert, &pki.client_key);
    let mut s = src(rot, Some(&good_pw));
    s.current().expect("read with the copied CA");
    std::fs::copy(&pki.other_ca, &ca_copy).unwrap();
    let t0 = Instant::now();
    refused(s.current(), t0, true, "tls.ca_file");
    std::fs::copy(&pki.ca, &ca_copy).unwrap();
    s.current().expect("read after the CA file is restored");

    // Plain HTTP to the TLS port, and TLS to a plain-HTTP port.
    let t0 = Instant::now();
    let plain = EtcdSource::new(vec![ep.clone()], "/fae/pools/");
    refused(
        plain
            .auth(AuthSection::password_file("fae", &good_pw))
            .unwrap()
            .current(),
        t0,
        false,
        "configure tls",
    );
    let t0 = Instant::now();
    let mut to_plain = EtcdSource::new(vec![plain_http_server()], "/fae/pools/")
        .tls(tls(&pki))
        .unwrap();
    refused(to_plain.current(), t0, false, "TLS");

    // The CLI: flags work, exit 4 on a wrong password, and no output carries the password.
    let out = d.join("snap.json");
    let base = [
        "--etcd",
        &ep,
        "--out",
        out.to_str().unwrap(),
        "--tls-ca-file",
        pki.ca.to_str().unwrap(),
        "--tls-cert-file",
        pki.client_cert.to_str().unwrap(),
        "--tls-key-file",
        pki.client_key.to_str().unwrap(),
        "--user",
        "fae",
    ];
    let (code, text) = fae_watch_once(
        &[&base[..], &["--password-env", "FAE_TEST_ETCD_PW"]].concat(),
        &[("FAE_TEST_ETCD_PW", CANARY)],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("10.0.0.2:11211")
    );
    let (code, bad_text) = fae_watch_once(
        &[&base[..], &["--password-file", bad_pw.to_str().unwrap()]].concat(),
        &[("FAE_TEST_ETCD_PW", CANARY)],
    );
    assert_eq!(code, 4, "{bad_text}");
    assert!(
        bad_text.contains("wrong user name or password"),
        "{bad_text}"
    );
    // The config file route: discovery.tls / discovery.auth / discovery.file.
    let cfg = d.join("fae.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "pools": {"main": {"servers": ["127.0.0.1:1"]}},
            "discovery": {
                "file": d.join("snap2.json"),
                "tls": {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key},
                "auth": {"username": "fae", "password_file": good_pw}
            }
        })
        .to_string(),
    )
    .unwrap();
    let (code, cfg_text) = fae_watch_once(&["--etcd", &ep, "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{cfg_text}");
    assert!(d.join("snap2.json").exists());
    for t in [
        &text,
        &bad_text,
        &cfg_text,
        &std::fs::read_to_string(&out).unwrap(),
    ] {
        assert!(!t.contains(CANARY), "password leaked: {t}");
    }
    drop(etcd);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn zookeeper_tls_client_cert_and_digest() {
    if !ZooKeeper::available() {
        eprintln!("SKIPPED: java or zookeeper not installed (run scripts/setup.sh)");
        return;
    }
    let d = dir("zk");
    let pki = Pki::new(&d.join("pki"));
    let zk = ZooKeeper::start_tls(&pki.server(true));
    let good_pw = pw_file(&d, "pw", CANARY);
    let bad_pw = pw_file(&d, "bad-pw", "not-it");
    let login = AuthSection::password_file("fae", &good_pw);

    // Setup through the plain port: the pools are readable only by digest fae:CANARY.
    let mut w = ZkClient::connect_secure(
        &zk.endpoint(),
        Duration::from_secs(5),
        Duration::from_secs(2),
        None,
        Some(&login),
    )
    .unwrap();
    w.create_all("/fae").unwrap();
    w.create_private("/fae/pools", b"").unwrap();
    w.create_private("/fae/pools/main", b"").unwrap();
    w.create_private("/fae/pools/main/10.0.0.1:11211", b"")
        .unwrap();

    let sep = zk.secure_endpoint();
    let src = |ep: &str, t: Option<TlsSection>, pw: Option<&Path>| {
        let mut s = ZkSource::new(vec![ep.to_string()], "/fae/pools")
            .timeouts(Duration::from_secs(4), Duration::from_secs(2));
        if let Some(t) = t {
            s = s.tls(t).unwrap();
        }
        if let Some(p) = pw {
            s = s.auth(AuthSection::password_file("fae", p)).unwrap();
        }
        s
    };

    // TLS with a client certificate, digest login: reads and watches.
    let mut s = src(&sep, Some(tls(&pki)), Some(&good_pw));
    let t = s.current().expect("read over TLS with digest login");
    assert_eq!(t.pools["main"], vec!["10.0.0.1:11211"]);
    assert!(!format!("{s:?}").contains(CANARY));
    w.create_private("/fae/pools/main/10.0.0.2:11211", b"")
        .unwrap();
    let mut seen = None;
    assert!(wait_until(Duration::from_secs(8), || {
        if let Ok(Some(t)) = s.wait_change(Duration::from_millis(300)) {
            seen = Some(t);
        }
        seen.as_ref().is_some_and(|t| t.pools["main"].len() == 2)
    }));

    // Restart the server: the source reconnects over TLS and logs in again (auth belongs to
    // the connection), then sees a change made after the restart.
    drop(w);
    zk.restart().unwrap();
    let mut w = ZkClient::connect_secure(
        &zk.endpoint(),
        Duration::from_secs(5),
        Duration::from_secs(2),
        None,
        Some(&login),
    )
    .unwrap();
    w.create_private("/fae/pools/main/10.0.0.3:11211", b"")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            if let Ok(Some(t)) = s.wait_change(Duration::from_millis(300)) {
                seen = Some(t);
            }
            seen.as_ref().is_some_and(|t| t.pools["main"].len() == 3)
        }),
        "change after restart not seen over TLS with login: {seen:?}"
    );

    let t0 = Instant::now();
    refused(
        src(&sep, Some(tls(&pki)), Some(&bad_pw)).current(),
        t0,
        true,
        "\"fae\"",
    );
    let t0 = Instant::now();
    refused(
        src(&sep, Some(tls(&pki)), None).current(),
        t0,
        true,
        "requires a login",
    );
    let t0 = Instant::now();
    let other = TlsSection::with_ca(&pki.other_ca).client_cert(&pki.client_cert, &pki.client_key);
    refused(
        src(&sep, Some(other), Some(&good_pw)).current(),
        t0,
        true,
        "certificate",
    );
    let t0 = Instant::now();
    refused(
        src(&sep, Some(TlsSection::with_ca(&pki.ca)), Some(&good_pw)).current(),
        t0,
        false,
        "TLS",
    );
    // Plain to the TLS port, and TLS to the plain port.
    let t0 = Instant::now();
    refused(
        src(&sep, None, Some(&good_pw)).current(),
        t0,
        false,
        "configure tls",
    );
    let t0 = Instant::now();
    refused(
        src(&zk.endpoint(), Some(tls(&pki)), Some(&good_pw)).current(),
        t0,
        false,
        "TLS",
    );

    // The CLI with a wrong password: exit 4, the password in no output.
    let out = d.join("snap.json");
    let args = |pw: &Path| {
        vec![
            "--zookeeper".to_string(),
            sep.clone(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--tls-ca-file".into(),
            pki.ca.to_str().unwrap().into(),
            "--tls-cert-file".into(),
            pki.client_cert.to_str().unwrap().into(),
            "--tls-key-file".into(),
            pki.client_key.to_str().unwrap().into(),
            "--user".into(),
            "fae".into(),
            "--password-file".into(),
            pw.to_str().unwrap().into(),
        ]
    };
    let ok = args(&good_pw);
    let (code, text) = fae_watch_once(&ok.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(code, 0, "{text}");
    let bad = args(&bad_pw);
    let (code, bad_text) = fae_watch_once(&bad.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(code, 4, "{bad_text}");
    for t in [&text, &bad_text, &std::fs::read_to_string(&out).unwrap()] {
        assert!(!t.contains(CANARY), "password leaked: {t}");
    }
    drop(w);
    drop(zk);
    let _ = std::fs::remove_dir_all(&d);
}

/// A server whose certificate has expired: refused by the client, named as such.
#[test]
fn zookeeper_expired_server_certificate_is_refused() {
    if !ZooKeeper::available() {
        eprintln!("SKIPPED: java or zookeeper not installed (run scripts/setup.sh)");
        return;
    }
    let d = dir("zk-expired");
    let pki = Pki::new(&d.join("pki"));
    let mut server = pki.server(false);
    server.cert_file = pki.expired_server_cert.clone();
    server.key_file = pki.expired_server_key.clone();
    let zk = ZooKeeper::start_tls(&server);
    let mut s = ZkSource::new(vec![zk.secure_endpoint()], "/")
        .timeouts(Duration::from_secs(4), Duration::from_secs(2))
        .tls(TlsSection::with_ca(&pki.ca))
        .unwrap();
    let t0 = Instant::now();
    refused(s.current(), t0, true, "expired");
    drop(zk);
    let _ = std::fs::remove_dir_all(&d);
}

/// `auth` set but the server has authentication off: reads go on without a token (a warning
/// is logged), rather than failing a deployment that turns auth on later.
#[test]
fn etcd_login_to_a_server_without_auth_goes_on() {
    if !Etcd::available() {
        eprintln!("SKIPPED: etcd/etcdctl not installed (run scripts/setup.sh)");
        return;
    }
    let d = dir("etcd-noauth");
    let etcd = Etcd::start();
    etcd.put("/fae/pools/main", r#"["10.0.0.1:11211"]"#);
    let mut s = EtcdSource::new(vec![etcd.endpoint()], "/fae/pools/")
        .auth(AuthSection::password_file("fae", pw_file(&d, "pw", CANARY)))
        .unwrap();
    let t = s.current().expect("read without auth on the server");
    assert_eq!(t.pools["main"], vec!["10.0.0.1:11211"]);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&d);
}
