//! Process-wide machinery: what a process has once, whatever number of clients it holds.
//!
//! - [`fork`]: the `pthread_atfork` handlers, the process generation every per-process
//!   structure compares against, and the lock types that survive `fork()`.
//! - [`supervisor`]: the one lazily started thread per process that probes, heartbeats,
//!   recycles, watches config files and exports stats for every registered client.
//! - [`background`]: the one lazily started worker per process for work done after a reply
//!   (shadow copies, async replicas, warm-up adds, migration copies).
//! - [`random`]: random numbers that a forked child does not share with its parent.
//! - [`thread`]: how those threads (and probes) are started: `pthread_create`, so that a fork
//!   while some thread starts or exits cannot leave the child unable to start them.
//!
//! php-fpm, gunicorn and uwsgi fork after loading the library, so nothing here starts a thread
//! at load time, and a forked child starts its own threads on first use.

pub mod background;
pub mod fork;
pub mod random;
pub mod supervisor;
pub mod thread;
