//! Every route of the tree end to end, against real memcached servers (issue: route e2e).
//!
//! Each test builds its config as JSON (`pools` + `route`, the schema of each route's
//! `Config` in `core/src/route/`), starts its own servers with the testkit, and checks what the
//! route promises in its module doc by looking at what the **servers** hold (`raw::get`,
//! `raw::keys`, the meta `t` flag for TTLs), not only at what the client answers:
//!
//! - `failover`: a dead server's keys are served by the next child with no error, a miss is an
//!   answer (never failed over), `failover_on` is per operation class, `max_tries` bounds the
//!   children, and a restarted server takes its keys back.
//! - `gutter`: a paused, then killed, server's writes land in the gutter pool with a TTL ≤
//!   `max_ttl`, and its reads are served from there.
//! - `replicated`: `all_majority` with one and two of three replicas down (children and
//!   `pool` + `replicas` forms), `all_sync` reporting a failure, `all_async` copying in the
//!   background, `first`/`random` reads, and hedged reads behind fault proxies (hedges won,
//!   the hedge budget, no cancelled connection reused).
//! - `shadow`: exactly the SipHash-chosen keys reach the shadow, replies never come from it, a
//!   paused shadow adds no error and no latency.
//! - `warm_up`: cold misses are read from warm and added to cold with the remaining TTL; gets
//!   hands out a CAS token of cold; deletes reach both.
//! - `migrate` 4 → 6 servers and back through every phase with a read-heavy load: the hit rate
//!   per phase (printed), the new pool holding the keys, a deleted key staying deleted after a
//!   rollback; conditional writes (cas, add, incr) in the dual-write phases never leaving a
//!   stale value on the other side (a regression).
//! - `prefix`, `operation`, `local` (the whole cache, and a near cache with `ttl_ms` whose
//!   `gat` reaches the server: a regression).
//! - `route_for` of a composite tree and `stats()["routes"]` keyed by config path.
//!
//! Timeouts are short (`connect_ms` 200, `io_ms` 300) so faults cost little. Everything is
//! bounded by counts and `wait_until`. The hedging test measures latencies, so it runs alone:
//! every other test holds [`shared`], it holds [`exclusive`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use fae_core::process::background;
use fae_core::{Client, Config, Op, Reason, SetItem, StoreOutcome};
use fae_testkit::{Cluster, Fault, FaultProxy, HostileServer, raw, wait_until};

const TIMEOUTS: &str = r#""timeouts": {"connect_ms": 200, "io_ms": 300}"#;
const IO_MS: u64 = 300;
/// Breakers probe a restarted server quickly.
const FAST_PROBES: &str = r#""health": {"probe_initial_ms": 50, "probe_max_ms": 200}"#;
/// Background jobs (shadow copies, async replicas, warm-up adds) finish within this.
const DRAIN: Duration = Duration::from_secs(10);
/// What a request to a killed (or paused) server fails with: a pooled connection is reset,
/// a new one refused; a paused server times out; an open breaker fails fast.
const DEAD: [Reason; 7] = [
    Reason::Reset,
    Reason::Io,
    Reason::ConnectRefused,
    Reason::ConnectFailed,
    Reason::ConnectTimeout,
    Reason::Timeout,
    Reason::Tko,
];

fn assert_dead(e: &fae_core::Error) {
    assert!(DEAD.contains(&e.reason()), "not a dead server's error: {e}");
}

static TIMING: RwLock<()> = RwLock::new(());

/// Most tests: may run alongside each other.
fn shared() -> RwLockReadGuard<'static, ()> {
    TIMING.read().unwrap_or_else(|e| e.into_inner())
}

/// The latency-measuring test: runs alone.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    TIMING.write().unwrap_or_else(|e| e.into_inner())
}

/// `"name": {"servers": [...]<extra>}`.
fn pool(name: &str, addrs: &[String], extra: &str) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(r#""{name}": {{"servers": [{}]{extra}}}"#, list.join(", "))
}

/// A config of `pools`, `route` and `extra` top-level fields (`, "health": {...}`).
fn config(pools: &[String], route: &str, extra: &str) -> Config {
    let json = format!(
        r#"{{"pools": {{{}}}, "route": {route}, {TIMEOUTS}{extra}}}"#,
        pools.join(", ")
    );
    Config::from_json(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn client(pools: &[String], route: &str, extra: &str) -> Client {
    Client::new(&config(pools, route, extra)).unwrap()
}

/// Two servers, each behind a `FaultProxy`, as pools `p0` and `p1`: the cluster (stopped when
/// dropped), the proxies, their addresses and the two pool configs.
fn proxied_p0_p1() -> (Cluster, Vec<FaultProxy>, Vec<String>, [String; 2]) {
    let cluster = Cluster::start(2);
    let proxies: Vec<FaultProxy> = cluster
        .addrs()
        .iter()
        .map(|a| FaultProxy::start(a))
        .collect();
    let p: Vec<String> = proxies.iter().map(FaultProxy::addr).collect();
    let pools = [pool("p0", &p[..1], ""), pool("p1", &p[1..], "")];
    (cluster, proxies, p, pools)
}

/// Route `replicated` over pools `p0` and `p1`, reads hedged after `after_ms`.
fn hedged_p0_p1(after_ms: f64, max_ratio: f64) -> String {
    format!(
        r#"{{"type": "replicated", "children": ["p0", "p1"], "read": "hedged",
            "hedge_after_ms": {after_ms}, "max_hedge_ratio": {max_ratio}}}"#
    )
}

/// A key named `prefix:i` whose first destination for `op` is `addr`.
fn key_on(c: &Client, op: Op, addr: &str, prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| c.route_for(op, k.as_bytes()).unwrap()[0] == addr)
        .unwrap_or_else(|| panic!("no key of {prefix} goes to {addr}"))
}

fn get(c: &Client, key: &str) -> Option<Vec<u8>> {
    c.get(key.as_bytes())
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|i| i.value)
}

fn set(c: &Client, key: &str, value: &str) {
    c.set(key.as_bytes(), value.as_bytes(), 0, 0)
        .unwrap_or_else(|e| panic!("set {key}: {e}"));
}

/// What the server itself holds for `key`.
fn on_server(addr: &str, key: &str) -> Option<Vec<u8>> {
    raw::get(addr, key).map(|(_, v)| v)
}

/// The remaining TTL the server holds for `key` (`mg <key> t`): `Some(-1)` never expires,
/// `None` absent.
fn ttl_on_server(addr: &str, key: &str) -> Option<i64> {
    let cmd = format!("mg {key} t\r\n");
    let reply = raw::try_command(addr, cmd.as_bytes(), b"\r\n", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("mg {key} t on {addr}: {e}"));
    let line = String::from_utf8_lossy(&reply).trim_end().to_string();
    if line == "EN" {
        return None;
    }
    let t = line
        .strip_prefix("HD ")
        .and_then(|flags| flags.split(' ').find_map(|f| f.strip_prefix('t')))
        .and_then(|t| t.parse().ok());
    Some(t.unwrap_or_else(|| panic!("mg {key} t on {addr}: {line:?}")))
}

fn dest_stat(c: &Client, addr: &str, name: &str) -> u64 {
    c.stats()["destinations"][addr][name].as_u64().unwrap_or(0)
}

fn route_stat(c: &Client, path: &str, name: &str) -> u64 {
    c.stats()["routes"][path][name].as_u64().unwrap_or(0)
}

