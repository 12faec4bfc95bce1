//! ZooKeeper discovery against a real ZooKeeper (Debian zookeeper, run with java) started by
//! fae-testkit. Layout: /fae/pools/<pool>/<server> (children are the server strings).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fae_core::discovery::{Source, Topology, ZkClient, ZkSessionStats, ZkSource};
use fae_testkit::{Fault, FaultProxy, ZooKeeper, wait_until};

mod support_watch;

fn skip() -> bool {
    if !ZooKeeper::available() {
        eprintln!("SKIPPED: java or /usr/share/java/zookeeper.jar missing (run scripts/setup.sh)");
        return true;
    }
    false
}

fn out_path(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fae-disc-zk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("snapshot.json")
}

fn servers(path: &Path, pool: &str) -> Option<Vec<String>> {
    Topology::read(path).ok()?.pools.get(pool).cloned()
}

fn writer(zk: &ZooKeeper) -> ZkClient {
    ZkClient::connect(
        &zk.endpoint(),
        Duration::from_secs(5),
        Duration::from_secs(2),
    )
    .unwrap()
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn zk_watch_latency_kill_keeps_last_good_and_recovers() {
    if skip() {
        return;
    }
    let zk = ZooKeeper::start();
    let mut w = writer(&zk);
    w.create_all("/fae/pools/main").unwrap();
    w.create("/fae/pools/main/10.0.0.1:11211", b"").unwrap();
    let out = out_path("watch");
    let a = v(&[
        "--zookeeper",
        &zk.endpoint(),
        "--path",
        "/fae/pools",
        "--out",
        out.to_str().unwrap(),
        "--interval-ms",
        "200",
        "--session-timeout-ms",
        "2000",
    ]);
    let mut watch = support_watch::Watch::spawn(&a);
    assert!(wait_until(Duration::from_secs(5), || servers(&out, "main")
        == Some(v(&["10.0.0.1:11211"]))));

    let mut lat = Vec::new();
    for i in 2..=6 {
        let node = format!("/fae/pools/main/10.0.0.{i}:11211:2");
        let t0 = Instant::now();
        w.create(&node, b"").unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || servers(&out, "main")
                .is_some_and(|s| s.len() == 2)),
            "add {i} not seen"
        );
        lat.push(t0.elapsed());
        w.delete(&node).unwrap();
        assert!(wait_until(Duration::from_secs(5), || servers(&out, "main")
            .is_some_and(|s| s.len() == 1)));
    }
    lat.sort();
    eprintln!(
        "zookeeper watch latency (create → file): min {:?} median {:?} max {:?}",
        lat[0], lat[2], lat[4]
    );
    assert!(lat[4] < Duration::from_secs(2), "latency {lat:?}");

    // A new pool appears (root watch), a bad server name is not published.
    w.create("/fae/pools/gutter", b"").unwrap();
    w.create("/fae/pools/gutter/10.0.9.1:11211", b"").unwrap();
    assert!(wait_until(Duration::from_secs(5), || servers(
        &out, "gutter"
    ) == Some(v(&[
        "10.0.9.1:11211"
    ]))));
    let good = std::fs::read_to_string(&out).unwrap();
    w.create("/fae/pools/gutter/bad:0", b"").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        good,
        "bad server must not be published"
    );
    w.delete("/fae/pools/gutter/bad:0").unwrap();
    drop(w);

    // Kill ZooKeeper: snapshot unchanged while the watcher retries.
    zk.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        good,
        "last good topology kept"
    );
    assert!(watch.running());
    zk.restart().unwrap();
    let mut w = writer(&zk);
    let t0 = Instant::now();
    w.create("/fae/pools/main/10.0.0.77:11211", b"").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || servers(&out, "main")
            .is_some_and(|s| s.contains(&"10.0.0.77:11211".to_string()))),
        "change after restart not seen"
    );
    eprintln!("zookeeper: change after restart seen in {:?}", t0.elapsed());
    assert_eq!(watch.stop(), Some(0), "SIGTERM must stop fae watch with 0");
}

