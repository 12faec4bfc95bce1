//! `fae vbucket` end to end: `init`, `plan --add`, then `apply` in another process, stepping
//! the topology snapshot batch by batch and waiting for this process's client to report each
//! map version through its stats directory, while this process runs a 90/10 get/set load
//! that checks every value against the last write. Then `--steps` pauses and `rollback`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fae_core::{Client, Config, Op};
use fae_testkit::{Cluster, raw};

fn fae() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fae"))
}

fn run_ok(args: &[&str]) -> String {
    let out = fae().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fae {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn snapshot(path: &Path, servers: &[String]) {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(
        path,
        format!(
            r#"{{"version": 1, "pools": {{"main": [{}]}}}}"#,
            list.join(", ")
        ),
    )
    .unwrap();
}

fn version(c: &Client) -> u64 {
    c.stats()["pools"]["main"]["buckets"]["version"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn plan_and_apply_add_a_server_under_load_with_no_stale_read() {
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    let dir = std::env::temp_dir().join(format!("fae-cli-vbucket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("stats")).unwrap();
    let topo = dir.join("topology.json");
    let topo_s = topo.to_str().unwrap();
    snapshot(&topo, &addrs[..2]);
    let out = run_ok(&[
        "vbucket",
        "init",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--count",
        "64",
    ]);
    assert!(out.contains("64 buckets over 2 servers"), "{out}");

    // The config names two bootstrap servers and no map: the snapshot brings both.
    let cfg = format!(
        r#"{{"pools": {{"main": {{"servers": ["{}"], "buckets": {{"count": 64}}}}}},
            "discovery": {{"file": "{topo_s}"}}, "reload": {{"watch_ms": 20}},
            "stats": {{"dir": "{}", "interval_ms": 20}},
            "timeouts": {{"connect_ms": 200, "io_ms": 500}}}}"#,
        addrs[0],
        dir.join("stats").display()
    );
    let c = Client::new(&Config::from_json(&cfg).unwrap()).unwrap();
    assert_eq!(version(&c), 1);
    let mut versions: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..600 {
        let k = format!("cli:{i}");
        c.set(k.as_bytes(), format!("{k}#0").as_bytes(), 0, 0)
            .unwrap();
        versions.insert(k, 0);
    }

    let plan = dir.join("plan.json");
    let out = run_ok(&[
        "vbucket",
        "plan",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--add",
        &addrs[2],
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert!(out.contains("21 of 64 buckets move"), "{out}");

    // A first step only (pause), then the rest in the background under load.
    let out = run_ok(&[
        "vbucket",
        "apply",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--plan",
        plan.to_str().unwrap(),
        "--batch",
        "8",
        "--stats-dir",
        dir.join("stats").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(out.contains("paused after 1 steps"), "{out}");
    let mut child = fae()
        .args([
            "vbucket",
            "apply",
            "--topology",
            topo_s,
            "--pool",
            "main",
            "--plan",
            plan.to_str().unwrap(),
            "--batch",
            "8",
            "--stats-dir",
            dir.join("stats").to_str().unwrap(),
            "--wait-ms",
            "20000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut gets, mut hits, mut stale) = (0u64, 0u64, 0u64);
    let keys: Vec<String> = versions.keys().cloned().collect();
    let mut i = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "apply did not finish");
        let k = &keys[(i * 7919) % keys.len()];
        if i % 10 == 9 {
            let v = versions.get_mut(k).unwrap();
            *v += 1;
            c.set(k.as_bytes(), format!("{k}#{v}").as_bytes(), 0, 0)
                .unwrap();
        } else {
            gets += 1;
            if let Some(it) = c.get(k.as_bytes()).unwrap() {
                hits += 1;
                if it.value != format!("{k}#{}", versions[k]).into_bytes() {
                    stale += 1;
                }
            }
        }
        i += 1;
        if i.is_multiple_of(200) {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("done"), "{log}");
    eprintln!("fae vbucket apply under load: {gets} gets, {hits} hits, {stale} stale\n{log}");
    assert_eq!(stale, 0);
    // A warm copy racing a write deletes its copy rather than risk a stale one (README,
    // Virtual buckets): a rare miss, never a stale read. 17 of 11 639 were seen in 1 of 6
    // runs; the issue's bar is 99 % of the steady hit rate.
    assert!(
        hits * 100 >= gets * 99,
        "keys stayed readable: {hits} of {gets}"
    );

    // The snapshot's map is the plan's; the client follows it; the new server has its share.
    let out = run_ok(&["vbucket", "status", "--topology", topo_s, "--pool", "main"]);
    assert!(
        out.contains(&format!("2 {}: 21 buckets", addrs[2])),
        "{out}"
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&topo).unwrap()).unwrap();
    let want = t["buckets"]["main"]["version"].as_u64().unwrap();
    assert!(fae_testkit::wait_until(Duration::from_secs(5), || version(
        &c
    )
        == want));
    assert!(!raw::keys(&addrs[2]).is_empty());
    for k in keys.iter().take(50) {
        let r = c.bucket_route(Op::Get, k.as_bytes()).unwrap();
        let b = &r[0].1;
        assert_eq!(b.moving, None);
        assert_eq!(b.server_addr, addrs[b.server as usize]);
        let map = &t["buckets"]["main"]["map"];
        assert_eq!(
            u64::from(b.server),
            map[b.bucket as usize].as_u64().unwrap()
        );
    }
    // Running apply again: nothing to do.
    let out = run_ok(&[
        "vbucket",
        "apply",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--plan",
        plan.to_str().unwrap(),
        "--settle-ms",
        "0",
    ]);
    assert!(out.contains("done") && !out.contains("step"), "{out}");

    // Rollback mid-move: a plan back to two servers, two steps in, then rollback.
    let plan2 = dir.join("plan2.json");
    run_ok(&[
        "vbucket",
        "plan",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--remove",
        &addrs[2],
        "--out",
        plan2.to_str().unwrap(),
    ]);
    run_ok(&[
        "vbucket",
        "apply",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--plan",
        plan2.to_str().unwrap(),
        "--settle-ms",
        "0",
        "--steps",
        "3",
    ]);
    let out = run_ok(&["vbucket", "status", "--topology", topo_s, "--pool", "main"]);
    assert!(out.contains("dual_write"), "{out}");
    let out = run_ok(&[
        "vbucket",
        "rollback",
        "--topology",
        topo_s,
        "--pool",
        "main",
        "--settle-ms",
        "0",
    ]);
    assert!(out.contains("rolled back"), "{out}");
    let out = run_ok(&["vbucket", "status", "--topology", topo_s, "--pool", "main"]);
    assert!(!out.contains("->"), "no move left: {out}");
    assert!(
        out.contains(&format!("2 {}: 21 buckets", addrs[2])),
        "{out}"
    );
    drop(c);
    std::fs::remove_dir_all(&dir).ok();
}
