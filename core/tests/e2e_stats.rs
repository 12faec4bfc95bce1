//! Stats exports against real servers: the Prometheus text is checked by a strict parser of the
//! exposition format, `stats.listen` serves it over HTTP, `stats.dir` snapshots merge with
//! `fae stats`, and `fae check-config` validates and describes a config.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use fae_core::{Client, Config};
use fae_testkit::{Cluster, wait_until};

fn client(servers: &[String], extra: &str) -> Client {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "timeouts": {{"connect_ms": 200, "io_ms": 300}}{extra}}}"#,
        list.join(",")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

/// Parse Prometheus text exposition format 0.0.4 strictly: every sample belongs to a family
/// declared by `# HELP` and `# TYPE` lines before it; names and labels are well-formed; values
/// are numbers; no series appears twice. Returns series → value.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut series = HashMap::new();
    for (no, line) in text.lines().enumerate() {
        let ctx = format!("line {}: {line}", no + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{ctx}");
            assert!(helps.insert(name.to_string()), "HELP twice: {ctx}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{ctx}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {ctx}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{ctx}");
        let (id, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{ctx}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {ctx}"));
        let (name, labels) = match id.split_once('{') {
            Some((n, l)) => (
                n,
                Some(
                    l.strip_suffix('}')
                        .unwrap_or_else(|| panic!("labels: {ctx}")),
                ),
            ),
            None => (id, None),
        };
        assert!(valid_name(name), "{ctx}");
        if let Some(l) = labels {
            // name="value" pairs, comma separated; values may contain escaped quotes.
            let mut rest = l;
            while !rest.is_empty() {
                let (lname, after) = rest
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("label: {ctx}"));
                assert!(valid_name(lname), "{ctx}");
                let mut end = None;
                let b = after.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            end = Some(i);
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated label: {ctx}"));
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
        let family = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| Some((*s, name.strip_suffix(s)?)))
            .filter(|(suffix, f)| {
                types
                    .get(*f)
                    .is_some_and(|k| k == "histogram" || (k == "summary" && *suffix != "_bucket"))
            })
            .map_or(name, |(_, f)| f);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("sample before its TYPE: {ctx}"));
        assert!(helps.contains(family), "no HELP: {ctx}");
        if kind == "counter" {
            assert!(family.ends_with("_total"), "counter without _total: {ctx}");
            assert!(v >= 0.0, "{ctx}");
        }
        assert!(
            series.insert(id.to_string(), v).is_none(),
            "series twice: {ctx}"
        );
    }
    series
}

