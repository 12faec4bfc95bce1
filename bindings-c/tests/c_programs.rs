//! The C API tested from C, against real memcached servers (fae-testkit):
//!
//! - `examples/c/demo.c`, `examples/c/stampede.c` and `bindings-c/tests/c/api_test.c` are
//!   compiled with `gcc -std=c99 -Wall -Wextra -Werror -pedantic` (and with g++), linked
//!   against the `libfae.so` that cargo built for this test run, and run;
//! - `api_test` runs once more under valgrind (no invalid access, no definite leak);
//! - `api_test` is linked statically against `libfae.a`;
//! - `tls_test.c` runs against a memcached serving TLS with a login (`-Z`, `-Y`);
//! - `bindings-c/install.sh` installs into a temporary prefix, and the demo builds with
//!   `pkg-config --cflags --libs fae` alone.
//!
//! The library is found next to this test binary (`target/<profile>/deps/libfae.so`): cargo
//! builds the crate's cdylib and staticlib together with the rlib this test links, so it is
//! always the current code, whatever `CARGO_TARGET_DIR` is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fae_testkit::Cluster;

const STRICT_C: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];
const STRICT_CXX: &[&str] = &[
    "-x",
    "c++",
    "-std=c++11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The directory holding the `libfae.so` / `libfae.a` built for this test binary.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for dir in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if dir.join("libfae.so").is_file() && dir.join("libfae.a").is_file() {
            return dir;
        }
    }
    panic!(
        "libfae.so/libfae.a not found next to {}; build with `cargo test -p fae-c`",
        exe.display()
    );
}

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("fae-c-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{}", show(what, &out));
    out
}

/// Compile `source` into `exe`, linked against the shared libfae with an rpath.
fn compile_shared(compiler: &str, flags: &[&str], source: &Path, exe: &Path) {
    let lib = lib_dir();
    run(
        Command::new(compiler)
            .args(flags)
            .arg("-I")
            .arg(repo_root().join("include"))
            .arg(source)
            .arg("-L")
            .arg(&lib)
            .args(["-lfae", "-lpthread"])
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(exe),
        &format!("{compiler} {}", source.display()),
    );
}

/// A command for a compiled C program. `cargo test` puts `target/<profile>` on
/// `LD_LIBRARY_PATH`, which outranks the program's RUNPATH and may hold an older `libfae.so`
/// than the one this test binary was built with: drop it.
fn program(exe: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

fn demo_source() -> PathBuf {
    repo_root().join("examples/c/demo.c")
}

fn stampede_source() -> PathBuf {
    repo_root().join("examples/c/stampede.c")
}

fn api_test_source() -> PathBuf {
    repo_root().join("bindings-c/tests/c/api_test.c")
}

/// Two live servers and the address of a third one that was killed (nothing listens there).
fn servers() -> (Cluster, String) {
    let cluster = Cluster::start(3);
    cluster[2].kill().unwrap();
    let dead = cluster[2].addr();
    (cluster, dead)
}

fn api_test_args(cluster: &Cluster, dead: &str, scratch: &Scratch) -> Vec<String> {
    vec![
        cluster[0].addr(),
        cluster[1].addr(),
        dead.to_string(),
        scratch.0.display().to_string(),
    ]
}

#[test]
fn demo_runs_against_real_servers() {
    let scratch = Scratch::new("demo");
    let exe = scratch.path("demo");
    compile_shared("gcc", STRICT_C, &demo_source(), &exe);
    let cluster = Cluster::start(2);
    let out = run(program(&exe).args(cluster.addrs()), "demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "set demo:greeting = hello from C",
        "get demo:greeting = hello from C (flags 42)",
        "add demo:greeting: not stored",
        "get demo:missing: not found",
        "hit [0] demo:a = apple",
        "hit [1] demo:b = banana",
        "route_for get demo:a -> 127.0.0.1:",
        "delete demo:greeting: deleted, then not found",
        "incr demo:counter by 5 -> 15",
        "demo: OK",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{stdout}");
    }
}

/// The demo over a pool of two Unix-domain socket servers (config JSON with paths): every call
/// works, and `fae_client_route_for` names a socket by its path.
#[test]
fn demo_runs_against_unix_socket_servers() {
    let scratch = Scratch::new("demo-unix");
    let exe = scratch.path("demo");
    compile_shared("gcc", STRICT_C, &demo_source(), &exe);
    let a = fae_testkit::Memcached::builder().unix_socket().start();
    let b = fae_testkit::Memcached::builder().unix_socket().start();
    let out = run(program(&exe).args([a.addr(), b.addr()]), "demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "get demo:greeting = hello from C (flags 42)",
        "hit [1] demo:b = banana",
        "route_for get demo:a -> /",
        "incr demo:counter by 5 -> 15",
        "demo: OK",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{stdout}");
    }
}

#[test]
fn stampede_example_runs_against_real_servers() {
    let scratch = Scratch::new("stampede");
    let exe = scratch.path("stampede");
    compile_shared("gcc", STRICT_C, &stampede_source(), &exe);
    let cluster = Cluster::start(2);
    let out = run(program(&exe).args(cluster.addrs()), "stampede");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "get_or_set user:42 = row for user:42 (database queries: 1)\n\
         get_or_set user:42 = row for user:42 (database queries: 1)",
        "lease user:7: computed and filled (stored)",
        "stampede: OK",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{stdout}");
    }
}

