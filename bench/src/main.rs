//! `fae-bench`: libfae against libmemcached, in one run, against the same 4 local memcached
//! servers.
//!
//! # What it covers
//!
//! Clients (one table row each; the first row is the baseline every ratio divides by):
//! - **libmemcached**: `libmemcached-dev` 1.x through FFI, configured like php-memcached with
//!   `OPT_LIBKETAMA_COMPATIBLE` and `OPT_TCP_NODELAY`: `KETAMA_WEIGHTED=1`, `TCP_NODELAY=1`,
//!   ASCII protocol (`BINARY_PROTOCOL=0`), blocking mode (`NO_BLOCK=0`, php-memcached's
//!   default). **Baseline.**
//! - **libmemcached NO_BLOCK**: the same with `NO_BLOCK=1`, for reference.
//! - **libfae Rust (meta)** and **libfae Rust (text)**: `fae_core::Client`, default
//!   `libmemcached` placement mode, meta and text protocol.
//! - **libfae C ABI (meta)**: the `fae` C ABI (`bindings-c`, linked as an rlib) called as C
//!   would call it: `fae_client_get` + `fae_item_value` + `fae_item_free`, `fae_client_set`,
//!   `fae_client_get_multi` with a callback that copies each hit.
//!
//! Workloads (same keys and values for every client, 100-byte values):
//! - single get of a stored key: p50/p99 latency, ops/s from one thread (target: libfae p50
//!   ≤ 0.95 × libmemcached p50);
//! - single set: p50/p99;
//! - one 100-key multi-get across the 4 servers: p50/p99 per call (target: libfae p50 ≤ 0.70 ×
//!   libmemcached p50).
//!
//! Before timing, all keys are stored through libmemcached and every client warms up (connects
//! to every server). Every call's result is checked after its clock stops: a get must return
//! the exact bytes, a multi-get all 100 keys with their bytes, and each client's sets are read
//! back through libmemcached (so libfae's placement must agree with libmemcached's). The
//! clients take turns in interleaved rounds, so background load on the machine spreads over
//! all of them instead of hitting one row.
//!
//! # How to run it
//!
//! ```text
//! cargo run --release -p fae-bench -- --write-docs     # full run; rewrites docs/BENCHMARKS.md
//! cargo run --release -p fae-bench                     # full run; prints only
//! cargo run -p fae-bench -- --quick                    # smoke run (CI): a few hundred calls
//! cargo run --release -p fae-bench -- health --write-docs  # a paused server (issue 4, item 10)
//! cargo run --release -p fae-bench -- routes --write-docs  # hedged reads, migration, tree cost
//! cargo run --release -p fae-bench -- stampede --write-docs  # hot-key expiry storms, 5 ms backend
//! cargo run --release -p fae-bench -- tls --write-docs       # TLS vs plain, same servers
//! cargo run --release -p fae-bench -- fault --runs 10 --write-docs  # 10 s SIGSTOP: libfae (Rust, C, Python, PHP) vs libmemcached, pylibmc, php-memcached
//! ```
//!
//! `health` is a separate run: one server SIGSTOPped under a 4-thread load of single gets; see
//! the `health` module. So is `routes`: hedged vs plain replicated reads with one slow replica,
//! a 4 → 6 server migration's hit rate per phase, and the route tree's cost per get; see the
//! `routes` module. And `stampede`: 64 callers (1 process × 64 threads, 8 processes × 8
//! threads) reading a hot key through a 5 ms backend as it expires or is invalidated, naive
//! lookaside against `get_or_set` (leases, coalescing); see the `stampede` module. And
//! `fault`: one of 4 servers SIGSTOPped for 10 s, through libfae (Rust, C ABI, and Python and
//! PHP worker processes) and through libmemcached, pylibmc and php-memcached with their
//! recommended failure settings; see the `fault` module.
//!
//! Flags: `--iterations N` (single-key calls per client; multi-gets get N/10), `--rounds R`,
//! `--quick`, `--write-docs`, `--docs PATH`, `--only LABEL[,LABEL…]`, `--unix` (the 4 servers
//! on Unix-domain sockets; `--write-docs` then writes its own block). Needs `memcached` on
//! `PATH` and `libmemcached.so`. Speed targets are printed as PASS/MISS and never fail the run;
//! a wrong result does (exit status 1).

mod fae_c;
mod fae_rust;
mod fault;
mod health;
mod libmemcached;
mod report;
mod routes;
mod stampede;
mod subject;
mod tls;
mod vbucket;

use std::process::ExitCode;

