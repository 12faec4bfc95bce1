//! Child processes the testkit starts (memcached, etcd, ZooKeeper): spawned from one
//! process-lifetime thread with `PR_SET_PDEATHSIG`, waited on with a bound, killed by PID.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys;

/// Lock, ignoring poisoning: a panic while holding the lock (a failing test) must not make
/// `Drop` panic too.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns `cmd` from a process-lifetime thread with `PR_SET_PDEATHSIG=SIGKILL`.
///
/// The death signal fires when the *thread* that forked the child exits. Test threads come and
/// go (and a handle may live in a `static`, which is never dropped), so forking from a
/// process-lifetime thread means the children die exactly when the test process dies, even if
/// it is killed or aborts, and never earlier.
pub(crate) fn spawn_child(mut cmd: Command) -> io::Result<Child> {
    type Req = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Req>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Req>();
        thread::Builder::new()
            .name("fae-testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn fae-testkit-spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: the pre-exec hook runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe and touches no shared state.
    unsafe {
        cmd.pre_exec(sys::die_with_parent);
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(tx)
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| io::Error::other("spawner thread did not answer within 10 s"))?
}

/// A fresh temporary directory under `$TMPDIR`.
pub(crate) fn temp_dir(tag: &str) -> io::Result<PathBuf> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("fae-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

pub(crate) fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// SIGKILL and reap.
pub(crate) fn kill_child(child: &mut Child) {
    let _ = sys::signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// Wait until `ready()` holds for `child` (polled every 50 ms, at most `timeout`). If the child
/// exits or the time runs out, it is killed and the error carries `log()`.
pub(crate) fn wait_ready(
    mut child: Child,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    log: impl Fn() -> String,
) -> io::Result<Child> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(child);
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(io::Error::other(format!("{what} exited ({st}): {}", log())));
        }
        if Instant::now() >= deadline {
            kill_child(&mut child);
            return Err(io::Error::other(format!(
                "{what} not ready within {timeout:?}: {}",
                log()
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
