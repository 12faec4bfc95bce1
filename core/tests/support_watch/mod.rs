//! `fae watch` as the process operators run: the tests drive the real binary.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fae_testkit::wait_until;

/// A running `fae watch ARGS…`, stopped with SIGTERM.
pub struct Watch(Child);

impl Watch {
    /// Start `fae watch` with `args` (the arguments after `watch`).
    pub fn spawn(args: &[String]) -> Watch {
        let child = Command::new(env!("CARGO_BIN_EXE_fae"))
            .arg("watch")
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fae watch");
        Watch(child)
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_none()
    }

    /// SIGTERM, then the exit code (killed and `None` if it did not exit within 5 s).
    pub fn stop(mut self) -> Option<i32> {
        // SAFETY: the pid is our own un-reaped child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let exited = wait_until(Duration::from_secs(5), || {
            self.0.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = self.0.kill();
        }
        let status = self.0.wait().expect("wait fae watch");
        if exited { status.code() } else { None }
    }
}

/// Run `fae watch ARGS…` to completion; its exit code.
pub fn run(args: &[String]) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_fae"))
        .arg("watch")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run fae watch")
        .code()
        .unwrap_or(-1)
}
