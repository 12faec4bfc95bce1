//! The state behind a `Fae\Client`: servers, options and the core client built from them,
//! shared by every `Fae\Client` constructed with the same `$persistent_id` in this process.
//!
//! Nothing here starts at module load: the registry is empty until a constructor runs in the
//! worker, and the core client (with its pools) is built on first use. php-fpm forks workers
//! after MINIT; the core notices a fork itself (pid check + `pthread_atfork`) and never
//! reuses a parent's socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use fae_core::hash::HashFn;
use fae_core::placement::vbucket::BucketMap;
use fae_core::placement::{Mode, Node, Placement};
use fae_core::values::KeyPrefix;
use fae_core::{Client, Config};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::codes::*;
use crate::values::{Fail, ValueOpts};

/// libmemcached behavior numbers (php-memcached `OPT_*` ≥ 0) and php-memcached's own (< 0).
pub mod opt {
    pub const NO_BLOCK: i64 = 0;
    pub const TCP_NODELAY: i64 = 1;
    pub const HASH: i64 = 2;
    pub const SOCKET_SEND_SIZE: i64 = 4;
    pub const SOCKET_RECV_SIZE: i64 = 5;
    pub const CACHE_LOOKUPS: i64 = 6;
    pub const POLL_TIMEOUT: i64 = 8;
    pub const DISTRIBUTION: i64 = 9;
    pub const BUFFER_WRITES: i64 = 10;
    pub const SORT_HOSTS: i64 = 12;
    pub const VERIFY_KEY: i64 = 13;
    pub const CONNECT_TIMEOUT: i64 = 14;
    pub const RETRY_TIMEOUT: i64 = 15;
    pub const LIBKETAMA_COMPATIBLE: i64 = 16;
    pub const LIBKETAMA_HASH: i64 = 17;
    pub const BINARY_PROTOCOL: i64 = 18;
    pub const SEND_TIMEOUT: i64 = 19;
    pub const RECV_TIMEOUT: i64 = 20;
    pub const SERVER_FAILURE_LIMIT: i64 = 21;
    pub const HASH_WITH_PREFIX_KEY: i64 = 25;
    pub const NOREPLY: i64 = 26;
    pub const USE_UDP: i64 = 27;
    pub const AUTO_EJECT_HOSTS: i64 = 28;
    pub const NUMBER_OF_REPLICAS: i64 = 29;
    pub const RANDOMIZE_REPLICA_READ: i64 = 30;
    pub const TCP_KEEPALIVE: i64 = 32;
    pub const REMOVE_FAILED_SERVERS: i64 = 35;
    pub const DEAD_TIMEOUT: i64 = 36;
    pub const SERVER_TIMEOUT_LIMIT: i64 = 37;
    pub const COMPRESSION: i64 = -1001;
    pub const PREFIX_KEY: i64 = -1002;
    pub const SERIALIZER: i64 = -1003;
    pub const COMPRESSION_TYPE: i64 = -1004;
    pub const STORE_RETRY_COUNT: i64 = -1005;
    pub const USER_FLAGS: i64 = -1006;
    pub const COMPRESSION_LEVEL: i64 = -1007;
    pub const ITEM_SIZE_LIMIT: i64 = -1008;
}