/// The fae bug: after session expiry, watches must be re-armed. A black-holing proxy between
/// the source and ZooKeeper lets the server expire the session while the source cannot talk;
/// then later changes must still be seen.
#[test]
fn zk_session_expiry_rearms_watches() {
    if skip() {
        return;
    }
    let zk = ZooKeeper::start();
    let mut w = writer(&zk);
    w.create_all("/fae/pools/main").unwrap();
    w.create("/fae/pools/main/10.0.0.1:11211", b"").unwrap();
    let proxy = FaultProxy::start(&zk.endpoint());

    type Seen = Arc<Mutex<(Option<Topology>, ZkSessionStats)>>;
    let seen: Seen = Arc::new(Mutex::new((None, ZkSessionStats::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2, ep) = (seen.clone(), stop.clone(), proxy.addr());
    let h = std::thread::spawn(move || {
        let mut src = ZkSource::new(vec![ep], "/fae/pools")
            .timeouts(Duration::from_millis(1000), Duration::from_millis(500));
        while !stop2.load(Ordering::SeqCst) {
            let r = src.wait_change(Duration::from_millis(200));
            let mut g = seen2.lock().unwrap();
            if let Ok(Some(t)) = &r {
                g.0 = Some(t.clone());
            }
            g.1 = src.session_stats();
            drop(g);
            if r.is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let has = |s: &str| {
        let g = seen.lock().unwrap();
        g.0.as_ref()
            .is_some_and(|t| t.pools["main"].contains(&s.to_string()))
    };
    assert!(wait_until(Duration::from_secs(5), || has("10.0.0.1:11211")));

    // Cut the source off for well past the 1 s session timeout; change membership meanwhile.
    proxy.set_fault(Fault::BlackHole);
    std::thread::sleep(Duration::from_millis(300));
    w.create("/fae/pools/main/10.0.0.2:11211", b"").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !has("10.0.0.2:11211"),
        "nothing can arrive through the black hole"
    );
    proxy.set_fault(Fault::None);
    assert!(
        wait_until(Duration::from_secs(6), || has("10.0.0.2:11211")),
        "re-read after expiry"
    );
    let stats = seen.lock().unwrap().1;
    eprintln!("zookeeper session stats after blackout: {stats:?}");
    assert!(
        stats.expired >= 1,
        "the server should have expired the session: {stats:?}"
    );
    assert!(stats.sessions >= 2);

    // Watches re-armed on the new session: a later change is seen promptly.
    let t0 = Instant::now();
    w.create("/fae/pools/main/10.0.0.3:11211", b"").unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || has("10.0.0.3:11211")),
        "watch not re-armed"
    );
    eprintln!("zookeeper: change after expiry seen in {:?}", t0.elapsed());

    // Freeze the server itself (SIGSTOP) past the session timeout, then thaw it.
    drop(w);
    zk.pause().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    zk.resume().unwrap();
    let mut w = writer(&zk);
    w.create("/fae/pools/main/10.0.0.4:11211", b"").unwrap();
    assert!(
        wait_until(Duration::from_secs(8), || has("10.0.0.4:11211")),
        "change after SIGSTOP/SIGCONT"
    );
    eprintln!(
        "zookeeper session stats at end: {:?}",
        seen.lock().unwrap().1
    );

    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
}

#[test]
fn zk_cli_once_and_missing_root() {
    let out = out_path("once");
    let o = out.to_str().unwrap();
    assert_eq!(
        support_watch::run(&v(&["--zookeeper", "127.0.0.1:1", "--once", "--out", o])),
        3
    );
    if skip() {
        return;
    }
    let zk = ZooKeeper::start();
    let a = v(&[
        "--zookeeper",
        &zk.endpoint(),
        "--path",
        "/svc/pools",
        "--once",
        "--out",
        o,
    ]);
    // Root missing: invalid (exit 1), nothing written.
    assert_eq!(support_watch::run(&a), 1);
    assert!(!out.exists());
    let mut w = writer(&zk);
    w.create_all("/svc/pools/main").unwrap();
    w.create("/svc/pools/main/[::1]:11211:3", b"").unwrap();
    w.create("/svc/pools/main/127.0.0.1:11211", b"").unwrap();
    assert_eq!(support_watch::run(&a), 0);
    let t = Topology::read(&out).unwrap();
    assert_eq!(t.version, 1);
    assert_eq!(t.pools["main"], v(&["127.0.0.1:11211", "[::1]:11211:3"]));
}

/// A pool node's data `{"buckets": {...}}`: the source reports the map, a data change wakes a
/// waiting source, and `fae watch` writes the map into the snapshot.
#[test]
fn zk_bucket_map_reaches_the_snapshot() {
    if skip() {
        return;
    }
    let zk = ZooKeeper::start();
    let mut w = writer(&zk);
    let map = |version: u64, map: &str| {
        format!(r#"{{"buckets": {{"count": 4, "version": {version}, "map": {map}}}}}"#)
    };
    w.create_all("/b/pools").unwrap();
    w.create("/b/pools/main", map(3, "[0, 1, 0, 1]").as_bytes())
        .unwrap();
    w.create("/b/pools/main/10.0.0.1:11211", b"").unwrap();
    w.create("/b/pools/main/10.0.0.2:11211", b"").unwrap();
    // Data that is not JSON is not fae's: ignored, as before.
    w.create("/b/pools/plain", b"owned by someone else")
        .unwrap();
    w.create("/b/pools/plain/10.0.0.9:11211", b"").unwrap();
    let mut src = ZkSource::new(vec![zk.endpoint()], "/b/pools");
    let t = src.current().unwrap();
    let b = &t.buckets["main"];
    assert_eq!(
        (b.count, b.version, b.map.clone()),
        (4, 3, vec![0, 1, 0, 1])
    );
    assert!(!t.buckets.contains_key("plain"));
    // A new map alone (same servers) is a change the data watch reports.
    w.set_data("/b/pools/main", map(4, "[1, 1, 0, 1]").as_bytes())
        .unwrap();
    let t = src
        .wait_change(Duration::from_secs(5))
        .unwrap()
        .expect("the data change is reported");
    assert_eq!(t.buckets["main"].version, 4);
    // fae watch writes it into the snapshot; a bad object is refused, the snapshot stays.
    let out = out_path("buckets");
    let a = v(&[
        "--zookeeper",
        &zk.endpoint(),
        "--path",
        "/b/pools",
        "--once",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(support_watch::run(&a), 0);
    let t = Topology::read(&out).unwrap();
    assert_eq!(t.pools["main"], v(&["10.0.0.1:11211", "10.0.0.2:11211"]));
    assert_eq!(t.buckets["main"].map, vec![1, 1, 0, 1]);
    w.set_data("/b/pools/main", br#"{"bucket": {}}"#).unwrap();
    assert_eq!(support_watch::run(&a), 1);
    assert_eq!(Topology::read(&out).unwrap().version, 1);
}
