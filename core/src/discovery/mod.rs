//! Discovery: where pool server lists come from, and the snapshot file they are rendered into.
//!
//! ```text
//! etcd prefix ─┐                       (one process per host)
//! ZooKeeper ───┼─ Source ── fae watch ──▶ snapshot file ──▶ FileSource ──▶ client reload
//! operator file┘                          (atomic rename)   (cheap stat)    (hundreds of workers)
//! ```
//!
//! Every backend implements [`Source`] and yields a [`Topology`]: named pools, each a list of
//! server strings in the config's `host:port[:weight]` form. [`Topology::write_atomic`] and
//! [`Topology::read`] are the only writer and reader of the snapshot format:
//!
//! ```json
//! {"version": 7, "source": "etcd:127.0.0.1:2379/fae/pools/",
//!  "pools": {"main": ["10.0.0.1:11211", "10.0.0.2:11211:2"]}}
//! ```
//!
//! A pool placed by virtual buckets also has its bucket map, with the map's own version (see
//! `crate::placement::vbucket`): `"buckets": {"main": {"count": 1024, "version": 12, "map":
//! […], "moves": […]}}`. `fae vbucket apply` writes it; a client adopts a snapshot's map only
//! when its version is not lower than the map it uses.
//!
//! `version` is the writer's counter: `fae watch` increases it by one each time it writes a
//! changed topology (and continues from the existing file after a restart). `source` is
//! informational. Readers compare `pools`, not `version`, to decide whether anything changed.
//!
//! Backends keep no background threads: the caller (the `fae watch` loop or the client's
//! supervisor) drives them with [`Source::wait_change`], which blocks for a bounded time.
//! When a coordinator is unreachable a source returns an error and the caller keeps the last
//! good topology; the next call reconnects.

// The coordinator clients: only the `fae watch` tool talks to etcd or ZooKeeper, so the
// bindings build without them (feature `watch`, on by default for the CLI).
#[cfg(feature = "watch")]
pub mod etcd;
pub mod file;
#[cfg(feature = "watch")]
mod tls;
#[cfg(feature = "watch")]
pub mod zk_proto;
#[cfg(feature = "watch")]
pub mod zookeeper;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "watch")]
pub use etcd::EtcdSource;
pub use file::FileSource;
#[cfg(feature = "watch")]
pub use zookeeper::{ZkClient, ZkSessionStats, ZkSource};

/// Why a discovery operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The coordinator (or file) could not be reached or read: connect refused, timeout, I/O
    /// error, session lost. Retry later; keep the last good topology meanwhile.
    Unavailable(String),
    /// The data was reached but is not a valid topology (malformed JSON, bad server string,
    /// unexpected protocol reply), or the connection settings are not usable (a TLS file that
    /// cannot be read, a plain-text client at a TLS port). The message names the file, key,
    /// node or setting.
    Invalid(String),
    /// The coordinator refused us: wrong user or password, no permission, a certificate it
    /// (or we) did not accept. Retrying helps only after the credentials or TLS settings change.
    Denied(String),
}

impl Error {
    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Unavailable(m) | Error::Invalid(m) | Error::Denied(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Invalid(m) => write!(f, "invalid: {m}"),
            Error::Denied(m) => write!(f, "access denied: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of discovery operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Checks a coordinator's `tls` section (config path `at`) without reading its files: the
/// checks of a pool's `tls`, and `ca_file` when verifying, since coordinators are signed by a
/// private CA and the system store is not consulted.
pub(crate) fn check_tls(t: &crate::tls::TlsSection, at: &str) -> crate::error::Result<()> {
    t.check(at)?;
    if t.verify && t.ca_file.is_none() {
        return Err(crate::Error::with_detail(
            crate::error::Reason::InvalidConfig,
            format!("{at}: ca_file is required to verify the server (or set verify: false)"),
        ));
    }
    Ok(())
}

/// A topology: named pools and their server strings (`host:port[:weight]`, as in the config).
///
/// Serialised as the snapshot file format (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Writer's counter; increases with every change written by `fae watch`. 0 when unknown.
    #[serde(default)]
    pub version: u64,
    /// Where the topology came from, e.g. `etcd:127.0.0.1:2379/fae/pools/`. Informational.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Pool name → server strings, in the order the source gave them.
    pub pools: BTreeMap<String, Vec<String>>,
    /// Pool name → bucket map, for pools placed by virtual buckets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buckets: BTreeMap<String, crate::placement::vbucket::BucketsSpec>,
}

impl Topology {
    /// A topology with version 0 and no source.
    pub fn new(pools: BTreeMap<String, Vec<String>>) -> Topology {
        Topology {
            version: 0,
            source: String::new(),
            pools,
            buckets: BTreeMap::new(),
        }
    }

    /// Checks every pool name and server string (with [`crate::addr::parse_server`]).
    /// `origin` prefixes the error message (a path, a key, a node).
    pub fn validate(&self, origin: &str) -> Result<()> {
        for (pool, servers) in &self.pools {
            if pool.is_empty() || pool.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Invalid(format!("{origin}: bad pool name {pool:?}")));
            }
            for (i, s) in servers.iter().enumerate() {
                crate::addr::parse_server(s)
                    .map_err(|e| Error::Invalid(format!("{origin}: pools.{pool}[{i}]: {e}")))?;
            }
        }
        Ok(())
    }

