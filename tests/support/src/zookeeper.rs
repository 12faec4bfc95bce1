//! A real ZooKeeper server (Debian `zookeeper`, run directly with `java`) on a free loopback
//! port, with a generated `zoo.cfg` and data dir in a temp dir, for discovery tests.
//!
//! `tickTime` is 200 ms so session timeouts between 0.5 s and 10 s are allowed; the admin
//! HTTP server is off; `ruok` is enabled for the health check.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::child::{free_port, kill_child, lock, spawn_child, temp_dir, wait_ready};
use crate::coord_tls::ServerTls;
use crate::sys;

const JAR: &str = "/usr/share/java/zookeeper.jar";
const CONF_DIR: &str = "/etc/zookeeper/conf";
/// Netty jars the TLS port needs beyond those zookeeper.jar's manifest lists.
const NETTY_EXTRA: &[&str] = &[
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
];

/// A running ZooKeeper child process (standalone) on `127.0.0.1`.
#[derive(Debug)]
pub struct ZooKeeper {
    port: u16,
    /// TLS client port (`secureClientPort`) when started with [`ZooKeeper::start_tls`].
    secure_port: Option<u16>,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    paused: Mutex<bool>,
}

impl ZooKeeper {
    /// Whether `java` and the ZooKeeper jar are installed (`scripts/setup.sh`).
    pub fn available() -> bool {
        Path::new(JAR).exists() && Path::new("/usr/bin/java").exists()
    }

    /// Starts ZooKeeper; waits (at most 30 s) until it answers `ruok` with `imok`.
    ///
    /// # Panics
    /// If it cannot be started (message includes its output).
    pub fn start() -> ZooKeeper {
        ZooKeeper::try_start()
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start zookeeper: {e}"))
    }

    /// Like [`ZooKeeper::start`], returning the error.
    pub fn try_start() -> io::Result<ZooKeeper> {
        ZooKeeper::try_start_with(None)
    }

    /// Starts ZooKeeper with a TLS client port ([`ZooKeeper::secure_endpoint`], Netty
    /// connection factory, PEM key and trust stores) beside the plain one (health checks and
    /// test setup); `tls.client_cert_auth` sets `ssl.clientAuth=need`.
    ///
    /// # Panics
    /// If it cannot be started (message includes its output).
    pub fn start_tls(tls: &ServerTls) -> ZooKeeper {
        ZooKeeper::try_start_with(Some(tls))
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start zookeeper with TLS: {e}"))
    }

    fn try_start_with(tls: Option<&ServerTls>) -> io::Result<ZooKeeper> {
        let mut last = None;
        for _ in 0..3 {
            let zk = ZooKeeper {
                secure_port: tls.map(|_| free_port()).transpose()?,
                port: free_port()?,
                dir: temp_dir("zk")?,
                child: Mutex::new(None),
                paused: Mutex::new(false),
            };
            let cfg = format!(
                "tickTime=200\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n\
                 minSessionTimeout=500\nmaxSessionTimeout=10000\n",
                zk.dir.join("data").display(),
                zk.port
            );
            let mut cfg = cfg;
            if let (Some(t), Some(sp)) = (tls, zk.secure_port) {
                // The key store is one PEM file holding the key and the certificate.
                let mut pem = std::fs::read(&t.key_file)?;
                pem.extend_from_slice(&std::fs::read(&t.cert_file)?);
                let store = zk.dir.join("keystore.pem");
                std::fs::write(&store, pem)?;
                cfg.push_str(&format!(
                    "secureClientPort={sp}\nsecureClientPortAddress=127.0.0.1\n\
                     serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                     ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
                     ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
                     ssl.clientAuth={}\n",
                    store.display(),
                    t.ca_file.display(),
                    if t.client_cert_auth { "need" } else { "none" }
                ));
            }
            std::fs::write(zk.dir.join("zoo.cfg"), cfg)?;
            match zk.launch() {
                Ok(()) => return Ok(zk),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("zookeeper did not start")))
    }

    fn launch(&self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zk.log"))?;
        let mut cmd = Command::new("/usr/bin/java");
        cmd.args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
        ])
        .arg("-Dzookeeper.jmx.log4j.disable=true")
        .args([
            "-cp",
            &format!("{CONF_DIR}:{JAR}:{}", NETTY_EXTRA.join(":")),
        ])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(self.dir.join("zoo.cfg"))
        .current_dir(&self.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let child = wait_ready(
            spawn_child(cmd)?,
            "zookeeper",
            Duration::from_secs(30),
            || self.ruok(),
            || self.log(),
        )?;
        *lock(&self.child) = Some(child);
        *lock(&self.paused) = false;
        Ok(())
    }

    /// Healthy means a session handshake succeeds (`ruok` answers `imok` before the server
    /// accepts sessions). Sends a ConnectRequest (protocol 0, zxid 0, timeout 2000 ms, session
    /// 0, 16-byte zero password, readOnly false) and expects a ConnectResponse with a positive
    /// timeout; the session is closed by dropping the socket.
    fn ruok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut req = Vec::new();
        req.extend_from_slice(&45u32.to_be_bytes());
        req.extend_from_slice(&0i32.to_be_bytes());
        req.extend_from_slice(&0i64.to_be_bytes());
        req.extend_from_slice(&2000i32.to_be_bytes());
        req.extend_from_slice(&0i64.to_be_bytes());
        req.extend_from_slice(&16i32.to_be_bytes());
        req.extend_from_slice(&[0u8; 16]);
        req.push(0);
        if s.write_all(&req).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_err() {
            return false;
        }
        i32::from_be_bytes([head[8], head[9], head[10], head[11]]) > 0
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("zk.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` of the TLS client port ([`ZooKeeper::start_tls`]).
    ///
    /// # Panics
    /// If the server was started without TLS.
    pub fn secure_endpoint(&self) -> String {
        let p = self.secure_port.expect("zookeeper started without TLS");
        format!("127.0.0.1:{p}")
    }

    /// The child's pid while running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// SIGKILLs the server (data dir kept for [`ZooKeeper::restart`]).
    pub fn kill(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            kill_child(&mut c);
        }
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&self) -> io::Result<()> {
        self.kill();
        self.launch()
    }

    /// SIGSTOP: the server freezes; connections stay open but nothing is answered.
    pub fn pause(&self) -> io::Result<()> {
        let pid = self.pid().ok_or_else(|| io::Error::other("not running"))?;
        sys::signal(pid, libc::SIGSTOP)?;
        *lock(&self.paused) = true;
        Ok(())
    }

    /// SIGCONT after [`ZooKeeper::pause`].
    pub fn resume(&self) -> io::Result<()> {
        let pid = self.pid().ok_or_else(|| io::Error::other("not running"))?;
        sys::signal(pid, libc::SIGCONT)?;
        *lock(&self.paused) = false;
        Ok(())
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if *lock(&self.paused) {
            let _ = self.resume();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