/// Options libfae has no equivalent for: only libmemcached's default value is accepted (a
/// no-op); anything else is refused, with the reason, instead of silently ignored.
const FIXED: &[(i64, i64, &str)] = &[
    (
        opt::SOCKET_SEND_SIZE,
        0,
        "socket buffer sizes are the OS defaults",
    ),
    (
        opt::SOCKET_RECV_SIZE,
        0,
        "socket buffer sizes are the OS defaults",
    ),
    (opt::CACHE_LOOKUPS, 0, "DNS lookups are not cached"),
    (
        opt::SORT_HOSTS,
        0,
        "servers keep the order they were added in",
    ),
    (opt::NOREPLY, 0, "every command waits for its reply"),
    (opt::USE_UDP, 0, "UDP is not supported"),
    (
        opt::NUMBER_OF_REPLICAS,
        0,
        "replication is a route in $config (\"type\": \"replicated\"), not a client option",
    ),
    (
        opt::RANDOMIZE_REPLICA_READ,
        0,
        "replication is a route in $config",
    ),
    (
        opt::TCP_KEEPALIVE,
        0,
        "idle connections are checked by libfae's heartbeat instead",
    ),
    (
        opt::RETRY_TIMEOUT,
        2,
        "dead servers are handled by libfae's breaker (config \"health\")",
    ),
    (
        opt::DEAD_TIMEOUT,
        0,
        "dead servers are handled by libfae's breaker (config \"health\")",
    ),
    (
        opt::SERVER_FAILURE_LIMIT,
        5,
        "dead servers are handled by libfae's breaker (config \"health\")",
    ),
    (
        opt::SERVER_TIMEOUT_LIMIT,
        0,
        "dead servers are handled by libfae's breaker (config \"health\")",
    ),
    (
        opt::REMOVE_FAILED_SERVERS,
        0,
        "dead servers are handled by libfae's breaker; set pools.<name>.on_down in $config",
    ),
    (
        opt::AUTO_EJECT_HOSTS,
        0,
        "dead servers are handled by libfae's breaker; set pools.<name>.on_down in $config",
    ),
];

/// One process-wide entry per `$persistent_id`.
pub type SharedRef = Arc<Mutex<Shared>>;

static REGISTRY: OnceLock<Mutex<HashMap<String, SharedRef>>> = OnceLock::new();

/// The shared state for `id`, and whether it was just created (pristine).
pub fn persistent(
    id: &str,
    make: impl FnOnce() -> Result<Shared, Fail>,
) -> Result<(SharedRef, bool), Fail> {
    let reg = REGISTRY.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = reg.lock();
    if let Some(s) = map.get(id) {
        return Ok((Arc::clone(s), false));
    }
    let s = Arc::new(Mutex::new(make()?));
    map.insert(id.to_string(), Arc::clone(&s));
    Ok((s, true))
}

/// Drop `id`'s state if it is still `s` (php-memcached registers a persistent object only
/// after its on-new-object callback succeeded; a failed one leaves the id unused).
pub fn forget_persistent(id: &str, s: &SharedRef) {
    if let Some(reg) = REGISTRY.get() {
        let mut map = reg.lock();
        if map.get(id).is_some_and(|cur| Arc::ptr_eq(cur, s)) {
            map.remove(id);
        }
    }
}

/// A write held back by `OPT_BUFFER_WRITES`: the stored key, the placing key when it differs.
#[derive(Debug)]
pub enum Buffered {
    Set {
        stored: Vec<u8>,
        routing: Option<Vec<u8>>,
        payload: Vec<u8>,
        flags: u32,
        exptime: u32,
    },
    Delete {
        stored: Vec<u8>,
        routing: Option<Vec<u8>>,
    },
}

#[derive(Debug)]
pub struct Shared {
    /// Servers from `$config["servers"]` and addServer(s), in order.
    pub servers: Vec<Node>,
    /// `$config` without `servers`.
    base: Map<String, Value>,
    /// `$config` has `pools`: the config decides servers and placement.
    pub pools_config: bool,
    /// A placement option was set, so libmemcached's state decides placement even if
    /// `$config` named a mode.
    placement_from_options: bool,
    pub distribution: i64,
    pub weighted: bool,
    pub hash: i64,
    pub libketama_hash: i64,
    /// `setBucket()`: host map, forward map, replicas (the last two kept, unused, as in
    /// libmemcached).
    pub bucket: Option<(Vec<u32>, Option<Vec<u32>>, u32)>,
    pub values: ValueOpts,
    /// OPT_PREFIX_KEY and OPT_HASH_WITH_PREFIX_KEY (off by default, as in php-memcached).
    pub prefix: KeyPrefix,
    pub store_retry_count: i64,
    connect_ms: Option<u64>,
    io_ms: Option<u64>,
    /// Accepted no-op options (NO_BLOCK, VERIFY_KEY, TCP_NODELAY, …) as set. A B-tree: two of
    /// them are read on every call, and a few integer compares cost less than SipHash.
    misc: BTreeMap<i64, i64>,
    /// Writes held back by `OPT_BUFFER_WRITES`, in call order, until the next other command,
    /// `flushBuffers()` or the object's end (libmemcached's write buffer).
    pub pending: Vec<Buffered>,
    core: Option<Arc<Client>>,
}