    /// Whether both have the same pools, servers and bucket maps (ignores `version` and
    /// `source`).
    pub fn same_pools(&self, other: &Topology) -> bool {
        self.pools == other.pools && self.buckets == other.buckets
    }

    /// Total number of server entries over all pools.
    pub fn server_count(&self) -> usize {
        self.pools.values().map(Vec::len).sum()
    }

    /// Parses a topology from JSON text and validates it. `origin` names the text in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Topology> {
        let t: Topology =
            serde_json::from_str(text).map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        t.validate(origin)?;
        Ok(t)
    }

    /// Parses a topology from TOML text (`[pools]` table of arrays) and validates it.
    pub fn from_toml(text: &str, origin: &str) -> Result<Topology> {
        let t: Topology =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        t.validate(origin)?;
        Ok(t)
    }

    /// Reads a snapshot (JSON, or TOML when the path ends in `.toml`) and validates every
    /// server. Errors name the path.
    pub fn read(path: impl AsRef<Path>) -> Result<Topology> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = crate::textfile::read(path)
            .map_err(|e| Error::Unavailable(format!("{origin}: {e}")))?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            Topology::from_toml(&text, &origin)
        } else {
            Topology::from_json(&text, &origin)
        }
    }

    /// The snapshot JSON (pretty, with a trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Writes the snapshot so that readers never see half a file: a temporary file in the
    /// same directory, `fsync`, `rename` over `path`, then `fsync` of the directory.
    pub fn write_atomic(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let err = |what: &str, e: std::io::Error| {
            Error::Unavailable(format!("{}: {what}: {e}", path.display()))
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(|e| err("create temp file", e))?;
            f.write_all(self.to_json().as_bytes())
                .map_err(|e| err("write temp file", e))?;
            f.sync_all().map_err(|e| err("fsync temp file", e))?;
            drop(f);
            std::fs::rename(&tmp, path).map_err(|e| err("rename", e))?;
            // Durability of the rename itself; failure here does not undo the write.
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// A source of topology: a file, an etcd prefix, a ZooKeeper node.
///
/// Sources are driven by one thread at a time and start no threads of their own.
pub trait Source: Send {
    /// A short description for logs and the snapshot's `source` field,
    /// e.g. `etcd:127.0.0.1:2379/fae/pools/`.
    fn describe(&self) -> String;

    /// Reads the whole topology now (connecting if needed). The result becomes the baseline
    /// that [`Source::wait_change`] compares against.
    fn current(&mut self) -> Result<Topology>;

    /// Blocks for at most about `timeout` until the topology differs from the last one this
    /// source returned. `Ok(None)`: no change within the timeout. `Err`: the coordinator is
    /// unreachable or returned invalid data; the caller keeps its last good topology and calls
    /// again (after a pause) — the source reconnects, re-reads and re-arms its watches.
    fn wait_change(&mut self, timeout: Duration) -> Result<Option<Topology>>;
}

impl fmt::Debug for dyn Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(feature = "watch")]
/// Splits `HOST:PORT[,HOST:PORT…]` into endpoints, checking each has a port.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>> {
    let eps: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if eps.is_empty() {
        return Err(Error::Invalid(format!("no endpoints in {list:?}")));
    }
    for ep in &eps {
        let ok = ep
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            return Err(Error::Invalid(format!(
                "endpoint {ep:?}: expected HOST:PORT"
            )));
        }
    }
    Ok(eps)
}

