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

/// A running etcd child process (single member) on `127.0.0.1`.
#[derive(Debug)]
pub struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
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
        let mut last = None;
        for _ in 0..4 {
            let e = Etcd {
                client_port: free_port()?,
                peer_port: free_port()?,
                dir: temp_dir("etcd")?,
                child: Mutex::new(None),
            };
            match e.launch() {
                Ok(()) => return Ok(e),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    fn launch(&self) -> io::Result<()> {
        let c = format!("http://127.0.0.1:{}", self.client_port);
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
            .args(["--initial-cluster", &format!("fae-test={p}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
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

    fn healthy(&self) -> bool {
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
        let out = Command::new(bin("etcdctl"))
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(["--command-timeout=5s"])
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