fn invalid(msg: impl Into<String>) -> Fail {
    (RES_INVALID_ARGUMENTS, msg.into())
}

fn unsupported(msg: impl Into<String>) -> Fail {
    (RES_NOT_SUPPORTED, msg.into())
}

/// A server entry of the config schema. A socket server is an object so that the port it is
/// hashed with (see `add_server`) survives.
fn server_entry(n: &Node) -> Value {
    if n.unix_path().is_some() {
        serde_json::json!({ "addr": n.host, "port": n.port, "weight": n.weight })
    } else if n.host.contains(':') && !n.host.starts_with('[') {
        Value::from(format!("[{}]:{}:{}", n.host, n.port, n.weight))
    } else {
        Value::from(format!("{}:{}:{}", n.host, n.port, n.weight))
    }
}

impl Shared {
    /// A fresh state from the constructor's `$config` (same schema as the config file).
    pub fn new(config: Option<Value>) -> Result<Shared, Fail> {
        let mut s = Shared {
            servers: Vec::new(),
            base: Map::new(),
            pools_config: false,
            placement_from_options: false,
            distribution: 0,
            weighted: false,
            hash: 0,
            libketama_hash: 0,
            bucket: None,
            values: ValueOpts::default(),
            prefix: KeyPrefix::new(Vec::new(), false),
            store_retry_count: 0,
            connect_ms: None,
            io_ms: None,
            misc: BTreeMap::new(),
            pending: Vec::new(),
            core: None,
        };
        let Some(config) = config else {
            return Ok(s);
        };
        let p = parse_config(config)?;
        s.servers = p.servers.unwrap_or_default();
        s.base = p.base;
        s.pools_config = p.pools;
        Ok(s)
    }

    /// `reload($config)`: `$config` (the constructor's schema) replaces the one in force;
    /// options set with `setOption()` stay. Without `servers` or `pools`, the current server
    /// list is kept. A live core client reloads in place ([`Client::reload`]: an atomic swap,
    /// warm connections to unchanged servers kept); before first use there is nothing to swap
    /// and the next call builds from the new config. On any error the old config stays.
    pub fn reload(&mut self, config: Value) -> Result<(), Fail> {
        let p = parse_config(config)?;
        let servers = p.servers.unwrap_or_else(|| self.servers.clone());
        let old = (
            std::mem::replace(&mut self.servers, servers),
            std::mem::replace(&mut self.base, p.base),
            std::mem::replace(&mut self.pools_config, p.pools),
        );
        let r = self.apply_reload();
        if r.is_err() {
            (self.servers, self.base, self.pools_config) = old;
        }
        r
    }

    fn apply_reload(&mut self) -> Result<(), Fail> {
        let (cfg, placement) = self.core_config()?;
        let Some(core) = &self.core else {
            return Ok(());
        };
        match placement {
            None => core.reload(&cfg).map_err(|e| map(&e)),
            Some(p) => {
                // Placement options no config `mode` expresses (e.g. OPT_HASH = HASH_CRC): the
                // core cannot reload to a custom placement, so build a new client and swap it.
                let fresh = Client::with_placement(&cfg, p).map_err(|e| map(&e))?;
                if let Some(old) = self.core.replace(Arc::new(fresh)) {
                    old.close();
                }
                Ok(())
            }
        }
    }

