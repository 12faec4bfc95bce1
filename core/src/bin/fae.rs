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

use fae_core::dist::Mode;
use fae_core::{Client, Config, Error, Op};

const USAGE: &str = "usage:
  fae route  (--config FILE | --servers H:P[:W],...) [--mode NAME] [--op OP] [KEY...]
  fae get    (--config FILE | --servers ...) [--mode NAME] KEY
  fae set    (--config FILE | --servers ...) [--mode NAME] [--flags N] [--exptime N] KEY [VALUE]
  fae delete (--config FILE | --servers ...) [--mode NAME] KEY
  fae --help | --version

route prints `key,server` lines (with a `key,server` header), reading keys from stdin when
none are given. --config takes a JSON or TOML file (libfae's config schema); --servers and
--mode stand in for one. Exit: 0 ok, 1 miss/not stored, 2 usage or config error, 3 server error.";

struct Args {
    cmd: String,
    config: Option<String>,
    servers: Option<String>,
    mode: Option<String>,
    op: String,
    flags: u32,
    exptime: u32,
    rest: Vec<String>,
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("fae: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or("missing command")?;
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
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
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
            "--" => a.rest.extend(it.by_ref()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => a.rest.push(arg),
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

fn route(client: &Client, op: Op, keys: Vec<String>) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let _ = writeln!(out, "key,server");
    let mut emit = |key: &str| -> Result<(), ExitCode> {
        match client.route_for(op, key.as_bytes()) {
            Ok(servers) => {
                let _ = writeln!(out, "{key},{}", servers.join(";"));
                Ok(())
            }
            Err(e) => {
                eprintln!("fae: key {key:?}: {e}");
                Err(ExitCode::from(2))
            }
        }
    };
    if keys.is_empty() {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else {
                return ExitCode::from(2);
            };
            let key = line.trim_end_matches('\r');
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

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
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
    let one_key = |n: usize| -> Result<&String, ExitCode> {
        if a.rest.is_empty() || a.rest.len() > n {
            Err(usage_error(format!(
                "{} takes KEY{}",
                a.cmd,
                if n == 2 { " [VALUE]" } else { "" }
            )))
        } else {
            Ok(&a.rest[0])
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
            match client.get(key.as_bytes()) {
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
                Some(v) => v.clone().into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    if io::stdin().read_to_end(&mut buf).is_err() {
                        return usage_error("cannot read the value from stdin");
                    }
                    buf
                }
            };
            match client.set(key.as_bytes(), &value, a.flags, a.exptime) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        _ => {
            let key = match one_key(1) {
                Ok(k) => k,
                Err(c) => return c,
            };
            match client.delete(key.as_bytes()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail(&e),
            }
        }
    }
}
