//! Key → server placement: a pure function of (mode, server list, key).
//!
//! Hash ([`crate::hash`], key → u32) and distribution (u32 → server index) are separate axes, as
//! in twemproxy's hashkit; a [`Mode`] names the combination a migrating user already runs, so
//! that every key lands on the same server as with their old client. Every mode with a golden
//! vector set in `shared/placement/` matches it 100 % (`core/tests/placement.rs`).

use std::fmt;

/// One server as placement sees it: the host string exactly as configured (no DNS: `localhost`
/// and `127.0.0.1` are different points on a ketama ring), the port and the weight (≥ 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// Host exactly as configured.
    pub host: String,
    /// TCP port.
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

    /// `host:port`, the destination address and the name used in `route_for` output.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A placement compatibility mode (see DESIGN.md "Placement: compatibility modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Weighted ketama over MD5 (php-memcached `OPT_LIBKETAMA_COMPATIBLE`, twemproxy ketama+md5,
    /// pylibmc `ketama_weighted`, libmemcached `KETAMA_WEIGHTED`). The default.
    #[default]
    Libmemcached,
    /// Unweighted ketama, 100 points per server hashed with one-at-a-time (pylibmc
    /// `{"ketama": True}`, libmemcached `DISTRIBUTION_CONSISTENT_KETAMA`).
    LibmemcachedKetama,
    /// Modula over one-at-a-time (php-memcached without options).
    PhpMemcachedDefault,
    /// PHP `memcache` extension, `hash_strategy=standard`, crc32.
    PeclMemcacheStandard,
    /// PHP `memcache` extension, `hash_strategy=consistent`, crc32.
    PeclMemcacheConsistent,
    /// pymemcache `HashClient`: rendezvous over murmur3.
    Pymemcache,
    /// mcrouter PoolRoute `hash: Ch3` (its default).
    Mcrouter,
    /// mcrouter PoolRoute `hash: Crc32`.
    McrouterCrc32,
    /// Lamping–Veach jump consistent hash over one-at-a-time... see `Placement` docs.
    Jump,
}

impl Mode {
    /// Every mode, in documentation order.
    pub const ALL: [Mode; 9] = [
        Mode::Libmemcached,
        Mode::LibmemcachedKetama,
        Mode::PhpMemcachedDefault,
        Mode::PeclMemcacheStandard,
        Mode::PeclMemcacheConsistent,
        Mode::Pymemcache,
        Mode::Mcrouter,
        Mode::McrouterCrc32,
        Mode::Jump,
    ];

    /// Stable config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Libmemcached => "libmemcached",
            Mode::LibmemcachedKetama => "libmemcached-ketama",
            Mode::PhpMemcachedDefault => "php-memcached-default",
            Mode::PeclMemcacheStandard => "pecl-memcache-standard",
            Mode::PeclMemcacheConsistent => "pecl-memcache-consistent",
            Mode::Pymemcache => "pymemcache",
            Mode::Mcrouter => "mcrouter",
            Mode::McrouterCrc32 => "mcrouter-crc32",
            Mode::Jump => "jump",
        }
    }

    /// Parse a config name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built placement: maps a key to an index into the node list it was built from.
#[derive(Clone, Debug)]
pub struct Placement {
    mode: Mode,
    len: usize,
}

impl Placement {
    /// Build the placement for `nodes` (in config order). Errors on an empty list.
    pub fn new(mode: Mode, nodes: &[Node]) -> Result<Self, String> {
        let _ = (mode, nodes);
        todo!("placement helper")
    }

    /// The index (into the node list) of the server that owns `key`.
    pub fn pick(&self, key: &[u8]) -> usize {
        let _ = key;
        todo!("placement helper")
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a placement has at least one node.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