/// Child processes a bench started (fault workers, stampede children); any still running
/// when this drops is killed by its own handle and reaped, so a failed run leaves none behind.
pub(crate) struct Children(pub(crate) Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// A subcommand's entry point: a usage error exits 2, a failed run 1 (`fae-bench NAME:
/// FAILED: …`).
pub(crate) fn subcommand<A>(
    name: &str,
    args: Result<A, String>,
    run: impl FnOnce(&A) -> Result<(), String>,
) -> ExitCode {
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fae-bench {name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

use crate::fae_c::FaeC;
use crate::fae_rust::FaeRust;
use crate::libmemcached::{Blocking, Libmemcached};
use crate::report::{Facts, Row, Table};
use crate::subject::{Data, MULTI_KEYS, Record, Runner, Subject, Workload};

/// Command-line options.
#[derive(Debug)]
struct Args {
    iterations: usize,
    rounds: usize,
    quick: bool,
    write_docs: bool,
    docs: String,
    only: Vec<String>,
    /// The 4 servers listen on Unix-domain sockets instead of 127.0.0.1 ports.
    unix: bool,
    raw: Vec<String>,
}

const USAGE: &str = "usage: fae-bench [--iterations N] [--rounds R] [--quick] [--write-docs] \
                     [--docs PATH] [--only LABEL[,LABEL...]] [--unix]\n       \
                     fae-bench health [--quick] [--write-docs] [--docs PATH]\n       \
                     fae-bench routes [--quick] [--only PART[,PART...]] [--write-docs] [--docs PATH]\n       \
                     fae-bench stampede [--quick] [--write-docs] [--docs PATH]\n       \
                     fae-bench fault [--runs N] [--pause-secs S] [--quick] [--only LABEL[,LABEL...]] [--write-docs] [--docs PATH]";

/// Single-key calls per client in a full run (≈ 60 s on 2 busy cores, all rows together).
const DEFAULT_ITERATIONS: usize = 40_000;
/// Single-key calls per client with `--quick`.
const QUICK_ITERATIONS: usize = 300;

impl Args {
    fn parse(raw: Vec<String>) -> Result<Args, String> {
        let mut a = Args {
            iterations: 0,
            rounds: 0,
            quick: false,
            write_docs: false,
            docs: concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md").into(),
            only: Vec::new(),
            unix: false,
            raw: raw.clone(),
        };
        let mut it = raw.into_iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--iterations" => {
                    a.iterations = value("--iterations")?
                        .parse()
                        .map_err(|_| "--iterations takes a positive number".to_string())?;
                    if a.iterations == 0 {
                        return Err("--iterations takes a positive number".into());
                    }
                }
                "--rounds" => {
                    a.rounds = value("--rounds")?
                        .parse()
                        .map_err(|_| "--rounds takes a positive number".to_string())?;
                    if a.rounds == 0 {
                        return Err("--rounds takes a positive number".into());
                    }
                }
                "--quick" => a.quick = true,
                "--unix" => a.unix = true,
                "--write-docs" => a.write_docs = true,
                "--docs" => a.docs = value("--docs")?,
                "--only" => {
                    a.only = value("--only")?
                        .split(',')
                        .map(|s| s.trim().to_lowercase())
                        .collect();
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        if a.iterations == 0 {
            a.iterations = if a.quick {
                QUICK_ITERATIONS
            } else {
                DEFAULT_ITERATIONS
            };
        }
        if a.rounds == 0 {
            a.rounds = if a.quick { 2 } else { 10 };
        }
        Ok(a)
    }

    /// Multi-get calls per client.
    fn multi_iterations(&self) -> usize {
        (self.iterations / 10).max(10)
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        crate::report::command(None, &self.raw)
    }

    fn wants(&self, label: &str) -> bool {
        let l = label.to_lowercase();
        // The baseline always runs: every ratio divides by it.
        self.only.is_empty() || l == "libmemcached" || self.only.iter().any(|o| l.contains(o))
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("health") {
        return health::main(raw[1..].to_vec());
    }
    if raw.first().map(String::as_str) == Some("fault") {
        return fault::main(raw[1..].to_vec());
    }
    if raw.first().map(String::as_str) == Some("routes") {
        return routes::main(raw[1..].to_vec());
    }
    if raw.first().map(String::as_str) == Some("vbucket") {
        return vbucket::main(raw[1..].to_vec());
    }
    if raw.first().map(String::as_str) == Some("stampede") {
        return stampede::main(raw[1..].to_vec());
    }
    if raw.first().map(String::as_str) == Some("tls") {
        return tls::main(raw[1..].to_vec());
    }
    let args = match Args::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fae-bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The clients under test, baseline first.
fn clients(addrs: &[String], args: &Args) -> Result<Vec<Box<dyn Runner>>, String> {
    let mut v: Vec<Box<dyn Runner>> = vec![Box::new(Libmemcached::new(addrs, Blocking::Blocking)?)];
    let nb = Libmemcached::new(addrs, Blocking::NoBlock)?;
    if args.wants(&Subject::label(&nb)) {
        v.push(Box::new(nb));
    }
    for protocol in ["meta", "text"] {
        if args.wants(&FaeRust::label_for(protocol)) {
            v.push(Box::new(FaeRust::new(addrs, protocol)?));
        }
    }
    // The C ABI row uses the default protocol (meta), as a C caller who passes only servers.
    if args.wants(&FaeC::label_for("meta")) {
        v.push(Box::new(FaeC::new(addrs, "meta")?));
    }
    Ok(v)
}

/// libfae's placement must agree with libmemcached's, and each 100-key multi-get must span
/// all 4 servers.
fn check_placement(
    data: &Data,
    addrs: &[String],
    checker: &mut Libmemcached,
) -> Result<(), String> {
    let fae = FaeRust::new(addrs, "meta")?;
    for (k, _) in data.preload() {
        let (a, b) = (fae.server_for(k)?, checker.server_for(k)?);
        if a != b {
            return Err(format!(
                "placement differs for {}: libfae {a}, libmemcached {b}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    for j in 0..data.multi.len() / MULTI_KEYS {
        let mut servers: Vec<String> = data
            .multi_set(j)
            .iter()
            .map(|(k, _)| checker.server_for(k))
            .collect::<Result<_, _>>()?;
        servers.sort();
        servers.dedup();
        if servers.len() != addrs.len() {
            return Err(format!(
                "multi-get key set {j} spans {} servers, not {}",
                servers.len(),
                addrs.len()
            ));
        }
    }
    Ok(())
}

/// Read back, through libmemcached, the set keys writer `tag` wrote over `range`.
fn check_sets(
    data: &Data,
    checker: &mut Libmemcached,
    label: &str,
    tag: usize,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    for k in data.set_indices(range) {
        let got = checker.get(&data.set_keys[k])?;
        if got.as_ref().map(AsRef::as_ref) != Some(data.set_vals[tag][k].as_slice()) {
            return Err(format!(
                "{label}: set {} did not read back through libmemcached",
                String::from_utf8_lossy(&data.set_keys[k])
            ));
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    if args.write_docs && cfg!(debug_assertions) {
        return Err(
            "--write-docs needs a release build: cargo run --release -p fae-bench -- --write-docs"
                .into(),
        );
    }
    let load_start = report::loadavg();
    let mut builder = fae_testkit::Memcached::builder();
    if args.unix {
        builder = builder.unix_socket();
    }
    let cluster = fae_testkit::Cluster::try_start_with(4, &builder)
        .map_err(|e| format!("cannot start 4 memcached servers: {e}"))?;
    let addrs = cluster.addrs();
    eprintln!("fae-bench: 4 memcached servers: {}", addrs.join(" "));

    let mut checker = Libmemcached::new(&addrs, Blocking::Blocking)?;
    let mut subjects = clients(&addrs, args)?;
    let labels: Vec<String> = subjects.iter().map(|s| s.label()).collect();
    let data = Data::new(subjects.len());
    for (k, v) in data.preload() {
        checker.set(k, v)?;
    }
    if labels.iter().any(|l| l.starts_with("libfae")) {
        check_placement(&data, &addrs, &mut checker)?;
    }

    eprintln!("fae-bench: warm-up and verification");
    for (tag, s) in subjects.iter_mut().enumerate() {
        s.run(Workload::Get, &data, tag, 0..data.get.len(), None)?;
        s.run(Workload::Set, &data, tag, 0..data.set_keys.len(), None)?;
        check_sets(
            &data,
            &mut checker,
            &labels[tag],
            tag,
            0..data.set_keys.len(),
        )?;
        s.run(Workload::MultiGet, &data, tag, 0..20, None)?;
    }

    let mut records: Vec<[Record; 3]> = subjects.iter().map(|_| Default::default()).collect();
    let n = subjects.len();
    for round in 0..args.rounds {
        eprintln!("fae-bench: round {}/{}", round + 1, args.rounds);
        for w in Workload::ALL {
            let total = match w {
                Workload::MultiGet => args.multi_iterations(),
                _ => args.iterations,
            };
            let chunk = total.div_ceil(args.rounds);
            let range = (round * chunk).min(total)..((round + 1) * chunk).min(total);
            // Rotate who goes first, so no client always runs right after another one.
            for j in 0..n {
                let i = (j + round) % n;
                let rec = &mut records[i][w.index()];
                subjects[i].run(w, &data, i, range.clone(), Some(rec))?;
                if w == Workload::Set {
                    check_sets(&data, &mut checker, &labels[i], i, range.clone())?;
                }
            }
        }
    }
    let load_end = report::loadavg();

    let facts = Facts::gather(args.command(), &addrs, load_start, load_end);
    let tables: Vec<Table> = Workload::ALL
        .iter()
        .map(|&w| {
            let rows = labels
                .iter()
                .zip(&mut records)
                .map(|(l, r)| Row::new(l, &mut r[w.index()]))
                .collect();
            Table::new(w, rows)
        })
        .collect();
    let text = report::render(&facts, &tables, args);
    println!("{text}");
    if args.write_docs {
        if args.unix {
            // Its own block: the TCP results above stay as they are.
            report::write_block(
                &args.docs,
                "<!-- fae-bench unix results: begin -->",
                "<!-- fae-bench unix results: end -->",
                "## The same over Unix-domain sockets",
                &text,
            )?;
        } else {
            report::write_docs(&args.docs, &text)?;
        }
        eprintln!("fae-bench: wrote {}", args.docs);
    }
    Ok(())
}
