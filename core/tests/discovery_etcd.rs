//! etcd discovery against a real etcd (Debian etcd-server) started by fae-testkit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fae_core::discovery::{EtcdSource, Source, Topology};
use fae_testkit::{Etcd, wait_until};

mod support_watch;

fn out_path(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fae-disc-etcd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("snapshot.json")
}

fn servers(path: &Path, pool: &str) -> Option<Vec<String>> {
    Topology::read(path).ok()?.pools.get(pool).cloned()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn skip() -> bool {
    if !Etcd::available() {
        eprintln!("SKIPPED: etcd/etcdctl not installed (run scripts/setup.sh)");
        return true;
    }
    false
}

#[test]
fn etcd_watch_latency_kill_keeps_last_good_and_recovers() {
    if skip() {
        return;
    }
    let etcd = Etcd::start();
    etcd.put("/fae/pools/main", r#"["10.0.0.1:11211"]"#);
    let out = out_path("watch");
    let mut watch = support_watch::Watch::spawn(&args(&[
        "--etcd",
        &etcd.endpoint(),
        "--prefix",
        "/fae/pools/",
        "--out",
        out.to_str().unwrap(),
        "--interval-ms",
        "200",
    ]));
    assert!(wait_until(Duration::from_secs(5), || servers(&out, "main").is_some()));
    assert_eq!(servers(&out, "main").unwrap(), vec!["10.0.0.1:11211"]);

    // Watch latency: put → snapshot file rewritten.
    let mut lat = Vec::new();
    for i in 2..=6 {
        let list = format!(r#"["10.0.0.1:11211","10.0.0.{i}:11211:2"]"#);
        let want = vec!["10.0.0.1:11211".to_string(), format!("10.0.0.{i}:11211:2")];
        let t0 = Instant::now();
        etcd.put("/fae/pools/main", &list);
        assert!(
            wait_until(Duration::from_secs(5), || servers(&out, "main").as_ref()
                == Some(&want)),
            "change {i} not seen"
        );
        lat.push(t0.elapsed());
    }
    lat.sort();
    eprintln!(
        "etcd watch latency (put incl. etcdctl → file): min {:?} median {:?} max {:?}",
        lat[0], lat[2], lat[4]
    );
    assert!(lat[4] < Duration::from_secs(2), "latency {lat:?}");

    // A new pool, then a bad value: the bad value leaves the snapshot alone.
    etcd.put("/fae/pools/gutter", r#"["10.0.9.1:11211"]"#);
    assert!(wait_until(Duration::from_secs(5), || servers(
        &out, "gutter"
    )
    .is_some()));
    let good = std::fs::read_to_string(&out).unwrap();
    etcd.put("/fae/pools/gutter", "{not json");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        good,
        "bad value must not be published"
    );
    etcd.delete("/fae/pools/gutter");
    assert!(wait_until(Duration::from_secs(5), || Topology::read(&out)
        .unwrap()
        .pools
        .len()
        == 1));

    // Kill etcd: the snapshot stays as it was while the watcher retries.
    let before = std::fs::read_to_string(&out).unwrap();
    etcd.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        before,
        "last good topology kept"
    );
    assert!(watch.running(), "watcher keeps running");

    // Restart (same data): the watcher reconnects and sees later changes.
    etcd.restart().unwrap();
    let v_before = Topology::read(&out).unwrap().version;
    let t0 = Instant::now();
    etcd.put("/fae/pools/main", r#"["10.0.0.99:11211"]"#);
    assert!(
        wait_until(Duration::from_secs(10), || servers(&out, "main")
            == Some(vec!["10.0.0.99:11211".into()])),
        "change after restart not seen"
    );
    eprintln!("etcd: change after restart seen in {:?}", t0.elapsed());
    assert!(Topology::read(&out).unwrap().version > v_before);

    assert_eq!(watch.stop(), Some(0), "SIGTERM must stop fae watch with 0");
}

#[test]
fn etcd_compaction_rewatch_and_source_api() {
    if skip() {
        return;
    }
    let etcd = Etcd::start();
    etcd.put("/fae/pools/a", r#"["127.0.0.1:1"]"#);
    etcd.put("/fae/other", "ignored: outside the prefix");
    let mut src = EtcdSource::new(vec![etcd.endpoint()], "/fae/pools/");
    let t = src.current().unwrap();
    assert_eq!(t.pools.len(), 1);
    assert_eq!(src.wait_change(Duration::from_millis(200)).unwrap(), None);
    // Changes, then compaction past the source's revision: the watch from rev+1 is
    // canceled and the source must re-range.
    for i in 2..5 {
        etcd.put("/fae/pools/a", &format!(r#"["127.0.0.1:{i}"]"#));
    }
    etcd.compact(etcd.revision());
    let t = src
        .wait_change(Duration::from_secs(3))
        .unwrap()
        .expect("change after compaction");
    assert_eq!(t.pools["a"], vec!["127.0.0.1:4"]);
    // Unreachable: an error, not a panic, and no topology.
    let mut dead = EtcdSource::new(vec!["127.0.0.1:1".into()], "/fae/pools/")
        .timeouts(Duration::from_millis(200), Duration::from_millis(500));
    assert!(dead.current().is_err());
    assert!(dead.wait_change(Duration::from_millis(100)).is_err());
}

#[test]
fn etcd_cli_once_and_exit_codes() {
    assert_eq!(support_watch::run(&args(&["--help"])), 0);
    assert_eq!(support_watch::run(&args(&["--etcd", "x"])), 2);
    let out = out_path("once");
    let o = out.to_str().unwrap();
    assert_eq!(
        support_watch::run(&args(&["--etcd", "127.0.0.1:1", "--once", "--out", o])),
        3
    );
    assert!(!out.exists());
    if skip() {
        return;
    }
    let etcd = Etcd::start();
    etcd.put("/x/main", r#"["10.0.0.1:11211","10.0.0.2:11211:2"]"#);
    let a = args(&[
        "--etcd",
        &etcd.endpoint(),
        "--prefix",
        "/x/",
        "--once",
        "--out",
        o,
    ]);
    assert_eq!(support_watch::run(&a), 0);
    let t = Topology::read(&out).unwrap();
    assert_eq!(t.version, 1);
    assert_eq!(t.source, format!("etcd:{}/x/", etcd.endpoint()));
    assert_eq!(t.pools["main"], vec!["10.0.0.1:11211", "10.0.0.2:11211:2"]);
    // Unchanged: not rewritten, version stays.
    assert_eq!(support_watch::run(&a), 0);
    assert_eq!(Topology::read(&out).unwrap().version, 1);
    etcd.put("/x/main", r#"["10.0.0.3:11211"]"#);
    assert_eq!(support_watch::run(&a), 0);
    assert_eq!(Topology::read(&out).unwrap().version, 2);
    // Invalid data with --once: exit 1, snapshot untouched.
    etcd.put("/x/main", r#"["10.0.0.3:0"]"#);
    assert_eq!(support_watch::run(&a), 1);
    assert_eq!(Topology::read(&out).unwrap().version, 2);
}

/// A pool key holding `{"servers", "buckets"}`: `fae watch` carries the bucket map into the
/// snapshot (where clients take it from), and follows a change of the map alone.
#[test]
fn etcd_bucket_map_reaches_the_snapshot() {
    if skip() {
        return;
    }
    let etcd = Etcd::start();
    let out = out_path("buckets");
    let o = out.to_str().unwrap();
    let pool = |version: u64, map: &str| {
        format!(
            r#"{{"servers": ["10.0.0.1:11211", "10.0.0.2:11211"],
                "buckets": {{"count": 4, "version": {version}, "map": {map}}}}}"#
        )
    };
    etcd.put("/b/main", &pool(3, "[0, 1, 0, 1]"));
    etcd.put("/b/plain", r#"["10.0.0.9:11211"]"#);
    let a = args(&[
        "--etcd",
        &etcd.endpoint(),
        "--prefix",
        "/b/",
        "--once",
        "--out",
        o,
    ]);
    assert_eq!(support_watch::run(&a), 0);
    let t = Topology::read(&out).unwrap();
    assert_eq!(t.pools["main"], vec!["10.0.0.1:11211", "10.0.0.2:11211"]);
    assert_eq!(t.pools["plain"], vec!["10.0.0.9:11211"]);
    let b = &t.buckets["main"];
    assert_eq!(
        (b.count, b.version, b.map.clone()),
        (4, 3, vec![0, 1, 0, 1])
    );
    assert!(!t.buckets.contains_key("plain"));
    // The same servers with a new map version: a change, written.
    etcd.put("/b/main", &pool(4, "[1, 1, 0, 1]"));
    assert_eq!(support_watch::run(&a), 0);
    let t = Topology::read(&out).unwrap();
    assert_eq!(t.version, 2);
    assert_eq!(
        (t.buckets["main"].version, t.buckets["main"].map.clone()),
        (4, vec![1, 1, 0, 1])
    );
    // A client config built from the snapshot places the pool by that map.
    let cfg = fae_core::Config::from_json(
        r#"{"pools": {"main": {"servers": ["10.0.0.1:11211", "10.0.0.2:11211"],
            "buckets": {"count": 4, "version": 1}}}}"#,
    )
    .unwrap()
    .with_topology(&t)
    .unwrap();
    assert_eq!(
        cfg.pools["main"].buckets.as_ref().map(|b| b.version),
        Some(4)
    );
    // An unknown key in the object is refused, naming the etcd key; the snapshot stays.
    etcd.put(
        "/b/main",
        r#"{"servers": ["10.0.0.1:11211"], "bucket": {}}"#,
    );
    assert_eq!(support_watch::run(&a), 1);
    assert_eq!(Topology::read(&out).unwrap().version, 2);
}

/// `fae watch` as a process: it writes the snapshot, follows a change, and exits 0 on SIGTERM.
#[test]
fn etcd_fae_watch_process_sigterm() {
    let bin = env!("CARGO_BIN_EXE_fae");
    if skip() {
        return;
    }
    let etcd = Etcd::start();
    etcd.put("/fae/pools/main", r#"["10.0.0.1:11211"]"#);
    let out = out_path("proc");
    let mut child = std::process::Command::new(bin)
        .args([
            "watch",
            "--etcd",
            &etcd.endpoint(),
            "--out",
            out.to_str().unwrap(),
            "--interval-ms",
            "200",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ok = wait_until(Duration::from_secs(5), || servers(&out, "main").is_some());
    let t0 = Instant::now();
    etcd.put("/fae/pools/main", r#"["10.0.0.2:11211"]"#);
    let ok2 = wait_until(Duration::from_secs(5), || {
        servers(&out, "main") == Some(vec!["10.0.0.2:11211".into()])
    });
    let lat = t0.elapsed();
    // SAFETY: the pid is our own un-reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let exited = wait_until(Duration::from_secs(3), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(ok && ok2, "process watcher did not write the snapshot");
    eprintln!("fae watch process: latency {lat:?}");
    assert!(
        exited && status.success(),
        "SIGTERM must stop fae watch with 0: {status:?}"
    );
}