#[test]
fn demo_fails_cleanly_without_servers() {
    let scratch = Scratch::new("demo-fail");
    let exe = scratch.path("demo");
    compile_shared("gcc", STRICT_C, &demo_source(), &exe);
    let (cluster, dead) = servers();
    drop(cluster);
    let out = program(&exe).arg(&dead).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show("demo", &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("demo: "), "{stderr}");
    assert!(
        stderr.contains(&dead),
        "the error names the server: {stderr}"
    );
}

#[test]
fn c_sources_compile_as_cpp() {
    let scratch = Scratch::new("cpp");
    compile_shared("g++", STRICT_CXX, &demo_source(), &scratch.path("demo"));
    compile_shared(
        "g++",
        STRICT_CXX,
        &stampede_source(),
        &scratch.path("stampede"),
    );
    compile_shared(
        "g++",
        STRICT_CXX,
        &api_test_source(),
        &scratch.path("api_test"),
    );
}

#[test]
fn api_test_passes() {
    let scratch = Scratch::new("api");
    let exe = scratch.path("api_test");
    compile_shared("gcc", STRICT_C, &api_test_source(), &exe);
    let (cluster, dead) = servers();
    let out = run(
        program(&exe).args(api_test_args(&cluster, &dead, &scratch)),
        "api_test",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

#[test]
fn api_test_passes_as_cpp() {
    let scratch = Scratch::new("api-cpp");
    let exe = scratch.path("api_test");
    compile_shared("g++", STRICT_CXX, &api_test_source(), &exe);
    let (cluster, dead) = servers();
    run(
        program(&exe).args(api_test_args(&cluster, &dead, &scratch)),
        "api_test (C++)",
    );
}

#[test]
fn api_test_passes_statically_linked() {
    let scratch = Scratch::new("api-static");
    let exe = scratch.path("api_test");
    run(
        Command::new("gcc")
            .args(STRICT_C)
            .arg("-I")
            .arg(repo_root().join("include"))
            .arg(api_test_source())
            .arg(lib_dir().join("libfae.a"))
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"])
            .arg("-o")
            .arg(&exe),
        "gcc (static)",
    );
    let (cluster, dead) = servers();
    run(
        program(&exe).args(api_test_args(&cluster, &dead, &scratch)),
        "api_test (static)",
    );
}

#[test]
fn api_test_is_clean_under_valgrind() {
    let scratch = Scratch::new("valgrind");
    let exe = scratch.path("api_test");
    compile_shared("gcc", STRICT_C, &api_test_source(), &exe);
    let (cluster, dead) = servers();
    let out = run(
        program("valgrind")
            .args([
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
            ])
            .arg(&exe)
            .args(api_test_args(&cluster, &dead, &scratch))
            .env("FAE_TEST_SLOW", "1"),
        "valgrind api_test",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .filter(|l| l.contains("ERROR SUMMARY") || l.contains("definitely lost"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

#[test]
fn install_script_and_pkg_config() {
    let scratch = Scratch::new("install");
    let prefix = scratch.path("prefix");
    run(
        Command::new("sh")
            .arg(repo_root().join("bindings-c/install.sh"))
            .arg(&prefix)
            .arg(lib_dir()),
        "install.sh",
    );
    let soname = format!("libfae.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let real = format!("libfae.so.{}", env!("CARGO_PKG_VERSION"));
    for f in [
        format!("lib/{real}"),
        "lib/libfae.a".into(),
        "include/fae.h".into(),
        "lib/pkgconfig/fae.pc".into(),
    ] {
        assert!(prefix.join(&f).is_file(), "{f} not installed");
    }
    // The runtime name points at the real file, the link-time name at the runtime name.
    let link = |name: &str| std::fs::read_link(prefix.join("lib").join(name)).unwrap();
    assert_eq!(link(&soname), Path::new(&real));
    assert_eq!(link("libfae.so"), Path::new(&soname));
    // The static library is installed without debug sections: smaller, still linkable (the
    // static test links the build tree's; this links the installed one below).
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    assert!(size(prefix.join("lib/libfae.a")) < size(lib_dir().join("libfae.a")));
    let pkg_config = |args: &[&str]| -> String {
        let out = run(
            Command::new("pkg-config")
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
                .args(args)
                .arg("fae"),
            "pkg-config",
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(pkg_config(&["--modversion"]), env!("CARGO_PKG_VERSION"));
    let cflags = pkg_config(&["--cflags"]);
    let libs = pkg_config(&["--libs"]);
    let libdir = pkg_config(&["--variable=libdir"]);
    assert_eq!(Path::new(&libdir), prefix.join("lib"));
    assert!(libs.contains("-lfae"), "{libs}");

    let exe = scratch.path("demo");
    run(
        Command::new("gcc")
            .args(STRICT_C)
            .args(cflags.split_whitespace())
            .arg(demo_source())
            .args(libs.split_whitespace())
            .arg(format!("-Wl,-rpath,{libdir}"))
            .arg("-o")
            .arg(&exe),
        "gcc with pkg-config",
    );
    let cluster = Cluster::start(1);
    let out = run(program(&exe).args(cluster.addrs()), "installed demo");
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo: OK"));
    let ldd = run(program("ldd").arg(&exe), "ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        ldd.contains(&format!(
            "{soname} => {}",
            prefix.join("lib").join(&soname).display()
        )),
        "the demo must load the installed library by its SONAME:\n{ldd}"
    );
    // A static link against the installed (debug-stripped) archive works too.
    let static_exe = scratch.path("demo_static");
    run(
        Command::new("gcc")
            .args(STRICT_C)
            .args(cflags.split_whitespace())
            .arg(demo_source())
            .arg(prefix.join("lib/libfae.a"))
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"])
            .arg("-o")
            .arg(&static_exe),
        "gcc with the installed libfae.a",
    );
    let out = run(program(&static_exe).args(cluster.addrs()), "static demo");
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo: OK"));
}

/// `libfae.so` carries the SONAME `libfae.so.MAJOR`, which a program linked with `-lfae`
/// records and loads; the build tree has a file by that name next to `libfae.so`, so programs
/// linked against the build tree run.
#[test]
fn shared_library_has_a_versioned_soname() {
    let lib = lib_dir();
    let soname = format!("libfae.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let dynamic = |file: &Path| -> String {
        let out = run(Command::new("readelf").arg("-d").arg(file), "readelf -d");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = dynamic(&lib.join("libfae.so"));
    assert!(
        text.contains(&format!("Library soname: [{soname}]")),
        "{text}"
    );
    assert_eq!(
        std::fs::canonicalize(lib.join(&soname)).unwrap(),
        std::fs::canonicalize(lib.join("libfae.so")).unwrap(),
        "{soname} in the build tree is libfae.so"
    );
    let scratch = Scratch::new("soname");
    let exe = scratch.path("demo");
    compile_shared("gcc", STRICT_C, &demo_source(), &exe);
    let text = dynamic(&exe);
    assert!(
        text.contains(&format!("Shared library: [{soname}]")),
        "{text}"
    );
    let cluster = Cluster::start(1);
    let out = run(program(&exe).args(cluster.addrs()), "demo");
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo: OK"));
}

/// `fae_set_log_callback`: a breaker opening (warn) and a reload (info) reach the C callback,
/// with levels filtered and NULL stopping delivery.
#[test]
fn log_callback_receives_records() {
    let scratch = Scratch::new("log");
    let exe = scratch.path("log_test");
    let source = repo_root().join("bindings-c/tests/c/log_test.c");
    compile_shared("gcc", STRICT_C, &source, &exe);
    let (cluster, dead) = servers();
    let out = run(program(&exe).args([dead, cluster[0].addr()]), "log_test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("log_test: OK"), "{stdout}");
}

/// `bindings-c/tests/c/tls_test.c` against a memcached serving TLS only (`-Z`) with a login
/// (`-Y`): set/get over TLS, and a wrong password, a CA that signed nothing and a plain-text
/// client each a clear error within the deadline. As C and as C++.
#[test]
fn tls_test_passes_against_a_tls_server_with_a_login() {
    use fae_testkit::certs::{Ca, ExtendedKeyUsagePurpose};
    let scratch = Scratch::new("tls");
    let ca = Ca::new("fae C test CA");
    let (cert, key) = ca.leaf(
        &["localhost", "127.0.0.1"],
        Some("fae C test server"),
        &[ExtendedKeyUsagePurpose::ServerAuth],
        false,
    );
    let files = [
        ("ca.pem", ca.pem.clone()),
        ("other-ca.pem", Ca::new("a CA that signed nothing").pem),
        ("server.pem", cert),
        ("server.key", key),
        ("password", "s3cret-canary-pw\n".to_string()),
        ("wrong-password", "wrong-canary-pw\n".to_string()),
    ];
    for (name, text) in &files {
        std::fs::write(scratch.path(name), text).unwrap();
    }
    let server = fae_testkit::Memcached::builder()
        .tls(scratch.path("server.pem"), scratch.path("server.key"), None)
        .auth("app", "s3cret-canary-pw")
        .start();
    let source = repo_root().join("bindings-c/tests/c/tls_test.c");
    for (compiler, flags) in [("gcc", STRICT_C), ("g++", STRICT_CXX)] {
        let exe = scratch.path(&format!("tls_test_{compiler}"));
        compile_shared(compiler, flags, &source, &exe);
        let out = run(
            program(&exe)
                .arg(server.addr())
                .arg(scratch.path("ca.pem"))
                .arg(scratch.path("other-ca.pem"))
                .arg(scratch.path("password"))
                .arg(scratch.path("wrong-password")),
            &format!("tls_test ({compiler})"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(", 0 failed"), "{stdout}");
    }
}
