//! `fae-bench tls`: what TLS costs. The same 4 memcached servers serve TLS (`-Z`, a
//! certificate this run generates) on one port and plain text on another (`notls:`), so both
//! rows talk to the same processes; libfae Rust (meta) over each, in interleaved rounds:
//! single get p50/p99 and one 100-key multi-get across the 4 servers. Target: TLS single-get
//! p50 ≤ 1.3 × plain. Every reply is checked.
//!
//! ```text
//! cargo run --release -p fae-bench -- tls --write-docs   # full run; rewrites its block
//! cargo run -p fae-bench -- tls --quick                   # smoke run
//! ```

use std::process::ExitCode;
use std::time::Instant;

use fae_core::{Client, Config};
use fae_testkit::certs::{Ca, ExtendedKeyUsagePurpose};

use crate::report;

const BEGIN: &str = "<!-- fae-bench tls results: begin -->";
const END: &str = "<!-- fae-bench tls results: end -->";
const HEADING: &str = "## TLS: libfae over TLS vs plain text";
const USAGE: &str = "usage: fae-bench tls [--quick] [--write-docs] [--docs PATH]";

struct Args {
    quick: bool,
    write_docs: bool,
    docs: String,
    raw: Vec<String>,
}

fn parse(raw: Vec<String>) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        write_docs: false,
        docs: "docs/BENCHMARKS.md".into(),
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--quick" => a.quick = true,
            "--write-docs" => a.write_docs = true,
            "--docs" => a.docs = it.next().ok_or(USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(a)
}

/// Entry point of `fae-bench tls`.
pub fn main(raw: Vec<String>) -> ExitCode {
    crate::subcommand("tls", parse(raw), run)
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in a fresh directory.
fn certificates() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("fae-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ca = Ca::new("fae bench CA");
    let (cert, key) = ca.leaf(
        &["localhost", "127.0.0.1"],
        Some("fae bench server"),
        &[ExtendedKeyUsagePurpose::ServerAuth],
        false,
    );
    let w =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|e| e.to_string());
    w("ca.pem", &ca.pem)?;
    w("server.pem", &cert)?;
    w("server.key", &key)?;
    Ok(dir)
}

struct Timings {
    get: Vec<u64>,
    multi: Vec<u64>,
    get_secs: f64,
    /// This thread's CPU time in the get loops (client cost, the checks included).
    get_cpu: f64,
    /// The 4 memcached processes' CPU time in the get loops (seconds).
    server_cpu: f64,
}

/// CPU time (user + system, seconds) the processes `pids` have used, from `/proc/<pid>/stat`
/// (clock ticks of 10 ms: the get loops run for seconds, so the error is under 1 %).
fn processes_cpu(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces): state is field 3, utime 14.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (n(11) + n(12)) as f64 / tick
        })
        .sum()
}

