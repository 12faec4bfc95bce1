//! A real `etcd` (Debian `etcd-server`) on free loopback ports, for discovery tests.
//!
//! Writes go through `etcdctl` (Debian `etcd-client`), never through the code under test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::child::{free_port, kill_child, lock, spawn_child, temp_dir, wait_ready};
use crate::coord_tls::ServerTls;

/// A running etcd child process (single member) on `127.0.0.1`.
#[derive(Debug)]
pub struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    tls: Option<ServerTls>,
    /// `root:PASSWORD` for etcdctl once [`Etcd::enable_auth`] ran.
    root: Mutex<Option<String>>,
}

impl Etcd {
    /// Starts etcd on free ports with a temporary data dir; waits (at most 15 s) until
    /// `/health` reports healthy.
    ///
    /// # Panics
    /// If etcd cannot be started (message includes its log).
    pub fn start() -> Etcd {
        Etcd::try_start().unwrap_or_else(|e| panic!("fae-testkit: cannot start etcd: {e}"))
    }

    /// Whether the `etcd` and `etcdctl` binaries are installed (`scripts/setup.sh`).
    pub fn available() -> bool {
        Path::new(&bin("etcd")).exists() && Path::new(&bin("etcdctl")).exists()
    }

    /// Like [`Etcd::start`], returning the error.
    pub fn try_start() -> io::Result<Etcd> {
        Etcd::try_start_with(None)
    }

    /// Starts etcd serving its client port over TLS only (`https://`), with the given
    /// certificates; with `tls.client_cert_auth` it requires client certificates
    /// (`--client-cert-auth`). The server certificate must also allow client use (extended
    /// key usage clientAuth): etcd's JSON gateway connects to its own gRPC server with it.
    ///
    /// # Panics
    /// If etcd cannot be started (message includes its log).
    pub fn start_secure(tls: ServerTls) -> Etcd {
        Etcd::try_start_with(Some(tls))
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start etcd with TLS: {e}"))
    }

    fn try_start_with(tls: Option<ServerTls>) -> io::Result<Etcd> {
        let mut last = None;
        for _ in 0..4 {
            let e = Etcd {
                client_port: free_port()?,
                peer_port: free_port()?,
                dir: temp_dir("etcd")?,
                child: Mutex::new(None),
                tls: tls.clone(),
                root: Mutex::new(None),
            };
            match e.launch() {
                Ok(()) => return Ok(e),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    fn launch(&self) -> io::Result<()> {
        let c = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let p = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let mut cmd = Command::new(bin("etcd"));
        cmd.args(["--name", "fae-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--logger=zap", "--log-level=error"])
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("fae-test={p}")]);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert_file)
                .arg("--key-file")
                .arg(&t.key_file)
                .arg("--trusted-ca-file")
                .arg(&t.ca_file);
            if t.client_cert_auth {
                cmd.arg("--client-cert-auth");
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = wait_ready(
            spawn_child(cmd)?,
            "etcd",
            Duration::from_secs(15),
            || self.healthy(),
            || self.log(),
        )?;
        *lock(&self.child) = Some(child);
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn healthy(&self) -> bool {
        if self.tls.is_some() {
            return self.etcdctl(&["endpoint", "health"]).is_ok();
        }
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.client_port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("\"health\":\"true\"")
    }

    /// The etcd log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT` of the client URL.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The child's pid while running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// SIGKILLs etcd (data dir kept, so [`Etcd::restart`] brings the same data back).
    pub fn kill(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            kill_child(&mut c);
        }
    }

    /// Starts etcd again on the same ports and data dir (after [`Etcd::kill`]).
    pub fn restart(&self) -> io::Result<()> {
        self.kill();
        self.launch()
    }

    fn etcdctl(&self, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new(bin("etcdctl"));
        cmd.arg(format!(
            "--endpoints={}://{}",
            self.scheme(),
            self.endpoint()
        ))
        .args(["--command-timeout=5s", "--dial-timeout=2s"]);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert").arg(&t.ca_file);
            if let Some((cert, key)) = &t.client {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        if let Some(root) = lock(&self.root).as_ref() {
            cmd.arg(format!("--user={root}"));
        }
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Turns on etcd's authentication: creates `root` with `root_password` and the `root`
    /// role, then `auth enable`. Later testkit commands log in as root. Panics on failure.
    pub fn enable_auth(&self, root_password: &str) {
        let ok = |r: io::Result<String>| r.unwrap_or_else(|e| panic!("{e}"));
        ok(self.etcdctl(&[
            "user",
            "add",
            "root",
            &format!("--new-user-password={root_password}"),
        ]));
        ok(self.etcdctl(&["user", "grant-role", "root", "root"]));
        ok(self.etcdctl(&["auth", "enable"]));
        *lock(&self.root) = Some(format!("root:{root_password}"));
    }

    /// Invalidates every login token (`auth disable`, `auth enable`: etcd drops its tokens),
    /// so clients must log in again. Panics on failure.
    pub fn revoke_tokens(&self) {
        let ok = |r: io::Result<String>| r.unwrap_or_else(|e| panic!("{e}"));
        ok(self.etcdctl(&["auth", "disable"]));
        ok(self.etcdctl(&["auth", "enable"]));
    }

    /// Adds `user` with `password` and read access to keys under `prefix` (after
    /// [`Etcd::enable_auth`]). Panics on failure.
    pub fn add_reader(&self, user: &str, password: &str, prefix: &str) {
        let ok = |r: io::Result<String>| r.unwrap_or_else(|e| panic!("{e}"));
        let role = format!("{user}-reader");
        ok(self.etcdctl(&["role", "add", &role]));
        ok(self.etcdctl(&[
            "role",
            "grant-permission",
            &role,
            "--prefix=true",
            "read",
            prefix,
        ]));
        ok(self.etcdctl(&[
            "user",
            "add",
            user,
            &format!("--new-user-password={password}"),
        ]));
        ok(self.etcdctl(&["user", "grant-role", user, &role]));
    }

    /// `etcdctl put KEY VALUE`. Panics on failure.
    pub fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", key, value])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `etcdctl del KEY`. Panics on failure.
    pub fn delete(&self, key: &str) {
        self.etcdctl(&["del", key])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `etcdctl compact REV` (drops history before `rev`). Panics on failure.
    pub fn compact(&self, rev: i64) {
        self.etcdctl(&["compact", &rev.to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The current revision (`etcdctl endpoint status`). Panics on failure.
    pub fn revision(&self) -> i64 {
        let out = self
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .unwrap_or_else(|e| panic!("{e}"));
        let i = out
            .find("\"revision\":")
            .unwrap_or_else(|| panic!("no revision in {out}"));
        out[i + 11..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("bad revision in {out}"))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin(name: &str) -> String {
    format!("/usr/bin/{name}")
}
