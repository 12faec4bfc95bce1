//! The `fae` CLI: `fae route` reproduces every golden placement file byte for byte, and the
//! exit codes follow the documented contract.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn placement_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/placement")
}

fn fae() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fae"))
}

/// (file, mode, weights) for every golden vector file, as in tests/placement/README.md.
const FILES: [(&str, &str, [u32; 4]); 9] = [
    ("libmemcached.csv", "libmemcached", [1, 1, 1, 1]),
    ("libmemcached_w1234.csv", "libmemcached", [1, 2, 3, 4]),
    (
        "libmemcached-ketama.csv",
        "libmemcached-ketama",
        [1, 1, 1, 1],
    ),
    (
        "php-memcached-default.csv",
        "php-memcached-default",
        [1, 1, 1, 1],
    ),
    (
        "pecl-memcache-standard.csv",
        "pecl-memcache-standard",
        [1, 1, 1, 1],
    ),
    (
        "pecl-memcache-consistent.csv",
        "pecl-memcache-consistent",
        [1, 1, 1, 1],
    ),
    ("pymemcache.csv", "pymemcache", [1, 1, 1, 1]),
    ("mcrouter-ch3.csv", "mcrouter", [1, 1, 1, 1]),
    ("mcrouter-crc32.csv", "mcrouter-crc32", [1, 1, 1, 1]),
];

