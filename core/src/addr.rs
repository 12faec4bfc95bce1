//! Server addresses: the [`Node`] type and the server-string parser every layer shares.
//!
//! A bottom module: it imports nothing from the crate, so `config/`, `discovery/`, placement
//! and the pool all use it without importing each other.
//!
//! A server is either TCP (`host:port`) or a Unix-domain stream socket, given as an absolute
//! filesystem path. A socket server is stored the way libmemcached stores it: host = the path,
//! and a port that is never dialled but is hashed by ketama (`path-j` when it is 11211, else
//! `path:port-j`). Which port the replaced client stored decides placement, and they differ
//! (checked against the real clients, `tests/placement/`):
//!
//! | client | socket server given as | stored port |
//! |---|---|---|
//! | php-memcached `addServer('/p.sock', 0)` (libmemcached `memcached_server_add_with_weight`) | port argument, 0 → 11211 | 11211 |
//! | pylibmc `"/p.sock"`, libmemcached `memcached_server_add_unix_socket`, `memcached_servers_parse` (php-memcached session save paths) | — | 0 |
//! | pymemcache `"/p.sock"` (rendezvous over the bare path; no port) | — | (0) |
//!
//! A server string `"/p.sock"` is port 0; the config's `{"addr": "/p.sock", "port": 11211}` and
//! the PHP binding's `addServer` give php-memcached's.

/// memcached's port, assumed when a server string has none.
pub const DEFAULT_PORT: u16 = 11211;

/// One server as placement and the pool see it: the host string exactly as configured (no
/// DNS: `localhost` and `127.0.0.1` are different points on a ketama ring), the port and the
/// weight (≥ 1). A Unix-domain socket server has the socket's path as `host` and port 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// Host exactly as configured, or the socket path of a Unix-domain socket server.
    pub host: String,
    /// TCP port. For a Unix-domain socket server: only hashed, never dialled (0 or what the
    /// replaced client stored, see the module docs).
    pub port: u16,
    /// Relative weight, ≥ 1 (0 is stored as 1, as libmemcached does).
    pub weight: u32,
}

impl Node {
    /// A node with weight 1.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            weight: 1,
        }
    }

    /// A Unix-domain socket server at `path`, port 0 (pylibmc's and libmemcached's unix-socket
    /// API's placement), weight 1.
    pub fn unix(path: impl Into<String>) -> Self {
        Self::new(path, 0)
    }

    /// The socket path when this is a Unix-domain socket server.
    pub fn unix_path(&self) -> Option<&str> {
        unix_path(&self.host)
    }

    /// `host:port`, or the socket path alone for a Unix-domain socket server: the destination
    /// address, the label in stats, and the name used in `route_for` output.
    pub fn addr(&self) -> String {
        match self.unix_path() {
            Some(path) => path.to_string(),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// `host` is a Unix-domain socket path when it starts with `/` (php-memcached, libmemcached,
/// pylibmc and pymemcache all use this rule).
pub fn unix_path(host: &str) -> Option<&str> {
    host.starts_with('/').then_some(host)
}

/// Parse a server string: `host[:port[:weight]]` (IPv6 hosts in brackets), or an absolute
/// path `/run/memcached.sock` for a Unix-domain socket (port 0, weight 1; `unix:` in front is
/// accepted, as pymemcache does). The whole path is the path, colons included, as pylibmc and
/// pymemcache read it; a socket server's weight is given apart (`{"addr", "weight"}`, PHP's
/// `addServer` argument). Weight 0 is stored as 1, as libmemcached does, so a weight-0 list
/// places keys like the client it came from.
pub fn parse_server(s: &str) -> std::result::Result<Node, String> {
    let bad = |why: &str| format!("bad server \"{s}\": {why}");
    let path = s.strip_prefix("unix:").unwrap_or(s);
    if path.starts_with('/') {
        if path.len() < 2 || path.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(bad(
                "a socket path needs a file name and no control characters",
            ));
        }
        return Ok(Node::unix(path));
    }
    if s.starts_with("unix:") {
        return Err(bad("a unix socket path must be absolute (start with /)"));
    }
    let (host, rest) = if let Some(stripped) = s.strip_prefix('[') {
        let end = stripped.find(']').ok_or_else(|| bad("missing ']'"))?;
        (&s[..end + 2], &stripped[end + 1..])
    } else {
        match s.find(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(bad("empty host or whitespace"));
    }
    let mut parts = rest.strip_prefix(':').map(|r| r.split(':'));
    let port = match parts.as_mut().and_then(|p| p.next()) {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("port must be 1-65535"))?,
    };
    let weight = match parts.as_mut().and_then(|p| p.next()) {
        None => 1,
        Some(w) => w
            .parse::<u32>()
            .map_err(|_| bad("weight must be a whole number"))?
            .max(1),
    };
    if parts.and_then(|mut p| p.next()).is_some() || (!rest.is_empty() && !rest.starts_with(':')) {
        return Err(bad("expected host:port[:weight]"));
    }
    Ok(Node {
        host: host.to_string(),
        port,
        weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_strings() {
        assert_eq!(parse_server("h").unwrap(), Node::new("h", 11211));
        assert_eq!(
            parse_server("[::1]:2:0").unwrap(),
            Node {
                host: "[::1]".into(),
                port: 2,
                weight: 1
            }
        );
        for bad in [
            "", ":1", "h:x", "h:1:2:3", "h:70000", "[::1", "h :1", "unix:x", "/",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn socket_paths() {
        let n = parse_server("/run/memcached/m.sock").unwrap();
        assert_eq!(n, Node::unix("/run/memcached/m.sock"));
        assert_eq!((n.port, n.weight), (0, 1));
        assert_eq!(n.unix_path(), Some("/run/memcached/m.sock"));
        assert_eq!(n.addr(), "/run/memcached/m.sock");
        // pymemcache's spelling; a colon belongs to the path (pylibmc, pymemcache).
        assert_eq!(
            parse_server("unix:/tmp/a.sock").unwrap(),
            Node::unix("/tmp/a.sock")
        );
        assert_eq!(parse_server("/tmp/a:2").unwrap(), Node::unix("/tmp/a:2"));
        assert!(parse_server("/tmp/a\nb").is_err());
        assert_eq!(Node::new("h", 1).unix_path(), None);
        assert_eq!(Node::new("h", 1).addr(), "h:1");
    }
}
