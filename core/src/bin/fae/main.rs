//! `fae`: libfae's command-line tool.
//!
//! ```text
//! fae route  (--config FILE | --servers H:P[:W],… [--mode NAME]) [--op OP] [KEY…]
//! fae get    (--config FILE | --servers …) KEY
//! fae set    (--config FILE | --servers …) [--flags N] [--exptime N] KEY [VALUE]
//! fae delete (--config FILE | --servers …) KEY
//! ```
//! `route` reads keys from the arguments, or from stdin (one per line) when none are given, and
//! prints `key,server` lines in the format of `tests/placement/*.csv` (header included), so
//! its output can be diffed against a real client's placement. `set` reads the value from
//! stdin when none is given. Exit codes: 0 ok, 1 miss / not stored / not found, 2 usage or
//! config error, 3 server or network error.

use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod vbucket;
mod watch;

use fae_core::placement::Mode;
use fae_core::{Client, Config, Error, Op};

const USAGE: &str = "usage:
  fae route  (--config FILE | --servers H:P[:W],...) [--mode NAME] [--op OP] [--bucket] [KEY...]
  fae get    (--config FILE | --servers ...) [--mode NAME] KEY
  fae set    (--config FILE | --servers ...) [--mode NAME] [--flags N] [--exptime N] KEY [VALUE]
  fae delete (--config FILE | --servers ...) [--mode NAME] KEY
  fae check-config FILE
  fae stats  --dir DIR [--json] [--listen ADDR]
  fae watch  (--etcd H:P[,...] [--prefix P] | --zookeeper H:P[,...] [--path P] | --file SRC) --out FILE [--tls-* ...] [--user U --password-file F]
  fae vbucket (init|plan|apply|rollback|status) --topology FILE [--pool NAME] ...
  fae completions bash|zsh|fish|elvish|powershell
  fae man [COMMAND]
  fae COMMAND --help | fae --help | fae --version

