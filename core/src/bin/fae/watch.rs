//! `fae watch`: renders a topology source into a snapshot file (see [`watch_main`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fae_core::discovery::{
    Error, EtcdSource, FileSource, Source, Topology, ZkSource, parse_endpoints,
};
use fae_core::tls::{AuthSection, TlsSection};

/// Usage text of `fae watch`.
pub const USAGE: &str = "\
usage: fae watch SOURCE --out FILE [--once] [--interval-ms N] [TLS] [LOGIN] [--config FILE]

Renders the topology of a discovery source into a snapshot file, atomically (temp file +
fsync + rename) and only when the pools change, with \"version\" increased by one each time.
Many processes (php-fpm workers) watch that one file with a cheap stat instead of each
holding a coordinator session.

SOURCE is one of:
  --etcd HOST:PORT[,...] [--prefix P]        etcd v3 (JSON gateway, HTTP or HTTPS); one key per
                                             pool under P (default /fae/pools/), value a JSON
                                             array of \"host:port[:weight]\" strings
  --zookeeper HOST:PORT[,...] [--path P]     ZooKeeper; P (default /fae/pools) has one child
                                             per pool, whose children are the server strings
      [--session-timeout-ms N]               requested session timeout (default 10000)
  --file SRC                                 a JSON (or .toml) topology file:
                                             {\"pools\": {\"main\": [\"10.0.0.1:11211\"]}}

TLS (etcd, ZooKeeper's secureClientPort):
  --tls-ca-file FILE       PEM CA certificate(s) the server's certificate must chain to
  --tls-cert-file FILE     PEM client certificate (mutual TLS), with --tls-key-file
  --tls-key-file FILE      PEM private key of the client certificate
  --tls-server-name NAME   name the server's certificate must carry (default: the host)
  --tls-no-verify          encrypt but trust any server certificate (tests only)
LOGIN (etcd user/password; ZooKeeper digest, i.e. addauth digest USER:PASSWORD):
  --user NAME              user name, with one of:
  --password-file FILE     file holding the password (re-read at every login)
  --password-env VAR       environment variable holding the password
The password is never taken on the command line, and never printed.

Options:
  --config FILE      libfae config (JSON or TOML): its discovery.tls, discovery.auth and
                     discovery.file (as --out) apply unless given as flags
  --out FILE         snapshot to write (JSON: {\"version\", \"source\", \"pools\"})
  --once             read once, write if changed, exit
  --interval-ms N    poll interval of --file, longest wait per watch call and pause after an
                     error (default 1000)
  -h, --help         this text

While the source is unreachable or returns invalid data the snapshot is left as it is (the
last good topology stays in force) and fae watch keeps retrying. SIGTERM and SIGINT stop it
within about one interval, with exit status 0.

Exit status: 0 ok, 1 invalid data or snapshot not writable (--once), 2 usage error,
3 source unreachable (--once), 4 access denied: login, permission or certificate refused
(--once).
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
        // stores to an atomic, which is async-signal-safe; `sa` outlives the call and a null
        // old-action pointer is allowed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

#[derive(Debug)]
struct Opts {
    source: Box<dyn Source>,
    out: PathBuf,
    once: bool,
    interval: Duration,
}

/// The arguments of `fae watch` (help text: [`USAGE`]).
#[derive(Debug, clap::Args)]
#[command(override_help = USAGE)]
pub struct WatchArgs {
    /// etcd v3 endpoints (JSON gateway, HTTP or HTTPS)
    #[arg(long, value_name = "HOST:PORT[,...]")]
    etcd: Option<String>,
    /// etcd key prefix, one key per pool (default /fae/pools/)
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// ZooKeeper endpoints
    #[arg(long, value_name = "HOST:PORT[,...]")]
    zookeeper: Option<String>,
    /// ZooKeeper path with one child per pool (default /fae/pools)
    #[arg(long, value_name = "P")]
    path: Option<String>,
    /// requested ZooKeeper session timeout, ms
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    session_timeout_ms: u64,
    /// a JSON (or .toml) topology file
    #[arg(long, value_name = "SRC")]
    file: Option<String>,
    /// snapshot to write
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
    /// read once, write if changed, exit
    #[arg(long)]
    once: bool,
    /// poll interval of --file, longest wait per watch call and pause after an error
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// libfae config whose discovery.tls, discovery.auth and discovery.file apply
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// PEM CA certificate(s) for the coordinator's TLS
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS)
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<PathBuf>,
    /// name the server's certificate must carry
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// trust any server certificate
    #[arg(long)]
    tls_no_verify: bool,
    /// coordinator user name
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// file holding the password
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// environment variable holding the password
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
}

/// TLS settings from the flags over the config's `discovery.tls`; `None`: plain TCP.
fn tls_settings(a: &WatchArgs, base: Option<TlsSection>) -> Option<TlsSection> {
    let any_flag = a.tls_ca_file.is_some()
        || a.tls_cert_file.is_some()
        || a.tls_key_file.is_some()
        || a.tls_server_name.is_some()
        || a.tls_no_verify;
    if !any_flag {
        return base;
    }
    let mut t = base.unwrap_or_default();
    if let Some(f) = &a.tls_ca_file {
        t.ca_file = Some(f.clone());
    }
    if let Some(f) = &a.tls_cert_file {
        t.cert_file = Some(f.clone());
    }
    if let Some(f) = &a.tls_key_file {
        t.key_file = Some(f.clone());
    }
    if let Some(n) = &a.tls_server_name {
        t.server_name = Some(n.clone());
    }
    if a.tls_no_verify {
        t.verify = false;
    }
    Some(t)
}

/// Login settings from the flags (all of them) or else the config's `discovery.auth`.
fn auth_settings(
    a: &WatchArgs,
    base: Option<AuthSection>,
) -> std::result::Result<Option<AuthSection>, String> {
    match (&a.user, &a.password_file, &a.password_env) {
        (None, None, None) => Ok(base),
        (Some(u), Some(f), None) => Ok(Some(AuthSection::password_file(u.clone(), f.clone()))),
        (Some(u), None, Some(v)) => Ok(Some(AuthSection::password_env(u.clone(), v.clone()))),
        (None, _, _) => Err("--password-file/--password-env go with --user".into()),
        _ => Err("--user needs exactly one of --password-file, --password-env".into()),
    }
}

fn parse(a: WatchArgs) -> std::result::Result<Opts, String> {
    let (base_tls, base_auth, base_out) = match &a.config {
        Some(path) => {
            let c = fae_core::Config::from_file(path).map_err(|e| format!("--config: {e}"))?;
            let d = c.discovery.clone();
            (d.tls, d.auth, d.file)
        }
        None => (None, None, None),
    };
    // Flags for TLS or login make no sense with --file; the config's settings are for
    // whichever coordinator a later run names, so --file just ignores them.
    let coord_flags = tls_settings(&a, None).is_some() || auth_settings(&a, None)?.is_some();
    let tls = tls_settings(&a, base_tls);
    let auth = auth_settings(&a, base_auth)?;
    let WatchArgs {
        etcd,
        prefix,
        zookeeper: zk,
        path,
        session_timeout_ms: session_ms,
        file,
        out,
        once,
        interval_ms,
        ..
    } = a;
    let n = [etcd.is_some(), zk.is_some(), file.is_some()]
        .iter()
        .filter(|&&b| b)
        .count();
    if n != 1 {
        return Err("give exactly one of --etcd, --zookeeper, --file".into());
    }
    if prefix.is_some() && etcd.is_none() {
        return Err("--prefix goes with --etcd".into());
    }
    if path.is_some() && zk.is_none() {
        return Err("--path goes with --zookeeper".into());
    }
    if file.is_some() && coord_flags {
        return Err("TLS and login settings go with --etcd or --zookeeper, not --file".into());
    }
    let out = out
        .map(PathBuf::from)
        .or(base_out)
        .ok_or("--out FILE is required (or discovery.file in --config)")?;
    let interval = Duration::from_millis(interval_ms);
    let source: Box<dyn Source> = if let Some(list) = etcd {
        let eps = parse_endpoints(&list).map_err(|e| format!("--etcd: {}", e.message()))?;
        let mut s = EtcdSource::new(eps, prefix.unwrap_or_else(|| "/fae/pools/".into()));
        if let Some(t) = tls {
            s = s.tls(t).map_err(|e| e.message().to_string())?;
        }
        if let Some(a) = auth {
            s = s.auth(a).map_err(|e| e.message().to_string())?;
        }
        Box::new(s)
    } else if let Some(list) = zk {
        let eps = parse_endpoints(&list).map_err(|e| format!("--zookeeper: {}", e.message()))?;
        let mut s = ZkSource::new(eps, path.unwrap_or_else(|| "/fae/pools".into()))
            .timeouts(Duration::from_millis(session_ms), Duration::from_secs(1));
        if let Some(t) = tls {
            s = s.tls(t).map_err(|e| e.message().to_string())?;
        }
        if let Some(a) = auth {
            s = s.auth(a).map_err(|e| e.message().to_string())?;
        }
        Box::new(s)
    } else {
        let src = PathBuf::from(file.unwrap_or_default());
        if src == out {
            return Err("--file and --out must differ".into());
        }
        Box::new(FileSource::new(src).poll_interval(interval.min(Duration::from_millis(100))))
    };
    Ok(Opts {
        source,
        out,
        once,
        interval,
    })
}

/// Writes snapshots, numbering them.
struct Writer {
    out: PathBuf,
    written: Option<Topology>,
    version: u64,
}

impl Writer {
    fn new(out: PathBuf) -> Writer {
        // Continue the existing snapshot's numbering, and skip a write if it already matches.
        let written = Topology::read(&out).ok();
        let version = written.as_ref().map_or(0, |t| t.version);
        Writer {
            out,
            written,
            version,
        }
    }

    /// Writes `t` unless it matches the snapshot. Returns whether it wrote.
    fn publish(&mut self, mut t: Topology) -> Result<bool, Error> {
        if self
            .written
            .as_ref()
            .is_some_and(|w| w.same_pools(&t) && w.source == t.source)
        {
            return Ok(false);
        }
        t.version = self.version + 1;
        t.write_atomic(&self.out)?;
        self.version = t.version;
        eprintln!(
            "fae watch: wrote {} version {} ({} pools, {} servers) from {}",
            self.out.display(),
            t.version,
            t.pools.len(),
            t.server_count(),
            t.source
        );
        self.written = Some(t);
        Ok(true)
    }
}

/// Sleeps up to `d`, waking early when a stop signal arrived.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// `fae watch`: `args` are the arguments after `watch`. See [`USAGE`].
///
/// Exit codes: 0 ok (also after SIGTERM/SIGINT), 1 invalid data or unwritable snapshot with
/// `--once`, 2 usage, 3 source unreachable with `--once`. Without `--once` it runs until
/// signalled, keeping the last good snapshot while the source is unreachable or invalid.
/// Installs SIGTERM/SIGINT handlers (process-wide) unless `--once` or `--help`.
pub fn watch_main(args: WatchArgs) -> ExitCode {
    let stop = &STOP;
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fae watch: {e}\n(fae watch --help for the options)");
            return ExitCode::from(2);
        }
    };
    let Opts {
        mut source,
        out,
        once,
        interval,
    } = opts;
    let mut writer = Writer::new(out);
    let describe = source.describe();

    if once {
        return match source.current() {
            Ok(mut t) => {
                t.source = describe;
                match writer.publish(t) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("fae watch: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e @ Error::Unavailable(_)) => {
                eprintln!("fae watch: {describe}: {e}");
                ExitCode::from(3)
            }
            Err(e @ Error::Denied(_)) => {
                eprintln!("fae watch: {describe}: {e}");
                ExitCode::from(4)
            }
            Err(e) => {
                eprintln!("fae watch: {describe}: {e}");
                ExitCode::from(1)
            }
        };
    }

    install_signal_handlers();
    eprintln!("fae watch: watching {describe} -> {}", writer.out.display());
    let mut pending: Option<Topology> = None;
    let mut last_err: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(t) = pending.take()
            && let Err(e) = writer.publish(t.clone())
        {
            eprintln!("fae watch: {e}");
            pending = Some(t);
            nap(interval, stop);
            continue;
        }
        match source.wait_change(interval) {
            Ok(Some(mut t)) => {
                if last_err.take().is_some() {
                    eprintln!("fae watch: {describe}: recovered");
                }
                t.source = describe.clone();
                pending = Some(t);
            }
            Ok(None) => {
                if last_err.take().is_some() {
                    eprintln!("fae watch: {describe}: recovered, topology unchanged");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                // Say each distinct problem once, not once per retry.
                if last_err.as_deref() != Some(msg.as_str()) {
                    eprintln!(
                        "fae watch: {describe}: {msg}; keeping the last good snapshot, retrying"
                    );
                    last_err = Some(msg);
                }
                nap(interval, stop);
            }
        }
    }
    if let Some(t) = pending.take() {
        let _ = writer.publish(t);
    }
    eprintln!("fae watch: stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: WatchArgs,
    }

    /// Parse as `fae watch ARGS` does: clap, then the checks that span options.
    fn parse_args(v: &[&str]) -> Result<Opts, String> {
        let cmd = Cmd::try_parse_from(std::iter::once("watch").chain(v.iter().copied()))
            .map_err(|e| e.to_string())?;
        parse(cmd.args)
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["--out", "x"],
            &["--etcd", "a:1", "--zookeeper", "b:2", "--out", "x"],
            &["--etcd", "a", "--out", "x"],
            &["--etcd", "a:1"],
            &["--file", "a", "--out", "a"],
            &["--file", "a", "--out", "b", "--interval-ms", "0"],
            &["--file", "a", "--out", "b", "--bogus"],
            &["--file", "a", "--out", "b", "--prefix", "/x/"],
            &["--out"],
            &["--file", "a", "--out", "b", "--tls-no-verify"],
            &["--etcd", "a:1", "--out", "b", "--user", "u"],
            &["--etcd", "a:1", "--out", "b", "--password-env", "V"],
            &[
                "--etcd",
                "a:1",
                "--out",
                "b",
                "--user",
                "u",
                "--password-env",
                "V",
                "--password-file",
                "f",
            ],
            &["--etcd", "a:1", "--out", "b", "--tls-cert-file", "c"],
            &["--etcd", "a:1", "--out", "b", "--tls-server-name", "n"],
            &["--etcd", "a:1", "--out", "b", "--password", "x"],
        ] {
            assert!(parse_args(bad).is_err(), "{bad:?}");
        }
        let help = Cmd::try_parse_from(["watch", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().starts_with("usage: fae watch"));
        assert!(
            parse_args(&[
                "--zookeeper",
                "h:1,h:2",
                "--path",
                "/p",
                "--out=o",
                "--interval-ms=500"
            ])
            .is_ok()
        );
        assert!(
            parse_args(&[
                "--etcd=h:1",
                "--out=o",
                "--tls-ca-file=ca.pem",
                "--tls-cert-file=c.pem",
                "--tls-key-file=k.pem",
                "--tls-server-name=etcd.internal",
                "--user=fae",
                "--password-env=FAE_PW",
            ])
            .is_ok()
        );
    }
}