/// Every key on `addrs` (union of `lru_crawler metadump`), as strings.
fn keys_on(addrs: &[String]) -> BTreeSet<String> {
    addrs
        .iter()
        .flat_map(|a| raw::keys(a))
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// failover

#[test]
fn failover_serves_a_dead_servers_keys_from_the_backup_and_goes_back_after_restart() {
    let _g = shared();
    let main = Cluster::start(2);
    let backup = Cluster::start(1);
    let (m, b) = (main.addrs(), backup.addrs());
    let c = client(
        &[pool("main", &m, ""), pool("backup", &b, "")],
        r#"{"type": "failover", "children": ["main", "backup"]}"#,
        &format!(", {FAST_PROBES}"),
    );
    let dead = key_on(&c, Op::Get, &m[1], "fo:dead");
    let live = key_on(&c, Op::Get, &m[0], "fo:live");
    assert_eq!(
        c.route_for(Op::Get, dead.as_bytes()).unwrap(),
        [m[1].clone(), b[0].clone()]
    );
    set(&c, &dead, "main-v1");
    set(&c, &live, "live-v1");
    assert_eq!(on_server(&m[1], &dead).as_deref(), Some(&b"main-v1"[..]));
    assert_eq!(on_server(&b[0], &dead), None, "a healthy main takes writes");

    // A miss is an answer: the backup is not asked (it holds a value it must not hand out).
    let absent = key_on(&c, Op::Get, &m[0], "fo:absent");
    raw::set(&b[0], &absent, 0, b"backup-only");
    let asked = dest_stat(&c, &b[0], "requests");
    assert_eq!(get(&c, &absent), None);
    assert_eq!(
        dest_stat(&c, &b[0], "requests"),
        asked,
        "a miss never fails over"
    );

    main[1].kill().unwrap();
    // Reads of the dead server's keys go to the backup, with no error (a backup miss).
    assert_eq!(get(&c, &dead), None);
    set(&c, &dead, "backup-v2");
    assert_eq!(on_server(&b[0], &dead).as_deref(), Some(&b"backup-v2"[..]));
    assert_eq!(get(&c, &dead).as_deref(), Some(&b"backup-v2"[..]));
    assert!(c.delete(dead.as_bytes()).unwrap(), "deletes fail over too");
    assert_eq!(on_server(&b[0], &dead), None);
    set(&c, &dead, "backup-v3");
    // The live server's keys never move.
    assert_eq!(get(&c, &live).as_deref(), Some(&b"live-v1"[..]));
    set(&c, &live, "live-v2");
    assert_eq!(on_server(&b[0], &live), None);
    assert!(route_stat(&c, "route", "failovers") >= 4, "{}", c.stats());
    assert_eq!(route_stat(&c, "route", "failover_exhausted"), 0);

    // Restarted (empty): once the breaker closes, the key's writes are back on main.
    main[1].restart().unwrap();
    let back = wait_until(Duration::from_secs(5), || {
        c.set(dead.as_bytes(), b"main-v4", 0, 0).is_ok() && on_server(&m[1], &dead).is_some()
    });
    assert!(back, "main never took its key back: {}", c.stats());
    set(&c, &dead, "main-v5");
    assert_eq!(on_server(&m[1], &dead).as_deref(), Some(&b"main-v5"[..]));
    assert_ne!(
        on_server(&b[0], &dead).as_deref(),
        Some(&b"main-v5"[..]),
        "the backup is no longer written"
    );
    assert_eq!(get(&c, &dead).as_deref(), Some(&b"main-v5"[..]));
}

#[test]
fn failover_on_is_per_operation_class_and_max_tries_bounds_the_children() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [
        pool("a", &a[..1], ""),
        pool("b", &a[1..2], ""),
        pool("c", &a[2..], ""),
    ];
    let c = client(
        &pools,
        r#"{"type": "failover", "children": ["a", "b"],
            "failover_on": {"gets": ["tko", "connect_refused", "connect_failed", "reset", "io", "timeout"],
                            "updates": []}}"#,
        "",
    );
    set(&c, "k", "a-value");
    cluster[0].kill().unwrap();
    // gets fail over (to a miss, then to b's value).
    assert_eq!(get(&c, "k"), None);
    raw::set(&a[1], "k", 3, b"b-value");
    let it = c.get(b"k").unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (&b"b-value"[..], 3));
    // updates do not: the error is the reply and b never sees the write.
    for _ in 0..3 {
        assert_dead(&c.set(b"u", b"v", 0, 0).unwrap_err());
        assert_dead(&c.incr(b"k", 1).unwrap_err());
    }
    assert_eq!(on_server(&a[1], "u"), None);
    // deletes keep the default list: they fail over.
    assert!(c.delete(b"k").unwrap());
    assert_eq!(on_server(&a[1], "k"), None);

    // max_tries 2 of 3 children: with a and b down, c is never asked nor listed.
    cluster[1].kill().unwrap();
    raw::set(&a[2], "k", 0, b"c-value");
    let route = r#"{"type": "failover", "children": ["a", "b", "c"], "max_tries": 2}"#;
    let c = client(&pools, route, "");
    assert_eq!(
        c.route_for(Op::Get, b"k").unwrap(),
        [a[0].clone(), a[1].clone()]
    );
    assert_dead(&c.get(b"k").unwrap_err());
    assert_eq!(dest_stat(&c, &a[2], "requests"), 0);
    assert_eq!(route_stat(&c, "route", "failover_exhausted"), 1);
    assert_eq!(route_stat(&c, "route", "failovers"), 1);
    // Every child tried: c answers.
    c.reload(&config(&pools, &route.replace("2", "3"), ""))
        .unwrap();
    assert_eq!(get(&c, "k").as_deref(), Some(&b"c-value"[..]));
    assert_eq!(c.route_for(Op::Get, b"k").unwrap().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// gutter

#[test]
fn gutter_takes_a_paused_servers_writes_with_a_capped_ttl() {
    let _g = shared();
    let main = Cluster::start(2);
    let gutter = Cluster::start(1);
    let (m, g) = (main.addrs(), gutter.addrs());
    let c = client(
        &[pool("main", &m, ""), pool("gutter", &g, "")],
        r#"{"type": "gutter", "pool": "gutter", "max_ttl": 10, "route": "main"}"#,
        "",
    );
    let k = key_on(&c, Op::Set, &m[1], "gut:never");
    let long = key_on(&c, Op::Set, &m[1], "gut:long");
    let short = key_on(&c, Op::Set, &m[1], "gut:short");
    let live = key_on(&c, Op::Set, &m[0], "gut:live");
    assert_eq!(
        c.route_for(Op::Set, k.as_bytes()).unwrap(),
        [m[1].clone(), g[0].clone()]
    );

    main[1].pause().unwrap();
    let t = Instant::now();
    c.set(k.as_bytes(), b"gutter-v", 5, 0).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(IO_MS + 700),
        "{:?}",
        t.elapsed()
    );
    c.set(long.as_bytes(), b"v", 0, 3600).unwrap();
    c.set(short.as_bytes(), b"v", 0, 4).unwrap();
    // The real TTLs on the gutter server: capped at 10 s ("never" included).
    let ttl = ttl_on_server(&g[0], &k).unwrap();
    assert!((1..=10).contains(&ttl), "never → {ttl}");
    let ttl = ttl_on_server(&g[0], &long).unwrap();
    assert!((1..=10).contains(&ttl), "3600 → {ttl}");
    let ttl = ttl_on_server(&g[0], &short).unwrap();
    assert!((1..=4).contains(&ttl), "4 → {ttl}");
    // Reads are served from the gutter.
    let it = c.get(k.as_bytes()).unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (&b"gutter-v"[..], 5));
    // A healthy server's writes keep their TTL and never reach the gutter.
    set(&c, &live, "main");
    assert_eq!(ttl_on_server(&m[0], &live), Some(-1));
    assert_eq!(ttl_on_server(&g[0], &live), None);

    let s = c.stats();
    assert_eq!(s["routes"]["route"]["type"], "failover");
    assert_eq!(s["routes"]["route.children[1]"]["type"], "gutter");
    assert!(
        route_stat(&c, "route.children[1]", "ttl_capped") >= 2,
        "{s}"
    );

    // Killed rather than paused: the same.
    main[1].kill().unwrap();
    let killed = key_on(&c, Op::Set, &m[1], "gut:killed");
    set(&c, &killed, "after-kill");
    assert!((1..=10).contains(&ttl_on_server(&g[0], &killed).unwrap()));
    assert_eq!(get(&c, &killed).as_deref(), Some(&b"after-kill"[..]));
}

// ---------------------------------------------------------------------------------------------
// replicated

#[test]
fn replicated_all_majority_survives_one_of_three_down_not_two() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [
        pool("r0", &a[..1], ""),
        pool("r1", &a[1..2], ""),
        pool("r2", &a[2..], ""),
    ];
    let c = client(
        &pools,
        r#"{"type": "replicated", "children": ["r0", "r1", "r2"], "write": "all_majority"}"#,
        "",
    );
    assert_eq!(c.route_for(Op::Set, b"k").unwrap(), a);
    set(&c, "k1", "v1");
    for addr in &a {
        assert_eq!(on_server(addr, "k1").as_deref(), Some(&b"v1"[..]), "{addr}");
    }
    cluster[1].kill().unwrap();
    set(&c, "k2", "v2");
    assert_eq!(on_server(&a[0], "k2").as_deref(), Some(&b"v2"[..]));
    assert_eq!(on_server(&a[2], "k2").as_deref(), Some(&b"v2"[..]));
    assert_eq!(get(&c, "k2").as_deref(), Some(&b"v2"[..]));
    assert!(c.delete(b"k1").unwrap(), "a majority deleted it");
    assert_eq!(on_server(&a[2], "k1"), None);
    assert_eq!(route_stat(&c, "route", "majority_failed"), 0);
    assert!(route_stat(&c, "route", "replica_failures") >= 2);

    cluster[2].kill().unwrap();
    assert_dead(&c.set(b"k3", b"v3", 0, 0).unwrap_err());
    assert_eq!(route_stat(&c, "route", "majority_failed"), 1);
    assert_eq!(
        on_server(&a[0], "k3").as_deref(),
        Some(&b"v3"[..]),
        "the live replica still took it"
    );
}

