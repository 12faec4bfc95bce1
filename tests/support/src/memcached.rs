//! Real memcached processes for end-to-end tests.

use std::io::{self, ErrorKind, Read};
use std::net::TcpListener;
use std::ops::Index;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::child::{lock, spawn_child};
use crate::raw;
use crate::sys;

/// How many fresh ports [`MemcachedBuilder::try_start`] tries when memcached
/// loses the race for the port it was given.
const PORT_ATTEMPTS: usize = 8;

/// Largest amount of memcached stderr kept (the tail is kept).
const STDERR_CAP: usize = 64 * 1024;

/// Name of the environment variable that points [`Memcached::start`] at an
/// external server.
pub const TEST_SERVER_ENV: &str = "FAE_TEST_SERVER";

/// Name of the environment variable that overrides the memcached binary.
pub const BIN_ENV: &str = "FAE_MEMCACHED_BIN";

/// Options for a local memcached; obtained from [`Memcached::builder`].
///
/// The process always runs in the foreground as our child, as
/// `memcached -l 127.0.0.1 -p PORT -U 0 -t THREADS -c 1024 -m MB [-I SIZE]
/// [-u root] EXTRA...`.
#[derive(Debug, Clone)]
pub struct MemcachedBuilder {
    unix_socket: bool,
    memory_mb: u32,
    max_item_size: Option<String>,
    threads: u32,
    extra_args: Vec<String>,
    start_timeout: Duration,
    binary: Option<PathBuf>,
    tls: Option<TlsFiles>,
    /// `(user, password, auth file)`.
    auth: Option<(String, String, PathBuf)>,
}

/// The PEM files of a TLS server ([`MemcachedBuilder::tls`]).
#[derive(Debug, Clone)]
struct TlsFiles {
    chain_cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Default for MemcachedBuilder {
    fn default() -> Self {
        MemcachedBuilder {
            unix_socket: false,
            memory_mb: 64,
            max_item_size: None,
            threads: 2,
            extra_args: Vec::new(),
            start_timeout: Duration::from_secs(5),
            binary: None,
            tls: None,
            auth: None,
        }
    }
}

impl MemcachedBuilder {
    /// Listen on a Unix-domain socket in a fresh temporary directory
    /// (`memcached -s PATH` instead of `-l 127.0.0.1 -p PORT`): then
    /// [`Memcached::addr`] is the socket's path and [`Memcached::port`] 0.
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// Cache size in megabytes (`-m`). Default 64.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Maximum item size (`-I`), e.g. `"2m"` or `"512k"`. Default: the
    /// server's (1 MiB).
    pub fn max_item_size(mut self, size: &str) -> Self {
        self.max_item_size = Some(size.to_string());
        self
    }

    /// Worker threads (`-t`). Default 2.
    pub fn threads(mut self, n: u32) -> Self {
        self.threads = n;
        self
    }