#[test]
fn prometheus_text_is_well_formed_and_counts_what_happened() {
    let cluster = Cluster::start(2);
    let c = client(&cluster.addrs(), "");
    for i in 0..20 {
        let k = format!("k{i}");
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
        c.get(k.as_bytes()).unwrap();
        c.get(format!("missing{i}").as_bytes()).unwrap();
    }
    // Stampede counters: one lease fill, one hit.
    for _ in 0..2 {
        c.get_or_set(b"filled", 60, || Ok::<_, ()>((b"v".to_vec(), 0)))
            .unwrap();
    }
    cluster[1].kill().unwrap();
    for i in 0..20 {
        let _ = c.get(format!("k{i}").as_bytes());
    }
    let text = c.stats_prometheus();
    let series = parse_prometheus(&text);
    let a0 = &cluster.addrs()[0];
    let a1 = &cluster.addrs()[1];
    let get = |s: String| {
        *series
            .get(&s)
            .unwrap_or_else(|| panic!("missing {s}\n{text}"))
    };
    let hits = get(format!(
        "fae_destination_hits_total{{destination=\"{a0}\"}}"
    )) + get(format!(
        "fae_destination_hits_total{{destination=\"{a1}\"}}"
    ));
    assert!(hits >= 20.0, "{hits}");
    assert_eq!(get("fae_stampede_computes_total".into()), 1.0);
    assert_eq!(get("fae_stampede_fills_stored_total".into()), 1.0);
    assert_eq!(get("fae_stampede_lease_hits_total".into()), 1.0);
    assert_eq!(get("fae_stampede_coalesced_gets_total".into()), 0.0);
    let misses = get(format!(
        "fae_destination_misses_total{{destination=\"{a0}\"}}"
    )) + get(format!(
        "fae_destination_misses_total{{destination=\"{a1}\"}}"
    ));
    assert!(misses >= 20.0);
    assert!(
        get(format!(
            "fae_destination_sent_bytes_total{{destination=\"{a0}\"}}"
        )) > 0.0
    );
    let count = |a: &str| {
        get(format!(
            "fae_destination_latency_seconds_count{{destination=\"{a}\"}}"
        ))
    };
    assert!(
        count(a0) + count(a1) >= 60.0,
        "20 sets, 20 hits and 20 misses before the kill"
    );
    // Latency is a histogram: cumulative buckets that never go down, `+Inf` equal to the count,
    // and (on loopback) every request under one second.
    let mut last = 0.0;
    for le in [
        "0.00005", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf",
    ] {
        let n = get(format!(
            "fae_destination_latency_seconds_bucket{{destination=\"{a0}\",le=\"{le}\"}}"
        ));
        assert!(n >= last, "le={le}: {n} < {last}");
        last = n;
    }
    assert_eq!(last, count(a0));
    assert_eq!(
        get(format!(
            "fae_destination_latency_seconds_bucket{{destination=\"{a0}\",le=\"1\"}}"
        )),
        count(a0)
    );
    assert!(
        get(format!(
            "fae_destination_latency_seconds_sum{{destination=\"{a0}\"}}"
        )) > 0.0
    );
    assert_eq!(
        get(format!(
            "fae_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // The killed server: refused connections, then tko, and its breaker state.
    assert!(
        get(format!(
            "fae_destination_errors_total{{destination=\"{a1}\",reason=\"tko\"}}"
        )) > 0.0
    );
    assert_eq!(
        get(format!(
            "fae_destination_breaker_state{{destination=\"{a1}\",state=\"open\"}}"
        )),
        1.0
    );
    assert_eq!(
        get(format!(
            "fae_destination_breaker_state{{destination=\"{a0}\",state=\"closed\"}}"
        )),
        1.0
    );
    // JSON carries the same numbers.
    let json = c.stats();
    assert_eq!(json["destinations"][a1]["state"], "open");
    assert!(
        json["destinations"][a0]["latency"]["p50_us"]
            .as_u64()
            .unwrap()
            > 0
    );
}

fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[test]
fn stats_listen_serves_metrics_and_json() {
    let cluster = Cluster::start(1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let c = client(
        &cluster.addrs(),
        &format!(r#", "stats": {{"listen": "{addr}"}}"#),
    );
    c.set(b"k", b"v", 0, 0).unwrap(); // first request starts the supervisor, which binds
    assert!(wait_until(Duration::from_secs(2), || http_get(
        &addr, "/metrics"
    )
    .is_some()));
    let (status, body) = http_get(&addr, "/metrics").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let series = parse_prometheus(&body);
    assert!(
        series
            .keys()
            .any(|k| k.starts_with("fae_destination_requests_total"))
    );
    let (status, body) = http_get(&addr, "/stats.json").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["destinations"][&cluster.addrs()[0]]["requests"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(
        http_get(&addr, "/nope").unwrap().0,
        "HTTP/1.1 404 Not Found"
    );
}

#[test]
fn stats_dir_snapshots_merge_and_dead_processes_retire() {
    let cluster = Cluster::start(2);
    let dir = std::env::temp_dir().join(format!("fae-stats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let extra = format!(
        r#", "stats": {{"dir": "{}", "interval_ms": 30}}"#,
        dir.display()
    );
    let (a, b) = (
        client(&cluster.addrs(), &extra),
        client(&cluster.addrs(), &extra),
    );
    for i in 0..10 {
        a.set(format!("a{i}").as_bytes(), b"v", 0, 0).unwrap();
        b.set(format!("b{i}").as_bytes(), b"v", 0, 0).unwrap();
        b.get(format!("b{i}").as_bytes()).unwrap();
    }
    // A snapshot left by a process that no longer exists.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("fae-999999-0.json"),
        r#"{"destinations": {"x:1": {"requests": 1000}}}"#,
    )
    .unwrap();
    let total = |v: &serde_json::Value| -> u64 {
        cluster
            .addrs()
            .iter()
            .map(|s| v["destinations"][s]["requests"].as_u64().unwrap_or(0))
            .sum()
    };
    let fae = env!("CARGO_BIN_EXE_fae");
    let merged = || -> serde_json::Value {
        let out = Command::new(fae)
            .args(["stats", "--dir", dir.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(3), || total(&merged()) == 30),
        "{}",
        merged()
    );
    let m = merged();
    assert_eq!(
        m["process"]["processes"], 2,
        "two clients, one file each; the dead pid's file is folded in and gone"
    );
    assert_eq!(
        m["destinations"]["x:1"]["requests"], 1000,
        "a dead process's counters stay in the totals"
    );
    assert_eq!(m["process"]["retired_processes"], 1);
    assert!(!dir.join("fae-999999-0.json").exists());
    assert!(dir.join("fae-retired.json").exists());
    let prom = Command::new(fae)
        .args(["stats", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let series = parse_prometheus(&String::from_utf8(prom.stdout).unwrap());
    let sum: f64 = cluster
        .addrs()
        .iter()
        .map(|s| series[&format!("fae_destination_requests_total{{destination=\"{s}\"}}")])
        .sum();
    assert_eq!(sum, 30.0);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_describes_a_valid_file_and_names_the_bad_key() {
    let dir = std::env::temp_dir().join(format!("fae-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "servers = [\"10.0.0.1:11211:2\", \"10.0.0.2:11211\"]\non_down = \"eject\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae"))
        .args(["check-config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("route: pool \"default\""), "{text}");
    assert!(text.contains("10.0.0.1:11211 weight 2"), "{text}");
    assert!(text.contains("on_down eject"), "{text}");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"servers": ["a:1"], "health": {"tko_threshold": 2}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae"))
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("health.tko_threshold: unknown field"));
    for cmd in ["route", "get", "set", "delete", "stats", "check-config"] {
        let out = Command::new(env!("CARGO_BIN_EXE_fae"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).starts_with(&format!("fae {cmd}")),
            "{cmd}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn route_counters_are_exported_per_config_path() {
    let cluster = Cluster::start(2);
    let [main, backup] = [&cluster.addrs()[0], &cluster.addrs()[1]];
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{main}"]}}, "backup": {{"servers": ["{backup}"]}}}},
            "route": {{"type": "failover", "children": ["main", "backup"]}},
            "stats": {{"route_latency": true}},
            "timeouts": {{"connect_ms": 200, "io_ms": 300}}}}"#
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    cluster[0].kill().unwrap();
    for i in 0..10 {
        c.set(format!("k{i}").as_bytes(), b"v", 0, 0).unwrap();
    }
    let text = c.stats_prometheus();
    let series = parse_prometheus(&text);
    let get = |s: &str| {
        *series
            .get(s)
            .unwrap_or_else(|| panic!("missing {s}\n{text}"))
    };
    assert_eq!(
        get(r#"fae_route_requests_total{route="route",type="failover"}"#),
        10.0
    );
    assert_eq!(
        get(r#"fae_route_failovers_total{route="route",type="failover"}"#),
        10.0
    );
    assert_eq!(c.stats()["routes"]["route"]["failovers"], 10);
    // Latency per route node: a histogram with one observation per call through it.
    assert_eq!(
        get(r#"fae_route_latency_seconds_count{route="route",type="failover"}"#),
        10.0
    );
    assert_eq!(
        get(r#"fae_route_latency_seconds_bucket{route="route",type="failover",le="+Inf"}"#),
        10.0
    );
    assert_eq!(c.stats()["routes"]["route"]["latency"]["count"], 10);
    promtool_check(&text, "a client's route latency histogram");
}

/// Run `promtool check metrics` (Prometheus's own linter: naming conventions, units, histogram
/// shape) on a text. Without promtool on PATH the check is skipped, unless
/// `FAE_REQUIRE_PROMTOOL=1` (scripts/test.sh sets it; setup.sh installs promtool).
fn promtool_check(text: &str, what: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("FAE_REQUIRE_PROMTOOL").is_none(),
                "promtool: {e}"
            );
            eprintln!("promtool not found: {what} not linted");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on {what}:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client's own text and the `fae stats --dir` merge of several processes' snapshots (one of
/// them dead, with a route tree, stampede counters and errors) pass promtool.
#[test]
fn promtool_accepts_client_and_merged_metrics() {
    let cluster = Cluster::start(2);
    let dir = std::env::temp_dir().join(format!("fae-promtool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let [main, backup] = [&cluster.addrs()[0], &cluster.addrs()[1]];
    let json = format!(
        r#"{{"pools": {{"main": {{"servers": ["{main}"]}}, "backup": {{"servers": ["{backup}"]}}}},
            "route": {{"type": "failover", "children": ["main", "backup"]}},
            "timeouts": {{"connect_ms": 200, "io_ms": 300}},
            "stats": {{"dir": "{}", "interval_ms": 30, "route_latency": true}}}}"#,
        dir.display()
    );
    let c = Client::new(&Config::from_json(&json).unwrap()).unwrap();
    for i in 0..20 {
        let k = format!("k{i}");
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
        c.get(k.as_bytes()).unwrap();
    }
    c.get_or_set(b"filled", 60, || Ok::<_, ()>((b"v".to_vec(), 0)))
        .unwrap();
    cluster[0].kill().unwrap();
    for i in 0..5 {
        let _ = c.get(format!("k{i}").as_bytes());
    }
    promtool_check(&c.stats_prometheus(), "a client's stats_prometheus()");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("fae-999999-0.json"),
        r#"{"destinations": {"x:1": {"requests": 3, "errors": {"timeout": 1},
             "latency": {"count": 3, "sum_us": 900, "max_us": 400, "buckets": {"207": 2, "415": 1}}}}}"#,
    )
    .unwrap();
    let fae = env!("CARGO_BIN_EXE_fae");
    assert!(wait_until(Duration::from_secs(3), || {
        std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("fae-{}-", std::process::id()))
        })
    }));
    let out = Command::new(fae)
        .args(["stats", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("fae_retired_processes_total 1"), "{text}");
    parse_prometheus(&text);
    promtool_check(&text, "fae stats --dir");
    // Every metric the Grafana dashboard queries by full name is in the merged text.
    let dashboard = include_str!("../../examples/grafana/fae.json");
    let mut names: Vec<&str> = dashboard
        .match_indices("fae_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.ends_with('_'))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])),
            "the dashboard queries {name}, which fae stats does not export"
        );
    }
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Short-lived processes (php-fpm recycling workers, CLI runs) are counted exactly: each one
/// writes its final snapshot at exit, even when it exits long before its `interval_ms`, and the
/// merged counters only go up as they are folded into the retired totals.
#[test]
fn stats_dir_counts_every_request_of_short_lived_processes() {
    let cluster = Cluster::start(1);
    let dir = std::env::temp_dir().join(format!("fae-stats-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"servers": ["{}"], "stats": {{"dir": "{}", "interval_ms": 60000}}}}"#,
            cluster[0].addr(),
            dir.join("snap").display()
        ),
    )
    .unwrap();
    let fae = env!("CARGO_BIN_EXE_fae");
    let requests = || -> u64 {
        let out = Command::new(fae)
            .args([
                "stats",
                "--dir",
                dir.join("snap").to_str().unwrap(),
                "--json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["destinations"][cluster[0].addr()]["requests"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut last = 0;
    for i in 1..=12u64 {
        let st = Command::new(fae)
            .args(["get", "--config", cfg.to_str().unwrap(), &format!("k{i}")])
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(1), "a miss");
        let n = requests();
        assert!(n >= last, "merged requests went down: {last} -> {n}");
        assert_eq!(n, i, "every process's requests are counted, once");
        last = n;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
