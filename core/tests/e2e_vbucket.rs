//! Virtual buckets end to end, against real memcached servers: what the **servers** hold is
//! checked (`raw::get`), not only what the client answers.
//!
//! - placement: every key is on its bucket's server in the map, and nowhere else;
//! - each move phase's read and write rules, for the moving bucket's keys only (a key of
//!   another bucket on the same server is never dual-written);
//! - map versions: a reload (config or discovery snapshot) with an older map, or a different
//!   map under the same version, is refused and the map in use stays;
//! - a rebalance from 4 to 5 servers a few buckets at a time under a 90/10 get/set load, with a
//!   reader that checks every value against the last write, and a rollback mid-move: no stale
//!   read, and the hit rate of every step within 1 % of the steady state.

use std::collections::BTreeMap;

use fae_core::hash::HashFn;
use fae_core::placement::vbucket::{balanced, plan_moves};
use fae_core::process::background;
use fae_core::{Client, Config, Op};
use fae_testkit::{Cluster, raw};

const TIMEOUTS: &str = r#""timeouts": {"connect_ms": 200, "io_ms": 500}"#;

fn bucket_of(key: &str, count: u32) -> u32 {
    HashFn::OneAtATime.hash(key.as_bytes()) & (count - 1)
}

/// A config of one pool `main` on `addrs`, placed by `count` buckets with `map` and `moves`
/// (JSON list of move objects), at `version`.
fn config(addrs: &[String], count: u32, version: u64, map: &[u32], moves: &str) -> Config {
    let json = vbucket_json(addrs, count, version, map, moves, "");
    Config::from_json(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn vbucket_json(
    addrs: &[String],
    count: u32,
    version: u64,
    map: &[u32],
    moves: &str,
    extra: &str,
) -> String {
    let servers: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let map: Vec<String> = map.iter().map(u32::to_string).collect();
    format!(
        r#"{{"pools": {{"main": {{"servers": [{}], "buckets": {{"count": {count}, "version": {version}, "map": [{}], "moves": [{moves}]}}}}}}, {TIMEOUTS}{extra}}}"#,
        servers.join(", "),
        map.join(", ")
    )
}

fn moves_json(moves: &[(u32, u32, &str)]) -> String {
    moves
        .iter()
        .map(|(b, to, p)| format!(r#"{{"bucket": {b}, "to": {to}, "phase": "{p}"}}"#))
        .collect::<Vec<_>>()
        .join(", ")
}

fn value(c: &Client, key: &str) -> Option<Vec<u8>> {
    c.get(key.as_bytes()).unwrap().map(|it| it.value)
}

fn on(addr: &str, key: &str) -> Option<Vec<u8>> {
    raw::get(addr, key).map(|(_, v)| v)
}

fn bucket_version(c: &Client) -> u64 {
    c.stats()["pools"]["main"]["buckets"]["version"]
        .as_u64()
        .unwrap()
}

#[test]
fn every_key_lives_on_its_buckets_server() {
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    // Runs of one server, so that a wrong mask or index would show.
    let map: Vec<u32> = (0..16).map(|b| [0, 0, 1, 2][b % 4]).collect();
    let c = Client::new(&config(&addrs, 16, 1, &map, "")).unwrap();
    for i in 0..300 {
        let k = format!("place:{i}");
        c.set(k.as_bytes(), k.as_bytes(), 0, 0).unwrap();
        let owner = map[bucket_of(&k, 16) as usize] as usize;
        for (s, a) in addrs.iter().enumerate() {
            assert_eq!(on(a, &k).is_some(), s == owner, "{k} on server {s}");
        }
        assert_eq!(
            c.route_for(Op::Get, k.as_bytes()).unwrap(),
            [addrs[owner].clone()]
        );
    }
    let stats = c.stats();
    let b = &stats["pools"]["main"]["buckets"];
    assert_eq!(b["count"], 16);
    assert_eq!(b["version"], 1);
    assert_eq!(b["moving"], 0);
    assert_eq!(
        b["requests"]["stable"], 300,
        "300 sets; route checks are no requests"
    );
    // The default map (no "map") is the balanced one for the weights.
    let json = vbucket_json(&addrs, 64, 1, &[], "", "");
    let json = json.replace(r#", "map": []"#, "");
    let d = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    let want = balanced(64, &[1, 1, 1]);
    for i in 0..100 {
        let k = format!("default:{i}");
        let owner = want[bucket_of(&k, 64) as usize] as usize;
        assert_eq!(
            d.route_for(Op::Set, k.as_bytes()).unwrap(),
            [addrs[owner].clone()]
        );
    }
}

#[test]
fn bad_bucket_configs_are_clear_errors() {
    let addrs = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
    let bad = |json: String, want: &str| {
        let e = Config::from_json(&json).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    };
    bad(
        vbucket_json(&addrs, 3, 1, &[0, 1, 0], "", ""),
        "power of two",
    );
    bad(
        vbucket_json(&addrs, 4, 1, &[0, 1, 2, 0], "", ""),
        "pools.main.buckets.map[2]",
    );
    bad(
        vbucket_json(
            &addrs,
            4,
            1,
            &[0, 1, 0, 1],
            &moves_json(&[(0, 0, "dual_write")]),
            "",
        ),
        "already on server 0",
    );
    bad(
        vbucket_json(
            &addrs,
            4,
            1,
            &[0, 1, 0, 1],
            &moves_json(&[(0, 1, "sideways")]),
            "",
        ),
        "sideways",
    );
    let with_mode = vbucket_json(&addrs, 4, 1, &[0, 1, 0, 1], "", "")
        .replace(r#""buckets""#, r#""mode": "jump", "buckets""#);
    bad(with_mode, "remove \"mode\"");
    let eject = vbucket_json(&addrs, 4, 1, &[0, 1, 0, 1], "", "")
        .replace(r#""buckets""#, r#""on_down": "eject", "buckets""#);
    bad(eject, "eject");
}

/// A key of `bucket` (of `count`), and a key of another bucket on the same server.
fn key_in(bucket: u32, count: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| bucket_of(k, count) == bucket)
        .unwrap()
}

#[test]
fn each_phase_reads_and_writes_by_the_migrate_rules_for_its_bucket_only() {
    let cluster = Cluster::start(2);
    let addrs = cluster.addrs();
    let (a, b) = (&addrs[0], &addrs[1]);
    let map = [0, 0, 0, 0];
    let moving = key_in(0, 4, "moving");
    let still = key_in(1, 4, "still");
    let phase_cfg =
        |version: u64, phase: &str| config(&addrs, 4, version, &map, &moves_json(&[(0, 1, phase)]));
    let c = Client::new(&config(&addrs, 4, 1, &map, "")).unwrap();

    // from_only: reads and writes on A; every write deletes the key on B.
    c.reload(&phase_cfg(2, "from_only")).unwrap();
    raw::set(b, &moving, 0, b"stale on B");
    c.set(moving.as_bytes(), b"v1", 0, 0).unwrap();
    assert_eq!(on(a, &moving).as_deref(), Some(&b"v1"[..]));
    assert_eq!(on(b, &moving), None, "from_only invalidates the target");
    assert_eq!(value(&c, &moving).as_deref(), Some(&b"v1"[..]));
    assert_eq!(
        c.route_for(Op::Set, moving.as_bytes()).unwrap(),
        [a.clone(), b.clone()]
    );

    // dual_write: writes on both, reads from A.
    c.reload(&phase_cfg(3, "dual_write")).unwrap();
    c.set(moving.as_bytes(), b"v2", 0, 0).unwrap();
    assert_eq!(on(a, &moving).as_deref(), Some(&b"v2"[..]));
    assert_eq!(on(b, &moving).as_deref(), Some(&b"v2"[..]));
    raw::set(b, &moving, 0, b"only on B");
    assert_eq!(value(&c, &moving).as_deref(), Some(&b"v2"[..]), "reads A");
    assert_eq!(
        c.route_for(Op::Get, moving.as_bytes()).unwrap(),
        [a.as_str()]
    );

    // dual_write_read_new: reads B; a miss there is read from A and copied forward.
    c.reload(&phase_cfg(4, "dual_write_read_new")).unwrap();
    assert_eq!(
        value(&c, &moving).as_deref(),
        Some(&b"only on B"[..]),
        "reads B"
    );
    raw::delete(b, &moving);
    assert_eq!(
        value(&c, &moving).as_deref(),
        Some(&b"v2"[..]),
        "falls back to A"
    );
    assert!(background::drain(std::time::Duration::from_secs(5)));
    assert_eq!(
        on(b, &moving).as_deref(),
        Some(&b"v2"[..]),
        "copied forward"
    );
    c.set(moving.as_bytes(), b"v3", 0, 0).unwrap();
    assert_eq!(on(a, &moving).as_deref(), Some(&b"v3"[..]));
    assert_eq!(on(b, &moving).as_deref(), Some(&b"v3"[..]));
    assert_eq!(
        c.route_for(Op::Get, moving.as_bytes()).unwrap(),
        [b.clone(), a.clone()]
    );

    // to_only: reads B without falling back; writes still reach A (a rollback stays warm).
    c.reload(&phase_cfg(5, "to_only")).unwrap();
    raw::delete(b, &moving);
    assert_eq!(value(&c, &moving), None, "no fallback");
    c.set(moving.as_bytes(), b"v4", 0, 0).unwrap();
    assert_eq!(on(a, &moving).as_deref(), Some(&b"v4"[..]));
    assert_eq!(on(b, &moving).as_deref(), Some(&b"v4"[..]));
    c.delete(moving.as_bytes()).unwrap();
    assert_eq!(
        (on(a, &moving), on(b, &moving)),
        (None, None),
        "deletes reach both"
    );

    // Through every phase, the other bucket's key stayed on A alone.
    c.set(still.as_bytes(), b"s", 0, 0).unwrap();
    assert_eq!(on(a, &still).as_deref(), Some(&b"s"[..]));
    assert_eq!(on(b, &still), None);
    assert_eq!(
        c.route_for(Op::Set, still.as_bytes()).unwrap(),
        [a.as_str()]
    );

    // Finished: the map names B; nothing of A is read or written for the bucket.
    c.reload(&config(&addrs, 4, 6, &[1, 0, 0, 0], "")).unwrap();
    c.set(moving.as_bytes(), b"v5", 0, 0).unwrap();
    assert_eq!(on(b, &moving).as_deref(), Some(&b"v5"[..]));
    assert_eq!(on(a, &moving), None);

    let stats = c.stats();
    let req = &stats["pools"]["main"]["buckets"]["requests"];
    assert_eq!(req["stable"], 1, "finished map: one set since the reload");
}

#[test]
fn phase_requests_are_counted_per_phase() {
    let cluster = Cluster::start(2);
    let addrs = cluster.addrs();
    let moving = key_in(0, 4, "count");
    let still = key_in(1, 4, "count");
    let c = Client::new(&config(
        &addrs,
        4,
        1,
        &[0, 0, 0, 0],
        &moves_json(&[(0, 1, "dual_write_read_new")]),
    ))
    .unwrap();
    let keys: [&[u8]; 3] = [moving.as_bytes(), still.as_bytes(), moving.as_bytes()];
    c.get_multi(&keys).unwrap();
    c.set(still.as_bytes(), b"x", 0, 0).unwrap();
    let stats = c.stats();
    let b = &stats["pools"]["main"]["buckets"];
    assert_eq!(b["moving"], 1);
    assert_eq!(b["requests"]["stable"], 2);
    assert_eq!(b["requests"]["dual_write_read_new"], 2);
    assert_eq!(b["requests"]["dual_write"], 0);
}

#[test]
fn a_client_never_goes_back_to_an_older_map() {
    let cluster = Cluster::start(2);
    let addrs = cluster.addrs();
    let (m5, m4) = ([0, 1, 0, 1], [1, 1, 0, 0]);
    let c = Client::new(&config(&addrs, 4, 5, &m5, "")).unwrap();
    let e = c.reload(&config(&addrs, 4, 4, &m4, "")).unwrap_err();
    assert!(e.to_string().contains("older than version 5"), "{e}");
    let e = c.reload(&config(&addrs, 4, 5, &m4, "")).unwrap_err();
    assert!(e.to_string().contains("same version 5"), "{e}");
    assert_eq!(bucket_version(&c), 5);
    c.reload(&config(&addrs, 4, 5, &m5, "")).unwrap();
    c.reload(&config(&addrs, 4, 6, &m4, "")).unwrap();
    assert_eq!(bucket_version(&c), 6);

    // Through a discovery snapshot: the snapshot's map replaces the config's unless older.
    let dir = std::env::temp_dir().join(format!("fae-vbucket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("topology.json");
    let write = |version: u64, map: &[u32]| {
        let map: Vec<String> = map.iter().map(u32::to_string).collect();
        let servers: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            r#"{{"version": 1, "pools": {{"main": [{}]}}, "buckets": {{"main": {{"count": 4, "version": {version}, "map": [{}]}}}}}}"#,
            servers.join(", "),
            map.join(", ")
        );
        let tmp = dir.join("t.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &snap).unwrap();
    };
    write(7, &m4);
    let extra = format!(r#", "discovery": {{"file": "{}"}}"#, snap.display());
    let base = Config::from_json(&vbucket_json(&addrs, 4, 1, &m5, "", &extra)).unwrap();
    let d = Client::new(&base).unwrap();
    assert_eq!(bucket_version(&d), 7);
    let k = key_in(0, 4, "snap");
    assert_eq!(
        d.route_for(Op::Get, k.as_bytes()).unwrap(),
        [addrs[1].clone()]
    );
    write(6, &m5);
    let e = d.reload(&base).unwrap_err();
    assert!(e.to_string().contains("older than version 7"), "{e}");
    assert_eq!(bucket_version(&d), 7);
    assert_eq!(
        d.route_for(Op::Get, k.as_bytes()).unwrap(),
        [addrs[1].clone()]
    );
    write(8, &m5);
    d.reload(&base).unwrap();
    assert_eq!(bucket_version(&d), 8);
    assert_eq!(
        d.route_for(Op::Get, k.as_bytes()).unwrap(),
        [addrs[0].clone()]
    );
    // A config whose own map is newer than the snapshot's keeps its own.
    let newer = Config::from_json(&vbucket_json(&addrs, 4, 9, &m4, "", &extra)).unwrap();
    d.reload(&newer).unwrap();
    assert_eq!(bucket_version(&d), 9);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------
// rebalance under load

fn value_of(key: &str, version: u32) -> Vec<u8> {
    format!("{key}#{version}").into_bytes()
}

#[derive(Default, Debug)]
struct Load {
    gets: u64,
    hits: u64,
    stale: u64,
}

impl Load {
    fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.gets.max(1) as f64
    }
}

/// One pass of a 90/10 load over `versions`' keys (shuffled): 9 gets, then a set of a random
/// key; every value read is checked against the last write.
fn load(c: &Client, versions: &mut BTreeMap<String, u32>, seed: &mut u64) -> Load {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut keys: Vec<String> = versions.keys().cloned().collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let mut out = Load::default();
    for chunk in keys.chunks(9) {
        for k in chunk {
            out.gets += 1;
            if let Some(it) = c
                .get(k.as_bytes())
                .unwrap_or_else(|e| panic!("get {k}: {e}"))
            {
                out.hits += 1;
                if it.value != value_of(k, versions[k]) {
                    out.stale += 1;
                }
            }
        }
        let k = &keys[(next() % keys.len() as u64) as usize];
        let v = versions.get_mut(k).unwrap();
        *v += 1;
        c.set(k.as_bytes(), &value_of(k, *v), 0, 0).unwrap();
    }
    out
}

/// Delete, on `addr`, every key of `buckets` (what `fae vbucket apply` does to a move's
/// target in from_only: copies left there by an earlier move must not be read later).
fn purge(addr: &str, count: u32, buckets: &[u32]) {
    for k in raw::keys(addr) {
        let k = String::from_utf8(k).unwrap();
        if buckets.contains(&bucket_of(&k, count)) {
            raw::delete(addr, &k);
        }
    }
}

#[test]
fn rebalance_from_4_to_5_servers_in_batches_and_a_rollback_serve_no_stale_value() {
    let cluster = Cluster::start(5);
    let addrs = cluster.addrs();
    const COUNT: u32 = 64;
    let mut map = balanced(COUNT, &[1, 1, 1, 1]);
    let mut version = 1;
    let c = Client::new(&config(&addrs[..4], COUNT, version, &map, "")).unwrap();
    const N: usize = 1000;
    let mut versions: BTreeMap<String, u32> = (0..N).map(|i| (format!("rb:{i}"), 0)).collect();
    for k in versions.keys() {
        c.set(k.as_bytes(), &value_of(k, 0), 0, 0).unwrap();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let steady = load(&c, &mut versions, &mut seed);
    assert_eq!(steady.stale, 0);
    assert!(steady.hit_rate() > 0.99, "{steady:?}");

    // The fifth server joins the list; no bucket is on it yet.
    version += 1;
    c.reload(&config(&addrs, COUNT, version, &map, "")).unwrap();
    let moves = plan_moves(&map, &[1; 5]).unwrap();
    assert_eq!(moves.len(), 12, "64 buckets over 5 servers: 12 or 13 each");
    assert!(moves.iter().all(|&(_, to)| to == 4));

    let mut check = |c: &Client, what: &str, versions: &mut BTreeMap<String, u32>| {
        let l = load(c, versions, &mut seed);
        eprintln!(
            "vbucket rebalance {what}: hit rate {:.4} ({}/{}, {} stale), {:.1} % of steady state",
            l.hit_rate(),
            l.hits,
            l.gets,
            l.stale,
            100.0 * l.hit_rate() / steady.hit_rate()
        );
        assert_eq!(l.stale, 0, "{what}");
        assert!(
            l.hit_rate() >= 0.99 * steady.hit_rate(),
            "{what}: {:.4} < 99 % of {:.4}",
            l.hit_rate(),
            steady.hit_rate()
        );
    };

    let phases = ["from_only", "dual_write", "dual_write_read_new", "to_only"];
    for (i, batch) in moves.chunks(4).enumerate() {
        let buckets: Vec<u32> = batch.iter().map(|&(b, _)| b).collect();
        for phase in phases {
            let mv: Vec<(u32, u32, &str)> = batch.iter().map(|&(b, to)| (b, to, phase)).collect();
            version += 1;
            c.reload(&config(&addrs, COUNT, version, &map, &moves_json(&mv)))
                .unwrap();
            if phase == "from_only" {
                purge(&addrs[4], COUNT, &buckets);
            }
            assert!(background::drain(std::time::Duration::from_secs(5)));
            check(&c, &format!("batch {i} {phase}"), &mut versions);
        }
        if i == 1 {
            // Roll this batch back from to_only, a phase at a time, then move it again.
            for phase in ["dual_write_read_new", "dual_write", "from_only"] {
                let mv: Vec<(u32, u32, &str)> =
                    batch.iter().map(|&(b, to)| (b, to, phase)).collect();
                version += 1;
                c.reload(&config(&addrs, COUNT, version, &map, &moves_json(&mv)))
                    .unwrap();
                check(&c, &format!("batch {i} back to {phase}"), &mut versions);
            }
            version += 1;
            c.reload(&config(&addrs, COUNT, version, &map, "")).unwrap();
            check(&c, &format!("batch {i} rolled back"), &mut versions);
            for phase in phases {
                let mv: Vec<(u32, u32, &str)> =
                    batch.iter().map(|&(b, to)| (b, to, phase)).collect();
                version += 1;
                c.reload(&config(&addrs, COUNT, version, &map, &moves_json(&mv)))
                    .unwrap();
                if phase == "from_only" {
                    purge(&addrs[4], COUNT, &buckets);
                }
                assert!(background::drain(std::time::Duration::from_secs(5)));
                check(&c, &format!("batch {i} again {phase}"), &mut versions);
            }
        }
        for &(b, to) in batch {
            map[b as usize] = to;
        }
        version += 1;
        c.reload(&config(&addrs, COUNT, version, &map, "")).unwrap();
        check(&c, &format!("batch {i} done"), &mut versions);
    }
    // The new server holds its share, and every key is where the map says.
    let on_new = raw::keys(&addrs[4]).len();
    assert!(on_new > N / 10, "{on_new} keys on the new server");
    for k in versions.keys() {
        let owner = map[bucket_of(k, COUNT) as usize] as usize;
        assert_eq!(
            c.route_for(Op::Get, k.as_bytes()).unwrap(),
            [addrs[owner].clone()]
        );
    }
}