    /// Extra command-line arguments appended after the standard ones, e.g.
    /// `&["-o", "no_lru_crawler"]`. Replaces any earlier extra arguments.
    pub fn extra_args(mut self, args: &[&str]) -> Self {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Serve TLS only (`-Z -o ssl_chain_cert=…,ssl_key=…`) with this PEM
    /// certificate chain and key; with `client_ca`, every client must
    /// present a certificate signed by it (mutual TLS, `ssl_verify_mode=2`).
    /// The server also listens in plain text on a second port,
    /// [`Memcached::control_addr`], for the testkit's own checks.
    pub fn tls(
        mut self,
        chain_cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Self {
        self.tls = Some(TlsFiles {
            chain_cert: chain_cert.into(),
            key: key.into(),
            client_ca,
        });
        self
    }

    /// Require memcached's text-protocol login (`-Y FILE`) with one user.
    /// The auth file is written to a fresh temporary directory.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        let dir = crate::child::temp_dir("mc-auth")
            .unwrap_or_else(|e| panic!("fae-testkit: auth file directory: {e}"));
        let file = dir.join("auth");
        std::fs::write(&file, format!("{user}:{password}\n"))
            .unwrap_or_else(|e| panic!("fae-testkit: write auth file: {e}"));
        self.auth = Some((user.to_string(), password.to_string(), file));
        self
    }

    /// How long to wait for the server to answer `version` after spawning
    /// it. Default 5 s.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The memcached binary to run. Default: `$FAE_MEMCACHED_BIN`, else
    /// `memcached` on `PATH`, else `/usr/bin/memcached`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts a local memcached (never the `FAE_TEST_SERVER` one).
    ///
    /// # Panics
    /// If it cannot be started; the message includes memcached's stderr.
    pub fn start(self) -> Memcached {
        self.try_start()
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start memcached: {e}"))
    }

    /// Starts a local memcached on a free port.
    ///
    /// The port is found by binding `127.0.0.1:0`, reading the port and
    /// closing the socket; if memcached then fails with "Address already in
    /// use" (another process took the port in between), a new port is tried,
    /// up to 8 times. Returns once the server answers `version` and its
    /// `stats` report our child's pid, or an error (with stderr) after the
    /// start timeout.
    pub fn try_start(self) -> io::Result<Memcached> {
        if self.unix_socket {
            let dir = crate::child::temp_dir("mc-sock")?;
            let path = dir.join("memcached.sock");
            let listen = Listen::Path(path.clone());
            let proc = launch(&self, &listen).map_err(|e| match e {
                LaunchError::AddrInUse(e) | LaunchError::Other(e) => e,
            })?;
            return Ok(Memcached {
                addr: path.to_string_lossy().into_owned(),
                port: 0,
                socket_dir: Some(dir),
                local: Some(Mutex::new(Local {
                    config: self,
                    proc: Some(proc),
                    paused: false,
                    last_stderr: String::new(),
                })),
            });
        }
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match launch(&self, &Listen::Port(port)) {
                Ok(proc) => {
                    return Ok(Memcached {
                        addr: format!("127.0.0.1:{port}"),
                        port,
                        socket_dir: None,
                        local: Some(Mutex::new(Local {
                            config: self,
                            proc: Some(proc),
                            paused: false,
                            last_stderr: String::new(),
                        })),
                    });
                }
                Err(LaunchError::AddrInUse(e)) => last_err = Some(e),
                Err(LaunchError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn binary_path(&self) -> PathBuf {
        if let Some(b) = &self.binary {
            return b.clone();
        }
        if let Some(b) = std::env::var_os(BIN_ENV).filter(|b| !b.is_empty()) {
            return PathBuf::from(b);
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let cand = dir.join("memcached");
                if cand.is_file() {
                    return cand;
                }
            }
        }
        PathBuf::from("/usr/bin/memcached")
    }

    fn command(&self, listen: &Listen, control: Option<u16>) -> Command {
        let mut cmd = Command::new(self.binary_path());
        let host = match control {
            Some(c) => format!("127.0.0.1,notls:127.0.0.1:{c}"),
            None => "127.0.0.1".to_string(),
        };
        match listen {
            Listen::Port(port) => cmd.args(["-l", &host, "-p", &port.to_string(), "-U", "0"]),
            Listen::Path(path) => cmd.arg("-s").arg(path),
        };
        if let Some(t) = &self.tls {
            let mut opts = format!(
                "ssl_chain_cert={},ssl_key={}",
                t.chain_cert.display(),
                t.key.display()
            );
            if let Some(ca) = &t.client_ca {
                opts.push_str(&format!(",ssl_ca_cert={},ssl_verify_mode=2", ca.display()));
            }
            cmd.args(["-Z", "-o", &opts]);
        }
        if let Some((_, _, file)) = &self.auth {
            cmd.arg("-Y").arg(file);
        }
        cmd.args(["-t", &self.threads.to_string(), "-c", "1024"])
            .args(["-m", &self.memory_mb.to_string()]);
        if let Some(size) = &self.max_item_size {
            cmd.args(["-I", size]);
        }
        if sys::is_root() {
            cmd.args(["-u", "root"]);
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }
}

fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running child with its stderr collector.
#[derive(Debug)]
struct Proc {
    child: Child,
    /// The plain-text listener of a TLS server (`host:port`).
    control: Option<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The captured stderr; if the child has exited, waits (bounded) for the
    /// collector to reach EOF first.
    fn stderr_text(&mut self) -> String {
        if let Some(t) = &self.stderr_thread {
            crate::wait_until(Duration::from_secs(1), || t.is_finished());
        }
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// SIGKILL and reap. Returns the stderr collected.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = self.stderr_text();
        if let Some(t) = self.stderr_thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
        text
    }
}

/// Where a server listens.
enum Listen {
    Port(u16),
    Path(PathBuf),
}

impl Listen {
    fn addr(&self) -> String {
        match self {
            Listen::Port(port) => format!("127.0.0.1:{port}"),
            Listen::Path(path) => path.to_string_lossy().into_owned(),
        }
    }
}

enum LaunchError {
    AddrInUse(io::Error),
    Other(io::Error),
}

fn launch(cfg: &MemcachedBuilder, listen: &Listen) -> Result<Proc, LaunchError> {
    let control = match (&cfg.tls, listen) {
        (Some(_), Listen::Port(_)) => Some(free_port().map_err(LaunchError::Other)?),
        _ => None,
    };
    let cmd = cfg.command(listen, control);
    let shown = format!("{cmd:?}");
    let mut child = spawn_child(cmd)
        .map_err(|e| LaunchError::Other(io::Error::new(e.kind(), format!("spawn {shown}: {e}"))))?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_thread = child.stderr.take().map(|mut pipe| {
        let sink = Arc::clone(&stderr);
        thread::Builder::new()
            .name("fae-testkit-mc-stderr".into())
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut buf = lock(&sink);
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > STDERR_CAP {
                        let cut = buf.len() - STDERR_CAP;
                        buf.drain(..cut);
                    }
                }
            })
            .expect("spawn stderr collector thread")
    });
    let mut proc = Proc {
        child,
        control: control.map(|c| format!("127.0.0.1:{c}")),
        stderr,
        stderr_thread,
    };
    // A TLS server is checked on its plain listener; a server with `-Y` after a login.
    let addr = proc.control.clone().unwrap_or_else(|| listen.addr());
    let login = match &cfg.auth {
        Some((user, pass, _)) => format!(
            "set fae_testkit_login 0 0 {}\r\n{user} {pass}\r\n",
            user.len() + 1 + pass.len()
        ),
        None => String::new(),
    };
    let deadline = Instant::now() + cfg.start_timeout;
    loop {
        match proc.child.try_wait() {
            Ok(Some(status)) => {
                let text = proc.stderr_text();
                let err = io::Error::other(format!(
                    "{shown} exited with {status} before answering; stderr: {}",
                    text.trim()
                ));
                return Err(if text.contains("Address already in use") {
                    LaunchError::AddrInUse(err)
                } else {
                    LaunchError::Other(err)
                });
            }
            Ok(None) => {}
            Err(e) => {
                proc.kill();
                return Err(LaunchError::Other(e));
            }
        }
        let answers = if login.is_empty() {
            raw::try_version(&addr, Duration::from_millis(250)).is_ok()
        } else {
            raw::try_command(
                &addr,
                format!("{login}version\r\n").as_bytes(),
                b"VERSION ",
                Duration::from_millis(250),
            )
            .is_ok()
        };
        if answers {
            // Make sure it is *our* process answering, not someone else's
            // server that grabbed the port while ours failed to bind.
            let stats = format!("{login}stats\r\n");
            let pid = raw::try_command(&addr, stats.as_bytes(), b"END\r\n", Duration::from_secs(1))
                .ok()
                .and_then(|r| {
                    String::from_utf8_lossy(&r)
                        .lines()
                        .find_map(|l| l.strip_prefix("STAT pid ").map(|p| p.trim().to_string()))
                })
                .and_then(|p| p.parse::<u32>().ok());
            if pid == Some(proc.pid()) {
                return Ok(proc);
            }
            if pid.is_some() {
                proc.kill();
                return Err(LaunchError::AddrInUse(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("another server answers on {addr}"),
                )));
            }
        }
        if Instant::now() >= deadline {
            let text = proc.kill();
            return Err(LaunchError::Other(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "{shown} did not answer `version` within {:?}; stderr: {}",
                    cfg.start_timeout,
                    text.trim()
                ),
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
struct Local {
    config: MemcachedBuilder,
    proc: Option<Proc>,
    paused: bool,
    last_stderr: String,
}

/// A memcached server for a test: normally a child process that this handle
/// owns, or an external server named by `FAE_TEST_SERVER`.
///
/// All methods take `&self` (state is behind a mutex), so servers inside a
/// [`Cluster`] or shared between threads can be killed or paused too.
///
/// Dropping the handle resumes the process if paused, SIGKILLs it and reaps
/// it. Children are also set to die with the test process
/// (`PR_SET_PDEATHSIG`), so a crashed or killed test run leaves no strays.
#[derive(Debug)]
pub struct Memcached {
    addr: String,
    port: u16,
    /// The temporary directory holding a Unix-socket server's socket.
    socket_dir: Option<PathBuf>,
    /// `None` for an external server.
    local: Option<Mutex<Local>>,
}

impl Memcached {
    /// A builder for a local server with options (memory, item size, extra
    /// arguments). The builder ignores `FAE_TEST_SERVER`.
    pub fn builder() -> MemcachedBuilder {
        MemcachedBuilder::default()
    }

    /// Starts a local memcached with default options, unless the
    /// environment variable `FAE_TEST_SERVER=host:port` is set (and not
    /// empty): then returns [`Memcached::external`] for that address, and
    /// starts nothing.
    ///
    /// With an external server, [`kill`](Memcached::kill),
    /// [`pause`](Memcached::pause), [`resume`](Memcached::resume) and
    /// [`restart`](Memcached::restart) return an
    /// [`ErrorKind::Unsupported`] error and [`pid`](Memcached::pid) is
    /// `None`; tests that need them should check
    /// [`is_external`](Memcached::is_external) and skip. Tests sharing an
    /// external server should use unique keys. [`Cluster`] and
    /// [`Memcached::builder`] always start local servers.
    ///
    /// # Panics
    /// If a local server cannot be started; the message includes memcached's
    /// stderr.
    pub fn start() -> Memcached {
        match std::env::var(TEST_SERVER_ENV) {
            Ok(addr) if !addr.trim().is_empty() => Memcached::external(addr.trim()),
            _ => Memcached::builder().start(),
        }
    }

    /// Like [`Memcached::start`] but returns errors instead of panicking.
    pub fn try_start() -> io::Result<Memcached> {
        match std::env::var(TEST_SERVER_ENV) {
            Ok(addr) if !addr.trim().is_empty() => Ok(Memcached::external(addr.trim())),
            _ => Memcached::builder().try_start(),
        }
    }

    /// A handle to an already-running server at `addr` (`host:port`, or a
    /// Unix-domain socket path) that we do not own: nothing is started, and
    /// nothing is stopped on drop.
    ///
    /// # Panics
    /// If `addr` is neither a path nor has a numeric `:port` suffix.
    pub fn external(addr: &str) -> Memcached {
        let port = if addr.starts_with('/') {
            0
        } else {
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("fae-testkit: {addr:?} is not host:port"))
        };
        Memcached {
            addr: addr.to_string(),
            port,
            socket_dir: None,
            local: None,
        }
    }

    /// `"127.0.0.1:PORT"`, the socket path of a [`unix_socket`] server (or
    /// the external address as given).
    ///
    /// [`unix_socket`]: MemcachedBuilder::unix_socket
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The plain-text `"127.0.0.1:PORT"` of a [`tls`](MemcachedBuilder::tls)
    /// server (its second listener, for checks that bypass TLS); `None`
    /// without TLS or while killed.
    pub fn control_addr(&self) -> Option<String> {
        let local = self.local.as_ref()?;
        lock(local).proc.as_ref().and_then(|p| p.control.clone())
    }

    /// The TCP port; 0 for a Unix-socket server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket path of a [`unix_socket`](MemcachedBuilder::unix_socket)
    /// server.
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.socket_dir.as_ref().map(|_| PathBuf::from(&self.addr))
    }

    /// The pid of the current process (it changes on
    /// [`restart`](Memcached::restart)); `None` if external or killed.
    pub fn pid(&self) -> Option<u32> {
        let local = self.local.as_ref()?;
        lock(local).proc.as_ref().map(Proc::pid)
    }

    /// Whether this handle refers to an external (`FAE_TEST_SERVER`) server.
    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    fn local(&self, what: &str) -> io::Result<MutexGuard<'_, Local>> {
        match &self.local {
            Some(l) => Ok(lock(l)),
            None => Err(io::Error::new(
                ErrorKind::Unsupported,
                format!(
                    "fae-testkit: cannot {what} memcached at {}: it is an external server \
                     ({TEST_SERVER_ENV}), not a process this test owns",
                    self.addr
                ),
            )),
        }
    }

    /// Whether the process is alive (paused counts as alive). For an external
    /// server: whether it answers `version` within 500 ms.
    pub fn is_running(&self) -> bool {
        match &self.local {
            None => raw::try_version(&self.addr, Duration::from_millis(500)).is_ok(),
            Some(l) => {
                let mut l = lock(l);
                match l.proc.as_mut() {
                    None => false,
                    Some(p) => matches!(p.child.try_wait(), Ok(None)),
                }
            }
        }
    }

    /// Whether the process is currently stopped by [`pause`](Memcached::pause).
    pub fn is_paused(&self) -> bool {
        self.local.as_ref().is_some_and(|l| lock(l).paused)
    }

    /// SIGKILLs the process and reaps it. Afterwards connects to the port are
    /// refused until [`restart`](Memcached::restart). Killing an already
    /// killed server is a no-op.
    pub fn kill(&self) -> io::Result<()> {
        let mut l = self.local("kill")?;
        if let Some(p) = l.proc.take() {
            l.last_stderr = p.kill();
        }
        l.paused = false;
        Ok(())
    }

    /// Stops the process with SIGSTOP and waits (up to 1 s) until the kernel
    /// reports it stopped. Its socket stays open: connects still succeed
    /// (the kernel completes the handshake) but nothing is answered, so
    /// requests time out.
    pub fn pause(&self) -> io::Result<()> {
        let mut l = self.local("pause")?;
        let pid = l
            .proc
            .as_ref()
            .map(Proc::pid)
            .ok_or_else(|| io::Error::other("memcached is not running"))?;
        sys::signal(pid, libc::SIGSTOP)?;
        l.paused = true;
        crate::wait_until(Duration::from_secs(1), || {
            proc_state(pid).is_none_or(|s| s == 'T' || s == 't')
        });
        Ok(())
    }

    /// Continues a paused process with SIGCONT (waits up to 1 s until it
    /// runs again). Requests queued meanwhile are then answered.
    pub fn resume(&self) -> io::Result<()> {
        let mut l = self.local("resume")?;
        let pid = l
            .proc
            .as_ref()
            .map(Proc::pid)
            .ok_or_else(|| io::Error::other("memcached is not running"))?;
        sys::signal(pid, libc::SIGCONT)?;
        l.paused = false;
        crate::wait_until(Duration::from_secs(1), || {
            proc_state(pid).is_none_or(|s| s != 'T' && s != 't')
        });
        Ok(())
    }

    /// Kills the process (if running) and starts a new, empty one on the
    /// **same port** (or socket path: memcached replaces a stale or removed
    /// socket file) with the same options, returning once it answers
    /// `version`. If the port is briefly unavailable, binding is retried
    /// until the start timeout.
    pub fn restart(&self) -> io::Result<()> {
        let mut l = self.local("restart")?;
        if let Some(p) = l.proc.take() {
            l.last_stderr = p.kill();
        }
        l.paused = false;
        let deadline = Instant::now() + l.config.start_timeout;
        let listen = match self.socket_dir {
            Some(_) => Listen::Path(PathBuf::from(&self.addr)),
            None => Listen::Port(self.port),
        };
        loop {
            match launch(&l.config, &listen) {
                Ok(p) => {
                    l.proc = Some(p);
                    return Ok(());
                }
                Err(LaunchError::AddrInUse(e)) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                Err(LaunchError::Other(e)) => return Err(e),
            }
        }
    }

    /// What memcached has written to stderr so far (last 64 KiB; after a
    /// kill, what the killed process wrote). Empty for an external server.
    pub fn stderr(&self) -> String {
        let Some(l) = &self.local else {
            return String::new();
        };
        let mut l = lock(l);
        match l.proc.as_mut() {
            Some(p) => String::from_utf8_lossy(&lock(&p.stderr)).into_owned(),
            None => l.last_stderr.clone(),
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        if let Some(l) = &self.local {
            let mut l = lock(l);
            if let Some(p) = l.proc.take() {
                if l.paused {
                    let _ = sys::signal(p.pid(), libc::SIGCONT);
                }
                p.kill();
            }
        }
        if let Some(dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`...).
fn proc_state(pid: u32) -> Option<char> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Several local memcached servers.
///
/// Always starts local processes, even when `FAE_TEST_SERVER` is set. Index
/// with `cluster[i]` to kill, pause or restart one of them.
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<Memcached>,
}

impl Cluster {
    /// Starts `n` local servers with default options.
    ///
    /// # Panics
    /// If any cannot be started (the ones already started are stopped).
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &Memcached::builder())
    }

    /// Starts `n` local servers, each built from a clone of `builder`.
    ///
    /// # Panics
    /// If any cannot be started (the ones already started are stopped).
    pub fn start_with(n: usize, builder: &MemcachedBuilder) -> Cluster {
        Cluster::try_start_with(n, builder)
            .unwrap_or_else(|e| panic!("fae-testkit: cannot start cluster: {e}"))
    }

    /// Like [`Cluster::start_with`] but returns errors instead of panicking.
    pub fn try_start_with(n: usize, builder: &MemcachedBuilder) -> io::Result<Cluster> {
        let servers = (0..n)
            .map(|_| builder.clone().try_start())
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Cluster { servers })
    }

    /// The `"127.0.0.1:PORT"` addresses, in index order.
    pub fn addrs(&self) -> Vec<String> {
        self.servers.iter().map(Memcached::addr).collect()
    }

    /// The addresses joined with commas: `"127.0.0.1:P1,127.0.0.1:P2"`.
    pub fn servers_csv(&self) -> String {
        self.addrs().join(",")
    }

    /// The servers, in index order.
    pub fn servers(&self) -> &[Memcached] {
        &self.servers
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Iterates over the servers.
    pub fn iter(&self) -> std::slice::Iter<'_, Memcached> {
        self.servers.iter()
    }
}

impl Index<usize> for Cluster {
    type Output = Memcached;

    fn index(&self, i: usize) -> &Memcached {
        &self.servers[i]
    }
}

impl<'a> IntoIterator for &'a Cluster {
    type Item = &'a Memcached;
    type IntoIter = std::slice::Iter<'a, Memcached>;

    fn into_iter(self) -> Self::IntoIter {
        self.servers.iter()
    }
}