#[test]
fn replicated_pool_with_replicas_keeps_copies_on_distinct_servers() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [pool("rp", &a, "")];
    let c = client(
        &pools,
        r#"{"type": "replicated", "pool": "rp", "replicas": 3, "write": "all_majority"}"#,
        "",
    );
    let plain = client(&pools, r#""rp""#, "");
    for i in 0..20 {
        let k = format!("rk:{i}");
        let dests = c.route_for(Op::Set, k.as_bytes()).unwrap();
        assert_eq!(dests.len(), 3, "three distinct servers: {dests:?}");
        assert_eq!(
            dests[0],
            plain.route_for(Op::Set, k.as_bytes()).unwrap()[0],
            "copy 0 is the key's own server"
        );
    }
    cluster[1].kill().unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("rk:{i}")).collect();
    for k in &keys {
        set(&c, k, k);
    }
    for k in &keys {
        for addr in [&a[0], &a[2]] {
            assert_eq!(
                on_server(addr, k).as_deref(),
                Some(k.as_bytes()),
                "{k} on {addr}"
            );
        }
        // Reads whose copy 0 is the dead server are served by the next copy.
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    assert_eq!(route_stat(&c, "route", "majority_failed"), 0);
    cluster[2].kill().unwrap();
    assert_dead(&c.set(b"rk:0", b"x", 0, 0).unwrap_err()); // 1 of 3 is no majority
    assert_eq!(route_stat(&c, "route", "majority_failed"), 1);
}

/// Regression: a `cas` used to go to every replica, where only the server that issued the token
/// could accept it: all_sync answered EXISTS while replica 0 had stored it, and the copies
/// diverged. Now the cas goes to replica 0 and the others get the stored value.
#[test]
fn replicated_cas_keeps_every_copy_equal() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [pool("rp", &a, "")];
    for read in ["first", "random", "hedged"] {
        let c = client(
            &pools,
            &format!(
                r#"{{"type": "replicated", "pool": "rp", "replicas": 3, "write": "all_sync", "read": "{read}"}}"#
            ),
            "",
        );
        for i in 0..10 {
            let k = format!("cas:{read}:{i}");
            set(&c, &k, "v1");
            let item = c.gets(k.as_bytes()).unwrap().unwrap();
            let out = c.cas(k.as_bytes(), b"v2", 0, 0, item.cas).unwrap();
            assert_eq!(out, fae_core::StoreOutcome::Stored, "{k} ({read})");
            for addr in &a {
                assert_eq!(
                    on_server(addr, &k).as_deref(),
                    Some(&b"v2"[..]),
                    "{k} on {addr}"
                );
            }
            // A stale token is refused, and nothing changes anywhere.
            let out = c.cas(k.as_bytes(), b"v3", 0, 0, item.cas).unwrap();
            assert_eq!(out, fae_core::StoreOutcome::Exists);
            for addr in &a {
                assert_eq!(on_server(addr, &k).as_deref(), Some(&b"v2"[..]));
            }
        }
    }
}

#[test]
fn replicated_all_sync_reports_a_failure_and_all_async_copies_in_the_background() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [
        pool("r0", &a[..1], ""),
        pool("r1", &a[1..2], ""),
        pool("r2", &a[2..], ""),
    ];
    let route = |write: &str| {
        format!(r#"{{"type": "replicated", "children": ["r0", "r1", "r2"], "write": "{write}"}}"#)
    };
    let sync = client(&pools, &route("all_sync"), "");
    let asynch = client(&pools, &route("all_async"), "");

    // all_async: the first replica's reply; the others get the value shortly.
    set(&asynch, "a1", "v1");
    assert_eq!(on_server(&a[0], "a1").as_deref(), Some(&b"v1"[..]));
    let copied = wait_until(Duration::from_secs(5), || {
        on_server(&a[1], "a1").is_some() && on_server(&a[2], "a1").is_some()
    });
    assert!(copied, "the background copies never landed");

    cluster[2].kill().unwrap();
    // all_sync: a failure anywhere is the reply, though the live replicas took the value.
    let e = sync.set(b"s1", b"v", 0, 0).unwrap_err();
    assert_dead(&e);
    assert_eq!(e.destination(), Some(a[2].as_str()), "{e}");
    assert_eq!(on_server(&a[0], "s1").as_deref(), Some(&b"v"[..]));
    assert_eq!(on_server(&a[1], "s1").as_deref(), Some(&b"v"[..]));
    // all_async: the reply is replica 0's; the dead copy is counted, not returned.
    set(&asynch, "a2", "v2");
    assert!(background::drain(DRAIN));
    assert_eq!(on_server(&a[1], "a2").as_deref(), Some(&b"v2"[..]));
    assert!(route_stat(&asynch, "route", "replica_failures") >= 1);
    assert_eq!(get(&asynch, "a2").as_deref(), Some(&b"v2"[..]));
}

#[test]
fn replicated_random_reads_spread_over_replicas_and_first_reads_one() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [
        pool("r0", &a[..1], ""),
        pool("r1", &a[1..2], ""),
        pool("r2", &a[2..], ""),
    ];
    let route = |read: &str| {
        format!(r#"{{"type": "replicated", "children": ["r0", "r1", "r2"], "read": "{read}"}}"#)
    };
    let random = client(&pools, &route("random"), "");
    let first = client(&pools, &route("first"), "");
    set(&random, "k", "v");
    let before: Vec<u64> = a
        .iter()
        .map(|d| dest_stat(&random, d, "requests"))
        .collect();
    for _ in 0..300 {
        assert_eq!(get(&random, "k").as_deref(), Some(&b"v"[..]));
    }
    let spread: Vec<u64> = a
        .iter()
        .zip(&before)
        .map(|(d, b)| dest_stat(&random, d, "requests") - b)
        .collect();
    assert_eq!(spread.iter().sum::<u64>(), 300);
    assert!(spread.iter().all(|n| (50..=150).contains(n)), "{spread:?}");
    for _ in 0..50 {
        assert_eq!(get(&first, "k").as_deref(), Some(&b"v"[..]));
    }
    let reads: Vec<u64> = a.iter().map(|d| dest_stat(&first, d, "requests")).collect();
    assert_eq!(reads, [50, 0, 0]);
}

/// One round of hedged reads: `(latencies, hedges_sent, hedges_won, hedges_suppressed)`.
fn hedged_round(c: &Client, keys: &[String], reads: usize) -> (Vec<Duration>, u64, u64, u64) {
    let mut lat = Vec::with_capacity(reads);
    for i in 0..reads {
        let k = &keys[i % keys.len()];
        let t = Instant::now();
        let got = c.get(k.as_bytes());
        lat.push(t.elapsed());
        // Every read's value is its own key's: a cancelled connection was never read again.
        let got = got.unwrap_or_else(|e| panic!("read {i} of {k}: {e}"));
        assert_eq!(got.map(|it| it.value).as_deref(), Some(k.as_bytes()), "{k}");
    }
    let stat = |n| route_stat(c, "route", n);
    (
        lat,
        stat("hedges_sent"),
        stat("hedges_won"),
        stat("hedges_suppressed"),
    )
}

