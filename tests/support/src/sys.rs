//! The few libc calls this crate needs, each wrapped once with its safety
//! argument.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Whether the effective uid is 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `sig` to `pid`.
///
/// Callers only pass the pid of a child they hold an un-reaped
/// `std::process::Child` for, so the pid cannot have been recycled.
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the
    // pid belongs to our own un-reaped child (see above), never 0 or -1.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `SO_LINGER {on, 0}` so that the final close of `stream` sends RST
/// instead of FIN.
pub(crate) fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is a live socket owned by `stream` for the duration of
    // the call; the option value points to a properly initialised
    // `libc::linger` whose exact size is passed as the length.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Waits up to `timeout` for `fd` to become readable (or to report an error
/// or hang-up). Returns `true` if it did.
pub(crate) fn poll_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is a valid, exclusively borrowed pollfd array of length 1
    // that outlives the call; the caller keeps `fd` open during the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0
}

/// Makes the calling (child, pre-exec) process receive SIGKILL when the thread
/// that forked it exits. Async-signal-safe: a single prctl(2).
pub(crate) fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes plain integers, touches no
    // memory and is async-signal-safe, so it may run between fork and exec.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