fn ns(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

fn run(args: &Args) -> Result<(), String> {
    if args.write_docs && cfg!(debug_assertions) {
        return Err(
            "--write-docs needs a release build: cargo run --release -p fae-bench -- tls --write-docs"
                .into(),
        );
    }
    let (calls, rounds) = if args.quick { (200, 2) } else { (40_000, 10) };
    let multis = calls / 10;
    let load_start = report::loadavg();
    let dir = certificates()?;
    let builder =
        fae_testkit::Memcached::builder().tls(dir.join("server.pem"), dir.join("server.key"), None);
    let cluster = fae_testkit::Cluster::try_start_with(4, &builder)
        .map_err(|e| format!("cannot start 4 TLS memcached servers: {e}"))?;
    let tls_addrs = cluster.addrs();
    let pids: Vec<u32> = cluster.iter().filter_map(|m| m.pid()).collect();
    let plain_addrs: Vec<String> = cluster
        .iter()
        .map(|m| m.control_addr().ok_or("no plain listener"))
        .collect::<Result<_, _>>()?;
    let list = |a: &[String]| {
        a.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let plain = Client::new(
        &Config::from_json(&format!(r#"{{"servers": [{}]}}"#, list(&plain_addrs)))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let ca = dir.join("ca.pem");
    let tls = Client::new(
        &Config::from_json(&format!(
            r#"{{"servers": [{}], "tls": {{"ca_file": "{}"}}}}"#,
            list(&tls_addrs),
            ca.display()
        ))
        .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    let value = vec![b'v'; 100];
    let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("tls:{i}").into_bytes()).collect();
    for k in &keys {
        // Through both clients: they place keys by different addresses (the ports differ).
        for c in [&plain, &tls] {
            c.set(k, &value, 0, 0).map_err(|e| e.to_string())?;
        }
    }
    let multi_keys: Vec<&[u8]> = keys[..100].iter().map(Vec::as_slice).collect();
    let mut t = [
        Timings {
            get: Vec::new(),
            multi: Vec::new(),
            get_secs: 0.0,
            get_cpu: 0.0,
            server_cpu: 0.0,
        },
        Timings {
            get: Vec::new(),
            multi: Vec::new(),
            get_secs: 0.0,
            get_cpu: 0.0,
            server_cpu: 0.0,
        },
    ];
    // Warm-up: every connection made (and its TLS handshake done) before timing.
    for c in [&plain, &tls] {
        for k in &keys {
            c.get(k).map_err(|e| e.to_string())?;
        }
        c.get_multi(&multi_keys).map_err(|e| e.to_string())?;
    }
    for _ in 0..rounds {
        for (i, c) in [&plain, &tls].into_iter().enumerate() {
            let started = Instant::now();
            let cpu = crate::subject::thread_cpu();
            let server_cpu = processes_cpu(&pids);
            for j in 0..calls / rounds {
                let k = &keys[j % keys.len()];
                let s = Instant::now();
                let got = c.get(k).map_err(|e| e.to_string())?;
                t[i].get.push(ns(s));
                if got.map(|it| it.value).as_deref() != Some(&value[..]) {
                    return Err(format!("wrong value for {}", String::from_utf8_lossy(k)));
                }
            }
            t[i].get_secs += started.elapsed().as_secs_f64();
            t[i].get_cpu += (crate::subject::thread_cpu() - cpu).as_secs_f64();
            t[i].server_cpu += processes_cpu(&pids) - server_cpu;
            for _ in 0..multis / rounds {
                let s = Instant::now();
                let got = c.get_multi(&multi_keys).map_err(|e| e.to_string())?;
                t[i].multi.push(ns(s));
                if got
                    .iter()
                    .any(|r| !matches!(r, Ok(Some(it)) if it.value == value))
                {
                    return Err("a multi-get missed a key".into());
                }
            }
        }
    }
    let resumed = tls.stats()["destinations"]
        .as_object()
        .map(|d| {
            d.values()
                .map(|v| v["tls_resumed"].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .unwrap_or(0);
    for x in &mut t {
        x.get.sort_unstable();
        x.multi.sort_unstable();
    }
    let us = |v: &[u64], p: f64| report::percentile(v, p) as f64 / 1000.0;
    let get_ratio = us(&t[1].get, 0.5) / us(&t[0].get, 0.5);
    let server_us = |x: &Timings| x.server_cpu * 1e6 / x.get.len() as f64;
    // The server's extra work per TLS request lies on that request's path (read, decrypt,
    // encrypt, write happen between the request's arrival and the reply), so even a client
    // whose own TLS work cost nothing would see at least this ratio.
    let floor = (us(&t[0].get, 0.5) + server_us(&t[1]) - server_us(&t[0])) / us(&t[0].get, 0.5);
    let multi_ratio = us(&t[1].multi, 0.5) / us(&t[0].multi, 0.5);
    let mut out = String::new();
    out.push_str(&format!(
        "Command: `{}`\n\n",
        report::command(Some("tls"), &args.raw)
    ));
    out.push_str(&format!(
        "- Servers: 4 × memcached {} with `-Z` (TLS 1.3, a P-256 certificate generated per run) \
         and a second, plain listener (`notls:`) on each: both rows talk to the same processes\n\
         - Run: {calls} single gets and {multis} 100-key multi-gets per row, {rounds} interleaved \
         rounds, after warm-up; 100-byte values; every reply checked; load average {load_start} \
         at start, {} at end\n\n",
        fae_testkit::raw::try_version(&plain_addrs[0], std::time::Duration::from_secs(1))
            .unwrap_or_default(),
        report::loadavg()
    ));
    out.push_str(
        "| libfae Rust (meta) | get p50 µs | get p99 µs | get ops/s | get client CPU µs/call | get server CPU µs/call | multi-get(100) p50 µs | multi-get p99 µs |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (label, x) in [("plain text", &t[0]), ("TLS", &t[1])] {
        out.push_str(&format!(
            "| {label} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            us(&x.get, 0.5),
            us(&x.get, 0.99),
            x.get.len() as f64 / x.get_secs,
            x.get_cpu * 1e6 / x.get.len() as f64,
            server_us(x),
            us(&x.multi, 0.5),
            us(&x.multi, 0.99),
        ));
    }
    out.push_str(&format!(
        "\nTLS ÷ plain: single get p50 **{get_ratio:.2}** (target ≤ 1.30: {}), 100-key multi-get p50 \
         **{multi_ratio:.2}**. Connections: the TLS client's reconnects resume their sessions \
         (`tls_resumed` = {resumed} here, where nothing reconnected).\n\n\
         The servers' own CPU per get grew by {:.1} µs over TLS; that work lies on each \
         request's path, so a client whose TLS cost nothing would still see a single-get p50 \
         ratio of about **{floor:.2}** against these servers.\n",
        if get_ratio <= 1.3 { "PASS" } else { "**MISS**" },
        server_us(&t[1]) - server_us(&t[0]),
    ));
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
    if args.write_docs {
        report::write_block(&args.docs, BEGIN, END, HEADING, &out)?;
        eprintln!("fae-bench tls: wrote {}", args.docs);
    }
    Ok(())
}
