//! TEMPORARY: 4 local memcached processes, until `fae_testkit::Cluster` lands on main.
//!
//! Same shape as `fae_testkit::Cluster` (`start(n)`, `addrs()`), so switching is one line.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Local memcached servers, killed on drop.
#[derive(Debug)]
pub struct Cluster {
    children: Vec<(Child, u16)>,
}

impl Cluster {
    /// Start `n` servers: `memcached -u root -l 127.0.0.1 -p PORT -U 0 -t 2`.
    pub fn start(n: usize) -> Result<Cluster, String> {
        let mut c = Cluster {
            children: Vec::new(),
        };
        for _ in 0..n {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("free port: {e}"))?
                .port();
            let child = Command::new("memcached")
                .args([
                    "-u",
                    "root",
                    "-l",
                    "127.0.0.1",
                    "-U",
                    "0",
                    "-t",
                    "2",
                    "-m",
                    "64",
                ])
                .args(["-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawn memcached: {e}"))?;
            c.children.push((child, port));
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    return Err(format!("memcached on port {port} did not start"));
                }
                sleep(Duration::from_millis(10));
            }
        }
        Ok(c)
    }

    /// `"127.0.0.1:PORT"` of each server.
    pub fn addrs(&self) -> Vec<String> {
        self.children
            .iter()
            .map(|(_, p)| format!("127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
