//! Discovery end to end: a client configured with `discovery.file` takes its servers from the
//! topology snapshot and follows it when it changes, keeps the last good one when the snapshot
//! turns invalid, and — with a real etcd and a `fae watch` process writing the snapshot — moves
//! its traffic within the watch latency when membership changes in etcd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fae_core::discovery::Topology;
use fae_core::{Client, Config};
use fae_testkit::{Cluster, Etcd, wait_until};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fae-e2e-disc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client(bootstrap: &str, snapshot: &Path) -> Client {
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{bootstrap}"]}}}}, "route": "main",
            "reload": {{"watch_ms": 20}}, "discovery": {{"file": "{}"}}}}"#,
        snapshot.display()
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

fn snapshot(path: &Path, servers: &[String]) {
    let mut t = Topology::new(
        [("main".to_string(), servers.to_vec())]
            .into_iter()
            .collect(),
    );
    t.source = "test".into();
    t.write_atomic(path).unwrap();
}

#[test]
fn a_client_follows_its_topology_snapshot() {
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let d = dir("file");
    let snap = d.join("topology.json");
    // Missing at creation: the config's bootstrap list serves meanwhile.
    let c = client(&a[0], &snap);
    assert_eq!(c.servers(), vec![a[0].clone()]);
    c.set(b"k", b"v", 0, 0).unwrap();

    snapshot(&snap, &a[1..]);
    assert!(
        wait_until(Duration::from_secs(3), || c.servers() == a[1..].to_vec()),
        "{:?}",
        c.servers()
    );
    for i in 0..20 {
        c.set(format!("k{i}").as_bytes(), b"v", 0, 0).unwrap();
    }
    assert!(fae_testkit::raw::stats(&a[1])["curr_items"] != "0");

    // An invalid snapshot is rejected; the last good servers stay.
    std::fs::write(&snap, r#"{"pools": {"main": ["not a server"]}}"#).unwrap();
    assert!(wait_until(Duration::from_secs(3), || c.stats()["process"]
        ["reload_failures"]
        .as_u64()
        .unwrap()
        >= 1));
    assert_eq!(c.servers(), a[1..].to_vec());
    assert!(c.get(b"k1").is_ok());
    let _ = std::fs::remove_dir_all(&d);
}

struct Watch(Child);
impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn etcd_membership_moves_client_traffic_through_fae_watch() {
    assert!(Etcd::available(), "etcd is installed by scripts/setup.sh");
    let cluster = Cluster::start(2);
    let a = cluster.addrs();
    let etcd = Etcd::start();
    etcd.put("/fae/pools/main", &format!(r#"["{}"]"#, a[0]));
    let d = dir("etcd");
    let snap = d.join("topology.json");
    let _watch = Watch(
        Command::new(env!("CARGO_BIN_EXE_fae"))
            .args([
                "watch",
                "--etcd",
                &etcd.endpoint(),
                "--prefix",
                "/fae/pools/",
                "--out",
            ])
            .arg(&snap)
            .args(["--interval-ms", "100"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(5), || snap.exists()));
    let c = client("127.0.0.1:1", &snap);
    assert_eq!(
        c.servers(),
        vec![a[0].clone()],
        "the snapshot wins over the bootstrap list"
    );
    c.set(b"before", b"v", 0, 0).unwrap();

    let t = Instant::now();
    etcd.put("/fae/pools/main", &format!(r#"["{}"]"#, a[1]));
    assert!(wait_until(Duration::from_secs(5), || c.servers() == vec![a[1].clone()]));
    let moved = t.elapsed();
    eprintln!("etcd put -> client serving from the new server in {moved:?}");
    c.set(b"after", b"v", 0, 0).unwrap();
    assert!(fae_testkit::raw::get(&a[1], "after").is_some());
    assert!(fae_testkit::raw::get(&a[0], "after").is_none());
    assert!(moved < Duration::from_secs(2), "{moved:?}");

    // The coordinator dies: the snapshot and the client keep the last good topology.
    drop(etcd);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.servers(), vec![a[1].clone()]);
    assert!(c.get(b"after").unwrap().is_some());
    let _ = std::fs::remove_dir_all(&d);
}