#[test]
fn hedged_reads_answer_slow_reads_from_the_second_replica_within_budget() {
    let _g = exclusive();
    let (_cluster, proxies, p, pools) = proxied_p0_p1();
    let route = |ratio: f64| hedged_p0_p1(5.0, ratio);
    let keys: Vec<String> = (0..50).map(|i| format!("hedge:{i}")).collect();
    let delay = Duration::from_millis(50);
    let slow = |lat: &[Duration]| lat.iter().filter(|d| **d >= delay * 9 / 10).count();
    const READS: usize = 200;

    // max_hedge_ratio 1.0: every slow read may hedge.
    let c = client(&pools, &route(1.0), "");
    for k in &keys {
        set(&c, k, k);
    }
    // Warm connections on both replicas; hedges sent meanwhile are not counted below.
    let (_, base_sent, base_won, _) = hedged_round(&c, &keys, 20);
    let accepted0 = proxies[0].accepted();
    let discarded0 = dest_stat(&c, &p[0], "connections_discarded");
    proxies[0].set_fault(Fault::DelayEveryNth {
        delay,
        every_nth: 10,
    });
    let (lat, sent, won, _) = hedged_round(&c, &keys, READS);
    proxies[0].set_fault(Fault::None);
    let (sent, won) = (sent - base_sent, won - base_won);
    let mut sorted = lat.clone();
    sorted.sort();
    eprintln!(
        "hedged (ratio 1.0): {READS} reads, 1 in 10 replies of replica 0 delayed {delay:?}: \
         hedges_sent={sent} hedges_won={won}, reads ≥ 45 ms: {}, p50={:?} p95={:?} p99={:?} max={:?}",
        slow(&lat),
        sorted[READS / 2],
        sorted[READS * 95 / 100],
        sorted[READS * 99 / 100],
        sorted[READS - 1],
    );
    // About 20 delayed replies (1 in 10 chunks, connection validations included).
    assert!(won >= 12, "hedges_won={won} sent={sent}");
    assert!(sent >= won);
    assert!(
        slow(&lat) <= 3,
        "slow reads were not answered by the hedge: {} of {READS} took ≥ 45 ms",
        slow(&lat)
    );
    // Each won hedge's loser was read to its end in the background and its connection went
    // back to replica 0's pool: none was discarded, and new ones were dialled only while
    // losers were still out (at most one per 50 ms delay), not one per won hedge.
    assert!(background::drain(Duration::from_secs(5)));
    assert_eq!(
        dest_stat(&c, &p[0], "connections_discarded") - discarded0,
        0
    );
    assert!(
        ((proxies[0].accepted() - accepted0) as u64) < won,
        "accepted {} new connections for {won} won hedges",
        proxies[0].accepted() - accepted0
    );

    // max_hedge_ratio 0.0: the burst of 10, then no more.
    let c = client(&pools, &route(0.0), "");
    proxies[0].set_fault(Fault::DelayEveryNth {
        delay,
        every_nth: 10,
    });
    let (lat, sent, won, suppressed) = hedged_round(&c, &keys, READS);
    proxies[0].set_fault(Fault::None);
    eprintln!(
        "hedged (ratio 0.0): hedges_sent={sent} hedges_won={won} suppressed={suppressed}, \
         reads ≥ 45 ms: {}",
        slow(&lat)
    );
    assert_eq!(sent, 10, "the burst, no more");
    assert!(suppressed >= 8, "suppressed={suppressed}");
    assert!(
        slow(&lat) >= 8,
        "suppressed hedges wait for the slow replica"
    );

    // A dead replica 0 needs no hedge: its error fails the read over to replica 1 at once.
    proxies[0].set_fault(Fault::Refuse);
    proxies[0].reset_all();
    for k in keys.iter().take(20) {
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    assert!(route_stat(&c, "route", "failovers") >= 20);
    assert_eq!(route_stat(&c, "route", "hedges_sent"), 10);
    proxies[0].set_fault(Fault::None);
}

/// Issue 17, item 8: a won hedge used to discard the loser's connection, so every won hedge
/// cost replica 0 a reconnect (and the read after it a dial, which itself could need a hedge).
/// Now the background worker reads the loser's reply to its end, records its latency, and
/// returns the connection: after many won hedges replica 0 still has the one connection it
/// started with.
#[test]
fn a_won_hedge_returns_the_losers_connection_to_its_pool() {
    let _g = exclusive();
    let (_cluster, proxies, p, pools) = proxied_p0_p1();
    let c = client(&pools, &hedged_p0_p1(2.0, 1.0), "");
    let keys: Vec<String> = (0..20).map(|i| format!("hedge-reuse:{i}")).collect();
    for k in &keys {
        set(&c, k, k);
    }
    for k in &keys {
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    assert!(background::drain(Duration::from_secs(5)));
    let opened0 = dest_stat(&c, &p[0], "connections_opened");
    let discarded0 = dest_stat(&c, &p[0], "connections_discarded");
    let requests0 = dest_stat(&c, &p[0], "requests");
    let won0 = route_stat(&c, "route", "hedges_won");
    let accepted0 = proxies[0].accepted();
    let delay = Duration::from_millis(30);
    proxies[0].set_fault(Fault::DelayEveryNth {
        delay,
        every_nth: 4,
    });
    const READS: usize = 80;
    for i in 0..READS {
        let k = &keys[i % keys.len()];
        let t = Instant::now();
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()), "read {i}");
        if t.elapsed() >= Duration::from_millis(2) {
            // Hedged: let the loser's late reply come in before the next read.
            assert!(background::drain(Duration::from_secs(5)));
        }
    }
    assert!(background::drain(Duration::from_secs(5)));
    proxies[0].set_fault(Fault::None);
    let won = route_stat(&c, "route", "hedges_won") - won0;
    let opened = dest_stat(&c, &p[0], "connections_opened") - opened0;
    let discarded = dest_stat(&c, &p[0], "connections_discarded") - discarded0;
    let requests = dest_stat(&c, &p[0], "requests") - requests0;
    eprintln!(
        "{READS} reads, every 4th reply of replica 0 delayed {delay:?}: hedges won {won}, \
         replica 0 connections opened {opened}, discarded {discarded}, accepted by its proxy {}, \
         requests recorded {requests}",
        proxies[0].accepted() - accepted0
    );
    assert!(won >= 10, "hedges won: {won}");
    assert_eq!(opened, 0, "connections opened after {won} won hedges");
    assert_eq!(discarded, 0, "connections discarded after {won} won hedges");
    assert_eq!(proxies[0].accepted() - accepted0, 0);
    // Every read started at replica 0, and the losers' latencies were recorded too.
    assert_eq!(requests, READS as u64);
    assert_eq!(background::pending_requests(), 0);
}

/// `hedge_after_ms: "p95"` waits for the primary's p95 over its recent requests. It used to be
/// the p95 over the destination's whole life: a server that had been slow for a while kept a
/// long hedge delay after it recovered, so its slow replies went unhedged for as long as the
/// slow spell dominated its history (here: 20 ms, while its p95 was back under 1 ms).
#[test]
fn a_p95_hedge_waits_for_the_recent_p95_not_a_past_slow_spell() {
    let _g = exclusive();
    let (_cluster, proxies, p, pools) = proxied_p0_p1();
    let route = r#"{"type": "replicated", "children": ["p0", "p1"], "read": "hedged",
        "hedge_after_ms": "p95", "max_hedge_ratio": 1.0}"#;
    let c = client(&pools, route, "");
    let keys: Vec<String> = (0..20).map(|i| format!("hedge-p95:{i}")).collect();
    for k in &keys {
        set(&c, k, k);
    }
    let read_from = |keys: &[String], n: usize| {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let k = &keys[i % keys.len()];
            let t = Instant::now();
            assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
            lat.push(t.elapsed());
        }
        lat
    };
    let read = |n: usize| read_from(&keys, n);
    // A slow spell: 250 reads at 20 ms, on five threads (each its own keys: reads of one key
    // at the same time would share one request).
    proxies[0].set_fault(Fault::Delay(Duration::from_millis(20)));
    std::thread::scope(|s| {
        for part in keys.chunks(4) {
            s.spawn(move || read_from(part, 50));
        }
    });
    proxies[0].set_fault(Fault::None);
    assert!(background::drain(Duration::from_secs(5)));
    // Recovered: 2,600 fast reads, with pauses so that windows close whatever this machine's
    // speed (after 1,000 values, or after a second). The slow spell stays above 5 % of the
    // server's history, so its lifetime p95 is still 20 ms.
    read(1200);
    std::thread::sleep(Duration::from_millis(1100));
    read(1200);
    std::thread::sleep(Duration::from_millis(1100));
    read(200);
    let lifetime_p95 = c.stats()["destinations"][&p[0]]["latency"]["p95_us"]
        .as_u64()
        .unwrap();
    assert!(lifetime_p95 >= 20_000, "lifetime p95 {lifetime_p95} µs");
    // Now 1 in 10 replies of replica 0 takes 50 ms: each is hedged after the recent p95
    // (under a millisecond on an idle machine), not after the slow spell's 20 ms.
    proxies[0].set_fault(Fault::DelayEveryNth {
        delay: Duration::from_millis(50),
        every_nth: 10,
    });
    let lat = read(100);
    proxies[0].set_fault(Fault::None);
    let late = lat
        .iter()
        .filter(|d| **d >= Duration::from_millis(15))
        .count();
    eprintln!(
        "p95 hedging after a slow spell: {late} of 100 reads took ≥ 15 ms; hedges won {}",
        route_stat(&c, "route", "hedges_won")
    );
    assert!(late <= 2, "{late} reads waited for the slow spell's p95");
    assert!(background::drain(Duration::from_secs(5)));
}