    fn changed(&mut self) {
        if let Some(c) = self.core.take() {
            c.close();
        }
    }

    /// Drop the core client (its connections close); the next call builds a new one.
    pub fn quit(&mut self) {
        self.changed();
    }

    pub fn add_server(
        &mut self,
        host: &str,
        port: u16,
        weight: u32,
        push: bool,
    ) -> Result<(), Fail> {
        if self.pools_config {
            return Err(unsupported(
                "servers come from the pools of $config; addServer() cannot change them",
            ));
        }
        let host = host.trim();
        if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err((RES_HOST_LOOKUP_FAILURE, format!("bad host {host:?}")));
        }
        // A Unix-domain socket: the port is never dialled but ketama hashes it, so it is kept
        // as libmemcached stores it for php-memcached: `addServer` goes through
        // `memcached_server_add_with_weight` (port 0 → 11211, others kept), `addServers` and
        // session save paths through `memcached_server_list_append_with_weight` (always 0).
        let port = match (host.starts_with('/'), push) {
            (true, true) => 0,
            (_, _) if port == 0 => 11211,
            _ => port,
        };
        let node = Node {
            host: host.to_string(),
            port,
            weight: weight.max(1),
        };
        // libmemcached's hidden "weighted" flag (client-anchors §2.4.1).
        if weight > 1 && (push || matches!(self.distribution, 1 | 2 | 4 | 5)) {
            self.weighted = true;
        }
        self.servers.push(node);
        self.changed();
        Ok(())
    }

    pub fn reset_servers(&mut self) {
        if !self.pools_config {
            self.servers.clear();
        }
        self.changed();
    }

    pub fn get_option(&self, o: i64) -> Option<Value> {
        let v = &self.values;
        Some(match o {
            opt::COMPRESSION => Value::from(v.compression),
            opt::PREFIX_KEY => {
                Value::from(String::from_utf8_lossy(self.prefix.prefix()).into_owned())
            }
            opt::SERIALIZER => Value::from(v.serializer),
            opt::COMPRESSION_TYPE => Value::from(v.compression_type),
            opt::STORE_RETRY_COUNT => Value::from(self.store_retry_count),
            opt::USER_FLAGS => Value::from(v.user_flags),
            opt::COMPRESSION_LEVEL => Value::from(v.compression_level),
            opt::ITEM_SIZE_LIMIT => Value::from(v.item_size_limit),
            opt::HASH => Value::from(self.hash),
            opt::DISTRIBUTION => Value::from(self.distribution),
            opt::LIBKETAMA_COMPATIBLE => Value::from(i64::from(self.weighted)),
            opt::LIBKETAMA_HASH => Value::from(self.libketama_hash),
            opt::HASH_WITH_PREFIX_KEY => Value::from(i64::from(self.prefix.hashed())),
            opt::CONNECT_TIMEOUT => Value::from(
                self.connect_ms
                    .unwrap_or_else(|| self.config_timeout("connect_ms")),
            ),
            opt::POLL_TIMEOUT => {
                Value::from(self.io_ms.unwrap_or_else(|| self.config_timeout("io_ms")))
            }
            opt::SEND_TIMEOUT | opt::RECV_TIMEOUT => {
                Value::from(self.io_ms.unwrap_or_else(|| self.config_timeout("io_ms")) * 1000)
            }
            opt::TCP_NODELAY => Value::from(*self.misc.get(&o).unwrap_or(&1)),
            opt::NO_BLOCK | opt::VERIFY_KEY | opt::BINARY_PROTOCOL | opt::BUFFER_WRITES => {
                Value::from(*self.misc.get(&o).unwrap_or(&0))
            }
            _ => Value::from(FIXED.iter().find(|f| f.0 == o)?.1),
        })
    }

    fn config_timeout(&self, field: &str) -> u64 {
        self.base
            .get("timeouts")
            .and_then(|t| t.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(if field == "connect_ms" {
                fae_core::config::defaults::CONNECT_MS
            } else {
                fae_core::config::defaults::IO_MS
            })
    }

    fn placement_guard(&self) -> Result<(), Fail> {
        if self.pools_config {
            return Err(unsupported(
                "placement comes from the pools of $config (\"mode\"); placement options cannot change it",
            ));
        }
        Ok(())
    }

    /// `setOption`: `long`/`bool`/`string` already coerced by the caller into `ival`/`sval`.
    pub fn set_option(&mut self, o: i64, ival: i64, sval: &[u8]) -> Result<(), Fail> {
        let b = ival != 0;
        match o {
            opt::COMPRESSION => self.values.compression = b,
            opt::PREFIX_KEY => {
                if sval.len() > 128 {
                    return Err(invalid("OPT_PREFIX_KEY: at most 128 bytes"));
                }
                if let Some(p) = sval
                    .iter()
                    .position(|&c| fae_core::key::is_forbidden_byte(c))
                {
                    return Err((
                        RES_BAD_KEY_PROVIDED,
                        format!(
                            "OPT_PREFIX_KEY: byte 0x{:02x} at offset {p} is not allowed in a key",
                            sval[p]
                        ),
                    ));
                }
                self.prefix.set_prefix(sval);
            }
            opt::SERIALIZER => {
                use crate::values::*;
                let ok = match ival {
                    SERIALIZER_PHP | SERIALIZER_JSON | SERIALIZER_JSON_ARRAY => true,
                    SERIALIZER_IGBINARY => have_function("igbinary_serialize"),
                    SERIALIZER_MSGPACK => have_function("msgpack_pack"),
                    _ => {
                        return Err(invalid(format!(
                            "OPT_SERIALIZER: unknown serializer {ival}"
                        )));
                    }
                };
                if !ok {
                    return Err(unsupported(format!(
                        "OPT_SERIALIZER {ival}: the igbinary/msgpack extension is not loaded"
                    )));
                }
                self.values.serializer = ival;
            }
            opt::COMPRESSION_TYPE => match ival {
                crate::values::COMPRESSION_ZLIB | crate::values::COMPRESSION_FASTLZ => {
                    self.values.compression_type = ival;
                }
                3 => {
                    return Err(unsupported(
                        "COMPRESSION_ZSTD is not supported (zlib and fastlz are)",
                    ));
                }
                _ => {
                    return Err(invalid(format!(
                        "OPT_COMPRESSION_TYPE: unknown type {ival}"
                    )));
                }
            },
            opt::COMPRESSION_LEVEL => {
                if !(0..=9).contains(&ival) {
                    return Err(invalid("OPT_COMPRESSION_LEVEL: 0..9"));
                }
                self.values.compression_level = ival;
            }
            opt::STORE_RETRY_COUNT => {
                if ival < 0 {
                    return Err(invalid("OPT_STORE_RETRY_COUNT must be >= 0"));
                }
                self.store_retry_count = ival;
            }
            opt::USER_FLAGS => {
                self.values.user_flags = u32::try_from(ival)
                    .ok()
                    .filter(|&f| f <= 0xffff)
                    .ok_or_else(|| invalid("OPT_USER_FLAGS must be 0..65535"))?;
            }
            opt::ITEM_SIZE_LIMIT => {
                self.values.item_size_limit = usize::try_from(ival)
                    .map_err(|_| invalid("OPT_ITEM_SIZE_LIMIT must be >= 0"))?;
            }
            opt::HASH => {
                self.placement_guard()?;
                let h = u32::try_from(ival)
                    .ok()
                    .and_then(HashFn::from_number)
                    .ok_or_else(|| invalid(format!("OPT_HASH: unknown hash {ival}")))?;
                let _ = h;
                if self.hash != ival {
                    self.hash = ival;
                    self.placement_from_options = true;
                    self.changed();
                }
            }
            opt::DISTRIBUTION => {
                self.placement_guard()?;
                match ival {
                    0 | 1 | 2 | 5 | 6 => {}
                    3 | 4 => {
                        return Err(unsupported(format!(
                            "OPT_DISTRIBUTION {ival} (random, ketama-spy) is not supported; modula (0), consistent (1, 2), weighted consistent (5) and virtual bucket (6) are"
                        )));
                    }
                    _ => {
                        return Err(invalid(format!(
                            "OPT_DISTRIBUTION: unknown distribution {ival}"
                        )));
                    }
                }
                match ival {
                    1 | 2 => self.weighted = false,
                    5 => self.weighted = true,
                    _ => {}
                }
                self.distribution = ival;
                self.placement_from_options = true;
                self.changed();
            }
            opt::LIBKETAMA_COMPATIBLE => {
                self.placement_guard()?;
                if b {
                    self.hash = 1;
                    self.distribution = 5;
                    self.weighted = true;
                } else {
                    // php-memcached resets to its defaults here (php_memc_set_option).
                    self.hash = 0;
                    self.distribution = 0;
                    self.weighted = false;
                }
                self.placement_from_options = true;
                self.changed();
            }
            // Stored but unused since libmemcached 0.51 (client-anchors §2.4.1): same here.
            opt::LIBKETAMA_HASH => self.libketama_hash = ival,
            opt::HASH_WITH_PREFIX_KEY => self.prefix.set_hashed(b),
            opt::CONNECT_TIMEOUT => {
                self.connect_ms = Some(u64::try_from(ival.max(1)).unwrap_or(1));
                self.changed();
            }
            opt::POLL_TIMEOUT => {
                self.io_ms = Some(u64::try_from(ival.max(1)).unwrap_or(1));
                self.changed();
            }
            opt::SEND_TIMEOUT | opt::RECV_TIMEOUT => {
                // microseconds; libfae has one deadline per request (send + reply).
                if ival > 0 {
                    self.io_ms = Some(u64::try_from(ival).unwrap_or(0).div_ceil(1000));
                    self.changed();
                }
            }
            opt::TCP_NODELAY => {
                if !b {
                    return Err(unsupported("TCP_NODELAY is always on in libfae"));
                }
                self.misc.insert(o, 1);
            }
            // libfae's I/O is always non-blocking with deadlines, and keys are always verified.
            // BINARY_PROTOCOL: what applications want from it (CAS on every reply, quiet
            // pipelined requests) the meta protocol gives too, so it is accepted and reported
            // as set; requests stay on meta.
            // BUFFER_WRITES: set and delete are held back (`pending`) as libmemcached does.
            opt::NO_BLOCK | opt::VERIFY_KEY | opt::BINARY_PROTOCOL | opt::BUFFER_WRITES => {
                let old = self.misc.insert(o, i64::from(b));
                if o == opt::BINARY_PROTOCOL && old.unwrap_or(0) != i64::from(b) {
                    // Keys with spaces or control bytes become valid (`binary_keys`): rebuilt
                    // on next use, as libmemcached reconnects on a protocol change.
                    self.changed();
                }
            }
            _ => {
                let Some(&(_, default, why)) = FIXED.iter().find(|f| f.0 == o) else {
                    return Err(invalid(format!("unknown option {o}")));
                };
                if ival != default {
                    return Err(unsupported(format!(
                        "option {o} = {ival} is not supported: {why}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// `setBucket()`: libmemcached's `memcached_bucket_set` (the map, then
    /// `DISTRIBUTION_VIRTUAL_BUCKET`). The map is checked against the servers when the core
    /// client is built (servers may still be added).
    pub fn set_bucket(
        &mut self,
        host_map: Vec<u32>,
        forward_map: Option<Vec<u32>>,
        replicas: u32,
    ) -> Result<(), Fail> {
        self.placement_guard()?;
        self.bucket = Some((host_map, forward_map, replicas));
        self.distribution = 6;
        self.placement_from_options = true;
        self.changed();
        Ok(())
    }

    /// The core client, built on first use after any change.
    pub fn core(&mut self) -> Result<Arc<Client>, Fail> {
        if let Some(c) = &self.core {
            return Ok(Arc::clone(c));
        }
        let client = self.build()?;
        let c = Arc::new(client);
        self.core = Some(Arc::clone(&c));
        Ok(c)
    }

    fn build(&self) -> Result<Client, Fail> {
        let (cfg, placement) = self.core_config()?;
        match placement {
            None => Client::new(&cfg),
            Some(p) => Client::with_placement(&cfg, p),
        }
        .map_err(|e| invalid(e.to_string()))
    }

    /// `OPT_BINARY_PROTOCOL` is set.
    pub fn binary_protocol(&self) -> bool {
        self.misc.get(&opt::BINARY_PROTOCOL) == Some(&1)
    }

    /// `OPT_BUFFER_WRITES` is set.
    pub fn buffer_writes(&self) -> bool {
        self.misc.get(&opt::BUFFER_WRITES) == Some(&1)
    }

    /// `OPT_NO_BLOCK` is set.
    pub fn no_block(&self) -> bool {
        self.misc.get(&opt::NO_BLOCK) == Some(&1)
    }

    /// The core `Config` for this state (the constructor and `reload()` both build through
    /// here), and the libmemcached placement to impose when the placement options chose one
    /// that no config `mode` names.
    fn core_config(&self) -> Result<(Config, Option<Placement>), Fail> {
        let mut doc = self.base.clone();
        // php-memcached's binary protocol takes keys with spaces and control bytes (length-
        // prefixed there); over meta they travel base64-encoded. Not with the text protocol.
        let text = doc.get("protocol").and_then(Value::as_str) == Some("text");
        if self.binary_protocol() && !self.pools_config && !text {
            doc.entry("binary_keys").or_insert(Value::Bool(true));
        }
        // php.ini's fae.tls* / fae.auth_* stand in for sections the $config does not give.
        for (key, section) in crate::php_ini::security_defaults() {
            doc.entry(key).or_insert(section);
        }
        let no_servers = !self.pools_config && self.servers.is_empty();
        if no_servers && !self.base.contains_key("route") {
            return Err((
                RES_NO_SERVERS,
                "no servers: call addServer() or give $config[\"servers\"]".into(),
            ));
        }
        if !self.pools_config && !no_servers {
            // libmemcached keeps a server added twice as two entries (getServerList shows
            // both); the pool holds each address once, so the duplicate only stays listed.
            let mut seen = std::collections::HashSet::new();
            let list: Vec<Value> = self
                .servers
                .iter()
                .filter(|n| seen.insert((n.host.as_str(), n.port)))
                .map(server_entry)
                .collect();
            doc.insert("servers".into(), Value::from(list));
        }
        if self.connect_ms.is_some() || self.io_ms.is_some() {
            let mut t = doc
                .get("timeouts")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(c) = self.connect_ms {
                t.insert("connect_ms".into(), Value::from(c));
            }
            if let Some(i) = self.io_ms {
                t.insert("io_ms".into(), Value::from(i));
            }
            doc.insert("timeouts".into(), Value::Object(t));
        }
        if no_servers {
            // A `route` and no server: the config as given, which only builds when the route
            // names no pool (a `local` cache); one that needs servers waits for addServer().
            let cfg = Config::from_value(Value::Object(doc)).map_err(|e| {
                (
                    RES_NO_SERVERS,
                    format!(
                        "no servers: call addServer() or give $config[\"servers\"] ({})",
                        e.detail().unwrap_or("")
                    ),
                )
            })?;
            return Ok((cfg, None));
        }
        let named_mode =
            !self.pools_config && self.base.contains_key("mode") && !self.placement_from_options;
        let mut placement = None;
        if !self.pools_config && !named_mode {
            let hash = u32::try_from(self.hash)
                .ok()
                .and_then(HashFn::from_number)
                .unwrap_or_default();
            let dist = u32::try_from(self.distribution).unwrap_or(0);
            match equivalent_mode(dist, self.weighted, hash) {
                // A preset with the same placement: the config carries it, so a reload keeps it.
                Some(m) => {
                    doc.insert("mode".into(), Value::from(m.as_str()));
                }
                None if dist == 6 && self.bucket.is_some() => {
                    let Some((hosts, fwd, _)) = &self.bucket else {
                        return Err(invalid("setBucket: no map"));
                    };
                    let map =
                        BucketMap::libmemcached(hash, hosts, fwd.as_deref(), self.servers.len())
                            .map_err(|e| invalid(format!("setBucket: {e}")))?;
                    placement =
                        Some(Placement::buckets(Arc::new(map), &self.servers).map_err(invalid)?);
                }
                None => {
                    placement = Some(
                        Placement::libmemcached_behavior(dist, self.weighted, hash, &self.servers)
                            .map_err(unsupported)?,
                    );
                }
            }
        }
        let cfg = Config::from_value(Value::Object(doc)).map_err(|e| invalid(e.to_string()))?;
        Ok((cfg, placement))
    }
}

/// The config `mode` that places keys exactly as libmemcached's behavior state
/// ([`Placement::libmemcached_behavior`]) does, when one exists.
fn equivalent_mode(distribution: u32, weighted: bool, hash: HashFn) -> Option<Mode> {
    match (distribution, weighted, hash) {
        (0, _, HashFn::OneAtATime) => Some(Mode::PhpMemcachedDefault),
        (1 | 2 | 5, true, HashFn::Md5) => Some(Mode::Libmemcached),
        (1 | 2 | 5, false, HashFn::OneAtATime) => Some(Mode::LibmemcachedKetama),
        _ => None,
    }
}

/// `$config` checked and split: its servers (None without a `servers` key), the rest, and
/// whether it names `pools`.
struct Parsed {
    servers: Option<Vec<Node>>,
    base: Map<String, Value>,
    pools: bool,
}

/// The one conversion of a `$config` (constructor and `reload()`): the whole document is
/// validated by the core, so errors name their path.
fn parse_config(config: Value) -> Result<Parsed, Fail> {
    let mut base = match config {
        Value::Object(m) => m,
        // `[]` converts as an empty list; as a $config it is an array with no keys.
        Value::Array(a) if a.is_empty() => Map::new(),
        _ => return Err(invalid("$config must be an array with string keys")),
    };
    if let Some(servers) = base.remove("servers") {
        let mut full = base.clone();
        full.insert("servers".into(), servers);
        let cfg = Config::from_value(Value::Object(full)).map_err(|e| invalid(e.to_string()))?;
        let servers = cfg
            .pools
            .values()
            .next()
            .map(|p| p.servers.clone())
            .unwrap_or_default();
        Ok(Parsed {
            servers: Some(servers),
            base,
            pools: false,
        })
    } else if base.contains_key("pools") {
        Config::from_value(Value::Object(base.clone())).map_err(|e| invalid(e.to_string()))?;
        Ok(Parsed {
            servers: None,
            base,
            pools: true,
        })
    } else {
        // No servers yet (addServer comes later): check the other fields with a stand-in.
        let mut full = base.clone();
        full.insert("servers".into(), Value::from(vec!["127.0.0.1:11211"]));
        Config::from_value(Value::Object(full)).map_err(|e| invalid(e.to_string()))?;
        Ok(Parsed {
            servers: None,
            base,
            pools: false,
        })
    }
}
