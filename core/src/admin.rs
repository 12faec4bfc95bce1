//! Admin commands that are not on the request path: memcached's `stats`.
//!
//! They run on a fresh blocking connection per call, so they never share a pooled
//! connection's buffers or deadlines with requests, and need no codec support: `stats` replies
//! are `STAT <name> <value>` lines ended by `END`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::{Error, Reason, Result};

/// Most `STAT` lines a reply may carry before it is treated as garbage.
const MAX_STAT_LINES: usize = 100_000;

fn io_error(e: std::io::Error) -> Error {
    let reason = match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Reason::Timeout,
        std::io::ErrorKind::ConnectionRefused => Reason::ConnectRefused,
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => Reason::Reset,
        _ => Reason::Io,
    };
    Error::with_detail(reason, e.to_string())
}

/// `stats [group]` against `addr` (`host:port`), each phase bounded by `timeout`.
/// `group` must already be validated (letters, digits, `_`).
pub fn stats(addr: &str, group: Option<&str>, timeout: Duration) -> Result<Vec<(String, String)>> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| Error::with_detail(Reason::ConnectFailed, format!("resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| Error::with_detail(Reason::ConnectFailed, format!("resolve {addr}")))?;
    let timeout = timeout.max(Duration::from_millis(1));
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(io_error)?;
    s.set_read_timeout(Some(timeout)).map_err(io_error)?;
    s.set_write_timeout(Some(timeout)).map_err(io_error)?;
    let cmd = match group {
        Some(g) => format!("stats {g}\r\n"),
        None => "stats\r\n".to_string(),
    };
    s.write_all(cmd.as_bytes()).map_err(io_error)?;
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(io_error)? == 0 {
            return Err(Error::with_detail(
                Reason::Reset,
                "connection closed mid reply",
            ));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l == "END" {
            return Ok(out);
        }
        if let Some(rest) = l.strip_prefix("STAT ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push((k.to_string(), v.to_string()));
            if out.len() > MAX_STAT_LINES {
                return Err(Error::with_detail(Reason::Protocol, "stats reply too long"));
            }
            continue;
        }
        let reason = if l.starts_with("SERVER_ERROR") {
            Reason::ServerError
        } else if l.starts_with("CLIENT_ERROR") || l == "ERROR" {
            Reason::ClientError
        } else {
            Reason::Protocol
        };
        return Err(Error::with_detail(reason, format!("stats: {l}")));
    }
}
