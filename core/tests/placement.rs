//! Golden placement vectors: every CSV in `tests/placement/` (produced by the real clients, see
//! its README) must be reproduced 100 % by the libfae mode it names.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use fae_core::placement::rendezvous::python_bytes_repr;
use fae_core::placement::{Mode, Node, Placement};

/// File → mode, from the table in `tests/placement/README.md`.
const FILES: [(&str, Mode); 17] = [
    ("libmemcached.csv", Mode::Libmemcached),
    ("libmemcached_w1234.csv", Mode::Libmemcached),
    ("libmemcached-ketama.csv", Mode::LibmemcachedKetama),
    ("php-memcached-default.csv", Mode::PhpMemcachedDefault),
    ("pecl-memcache-standard.csv", Mode::PeclMemcacheStandard),
    ("pecl-memcache-consistent.csv", Mode::PeclMemcacheConsistent),
    ("pymemcache.csv", Mode::Pymemcache),
    ("mcrouter-ch3.csv", Mode::Mcrouter),
    ("mcrouter-crc32.csv", Mode::McrouterCrc32),
    // Pools with Unix-domain socket servers (see `nodes_for`).
    ("libmemcached_unix.csv", Mode::Libmemcached),
    ("libmemcached_unix_w1234.csv", Mode::Libmemcached),
    ("php-memcached_unix.csv", Mode::Libmemcached),
    ("php-memcached_unix_w1234.csv", Mode::Libmemcached),
    ("php-memcached-default_unix.csv", Mode::PhpMemcachedDefault),
    ("pymemcache_unix.csv", Mode::Pymemcache),
    ("pylibmc_unix.csv", Mode::Libmemcached),
    ("pylibmc-ketama_unix.csv", Mode::LibmemcachedKetama),
];

const KEYS_PER_FILE: usize = 10_000;

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/placement")
}

/// The pool a file was produced with (tests/placement/README.md): `127.0.0.1:21211..=21214`;
/// for `*_unix*` files the mixed pool `m1.sock, 127.0.0.1:21211, m2.sock, 127.0.0.1:21212`
/// (pylibmc: sockets `m1..m4.sock` only), socket servers with the port their client stores
/// (php-memcached 11211, the others 0). Weights 1, 2, 3, 4 for `*w1234*`, else 1.
fn nodes_for(file: &str) -> Vec<Node> {
    let sock = |i: u16| format!("/tmp/fae-placement/m{i}.sock");
    let socket_port = if file.starts_with("php-memcached") {
        11211
    } else {
        0
    };
    (0..4u16)
        .map(|i| {
            let (host, port) = if !file.contains("_unix") {
                ("127.0.0.1".to_string(), 21211 + i)
            } else if file.starts_with("pylibmc") {
                (sock(i + 1), socket_port)
            } else if i % 2 == 0 {
                (sock(i / 2 + 1), socket_port)
            } else {
                ("127.0.0.1".to_string(), 21211 + i / 2)
            };
            Node {
                host,
                port,
                weight: if file.contains("w1234") {
                    u32::from(i) + 1
                } else {
                    1
                },
            }
        })
        .collect()
}

/// Checks one file; returns the number of keys that agree (all of them) or a report.
fn check_file(file: &str, mode: Mode) -> Result<usize, String> {
    let path = vector_dir().join(file);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let nodes = nodes_for(file);
    let placement = Placement::new(mode, &nodes)?;
    let mut lines = text.lines();
    if lines.next() != Some("key,server") {
        return Err(format!("{file}: missing `key,server` header"));
    }
    let (mut total, mut mismatches) = (0, Vec::new());
    let (mut keys, mut picks) = (Vec::new(), Vec::new());
    for (n, line) in lines.enumerate() {
        // Keys are `key:N` (no commas) and servers `host:port` or a socket path: split on the
        // last comma.
        let (key, server) = line
            .rsplit_once(',')
            .ok_or_else(|| format!("{file}:{}: no comma in {line:?}", n + 2))?;
        let want = nodes
            .iter()
            .position(|node| node.addr() == server)
            .ok_or_else(|| format!("{file}:{}: unknown server {server:?}", n + 2))?;
        let got = placement.pick(key.as_bytes());
        keys.push(key.as_bytes());
        picks.push(got);
        total += 1;
        if got != want {
            mismatches.push(format!("  {key}: want {server}, got {}", nodes[got].addr()));
        }
    }
    // The batch form a multi-key request uses places every key as `pick` does.
    let mut many = Vec::new();
    placement.pick_many(&keys, &mut many);
    if many != picks {
        let i = many
            .iter()
            .zip(&picks)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "{file}: pick_many differs from pick at {:?}",
            keys.get(i)
        ));
    }
    if total != KEYS_PER_FILE {
        return Err(format!("{file}: {total} keys, expected {KEYS_PER_FILE}"));
    }
    if !mismatches.is_empty() {
        return Err(format!(
            "{file} ({mode}): {} of {total} keys differ; first ones:\n{}",
            mismatches.len(),
            mismatches[..mismatches.len().min(5)].join("\n")
        ));
    }
    Ok(total)
}

/// Python keys as pymemcache's `HashClient` places them (`tests/placement/gen/`): `str` keys of
/// any characters (placed by their UTF-8 form) and `bytes` keys (placed by their `repr`, as a
/// binding does); pymemcache hashes the key without `key_prefix`, so that column is the
/// Python tests' (tests/python/test_compat_placement.py).
const PYTHON_FILE: &str = "pymemcache-python.csv";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn pymemcache_python_keys_match_100_percent() {
    let text = fs::read_to_string(vector_dir().join(PYTHON_FILE)).expect("vector file");
    let nodes = nodes_for(PYTHON_FILE);
    let placement = Placement::new(Mode::Pymemcache, &nodes).expect("placement");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("kind,key_prefix,key,server"));
    let (mut total, mut bad) = (0, Vec::new());
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let key = unhex(f[2]);
        let place = match f[0] {
            "str" => key,
            "bytes" => python_bytes_repr(&key),
            other => panic!("unknown kind {other}"),
        };
        let got = nodes[placement.pick(&place)].addr();
        total += 1;
        if got != f[3] {
            bad.push(format!("  {line}: got {got}"));
        }
    }
    assert_eq!(total, KEYS_PER_FILE);
    assert!(
        bad.is_empty(),
        "{} of {total} differ:\n{}",
        bad.len(),
        bad[..bad.len().min(5)].join("\n")
    );
}

#[test]
fn every_vector_file_is_known() {
    let mut known: BTreeSet<&str> = FILES.iter().map(|(f, _)| *f).collect();
    known.insert(PYTHON_FILE);
    let present: BTreeSet<String> = fs::read_dir(vector_dir())
        .expect("tests/placement exists")
        .map(|e| e.expect("readable dir entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    let unknown: Vec<&String> = present
        .iter()
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "CSV files with no mode in core/tests/placement.rs: {unknown:?}"
    );
    let missing: Vec<&&str> = known.iter().filter(|f| !present.contains(**f)).collect();
    assert!(missing.is_empty(), "vector files missing: {missing:?}");
}

#[test]
fn golden_vectors_match_100_percent() {
    let mut failures = Vec::new();
    for (file, mode) in FILES {
        match check_file(file, mode) {
            Ok(n) => println!("{file}: {mode}: {n} / {n} keys agree"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