#[cfg(feature = "watch")]
/// Connects to `endpoint` (`HOST:PORT`) trying every resolved address, each with `timeout`.
pub(crate) fn connect(endpoint: &str, timeout: Duration) -> Result<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let addrs = endpoint
        .to_socket_addrs()
        .map_err(|e| Error::Unavailable(format!("{endpoint}: resolve: {e}")))?;
    let mut last = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Unavailable(match last {
        Some(e) => format!("{endpoint}: connect: {e}"),
        None => format!("{endpoint}: no address"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(pairs: &[(&str, &[&str])]) -> Topology {
        Topology::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn json_roundtrip_and_format() {
        let mut t = topo(&[("main", &["10.0.0.1:11211", "10.0.0.2:11211:2"])]);
        t.version = 7;
        t.source = "etcd:127.0.0.1:2379/fae/pools/".into();
        let j = t.to_json();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["version"], 7);
        assert_eq!(v["pools"]["main"][1], "10.0.0.2:11211:2");
        assert_eq!(Topology::from_json(&j, "x").unwrap(), t);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "[]",
            "{\"pools\": 3}",
            "{\"pools\": {\"a\": [1]}}",
            "{\"pools\": {\"a\": [\"h:0\"]}}",
            "{\"pools\": {\"a\": [\"h:1:x\"]}}",
            "{\"pools\": {\"\": []}}",
            "{\"pools\": {}, \"extra\": 1}",
        ] {
            let e = Topology::from_json(bad, "snap.json").unwrap_err();
            assert!(e.message().starts_with("snap.json"), "{e}");
        }
    }

    #[test]
    fn toml_works() {
        let t = Topology::from_toml("[pools]\nmain = [\"a:1\", \"b:2:3\"]\n", "t.toml").unwrap();
        assert_eq!(t.pools["main"], vec!["a:1", "b:2:3"]);
    }

    #[test]
    fn write_atomic_then_read() {
        let dir = std::env::temp_dir().join(format!("fae-disc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("snap.json");
        let t = topo(&[("a", &["127.0.0.1:1"]), ("b", &[])]);
        t.write_atomic(&p).unwrap();
        assert_eq!(Topology::read(&p).unwrap(), t);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "temp file left behind");
        let e = Topology::read(dir.join("missing.json")).unwrap_err();
        assert!(e.message().contains("missing.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "watch")]
    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoints("a:1, b:2").unwrap(), vec!["a:1", "b:2"]);
        assert!(parse_endpoints("a").is_err());
        assert!(parse_endpoints("").is_err());
        assert!(parse_endpoints("a:0").is_err());
    }

    #[test]
    fn config_discovery_section() {
        let base = r#"{"pools": {"main": {"servers": ["127.0.0.1:1"]}}, "discovery": "#;
        let ok = format!(
            r#"{base}{{"file": "/run/t.json", "tls": {{"ca_file": "ca.pem", "server_name": "etcd.internal"}},
               "auth": {{"username": "fae", "password_file": "/etc/pw"}}}}}}"#
        );
        let c = crate::Config::from_json(&ok).unwrap();
        let tls = c.discovery.tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("etcd.internal"));
        assert!(tls.verify);
        assert_eq!(c.discovery.auth.as_ref().unwrap().username, "fae");
        for (bad, needle) in [
            (
                r#"{"tls": {"cert_file": "c.pem", "verify": false}}"#,
                "key_file",
            ),
            (r#"{"tls": {"server_name": "x"}}"#, "ca_file"),
            (
                r#"{"tls": {"verify": false, "server_name": ""}}"#,
                "server_name",
            ),
            (r#"{"auth": {"username": "fae"}}"#, "password_file"),
            (
                r#"{"auth": {"username": "fae", "password": "x"}}"#,
                "password",
            ),
        ] {
            let e = crate::Config::from_json(&format!("{base}{bad}}}")).unwrap_err();
            let m = e.to_string();
            assert!(m.contains("discovery") && m.contains(needle), "{bad}: {m}");
        }
    }

    #[test]
    fn coordinator_tls_needs_its_ca() {
        use crate::tls::TlsSection;
        assert!(check_tls(&TlsSection::default(), "tls").is_err());
        assert!(check_tls(&TlsSection::default().verify(false), "tls").is_ok());
        assert!(check_tls(&TlsSection::with_ca("ca.pem"), "tls").is_ok());
    }
}