/// `fae route --mode MODE --servers SERVERS` over the keys of `file` reproduces it exactly.
fn route_matches(file: &str, mode: &str, servers: &str) {
    let golden = std::fs::read_to_string(placement_dir().join(file)).unwrap();
    let keys: String = golden
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string() + "\n")
        .collect();
    let mut child = fae()
        .args(["route", "--mode", mode, "--servers", servers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(keys.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let mismatches: Vec<_> = got
        .lines()
        .zip(golden.lines())
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        mismatches.is_empty(),
        "{file} ({mode}): first mismatches {mismatches:?}"
    );
    assert_eq!(got.lines().count(), golden.lines().count(), "{file}");
}

#[test]
fn route_reproduces_every_golden_file() {
    for (file, mode, weights) in FILES {
        let servers: Vec<String> = (0..4)
            .map(|i| format!("127.0.0.1:{}:{}", 21211 + i, weights[i]))
            .collect();
        route_matches(file, mode, &servers.join(","));
    }
}

/// Socket servers given as paths: the vector files whose clients hash a socket with port 0
/// (libmemcached's unix-socket API, pylibmc) or by its bare path (pymemcache).
#[test]
fn route_reproduces_the_socket_server_golden_files() {
    let mixed =
        "/tmp/fae-placement/m1.sock,127.0.0.1:21211,/tmp/fae-placement/m2.sock,127.0.0.1:21212";
    route_matches("libmemcached_unix.csv", "libmemcached", mixed);
    route_matches("pymemcache_unix.csv", "pymemcache", mixed);
    let sockets: Vec<String> = (1..=4)
        .map(|i| format!("/tmp/fae-placement/m{i}.sock"))
        .collect();
    route_matches("pylibmc_unix.csv", "libmemcached", &sockets.join(","));
    route_matches(
        "pylibmc-ketama_unix.csv",
        "libmemcached-ketama",
        &sockets.join(","),
    );
}

/// `fae set/get/delete --servers PATH` talk to a real memcached on a Unix-domain socket.
#[test]
fn get_and_set_over_a_unix_socket() {
    let mc = fae_testkit::Memcached::builder().unix_socket().start();
    let addr = mc.addr();
    let run = |args: &[&str]| {
        let mut a = vec![args[0], "--servers", addr.as_str()];
        a.extend_from_slice(&args[1..]);
        fae().args(&a).output().unwrap()
    };
    assert!(run(&["set", "cli:k", "hello"]).status.success());
    let out = run(&["get", "cli:k"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    let out = run(&["route", "cli:k"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("key,server\ncli:k,{}\n", mc.addr())
    );
    assert_eq!(
        fae_testkit::raw::get(&mc.addr(), "cli:k").unwrap().1,
        b"hello"
    );
    // A path where nothing listens: a network error (3), naming the path.
    let out = fae()
        .args(["get", "--servers", "/nonexistent-dir/m.sock", "k"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/m.sock"));
}

#[test]
fn route_takes_keys_as_arguments_and_a_config_file() {
    let dir = std::env::temp_dir().join(format!("fae-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "servers = [\"127.0.0.1:21211\", \"127.0.0.1:21212\", \"127.0.0.1:21213\", \"127.0.0.1:21214\"]\n")
        .unwrap();
    let out = fae()
        .args(["route", "--config", cfg.to_str().unwrap(), "key:0", "key:1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "key,server\nkey:0,127.0.0.1:21213\nkey:1,127.0.0.1:21211\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exit_codes() {
    let code = |args: &[&str]| fae().args(args).output().unwrap().status.code();
    assert_eq!(code(&["route"]), Some(2), "no servers");
    assert_eq!(
        code(&["route", "--servers", "127.0.0.1:1", "--mode", "nope", "k"]),
        Some(2)
    );
    assert_eq!(
        code(&["route", "--servers", "127.0.0.1:1", "bad key"]),
        Some(2)
    );
    assert_eq!(code(&["frobnicate"]), Some(2));
    assert_eq!(code(&["--help"]), Some(0));
    // Nothing listens on port 1: a network error, not a miss.
    assert_eq!(code(&["get", "--servers", "127.0.0.1:1", "k"]), Some(3));
}

/// The README's Facebook-style example config is valid, and `fae route --op` lists every
/// destination of its tree: both replicas and the gutter for a write, the shadow for the keys
/// it mirrors.
#[test]
fn route_op_lists_every_destination_of_the_example_tree() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config/facebook.json"
    );
    let out = fae().args(["check-config", config]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = (0..400).map(|i| format!("user:{i}")).collect();
    let out = fae()
        .args(["route", "--config", config, "--op", "set"])
        .args(&keys)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut shadowed = 0;
    for line in text.lines().skip(1) {
        let (_, servers) = line.split_once(',').unwrap();
        let list: Vec<&str> = servers.split(';').collect();
        let regional: Vec<&&str> = list.iter().filter(|s| s.starts_with("10.0.1.")).collect();
        assert_eq!(regional.len(), 2, "two copies on distinct hosts: {line}");
        assert_ne!(regional[0], regional[1], "{line}");
        assert_eq!(
            list.iter().filter(|s| s.starts_with("10.0.9.")).count(),
            1,
            "{line}"
        );
        shadowed += list.iter().filter(|s| s.starts_with("10.0.2.")).count();
    }
    // 1 % of keys are shadowed: a handful of 400.
    assert!(shadowed <= 15, "{shadowed}");
    let out = fae()
        .args(["route", "--config", config, "--op", "get", "user:1"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().nth(1).unwrap().starts_with("user:1,10.0.1."),
        "{text}"
    );
}

/// Keys are bytes: a non-UTF-8 argument (valid for memcached, accepted by C, Python and PHP)
/// is a key like any other, never a panic (exit 101).
#[test]
fn non_utf8_keys_and_values_are_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mc = fae_testkit::Memcached::start();
    let servers = mc.addr();
    let key = OsStr::from_bytes(b"k\xff\xfe");
    let value = OsStr::from_bytes(b"v\xc3\x28");
    let st = fae()
        .args(["set", "--servers", &servers])
        .arg(key)
        .arg(value)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0), "set of a non-UTF-8 key");
    let out = fae()
        .args(["get", "--servers", &servers])
        .arg(key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"v\xc3\x28");
    let out = fae()
        .args(["route", "--servers", &servers])
        .arg(key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut want = b"key,server\nk\xff\xfe,".to_vec();
    want.extend_from_slice(servers.as_bytes());
    want.push(b'\n');
    assert_eq!(out.stdout, want);
    // From stdin too.
    let mut child = fae()
        .args(["route", "--servers", &servers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"k\xff\xfe\r\n")
        .unwrap();
    assert_eq!(child.wait_with_output().unwrap().stdout, want);
    // An option's value must be text: a clear usage error (2), not a panic (101).
    let st = fae()
        .arg("get")
        .arg("--servers")
        .arg(OsStr::from_bytes(b"\xff"))
        .arg("k")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
    let st = fae()
        .arg("check-config")
        .arg(OsStr::from_bytes(b"\xff"))
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
    let out = fae()
        .args(["delete", "--servers", &servers])
        .arg(key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// A config path that is not a regular file (a device that never ends, a FIFO nobody writes)
/// is a config error at once, not unbounded memory or a hang.
#[test]
fn check_config_refuses_devices_at_once() {
    let t = std::time::Instant::now();
    let out = fae().args(["check-config", "/dev/zero"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

/// `--opt=value` works like `--opt value`; a usage error is one message and a pointer to
/// `--help`, not the whole usage; completions and the man page come from the same parser.
#[test]
fn equals_options_concise_errors_completions_and_man_page() {
    let mc = fae_testkit::Memcached::start();
    let servers = format!("--servers={}", mc.addr());
    let st = fae()
        .args(["set", &servers, "--flags=7", "--exptime=60", "eq:k", "v"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    let out = fae().args(["get", &servers, "eq:k"]).output().unwrap();
    assert_eq!(out.stdout, b"v");
    assert_eq!(
        fae_testkit::raw::get(&mc.addr(), "eq:k").unwrap().0,
        7,
        "flags"
    );
    // A key that starts with '-' goes after `--`.
    let st = fae()
        .args(["set", &servers, "--", "-dash", "v"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    assert_eq!(fae_testkit::raw::get(&mc.addr(), "-dash").unwrap().1, b"v");
    for (args, needle) in [
        (&["get", "--bogus", "k"][..], "--bogus"),
        (&["set", "--flags=x", "--servers=a:1", "k"][..], "--flags"),
        (&["route"][..], "--config"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let out = fae().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
        assert!(
            err.lines().count() <= 8 && !err.contains("fae watch"),
            "{args:?}: the whole usage again:\n{err}"
        );
    }
    let out = fae().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("_fae") && script.contains("check-config"),
        "{script}"
    );
    assert_eq!(
        fae()
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    let out = fae().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.contains(".TH fae 1") && man.contains("fae\\-stats(1)"),
        "{man}"
    );
    let out = fae().args(["man", "stats"]).output().unwrap();
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.contains(".TH fae-stats 1") && man.contains("listen"),
        "{man}"
    );
    assert_eq!(
        fae().args(["man", "nope"]).output().unwrap().status.code(),
        Some(2)
    );
    let out = fae().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("fae {}", env!("CARGO_PKG_VERSION"))
    );
}