// ---------------------------------------------------------------------------------------------
// shadow

#[test]
fn shadow_mirrors_exactly_the_sip_hash_chosen_keys_and_never_answers() {
    let _g = shared();
    let main = Cluster::start(2);
    let shadow = Cluster::start(2);
    let (m, s) = (main.addrs(), shadow.addrs());
    let c = client(
        &[pool("main", &m, ""), pool("shadowpool", &s, "")],
        r#"{"type": "shadow", "route": "main", "shadow": "shadowpool", "fraction": 0.3}"#,
        "",
    );
    let keys: Vec<String> = (0..1000).map(|i| format!("sh:{i}")).collect();
    let expected: BTreeSet<String> = keys
        .iter()
        .filter(|k| {
            let dests = c.route_for(Op::Set, k.as_bytes()).unwrap();
            assert!(m.contains(&dests[0]), "main answers: {dests:?}");
            dests.len() == 2 && s.contains(&dests[1])
        })
        .cloned()
        .collect();
    for chunk in keys.chunks(100) {
        let items: Vec<SetItem<'_>> = chunk
            .iter()
            .map(|k| SetItem {
                key: k.as_bytes(),
                value: k.as_bytes(),
                flags: 0,
                exptime: 0,
            })
            .collect();
        for r in c.set_multi(&items).unwrap() {
            assert_eq!(r.unwrap(), StoreOutcome::Stored);
        }
        let ks: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        for (k, r) in chunk.iter().zip(c.get_multi(&ks).unwrap()) {
            assert_eq!(r.unwrap().unwrap().value, k.as_bytes());
        }
    }
    assert!(background::drain(DRAIN));
    let mirrored = keys_on(&s);
    let share = mirrored.len() as f64 / keys.len() as f64;
    eprintln!(
        "shadow fraction 0.3: {} of {} keys mirrored",
        mirrored.len(),
        keys.len()
    );
    assert!((0.25..=0.35).contains(&share), "{share}");
    assert_eq!(mirrored, expected, "exactly the keys route_for lists");
    assert_eq!(keys_on(&m).len(), keys.len(), "main holds every key");
    assert_eq!(
        route_stat(&c, "route", "shadowed"),
        2 * expected.len() as u64
    );

    // Replies never come from the shadow, even when it holds something else.
    for k in expected.iter().take(20) {
        let home = c.route_for(Op::Set, k.as_bytes()).unwrap()[1].clone();
        raw::set(&home, k, 0, b"from-the-shadow");
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    let only = expected.iter().next().unwrap();
    assert!(c.delete(only.as_bytes()).unwrap());
    assert_eq!(
        get(&c, only),
        None,
        "a main miss, whatever the shadow holds"
    );
}

#[test]
fn a_paused_shadow_adds_no_error_and_no_latency() {
    let _g = shared();
    let main = Cluster::start(2);
    let shadow = Cluster::start(2);
    let (m, s) = (main.addrs(), shadow.addrs());
    let c = client(
        &[pool("main", &m, ""), pool("shadowpool", &s, "")],
        r#"{"type": "shadow", "route": "main", "shadow": "shadowpool", "fraction": 1.0}"#,
        r#", "health": {"probe_initial_ms": 5000, "probe_max_ms": 5000}"#,
    );
    let keys: Vec<String> = (0..200)
        .map(|i| format!("psh:{i}"))
        .filter(|k| c.route_for(Op::Set, k.as_bytes()).unwrap()[1] == s[1])
        .take(40)
        .collect();
    assert_eq!(keys.len(), 40);
    shadow[1].pause().unwrap();
    let mut worst = Duration::ZERO;
    for k in &keys {
        let t = Instant::now();
        set(&c, k, k);
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
        worst = worst.max(t.elapsed());
    }
    // Inline, each shadow copy to the paused server would wait io_ms (300 ms).
    assert!(
        worst < Duration::from_millis(200),
        "a call waited for the shadow: {worst:?}"
    );
    assert!(background::drain(DRAIN));
    let errors = &c.stats()["destinations"][&s[1]]["errors"];
    let failed: u64 = ["timeout", "connect_timeout", "connect_failed", "tko"]
        .iter()
        .map(|r| errors[r].as_u64().unwrap_or(0))
        .sum();
    assert!(failed >= 3, "the shadow really failed: {errors}");
    assert_eq!(route_stat(&c, "route", "shadowed"), 2 * keys.len() as u64);
    for d in &m {
        assert_eq!(
            c.stats()["destinations"][d]["errors"],
            serde_json::json!({}),
            "main saw no error"
        );
    }
    shadow[1].resume().unwrap();
}

// ---------------------------------------------------------------------------------------------
// warm_up

#[test]
fn warm_up_fills_cold_from_warm_with_the_remaining_ttl() {
    let _g = shared();
    let cluster = Cluster::start(2);
    let (warm, cold) = (cluster.addrs()[..1].to_vec(), cluster.addrs()[1..].to_vec());
    let pools = [pool("warm", &warm, ""), pool("cold", &cold, "")];
    let filler = client(&pools, r#""warm""#, "");
    filler.set(b"w300", b"v300", 7, 300).unwrap();
    filler.set(b"w0", b"v0", 0, 0).unwrap();
    filler.set(b"wcas", b"old", 0, 0).unwrap();
    filler.set(b"wdel", b"x", 0, 0).unwrap();
    // Let the 300 s TTL run down, so the copy's TTL proves to be the remaining one.
    std::thread::sleep(Duration::from_millis(2200));

    let c = client(
        &pools,
        r#"{"type": "warm_up", "cold": "cold", "warm": "warm"}"#,
        "",
    );
    assert_eq!(
        c.route_for(Op::Get, b"k").unwrap(),
        [cold[0].clone(), warm[0].clone()]
    );
    assert_eq!(c.route_for(Op::Set, b"k").unwrap(), [cold[0].clone()]);
    assert_eq!(
        c.route_for(Op::Delete, b"k").unwrap(),
        [cold[0].clone(), warm[0].clone()]
    );

    let it = c.get(b"w300").unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (&b"v300"[..], 7));
    assert_eq!(get(&c, "w0").as_deref(), Some(&b"v0"[..]));
    assert_eq!(get(&c, "absent"), None);
    assert!(background::drain(DRAIN));
    assert_eq!(raw::get(&cold[0], "w300"), Some((7, b"v300".to_vec())));
    let ttl = ttl_on_server(&cold[0], "w300").unwrap();
    assert!((290..=298).contains(&ttl), "remaining TTL copied: {ttl}");
    assert_eq!(ttl_on_server(&cold[0], "w0"), Some(-1), "never stays never");
    assert_eq!(on_server(&cold[0], "absent"), None);
    assert_eq!(route_stat(&c, "route", "warm_hits"), 2);
    assert_eq!(route_stat(&c, "route", "warm_adds"), 2);
    // Cold hits now: warm is not asked again.
    let asked = dest_stat(&c, &warm[0], "requests");
    assert_eq!(get(&c, "w300").as_deref(), Some(&b"v300"[..]));
    assert_eq!(dest_stat(&c, &warm[0], "requests"), asked);

    // gets: the CAS token is cold's, so a cas on it goes through (on cold only).
    let it = c.gets(b"wcas").unwrap().unwrap();
    assert_eq!(it.value, b"old");
    assert!(it.cas > 0);
    assert_eq!(
        c.cas(b"wcas", b"new", 0, 0, it.cas).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(on_server(&cold[0], "wcas").as_deref(), Some(&b"new"[..]));
    assert_eq!(on_server(&warm[0], "wcas").as_deref(), Some(&b"old"[..]));
    assert_eq!(
        c.cas(b"wcas", b"newer", 0, 0, it.cas).unwrap(),
        StoreOutcome::Exists
    );

    // Writes go to cold only; deletes to both.
    set(&c, "fresh", "f");
    assert_eq!(on_server(&warm[0], "fresh"), None);
    assert!(
        !c.delete(b"wdel").unwrap(),
        "cold answers: it never held wdel"
    );
    assert_eq!(on_server(&warm[0], "wdel"), None);
    assert!(c.delete(b"w300").unwrap());
    assert_eq!(on_server(&cold[0], "w300"), None);
    assert_eq!(on_server(&warm[0], "w300"), None);
    assert_eq!(get(&c, "w300"), None, "no copy comes back from warm");
}

/// Losers that overlap: several slow replies in a row keep several losers out at once. Lent
/// connections were capped at `max_connections` (here 2), so from the third loser on each
/// was closed (and dialled again by a later read); up to four times that many may now be
/// out, and none is closed. Replica 0 is the testkit's scripted server, whose replies to key
/// commands come 50 ms late while new connections validate at once (a real server, or the
/// fault proxy, would delay the validation of every connection the reads must dial too).
#[test]
fn overlapping_losers_keep_their_connections() {
    let _g = exclusive();
    let slow = HostileServer::start();
    let cluster = Cluster::start(1);
    let p = [slow.addr(), cluster.addrs()[0].clone()];
    let pools = [
        pool("p0", &p[..1], r#", "max_connections": 2"#),
        pool("p1", &p[1..], ""),
    ];
    let c = client(&pools, &hedged_p0_p1(1.0, 1.0), "");
    let keys: Vec<String> = (0..6).map(|i| format!("hedge-overlap:{i}")).collect();
    for k in &keys {
        set(&c, k, k);
    }
    let discarded0 = dest_stat(&c, &p[0], "connections_discarded");
    let won0 = route_stat(&c, "route", "hedges_won");
    slow.set_delay(Duration::from_millis(50));
    let t = Instant::now();
    for k in &keys {
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    let took = t.elapsed();
    assert!(background::drain(Duration::from_secs(5)));
    slow.set_delay(Duration::ZERO);
    let won = route_stat(&c, "route", "hedges_won") - won0;
    let discarded = dest_stat(&c, &p[0], "connections_discarded") - discarded0;
    eprintln!("6 reads in {took:?}: hedges won {won}, replica 0 discarded {discarded}");
    assert_eq!(won, 6, "every read is won by the hedge");
    assert!(took < Duration::from_millis(50), "the losers overlapped");
    assert_eq!(discarded, 0, "losers' connections closed");
    assert_eq!(background::pending_requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// migrate

/// A read-heavy load over the keys of `versions`: one pass over them all in a shuffled order,
/// 9 gets (one `get_multi`) then 1 set of a random key. Returns (gets, hits, stale hits).
fn migration_load(c: &Client, versions: &mut BTreeMap<String, u32>, seed: &mut u64) -> Load {
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
    let mut load = Load::default();
    for chunk in keys.chunks(9) {
        let ks: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        for (k, r) in chunk.iter().zip(c.get_multi(&ks).unwrap()) {
            load.gets += 1;
            if let Some(it) = r.unwrap_or_else(|e| panic!("get {k}: {e}")) {
                load.hits += 1;
                if it.value != value_of(k, versions[k]) {
                    load.stale += 1;
                }
            }
        }
        let k = &keys[(next() % keys.len() as u64) as usize];
        let v = versions.get_mut(k).unwrap();
        *v += 1;
        c.set(k.as_bytes(), &value_of(k, *v), 0, 0).unwrap();
    }
    load
}

#[derive(Default, Debug)]
struct Load {
    gets: u64,
    hits: u64,
    stale: u64,
}

impl Load {
    fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.gets as f64
    }
}

fn value_of(key: &str, version: u32) -> Vec<u8> {
    format!("{key}#{version}").into_bytes()
}

#[test]
fn migration_from_4_to_6_servers_and_back_keeps_the_hit_rate() {
    let _g = shared();
    let cluster = Cluster::start(10);
    let addrs = cluster.addrs();
    let (old, new) = (addrs[..4].to_vec(), addrs[4..].to_vec());
    let pools = [
        pool("old", &old, ""),
        pool("new", &new, r#", "mode": "jump""#),
    ];
    let phase = |p: &str| {
        config(
            &pools,
            &format!(r#"{{"type": "migrate", "from": "old", "to": "new", "phase": "{p}"}}"#),
            "",
        )
    };
    let c = Client::new(&phase("from_only")).unwrap();
    const N: usize = 2000;
    let mut versions: BTreeMap<String, u32> = (0..N).map(|i| (format!("mig:{i}"), 0)).collect();
    let keys: Vec<String> = versions.keys().cloned().collect();
    for chunk in keys.chunks(200) {
        let values: Vec<Vec<u8>> = chunk.iter().map(|k| value_of(k, 0)).collect();
        let items: Vec<SetItem<'_>> = chunk
            .iter()
            .zip(&values)
            .map(|(k, v)| SetItem {
                key: k.as_bytes(),
                value: v,
                flags: 0,
                exptime: 0,
            })
            .collect();
        assert!(c.set_multi(&items).unwrap().iter().all(|r| r.is_ok()));
    }
    assert_eq!(keys_on(&new).len(), 0);

    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let steady = migration_load(&c, &mut versions, &mut seed);
    eprintln!(
        "migration from_only (steady state): hit rate {:.4} ({}/{} gets, {} stale)",
        steady.hit_rate(),
        steady.hits,
        steady.gets,
        steady.stale
    );
    assert_eq!(steady.stale, 0);
    let opened = |c: &Client| -> u64 {
        old.iter()
            .map(|a| dest_stat(c, a, "connections_opened"))
            .sum()
    };
    let opened_before = opened(&c);
    let mut deleted: Vec<String> = Vec::new();
    let steps = [
        ("dual_write", false),
        ("dual_write_read_new", false),
        ("to_only", false),
        ("dual_write_read_new", true),
        ("dual_write", true),
        ("from_only", true),
    ];
    for (name, back) in steps {
        // Copies forward of the last phase land before the switch, as time would let them.
        assert!(background::drain(DRAIN));
        c.reload(&phase(name)).unwrap();
        let load = migration_load(&c, &mut versions, &mut seed);
        let dir = if back { "back to" } else { "forward to" };
        eprintln!(
            "migration {dir} {name}: hit rate {:.4} ({}/{} gets, {} stale) — {:.1} % of steady state",
            load.hit_rate(),
            load.hits,
            load.gets,
            load.stale,
            100.0 * load.hit_rate() / steady.hit_rate()
        );
        assert!(
            load.hit_rate() >= 0.95 * steady.hit_rate(),
            "{dir} {name}: hit rate {:.4} < 95 % of {:.4}",
            load.hit_rate(),
            steady.hit_rate()
        );
        // Every phase, forward and back, reads every write: to_only keeps the old topology
        // current (mirrored writes), so rolling back the cut-over reads no stale value.
        assert_eq!(load.stale, 0, "{dir} {name}");
        if name == "dual_write_read_new" && !back {
            let k = keys[0].as_bytes();
            let dests = c.route_for(Op::Get, k).unwrap();
            assert!(
                new.contains(&dests[0]) && old.contains(&dests[1]),
                "{dests:?}"
            );
            // Route counters belong to the tree of one config: read them before the reload.
            assert!(route_stat(&c, "route", "read_fallbacks") > 0);
            assert!(route_stat(&c, "route", "copied_forward") > 0);
        }
        if name == "to_only" {
            assert!(background::drain(DRAIN));
            let held = keys_on(&new);
            let missing = versions.keys().filter(|k| !held.contains(*k)).count();
            assert_eq!(missing, 0, "the new topology holds every key");
            // A delete in to_only reaches the old topology too.
            for k in keys.iter().step_by(200) {
                assert!(c.delete(k.as_bytes()).unwrap(), "{k}");
                versions.remove(k);
                deleted.push(k.clone());
            }
            for k in &deleted {
                assert!(old.iter().all(|a| on_server(a, k).is_none()), "{k} on old");
            }
        }
        for k in &deleted {
            assert_eq!(
                get(&c, k),
                None,
                "{k} deleted in to_only, readable {dir} {name}"
            );
        }
    }
    assert_eq!(opened(&c), opened_before, "reloads kept the connections");
    assert_eq!(c.stats()["process"]["reloads"], 6);
}

/// Regression: in the phases that write both topologies, conditional writes (cas, add, incr …)
/// used to be repeated on the side that does not answer, where their outcome differs: a `cas`
/// left the new side with the replaced value, an `add` the old side refused was stored on the
/// new one, and both were served after the next phase switch. That side is now invalidated.
#[test]
fn migration_conditional_writes_never_leave_a_stale_value_behind() {
    let _g = shared();
    let cluster = Cluster::start(2);
    let addrs = cluster.addrs();
    let (old, new) = (addrs[..1].to_vec(), addrs[1..].to_vec());
    let pools = [pool("old", &old, ""), pool("new", &new, "")];
    let phase = |p: &str| {
        config(
            &pools,
            &format!(r#"{{"type": "migrate", "from": "old", "to": "new", "phase": "{p}"}}"#),
            "",
        )
    };
    let c = Client::new(&phase("from_only")).unwrap();
    set(&c, "add", "v0");
    set(&c, "ctr", "10");

    c.reload(&phase("dual_write")).unwrap();
    set(&c, "cas", "v1");
    assert_eq!(
        on_server(&new[0], "cas").as_deref(),
        Some(&b"v1"[..]),
        "sets reach both"
    );
    let it = c.gets(b"cas").unwrap().unwrap();
    assert_eq!(
        c.cas(b"cas", b"v2", 0, 0, it.cas).unwrap(),
        StoreOutcome::Stored
    );
    assert!(!c.add(b"add", b"added", 0, 0).unwrap(), "old holds it");
    assert_eq!(c.incr(b"ctr", 5).unwrap(), Some(15));
    for k in ["cas", "add", "ctr"] {
        assert_eq!(
            on_server(&new[0], k),
            None,
            "{k}: the new side is invalidated"
        );
    }

    c.reload(&phase("dual_write_read_new")).unwrap();
    assert_eq!(get(&c, "cas").as_deref(), Some(&b"v2"[..]));
    assert_eq!(get(&c, "add").as_deref(), Some(&b"v0"[..]));
    assert_eq!(get(&c, "ctr").as_deref(), Some(&b"15"[..]));
    // gets now hands out the new side's token (the key was copied forward first).
    let it = c.gets(b"cas").unwrap().unwrap();
    assert_eq!(
        c.cas(b"cas", b"v3", 0, 0, it.cas).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(
        on_server(&old[0], "cas"),
        None,
        "the old side is invalidated"
    );

    // Rolling back: the old side misses rather than serving v2.
    c.reload(&phase("dual_write")).unwrap();
    assert_eq!(get(&c, "cas"), None);
}

/// Regression: a pool grown in place (2 → 3 servers, the 2 kept) places most keys on the same
/// server in both topologies. The answering side's write and the other side's command went
/// out together on two connections to that server, and the other side's delete could land
/// second: `from_only` lost about 15 % of its sets (`fae-bench routes` (b)), and an `add` or
/// `incr` answered in a dual phase could be deleted right after. Every write must now stick,
/// in every phase, for pool sides and for tree sides.
#[test]
fn migration_to_a_grown_pool_keeps_every_write_on_the_shared_servers() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let addrs = cluster.addrs();
    let (old, new) = (addrs[..2].to_vec(), addrs.to_vec());
    let pools = [pool("old", &old, ""), pool("new", &new, "")];
    for tree in [false, true] {
        // As a tree, each side is a failover with a child that never serves: the sides are no
        // longer single servers, so the route compares the servers they visit.
        let side = |p: &str| {
            if tree {
                format!(r#"{{"type": "failover", "children": ["{p}", "{p}"]}}"#)
            } else {
                format!(r#""{p}""#)
            }
        };
        let phase = |p: &str| {
            config(
                &pools,
                &format!(
                    r#"{{"type": "migrate", "from": {}, "to": {}, "phase": "{p}"}}"#,
                    side("old"),
                    side("new")
                ),
                "",
            )
        };
        let c = Client::new(&phase("from_only")).unwrap();
        let (on_old, on_new) = (
            client(&pools, r#""old""#, ""),
            client(&pools, r#""new""#, ""),
        );
        let shared_keys = |prefix: &str| -> Vec<String> {
            (0..2000)
                .map(|i| format!("{prefix}:{tree}:{i}"))
                .filter(|k| {
                    let a = on_old.route_for(Op::Set, k.as_bytes()).unwrap();
                    let b = on_new.route_for(Op::Set, k.as_bytes()).unwrap();
                    a == b
                })
                .take(300)
                .collect()
        };
        for name in ["from_only", "dual_write", "dual_write_read_new", "to_only"] {
            c.reload(&phase(name)).unwrap();
            let keys = shared_keys(name);
            assert_eq!(keys.len(), 300, "{name}: keys on a shared server");
            for k in &keys {
                set(&c, k, k);
            }
            let lost: Vec<&String> = keys.iter().filter(|k| get(&c, k).is_none()).collect();
            assert!(
                lost.is_empty(),
                "tree {tree}, {name}: {} of 300 sets lost, first {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            );
            // Conditional writes answer as the answering side alone would. Over pools they
            // stick; over trees the other side's invalidation follows them, so a shared
            // server may then miss, but never serves an older value.
            let sticks = |k: &str, v: &[u8]| match get(&c, k) {
                Some(got) => got == v,
                None => tree,
            };
            for k in keys.iter().take(50) {
                assert!(c.delete(k.as_bytes()).unwrap(), "{name}: delete {k}");
                assert!(
                    c.add(k.as_bytes(), b"added", 0, 0).unwrap(),
                    "{name}: add {k}"
                );
                assert!(sticks(k, b"added"), "tree {tree}, {name}: add of {k}");
                set(&c, k, "7");
                assert_eq!(c.incr(k.as_bytes(), 1).unwrap(), Some(8), "{name}: {k}");
                assert!(sticks(k, b"8"), "tree {tree}, {name}: incr of {k}");
                assert!(!c.add(k.as_bytes(), b"again", 0, 0).unwrap() || tree, "{k}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// prefix, operation, local

#[test]
fn prefix_and_operation_routes_on_real_pools() {
    let _g = shared();
    let cluster = Cluster::start(3);
    let a = cluster.addrs();
    let pools = [
        pool("a", &a[..1], ""),
        pool("b", &a[1..2], ""),
        pool("c", &a[2..], ""),
    ];
    let c = client(
        &pools,
        r#"{"type": "prefix", "routes": {"user:": "a", "user:big:": "b"}, "default": "c"}"#,
        "",
    );
    let keys = ["user:1", "user:big:2", "other:3", "user:4"];
    let homes = [&a[0], &a[1], &a[2], &a[0]];
    let items: Vec<SetItem<'_>> = keys
        .iter()
        .map(|k| SetItem {
            key: k.as_bytes(),
            value: k.as_bytes(),
            flags: 0,
            exptime: 0,
        })
        .collect();
    assert!(c.set_multi(&items).unwrap().iter().all(|r| r.is_ok()));
    for (k, home) in keys.iter().zip(homes) {
        assert_eq!(c.route_for(Op::Get, k.as_bytes()).unwrap(), [home.as_str()]);
        for addr in &a {
            let want = (addr == home).then(|| k.as_bytes().to_vec());
            assert_eq!(on_server(addr, k), want, "{k} on {addr}");
        }
    }
    let ks: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let got: Vec<Vec<u8>> = c
        .get_multi(&ks)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().unwrap().value)
        .collect();
    assert_eq!(got, ks, "split per route, merged in order");
    assert!(c.delete(b"user:big:2").unwrap());
    assert_eq!(on_server(&a[1], "user:big:2"), None);

    let c = client(
        &pools,
        r#"{"type": "operation", "get": "a", "set": "b", "delete": "c", "default": "b"}"#,
        "",
    );
    set(&c, "op", "written");
    assert_eq!(on_server(&a[1], "op").as_deref(), Some(&b"written"[..]));
    assert_eq!(on_server(&a[0], "op"), None);
    raw::set(&a[0], "op", 0, b"read-side");
    assert_eq!(get(&c, "op").as_deref(), Some(&b"read-side"[..]));
    raw::set(&a[2], "op", 0, b"delete-side");
    assert!(c.delete(b"op").unwrap());
    assert_eq!(on_server(&a[2], "op"), None);
    assert_eq!(on_server(&a[1], "op").as_deref(), Some(&b"written"[..]));
    // arith and touch take the default route.
    set(&c, "n", "5");
    assert_eq!(c.incr(b"n", 3).unwrap(), Some(8));
    assert_eq!(on_server(&a[1], "n").as_deref(), Some(&b"8"[..]));
    assert!(c.touch(b"n", 100).unwrap());
    assert!((1..=100).contains(&ttl_on_server(&a[1], "n").unwrap()));
    assert_eq!(c.route_for(Op::Get, b"n").unwrap(), [a[0].clone()]);
    assert_eq!(c.route_for(Op::Arith, b"n").unwrap(), [a[1].clone()]);
    assert_eq!(c.route_for(Op::Delete, b"n").unwrap(), [a[2].clone()]);
}

/// Every command against `c`, a client whose route is a standalone `local` cache.
fn every_command_on_the_local_cache(c: &Client) {
    assert_eq!(c.route_for(Op::Get, b"k").unwrap(), ["local"]);
    assert_eq!(c.get(b"k").unwrap(), None);
    c.set(b"k", b"v", 3, 0).unwrap();
    let it = c.get(b"k").unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (&b"v"[..], 3));
    assert!(!c.add(b"k", b"x", 0, 0).unwrap());
    assert!(c.add(b"k2", b"x", 0, 0).unwrap());
    assert!(c.replace(b"k2", b"y", 0, 0).unwrap());
    assert!(!c.replace(b"nope", b"y", 0, 0).unwrap());
    assert!(c.append(b"k2", b">").unwrap());
    assert!(c.prepend(b"k2", b"<").unwrap());
    assert_eq!(c.get(b"k2").unwrap().unwrap().value, b"<y>");
    let it = c.gets(b"k").unwrap().unwrap();
    assert!(it.cas > 0);
    assert_eq!(
        c.cas(b"k", b"w", 0, 0, it.cas).unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(
        c.cas(b"k", b"z", 0, 0, it.cas).unwrap(),
        StoreOutcome::Exists
    );
    assert_eq!(
        c.cas(b"nope", b"z", 0, 0, 1).unwrap(),
        StoreOutcome::NotFound
    );
    c.set(b"n", b"5", 0, 0).unwrap();
    assert_eq!(c.incr(b"n", 3).unwrap(), Some(8));
    assert_eq!(c.decr(b"n", 10).unwrap(), Some(0));
    assert_eq!(c.incr(b"nope", 1).unwrap(), None);
    assert!(c.touch(b"k", 100).unwrap());
    assert!(!c.touch(b"nope", 100).unwrap());
    assert_eq!(c.gat(b"k", 100).unwrap().unwrap().value, b"w");
    assert!(c.gats(b"k", 100).unwrap().unwrap().cas > 0);
    let multi = c.get_multi(&[b"k", b"nope", b"k2"]).unwrap();
    assert_eq!(multi[0].as_ref().unwrap().as_ref().unwrap().value, b"w");
    assert_eq!(multi[1].as_ref().unwrap(), &None);
    let items = [SetItem {
        key: b"m1",
        value: b"1",
        flags: 0,
        exptime: 0,
    }];
    assert_eq!(
        c.set_multi(&items).unwrap()[0].as_ref().unwrap(),
        &StoreOutcome::Stored
    );
    let d = c.delete_multi(&[b"m1", b"m1"]).unwrap();
    assert_eq!(
        (d[0].as_ref().unwrap(), d[1].as_ref().unwrap()),
        (&true, &false)
    );
    assert!(c.delete(b"k2").unwrap());
    assert!(!c.delete(b"k2").unwrap());
    c.flush_all(0).unwrap();
    assert_eq!(c.get(b"k").unwrap(), None);
    assert!(route_stat(c, "route", "local_hits") > 0);
    assert!(route_stat(c, "route", "local_misses") > 0);
    assert!(c.servers().is_empty());
}

#[test]
fn local_route_without_servers_serves_every_command() {
    let _g = shared();
    every_command_on_the_local_cache(&Client::new(&Config::from_json("{}").unwrap()).unwrap());
    let c = Client::new(&Config::from_json(r#"{"route": {"type": "local"}}"#).unwrap()).unwrap();
    every_command_on_the_local_cache(&c);
}

#[test]
fn near_cache_serves_repeat_reads_locally_and_bounds_staleness_by_ttl_ms() {
    let _g = shared();
    let cluster = Cluster::start(1);
    let m = cluster.addrs();
    let pools = [pool("main", &m, "")];
    let near = client(
        &pools,
        r#"{"type": "local", "ttl_ms": 200, "route": "main"}"#,
        "",
    );
    let other = client(&pools, r#""main""#, "");
    assert_eq!(
        near.route_for(Op::Get, b"k").unwrap(),
        ["local".to_string(), m[0].clone()]
    );
    set(&other, "k", "v1");
    assert_eq!(get(&near, "k").as_deref(), Some(&b"v1"[..]));
    let (reqs, hits) = (
        dest_stat(&near, &m[0], "requests"),
        raw::stats(&m[0])["get_hits"].clone(),
    );
    for _ in 0..5 {
        assert_eq!(get(&near, "k").as_deref(), Some(&b"v1"[..]));
    }
    assert_eq!(dest_stat(&near, &m[0], "requests"), reqs, "served locally");
    assert_eq!(
        raw::stats(&m[0])["get_hits"],
        hits,
        "the server saw no read"
    );
    assert_eq!(route_stat(&near, "route", "local_hits"), 5);

    // A write through this client drops its copy: it reads its own write.
    set(&near, "k", "v2");
    assert_eq!(get(&near, "k").as_deref(), Some(&b"v2"[..]));
    // gets always asks the server (the CAS token must be the server's).
    let before = dest_stat(&near, &m[0], "requests");
    assert!(near.gets(b"k").unwrap().unwrap().cas > 0);
    assert_eq!(dest_stat(&near, &m[0], "requests"), before + 1);

    // gat is a read that writes: its new TTL must reach the server, even on a local hit.
    other.set(b"g", b"short", 0, 30).unwrap();
    assert_eq!(get(&near, "g").as_deref(), Some(&b"short"[..]));
    let it = near.gat(b"g", 1000).unwrap().unwrap();
    assert_eq!(it.value, b"short");
    let ttl = ttl_on_server(&m[0], "g").unwrap();
    assert!(
        ttl > 900,
        "gat through the near cache left the server's TTL at {ttl}"
    );

    // Another client's write is seen once ttl_ms has passed.
    let t = Instant::now();
    set(&other, "k", "v3");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        get(&near, "k").as_deref(),
        Some(&b"v3"[..]),
        "stale after {:?}",
        t.elapsed()
    );

    // A copy never outlives the item: a 1 s item is gone after 2 s even with a 10 s ttl_ms.
    let long = client(
        &pools,
        r#"{"type": "local", "ttl_ms": 10000, "route": "main"}"#,
        "",
    );
    other.set(b"brief", b"v", 0, 1).unwrap();
    assert_eq!(get(&long, "brief").as_deref(), Some(&b"v"[..]));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        get(&long, "brief"),
        None,
        "the local copy outlived its item"
    );
}

// ---------------------------------------------------------------------------------------------
// route_for and stats of a composite tree

#[test]
fn route_for_and_route_stats_cover_a_composite_tree() {
    let _g = shared();
    let cluster = Cluster::start(4);
    let a = cluster.addrs();
    let pools = [
        pool("r0", &a[..1], ""),
        pool("r1", &a[1..2], ""),
        pool("sh", &a[2..3], ""),
        pool("backup", &a[3..], ""),
    ];
    let c = client(
        &pools,
        r#"{"type": "failover", "children": [
              {"type": "shadow", "fraction": 0.5, "shadow": "sh",
               "route": {"type": "replicated", "children": ["r0", "r1"]}},
              "backup"]}"#,
        "",
    );
    let keys: Vec<String> = (0..40).map(|i| format!("tree:{i}")).collect();
    let mut chosen = 0;
    for k in &keys {
        let dests = c.route_for_pools(Op::Set, k.as_bytes()).unwrap();
        let pools: Vec<&str> = dests.iter().map(|(p, _)| p.as_str()).collect();
        if pools == ["r0", "r1", "sh", "backup"] {
            chosen += 1;
        } else {
            assert_eq!(pools, ["r0", "r1", "backup"], "{k}");
        }
        let addrs: Vec<String> = dests.into_iter().map(|(_, a)| a).collect();
        assert_eq!(c.route_for(Op::Set, k.as_bytes()).unwrap(), addrs);
    }
    assert!((8..=32).contains(&chosen), "{chosen} of 40 shadowed");

    for k in &keys {
        set(&c, k, k);
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    assert!(background::drain(DRAIN));
    let routes = &c.stats()["routes"];
    let n = 2 * keys.len() as u64;
    assert_eq!(routes["route"]["type"], "failover");
    assert_eq!(routes["route"]["requests"], n);
    assert_eq!(
        routes["route"]["failovers"].as_u64().unwrap_or(0),
        0,
        "counters that never moved are omitted"
    );
    assert_eq!(routes["route.children[0]"]["type"], "shadow");
    assert_eq!(routes["route.children[0]"]["requests"], n);
    assert_eq!(routes["route.children[0]"]["shadowed"], 2 * chosen);
    assert_eq!(routes["route.children[0].route"]["type"], "replicated");
    assert_eq!(routes["route.children[0].route"]["requests"], n);
    assert!(
        routes.get("route.children[1]").is_none(),
        "pool leaves count per destination: {routes}"
    );
    assert_eq!(keys_on(&a[2..3]).len() as u64, chosen);

    // The replicas' reads fail over; the failover above never needs to.
    cluster[0].kill().unwrap();
    for k in &keys {
        assert_eq!(get(&c, k).as_deref(), Some(k.as_bytes()));
    }
    let routes = &c.stats()["routes"];
    assert_eq!(routes["route.children[0].route"]["failovers"], 40);
    assert_eq!(
        routes["route"]["failovers"].as_u64().unwrap_or(0),
        0,
        "counters that never moved are omitted"
    );
}
