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

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

mod watch;

use fae_core::placement::Mode;
use fae_core::{Client, Config, Error, Op};

const USAGE: &str = "usage:
  fae route  (--config FILE | --servers H:P[:W],...) [--mode NAME] [--op OP] [KEY...]
  fae get    (--config FILE | --servers ...) [--mode NAME] KEY
  fae set    (--config FILE | --servers ...) [--mode NAME] [--flags N] [--exptime N] KEY [VALUE]
  fae delete (--config FILE | --servers ...) [--mode NAME] KEY
  fae check-config FILE
  fae stats  --dir DIR [--json] [--listen ADDR]
  fae watch  (--etcd H:P[,...] [--prefix P] | --zookeeper H:P[,...] [--path P] | --file SRC) --out FILE
  fae COMMAND --help | fae --help | fae --version

route prints `key,server` lines (with a `key,server` header; several servers joined by `;`
when the route tree sends the operation to more than one), reading keys from stdin when
none are given. --config takes a JSON or TOML file (libfae's config schema); --servers and
--mode stand in for one (a server is host:port[:weight], or a Unix socket's /path). Exit: 0 ok, 1 miss/not stored, 2 usage or config error, 3 server error.";

struct Args {
    cmd: String,
    config: Option<String>,
    servers: Option<String>,
    mode: Option<String>,
    op: String,
    flags: u32,
    exptime: u32,
    /// Keys and values: bytes, as memcached keys are (a key need not be UTF-8).
    rest: Vec<Vec<u8>>,
}

/// The process arguments after `skip`: options must be UTF-8, keys and values are taken as the
/// bytes they are (`OsStr` on Unix is bytes; `std::env::args` would panic on them).
fn raw_args(skip: usize) -> Vec<std::ffi::OsString> {
    std::env::args_os().skip(skip).collect()
}

fn utf8(arg: std::ffi::OsString, what: &str) -> Result<String, String> {
    arg.into_string()
        .map_err(|a| format!("{what} is not UTF-8: {:?}", a.to_string_lossy()))
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fae: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn parse_args() -> Result<Args, String> {
    use std::os::unix::ffi::OsStringExt;
    let mut it = raw_args(1).into_iter();
    let cmd = utf8(it.next().ok_or("missing command")?, "the command")?;
    let mut a = Args {
        cmd,
        config: None,
        servers: None,
        mode: None,
        op: "get".into(),
        flags: 0,
        exptime: 0,
        rest: Vec::new(),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| utf8(it.next().ok_or(format!("{name} needs a value"))?, name);
        let Some(opt) = arg.to_str() else {
            a.rest.push(arg.into_vec());
            continue;
        };
        match opt {
            "--config" => a.config = Some(value("--config")?),
            "--servers" => a.servers = Some(value("--servers")?),
            "--mode" => a.mode = Some(value("--mode")?),
            "--op" => a.op = value("--op")?,
            "--flags" => {
                a.flags = value("--flags")?
                    .parse()
                    .map_err(|_| "--flags takes a number")?;
            }
            "--exptime" => {
                a.exptime = value("--exptime")?
                    .parse()
                    .map_err(|_| "--exptime takes a number")?;
            }
            "--" => a.rest.extend(it.by_ref().map(OsStringExt::into_vec)),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => a.rest.push(arg.into_vec()),
        }
    }
    Ok(a)
}

fn load_config(a: &Args) -> Result<Config, String> {
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

fn route(client: &Client, op: Op, keys: Vec<Vec<u8>>) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let _ = writeln!(out, "key,server");
    let mut emit = |key: &[u8]| -> Result<(), ExitCode> {
        match client.route_for(op, key) {
            Ok(servers) => {
                let _ = out.write_all(key);
                let _ = writeln!(out, ",{}", servers.join(";"));
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

/// One paragraph per command, for `fae COMMAND --help`.
fn command_help(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "route" => "fae route (--config FILE | --servers H:P[:W],... [--mode NAME]) [--op OP] [KEY...]

Print where each key lives, as `key,server` lines after a `key,server` header (the format of
tests/placement/*.csv, so the output can be diffed against a real client's placement). Keys
come from the arguments, or from stdin one per line. --op names the operation (get, set,
delete, incr, touch, ...; default get). With a route tree, a key lists every destination that
operation could touch, joined by `;` in route order (`key,10.0.0.1:11211;10.0.9.1:11211` for
a failover to a gutter; `local` for an in-process cache). No I/O: nothing is sent to any
server.",
        "get" => "fae get (--config FILE | --servers ...) [--mode NAME] KEY

Write KEY's value to stdout. Exit 1 on a miss, 3 on a server or network error.",
        "set" => "fae set (--config FILE | --servers ...) [--mode NAME] [--flags N] [--exptime N] KEY [VALUE]

Store VALUE (or stdin when no VALUE is given) under KEY with the given flags and expiry.",
        "delete" => "fae delete (--config FILE | --servers ...) [--mode NAME] KEY

Delete KEY. Exit 1 if it was not there.",
        "check-config" => "fae check-config FILE

Validate a JSON or TOML config file and print what it builds: pools, servers with weights,
placement mode, protocol, dead-server policy, the route, timeouts, health and stats settings.
Exit 2 with the offending key's path if it is invalid. No I/O.",
        "stats" => "fae stats --dir DIR [--json] [--listen ADDR]

Merge the snapshot files that processes configured with \"stats\": {\"dir\": DIR} write
(php-fpm workers), deleting files of processes that are gone, and print the result in the
Prometheus text format (--json: as JSON). With --listen ADDR, serve GET /metrics and
/stats.json on ADDR instead, merging afresh on every request, until killed.",
        _ => return None,
    })
}

fn check_config(args: &[String]) -> ExitCode {
    let [path] = args else {
        return usage_error("check-config takes FILE");
    };
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

fn stats_cmd(args: &[String]) -> ExitCode {
    let (mut dir, mut json, mut listen) = (None, false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().cloned(),
            "--json" => json = true,
            "--listen" => listen = it.next().cloned(),
            other => return usage_error(format!("stats: unexpected argument {other}")),
        }
    }
    let Some(dir) = dir.map(std::path::PathBuf::from) else {
        return usage_error("stats needs --dir DIR");
    };
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

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `fae route … | head` would panic on a closed stdout. Die
    // quietly instead, as Unix tools do.
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let first = raw_args(1)
        .into_iter()
        .next()
        .map(|a| a.to_string_lossy().into_owned());
    // The subcommands with options only (check-config, stats, watch) take UTF-8 arguments.
    let args: Vec<String> = match raw_args(2)
        .into_iter()
        .map(|a| utf8(a, "an argument"))
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(e) if matches!(first.as_deref(), Some("check-config" | "stats" | "watch")) => {
            return usage_error(e);
        }
        Err(_) => Vec::new(),
    };
    if let Some(cmd) = first.as_deref() {
        if cmd != "watch" && args.iter().any(|a| a == "--help" || a == "-h") {
            return match command_help(cmd) {
                Some(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                None => usage_error(format!("unknown command \"{cmd}\"")),
            };
        }
        match cmd {
            "check-config" => return check_config(&args),
            "stats" => return stats_cmd(&args),
            "watch" => return watch::watch_main(&args),
            _ => {}
        }
    }
    match first.as_deref() {
        Some("--help" | "-h" | "help") | None => {
            println!("{USAGE}");
            return if first.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
        Some("--version") => {
            println!("fae {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    if !matches!(a.cmd.as_str(), "route" | "get" | "set" | "delete") {
        return usage_error(format!("unknown command \"{}\"", a.cmd));
    }
    let config = match load_config(&a) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let client = match Client::new(&config) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let one_key = |n: usize| -> Result<&[u8], ExitCode> {
        if a.rest.is_empty() || a.rest.len() > n {
            Err(usage_error(format!(
                "{} takes KEY{}",
                a.cmd,
                if n == 2 { " [VALUE]" } else { "" }
            )))
        } else {
            Ok(&a.rest[0][..])
        }
    };
    match a.cmd.as_str() {
        "route" => match Op::from_name(&a.op) {
            Some(op) => route(&client, op, a.rest.clone()),
            None => usage_error(format!("unknown --op \"{}\"", a.op)),
        },
        "get" => {
            let key = match one_key(1) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match client.get(key) {
                Ok(Some(item)) => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&item.value);
                    let _ = out.flush();
                    ExitCode::SUCCESS
                }
                Ok(None) => ExitCode::from(1),
                Err(e) => fail(&e),
            }
        }
        "set" => {
            let key = match one_key(2) {
                Ok(k) => k,
                Err(c) => return c,
            };
            let value = match a.rest.get(1) {
                Some(v) => v.clone(),
                None => {
                    let mut buf = Vec::new();
                    if io::stdin().read_to_end(&mut buf).is_err() {
                        return usage_error("cannot read the value from stdin");
                    }
                    buf
                }
            };
            match client.set(key, &value, a.flags, a.exptime) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        _ => {
            let key = match one_key(1) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match client.delete(key) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail(&e),
            }
        }
    }
}
