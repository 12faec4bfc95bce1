//! The benchmark still runs: `fae-bench --quick` starts its 4 servers, checks every result and
//! prints every table. It times nothing and asserts nothing about speed; the targets live in
//! the benchmark's own output (`cargo run --release -p fae-bench`). The same goes for the
//! `health` subcommand (`fae-bench health --quick`), the `routes` subcommand
//! (`fae-bench routes --quick`) and the `vbucket` subcommand (`fae-bench vbucket --quick`). The `stampede` subcommand's quick run (about 25 s, twelve
//! cases in fresh processes) is `#[ignore]`d, so it stays out of CI: `cargo test -p fae-bench
//! -- --ignored` runs it.

use std::process::Command;

#[test]
fn quick_run_verifies_and_prints_every_row() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md");
    let before = std::fs::read_to_string(docs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .arg("--quick")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "| libmemcached |",
        "| libmemcached NO_BLOCK |",
        "| libfae Rust (meta) |",
        "| libfae Rust (text) |",
        "| libfae C ABI (meta) |",
    ] {
        assert_eq!(
            stdout.matches(row).count(),
            3,
            "{row} in every table:\n{stdout}"
        );
    }
    assert!(stdout.contains("### Targets"), "{stdout}");
    // --quick without --write-docs leaves the docs alone.
    assert_eq!(std::fs::read_to_string(docs).unwrap(), before);
}

/// `fae-bench health --quick`: one server SIGSTOPped under load and resumed (about 3 s). Every
/// value is checked; nothing about speed is asserted.
#[test]
fn health_quick_run_pauses_a_server_and_prints_its_table() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md");
    let before = std::fs::read_to_string(docs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["health", "--quick"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "| (a) baseline | p50 / p99, every key |",
        "| (b) paused | p50 / p99, keys of the 3 healthy servers |",
        "| (b) paused | SIGSTOP → its keys fail fast (first `tko`), per outage |",
        "| (b) paused | timed-out requests per client thread before its first `tko`, per outage |",
        "| (c) resumed | SIGCONT → its keys served again (first hit ends), per outage |",
    ] {
        assert!(stdout.contains(row), "{row}:\n{stdout}");
    }
    assert!(stdout.contains("Command: `cargo run --release -p fae-bench -- health --quick`"));
    assert_eq!(std::fs::read_to_string(docs).unwrap(), before);
}

/// `fae-bench routes --quick`: hedged reads behind a slow proxy, a 4 → 6 migration through
/// every phase and the route-tree overhead, each in miniature (a few seconds). Every value is
/// checked; nothing about speed is asserted.
#[test]
fn routes_quick_run_prints_its_three_tables() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md");
    let before = std::fs::read_to_string(docs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["routes", "--quick"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "### (a) Hedged reads",
        "| 5 % slow | `hedged`, `hedge_after_ms` p95 |",
        "### (b) Migration 4 → 6 servers",
        "| `dual_write_read_new` |",
        "| naive: old → new |",
        "### (c) Route-tree overhead per get",
        "| memcached (`pool`) |",
        "| in-process (`local`) |",
    ] {
        assert!(stdout.contains(row), "{row}:\n{stdout}");
    }
    assert!(stdout.contains("Command: `cargo run --release -p fae-bench -- routes --quick`"));
    assert_eq!(std::fs::read_to_string(docs).unwrap(), before);
}

/// `fae-bench stampede --quick`: every read path under a hot-key storm, in 1 process × 64
/// threads and 8 processes × 8 threads, each case in miniature. Every value is checked; nothing
/// about speed or call counts is asserted.
#[test]
#[ignore = "about 25 s; not in CI (issue 9): cargo test -p fae-bench -- --ignored"]
fn stampede_quick_run_prints_its_tables() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md");
    let before = std::fs::read_to_string(docs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["stampede", "--quick"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "### (a) TTL expiry",
        "### (b) Invalidation",
        "| 1 process × 64 threads | naive: `get` → backend → `set`, coalescing off |",
        "| 8 processes × 8 threads | `get_or_set` (leases + coalescing, default config) |",
        "| 8 processes × 8 threads | `get_or_set`, writer `invalidate`s (stale-while-revalidate) |",
        "| 8 processes × 8 threads | swr |",
        "### Targets",
    ] {
        assert!(stdout.contains(row), "{row}:\n{stdout}");
    }
    assert!(stdout.contains("Command: `cargo run --release -p fae-bench -- stampede --quick`"));
    assert_eq!(std::fs::read_to_string(docs).unwrap(), before);
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .arg("--iterations")
        .arg("zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["health", "--pause", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["routes", "--only", "everything"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &["stampede", "--threads", "8"][..],
        &["stampede", "--quick", "--write-docs"],
        &["stampede", "--child", "--addr", "127.0.0.1:1"],
        // The fault bench is never run here (a benchmark, not a test); its usage errors are.
        &["fault", "--quick", "--write-docs"],
        &["fault", "--only", "nothing"],
        &["fault", "--runs", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// `fae-bench vbucket --quick`: the 10 → 11 rebalance three ways on 10,000 keys, with the `fae`
/// binary built beside `fae-bench` (`cargo test --workspace` builds it; alone, this test says
/// so and passes). Every value is checked; nothing about speed is asserted.
#[test]
fn vbucket_quick_run_prints_its_table() {
    let fae = std::path::Path::new(env!("CARGO_BIN_EXE_fae-bench")).with_file_name("fae");
    if !fae.exists() {
        eprintln!(
            "skip: {} is not built (cargo build -p fae-core --features watch --bin fae)",
            fae.display()
        );
        return;
    }
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md");
    let before = std::fs::read_to_string(docs).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fae-bench"))
        .args(["vbucket", "--quick"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "| buckets (`fae vbucket apply --batch 16`) |",
        "| ketama + `migrate` route |",
        "| naive: reload to 11 servers (ketama) |",
    ] {
        assert!(stdout.contains(row), "{row}:\n{stdout}");
    }
    assert_eq!(std::fs::read_to_string(docs).unwrap(), before);
}