route prints `key,server` lines (with a `key,server` header; several servers joined by `;`
when the route tree sends the operation to more than one), reading keys from stdin when
none are given. --config takes a JSON or TOML file (libfae's config schema); --servers and
--mode stand in for one (a server is host:port[:weight], or a Unix socket's /path).
Options take their value as `--opt VALUE` or `--opt=VALUE`; a key that starts with `-` goes
after `--`. Exit: 0 ok, 1 miss/not stored, 2 usage or config error, 3 server error.";

/// libfae's command-line tool: placement checks, get/set/delete, config checks, stats merging
/// and topology watching.
#[derive(Debug, Parser)]
#[command(
    name = "fae",
    version,
    override_help = USAGE,
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the servers come from: a config file, or a server list (and placement mode).
#[derive(Debug, clap::Args)]
struct Target {
    /// JSON or TOML config file (libfae's config schema)
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    #[arg(
        long,
        value_name = "H:P[:W],...",
        help = "servers, comma separated: host:port[:weight] or a Unix socket's /path"
    )]
    servers: Option<String>,
    /// placement mode with --servers (libmemcached, php-memcached-default, mcrouter, ...)
    #[arg(long, value_name = "NAME")]
    mode: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print the server(s) each key maps to, as `key,server` lines
    #[command(override_help = ROUTE_HELP)]
    Route {
        #[command(flatten)]
        target: Target,
        /// the operation whose destinations to list (get, set, delete, incr, touch, ...)
        #[arg(long, value_name = "OP", default_value = "get")]
        op: String,
        /// add a `bucket` column: pool/bucket@version, and a move as phase:from->to
        #[arg(long)]
        bucket: bool,
        /// keys (bytes, need not be UTF-8); none: read them from stdin, one per line
        #[arg(value_name = "KEY")]
        keys: Vec<OsString>,
    },
    /// Write a key's value to stdout (exit 1 on a miss)
    #[command(override_help = GET_HELP)]
    Get {
        #[command(flatten)]
        target: Target,
        /// the key (bytes)
        #[arg(value_name = "KEY")]
        key: OsString,
    },
    /// Store a value (from the argument, or stdin) under a key
    #[command(override_help = SET_HELP)]
    Set {
        #[command(flatten)]
        target: Target,
        /// client flags stored with the value
        #[arg(long, value_name = "N", default_value_t = 0)]
        flags: u32,
        /// expiry: seconds, or a Unix time
        #[arg(long, value_name = "N", default_value_t = 0)]
        exptime: u32,
        /// the key (bytes)
        #[arg(value_name = "KEY")]
        key: OsString,
        /// the value (bytes); none: read it from stdin
        #[arg(value_name = "VALUE")]
        value: Option<OsString>,
    },
    /// Delete a key (exit 1 if it was not there)
    #[command(override_help = DELETE_HELP)]
    Delete {
        #[command(flatten)]
        target: Target,
        /// the key (bytes)
        #[arg(value_name = "KEY")]
        key: OsString,
    },
    /// Validate a config file and print what it builds
    #[command(override_help = CHECK_CONFIG_HELP)]
    CheckConfig {
        /// JSON or TOML config file
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Merge the stats snapshots of a directory; print them or serve them over HTTP
    #[command(override_help = STATS_HELP)]
    Stats {
        /// the directory the clients' "stats": {"dir": ...} names
        #[arg(long, value_name = "DIR")]
        dir: String,
        /// print JSON instead of the Prometheus text format
        #[arg(long)]
        json: bool,
        /// serve GET /metrics and /stats.json on this address until killed
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Render a discovery source (etcd, ZooKeeper, file) into a snapshot file
    Watch(Box<watch::WatchArgs>),
    /// Plan and apply virtual-bucket moves through a topology snapshot file
    Vbucket(vbucket::VbucketArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    #[command(override_help = COMPLETIONS_HELP)]
    Completions {
        /// the shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of fae, or of one command (fae-COMMAND(1)), to stdout
    #[command(override_help = MAN_HELP)]
    Man {
        /// the command whose page to print (route, get, set, ...); none: fae(1)
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// A usage or config error: one line, and where to look, never the whole usage.
fn usage_error(cmd: &str, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fae: {msg}\n(fae {cmd} --help for the options)");
    ExitCode::from(2)
}

fn load_config(a: &Target) -> Result<Config, String> {
    let mode = match &a.mode {
        Some(m) => Some(Mode::from_name(m).ok_or_else(|| {
            let names: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown mode \"{m}\"; expected one of {}", names.join(", "))
        })?),
        None => None,
    };
    let err = |e: Error| e.detail().unwrap_or(e.reason().as_str()).to_string();
    match (&a.config, &a.servers) {
        (Some(_), Some(_)) => Err("give --config or --servers, not both".into()),
        (None, None) => Err("give --config FILE or --servers H:P,...".into()),
        (Some(path), None) => {
            if mode.is_some() {
                return Err("--mode goes with --servers; set \"mode\" in the config file".into());
            }
            Config::from_file(path).map_err(err)
        }
        (None, Some(list)) => {
            let servers: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
            Config::with_servers(&servers, mode.unwrap_or_default()).map_err(err)
        }
    }
}

/// The `bucket` column of `fae route --bucket` ([`Client::bucket_text`]).
fn bucket_column(client: &Client, op: Op, key: &[u8]) -> String {
    client.bucket_text(op, key).unwrap_or_default()
}

fn route(client: &Client, op: Op, keys: Vec<Vec<u8>>, bucket: bool) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let _ = writeln!(out, "key,server{}", if bucket { ",bucket" } else { "" });
    let mut emit = |key: &[u8]| -> Result<(), ExitCode> {
        match client.route_for(op, key) {
            Ok(servers) => {
                let _ = out.write_all(key);
                let _ = write!(out, ",{}", servers.join(";"));
                if bucket {
                    let _ = write!(out, ",{}", bucket_column(client, op, key));
                }
                let _ = writeln!(out);
                Ok(())
            }
            Err(e) => {
                eprintln!("fae: key {:?}: {e}", String::from_utf8_lossy(key));
                Err(ExitCode::from(2))
            }
        }
    };
    if keys.is_empty() {
        for line in io::stdin().lock().split(b'\n') {
            let Ok(line) = line else {
                return ExitCode::from(2);
            };
            let key = line.strip_suffix(b"\r").unwrap_or(&line);
            if key.is_empty() {
                continue;
            }
            if let Err(code) = emit(key) {
                return code;
            }
        }
    } else {
        for key in &keys {
            if let Err(code) = emit(key) {
                return code;
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("fae: {e}");
    if matches!(
        e.kind(),
        fae_core::ErrorKind::InvalidKey
            | fae_core::ErrorKind::ValueTooLarge
            | fae_core::ErrorKind::InvalidConfig
            | fae_core::ErrorKind::InvalidArgument
    ) {
        ExitCode::from(2)
    } else {
        ExitCode::from(3)
    }
}

// `fae COMMAND --help`: one paragraph per command.
const ROUTE_HELP: &str =
    "fae route (--config FILE | --servers H:P[:W],... [--mode NAME]) [--op OP] [--bucket] [KEY...]

Print where each key lives, as `key,server` lines after a `key,server` header (the format of
tests/placement/*.csv, so the output can be diffed against a real client's placement). Keys
come from the arguments, or from stdin one per line. --op names the operation (get, set,
delete, incr, touch, ...; default get). With a route tree, a key lists every destination that
operation could touch, joined by `;` in route order (`key,10.0.0.1:11211;10.0.9.1:11211` for
a failover to a gutter; `local` for an in-process cache). --bucket adds a `bucket` column for
pools placed by virtual buckets: `pool/bucket@version`, and for a bucket on the move its
phase and servers (`main/17@12 dual_write:3->10`, indexes into the pool's servers). No I/O:
nothing is sent to any server.";
const GET_HELP: &str = "fae get (--config FILE | --servers ...) [--mode NAME] KEY

Write KEY's value to stdout. Exit 1 on a miss, 3 on a server or network error.";
const SET_HELP: &str =
    "fae set (--config FILE | --servers ...) [--mode NAME] [--flags N] [--exptime N] KEY [VALUE]

Store VALUE (or stdin when no VALUE is given) under KEY with the given flags and expiry.";
const DELETE_HELP: &str = "fae delete (--config FILE | --servers ...) [--mode NAME] KEY

Delete KEY. Exit 1 if it was not there.";
const CHECK_CONFIG_HELP: &str = "fae check-config FILE

Validate a JSON or TOML config file and print what it builds: pools, servers with weights,
placement mode, protocol, dead-server policy, the route, timeouts, health and stats settings.
Exit 2 with the offending key's path if it is invalid. No I/O.";
const STATS_HELP: &str = "fae stats --dir DIR [--json] [--listen ADDR]

Merge the snapshot files that processes configured with \"stats\": {\"dir\": DIR} write
(php-fpm workers), folding files of processes that are gone into the retired totals, and print
the result in the Prometheus text format (--json: as JSON). With --listen ADDR, serve GET
/metrics and /stats.json on ADDR instead, merging afresh on every request, until killed.";
const COMPLETIONS_HELP: &str = "fae completions SHELL

Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) to stdout, e.g.
  fae completions bash > /usr/share/bash-completion/completions/fae";
const MAN_HELP: &str = "fae man [COMMAND]

Print fae's man page fae(1), or with COMMAND the page fae-COMMAND(1), in roff to stdout, e.g.
  fae man > fae.1 && fae man route > fae-route.1 && man ./fae.1";

fn check_config(path: &str) -> ExitCode {
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fae: {}", e.detail().unwrap_or(e.reason().as_str()));
            return ExitCode::from(2);
        }
    };
    if let Err(e) = Client::new(&config) {
        eprintln!("fae: {}", e.detail().unwrap_or(e.reason().as_str()));
        return ExitCode::from(2);
    }
    println!("{path}: ok");
    println!("route: {}", config.route);
    for (name, p) in &config.pools {
        println!(
            "pool \"{name}\": mode {}, protocol {}, on_down {}, max_connections {}{}",
            p.mode,
            p.protocol.as_str(),
            p.on_down.as_str(),
            p.max_connections,
            if p.binary_keys { ", binary keys" } else { "" }
        );
        for n in &p.servers {
            println!("  {} weight {}", n.addr(), n.weight);
        }
    }
    let t = &config.timeouts;
    println!(
        "timeouts: connect {} ms, io {} ms; max_value_size {} bytes",
        t.connect_ms, t.io_ms, config.max_value_size
    );
    let h = &config.health;
    println!(
        "health: tko_soft_threshold {}, probe {}..{} ms, half_open_requests {}, max_tko_fraction {}, heartbeat {} ms, max_idle {} ms, max_age {} ms, background {}",
        h.tko_soft_threshold,
        h.probe_initial_ms,
        h.probe_max_ms,
        h.half_open_requests,
        h.max_tko_fraction,
        h.heartbeat_interval_ms,
        h.max_idle_ms,
        h.max_age_ms,
        h.background
    );
    let st = &config.stats;
    if st.listen.is_some() || st.dir.is_some() {
        println!(
            "stats: listen {}, dir {}, every {} ms",
            st.listen.as_deref().unwrap_or("-"),
            st.dir
                .as_ref()
                .map_or("-".to_string(), |d| d.display().to_string()),
            st.interval_ms
        );
    }
    ExitCode::SUCCESS
}

fn stats_cmd(dir: &str, json: bool, listen: Option<String>) -> ExitCode {
    let dir = std::path::PathBuf::from(dir);
    let render = |as_json: bool| -> Result<String, String> {
        let merged = fae_core::export::aggregate_dir(&dir).map_err(|e| e.to_string())?;
        Ok(if as_json {
            merged.to_string() + "\n"
        } else {
            fae_core::stats::render_prometheus(&merged)
        })
    };
    let Some(addr) = listen else {
        return match render(json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fae: {e}");
                ExitCode::from(2)
            }
        };
    };
    let listener = match std::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fae: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "fae: serving /metrics and /stats.json from {} on {addr}",
        dir.display()
    );
    for stream in listener.incoming().flatten() {
        let _ = serve_one(stream, &render);
    }
    ExitCode::SUCCESS
}

fn serve_one(
    mut stream: std::net::TcpStream,
    render: &dyn Fn(bool) -> Result<String, String>,
) -> io::Result<()> {
    use std::io::BufRead as _;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
    let mut line = String::new();
    io::BufReader::new(&stream).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => match render(false) {
            Ok(b) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", b),
            Err(e) => ("500 Internal Server Error", "text/plain", e + "\n"),
        },
        "/stats.json" => match render(true) {
            Ok(b) => ("200 OK", "application/json", b),
            Err(e) => ("500 Internal Server Error", "text/plain", e + "\n"),
        },
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /stats.json\n".to_string(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `fae man [COMMAND]`: fae(1), or fae-COMMAND(1) (the pages fae(1) lists).
fn man(command: Option<&str>) -> ExitCode {
    let cli = Cli::command();
    let page = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub
                .clone()
                .display_name(format!("fae-{name}"))
                .bin_name(format!("fae {name}"))
                .version(env!("CARGO_PKG_VERSION")),
            None => return usage_error("man", format!("no command \"{name}\"")),
        },
    };
    match clap_mangen::Man::new(page).render(&mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fae: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `fae route … | head` would panic on a closed stdout. Die
    // quietly instead, as Unix tools do.
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Usage errors exit 2 with one line and a pointer to --help; --help and --version exit 0.
    let cli = Cli::parse();
    let (name, target) = match cli.cmd {
        Cmd::CheckConfig { file } => return check_config(&file),
        Cmd::Stats { dir, json, listen } => return stats_cmd(&dir, json, listen),
        Cmd::Watch(args) => return watch::watch_main(*args),
        Cmd::Vbucket(args) => return vbucket::vbucket_main(args),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fae", &mut io::stdout());
            return ExitCode::SUCCESS;
        }
        Cmd::Man { command } => return man(command.as_deref()),
        Cmd::Route { ref target, .. } => ("route", target),
        Cmd::Get { ref target, .. } => ("get", target),
        Cmd::Set { ref target, .. } => ("set", target),
        Cmd::Delete { ref target, .. } => ("delete", target),
    };
    let config = match load_config(target) {
        Ok(c) => c,
        Err(e) => return usage_error(name, e),
    };
    let client = match Client::new(&config) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    use std::os::unix::ffi::OsStrExt;
    match &cli.cmd {
        Cmd::Route {
            op, keys, bucket, ..
        } => match Op::from_name(op) {
            Some(op) => route(
                &client,
                op,
                keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
                *bucket,
            ),
            None => usage_error(name, format!("unknown --op \"{op}\"")),
        },
        Cmd::Get { key, .. } => match client.get(key.as_bytes()) {
            Ok(Some(item)) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&item.value);
                let _ = out.flush();
                ExitCode::SUCCESS
            }
            Ok(None) => ExitCode::from(1),
            Err(e) => fail(&e),
        },
        Cmd::Set {
            key,
            value,
            flags,
            exptime,
            ..
        } => {
            let value = match value {
                Some(v) => v.as_bytes().to_vec(),
                None => {
                    let mut buf = Vec::new();
                    if io::stdin().read_to_end(&mut buf).is_err() {
                        return usage_error(name, "cannot read the value from stdin");
                    }
                    buf
                }
            };
            match client.set(key.as_bytes(), &value, *flags, *exptime) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Cmd::Delete { key, .. } => match client.delete(key.as_bytes()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => fail(&e),
        },
        _ => unreachable!("handled above"),
    }
}
