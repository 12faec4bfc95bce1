//! `Fae\SessionHandler`: php-memcached's session handler semantics (client-anchors §3.6) for
//! `session_set_save_handler()`.
//!
//! - Data: key `prefix.sid`, stored raw with flags 0, placed by the sid (the prefix is a
//!   namespace, not hashed), TTL `session.gc_maxlifetime`.
//! - Lock: `add(prefix."lock.".sid, "1", lock_expire)` placed by `"lock.".sid`; on failure
//!   sleep `lock_wait_min` ms, doubling up to `lock_wait_max`, for `lock_retries` retries, then
//!   read fails ("Unable to clear session lock record"). Released (deleted) on close and
//!   destroy, and when the handler is freed at the end of a request that died on a fatal error.
//! - Placement: `consistent_hash_type` `ketama` (php-memcached 3.x default: unweighted
//!   one-at-a-time continuum) or `ketama_weighted` (2.x, = OPT_LIBKETAMA_COMPATIBLE), or
//!   `modula` with `consistent_hash => false`.

use std::sync::Arc;
use std::time::Duration;

use ext_php_rs::binary::Binary;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendCallable, Zval};
use ext_php_rs::zend::ClassEntry;
use fae_core::protocol::StoreOp;
use fae_core::values::KeyPrefix;
use fae_core::{Client, StoreOutcome};

use crate::client::guard;
use crate::compat::register_classes as register_late_classes;
use crate::convert::*;
use crate::state::{Shared, opt};

// The session extension's interface entries (exported by the php binary, `ext/session`).
// Looked up by symbol because MINIT runs before the executor's class table exists.
unsafe extern "C" {
    static php_session_iface_entry: *mut ClassEntry;
    static php_session_update_timestamp_iface_entry: *mut ClassEntry;
}

fn session_handler_interface() -> &'static ClassEntry {
    // SAFETY: set by the session extension's MINIT, which runs before ours (it is built in)
    // and lives for the whole process; read once at class registration.
    unsafe { php_session_iface_entry.as_ref() }.expect("the session extension is loaded")
}

fn session_update_timestamp_interface() -> &'static ClassEntry {
    // SAFETY: as above.
    unsafe { php_session_update_timestamp_iface_entry.as_ref() }
        .expect("the session extension is loaded")
}

fn ini_long(name: &str, default: i64) -> i64 {
    ZendCallable::try_from_name("ini_get")
        .ok()
        .and_then(|f| f.try_call(vec![&name]).ok())
        .and_then(|z| z.str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct SessOpts {
    /// `memcached.sess_prefix`: a namespace, never hashed (php-memcached places by the sid).
    prefix: KeyPrefix,
    locking: bool,
    lock_wait_min: u64,
    lock_wait_max: u64,
    lock_retries: i64,
    lock_expire: i64,
    hash_type: String,
    consistent: bool,
}

#[php_class]
#[php(name = "Fae\\SessionHandler")]
// Registered after Fae\Client: Fae\Exception and the php-memcached names go in here.
#[php(modifier = register_late_classes)]
#[php(implements(ce = session_handler_interface, stub = "\\SessionHandlerInterface"))]
#[php(implements(ce = session_update_timestamp_interface, stub = "\\SessionUpdateTimestampHandlerInterface"))]
#[derive(Debug)]
pub struct FaeSessionHandler {
    persistent_id: Option<String>,
    config: Option<serde_json::Value>,
    opts: SessOpts,
    core: Option<Arc<Client>>,
    /// The lock this request holds: (stored lock key, routing key).
    lock: Option<(Vec<u8>, Vec<u8>)>,
    last_error: String,
}

impl FaeSessionHandler {
    fn keys(&self, sid: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let k = self.opts.prefix.apply(sid, Some(sid));
        (k.key().to_vec(), k.place().to_vec())
    }

    fn release(&mut self) {
        if let (Some((k, r)), Some(c)) = (self.lock.take(), &self.core) {
            let _ = c.delete_routed(&r, &k);
        }
    }

    fn ttl() -> u32 {
        u32::try_from(ini_long("session.gc_maxlifetime", 1440)).unwrap_or(1440)
    }

    fn acquire(&mut self, core: &Client, sid: &[u8]) -> bool {
        let (key, routing) = self.keys(&[b"lock.".as_slice(), sid].concat());
        let expire = if self.opts.lock_expire > 0 {
            self.opts.lock_expire
        } else {
            match ini_long("max_execution_time", 0) {
                0 => 30,
                n => n,
            }
        };
        let expire = u32::try_from(expire).unwrap_or(30);
        // php-memcached's loop: an attempt, then (while retries remain) a sleep that starts
        // at lock_wait_min and doubles up to lock_wait_max; lock_retries + 1 attempts.
        let mut wait = self.opts.lock_wait_min;
        let mut retries = self.opts.lock_retries;
        loop {
            match core.store_routed(&routing, StoreOp::Add, &key, b"1", 0, expire) {
                Ok(StoreOutcome::Stored) => {
                    self.lock = Some((key, routing));
                    return true;
                }
                Ok(_) => {}
                Err(e) => {
                    self.last_error = format!("Failed to write session lock: {e}");
                    return false;
                }
            }
            if retries <= 0 {
                self.last_error = "Unable to clear session lock record".into();
                return false;
            }
            std::thread::sleep(Duration::from_millis(wait));
            wait = if self.opts.lock_wait_max > 0 {
                self.opts.lock_wait_max.min(wait.saturating_mul(2))
            } else {
                wait.saturating_mul(2)
            };
            retries -= 1;
        }
    }

    fn need_core(&self) -> PhpResult<Arc<Client>> {
        self.core
            .clone()
            .ok_or_else(|| exception("Fae\\SessionHandler: open() was not called"))
    }
}

/// Used by the native `session.save_handler` (`session_module.rs`).
impl FaeSessionHandler {
    /// A handler configured from php.ini: `memcached.sess_*` (php-memcached's settings; this
    /// extension declares them when it provides `Memcached`).
    pub(crate) fn from_ini() -> Result<Self, String> {
        use crate::php_ini::{ini, ini_bool};
        let long = |k: &str, d: i64| {
            ini(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let mut o = SessOpts {
            prefix: KeyPrefix::new(b"memc.sess.key.".to_vec(), false),
            locking: ini_bool("memcached.sess_locking").unwrap_or(true),
            lock_wait_min: u64::try_from(long("memcached.sess_lock_wait_min", 150)).unwrap_or(150),
            lock_wait_max: u64::try_from(long("memcached.sess_lock_wait_max", 150)).unwrap_or(150),
            lock_retries: long("memcached.sess_lock_retries", 5),
            lock_expire: long("memcached.sess_lock_expire", 0),
            hash_type: ini("memcached.sess_consistent_hash_type")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "ketama".into()),
            consistent: ini_bool("memcached.sess_consistent_hash").unwrap_or(true),
        };
        if let Some(p) = ini("memcached.sess_prefix") {
            o.prefix.set_prefix(p.as_bytes());
        }
        let replicas = long("memcached.sess_number_of_replicas", 0);
        if replicas > 0 {
            return Err(format!(
                "memcached.sess_number_of_replicas = {replicas} is not supported (replication is a route in a config file)"
            ));
        }
        let persistent = ini_bool("memcached.sess_persistent").unwrap_or(false);
        Ok(FaeSessionHandler {
            // Persistent: one client per save path for the process' life.
            persistent_id: persistent.then(|| ini("session.save_path").unwrap_or_default()),
            config: None,
            opts: o,
            core: None,
            lock: None,
            last_error: String::new(),
        })
    }

    pub(crate) fn last_error(&self) -> &str {
        &self.last_error
    }

    pub(crate) fn write_bytes(&mut self, id: &str, bytes: &[u8]) -> bool {
        let Ok(core) = self.need_core() else {
            return false;
        };
        let (k, r) = self.keys(id.as_bytes());
        match core.store_routed(&r, StoreOp::Set, &k, bytes, 0, Self::ttl()) {
            Ok(StoreOutcome::Stored) => true,
            Ok(_) => false,
            Err(e) => {
                self.last_error = e.to_string();
                false
            }
        }
    }

    pub(crate) fn touch(&mut self, id: &str) -> bool {
        let Ok(core) = self.need_core() else {
            return false;
        };
        let (k, r) = self.keys(id.as_bytes());
        core.touch_routed(&r, &k, Self::ttl()).unwrap_or(false)
    }
}

impl Drop for FaeSessionHandler {
    fn drop(&mut self) {
        // A request that died (fatal error, exit in a shutdown function) may never call
        // close(): don't leave the lock for the next request to wait out.
        self.release();
    }
}

fn opt_long(o: &ext_php_rs::types::ZendHashTable, k: &str, d: i64) -> i64 {
    o.get(k).and_then(Zval::coerce_to_long).unwrap_or(d)
}

fn opt_bool(o: &ext_php_rs::types::ZendHashTable, k: &str, d: bool) -> bool {
    o.get(k).map_or(d, Zval::coerce_to_bool)
}

#[php_impl]
impl FaeSessionHandler {
    /// `new Fae\SessionHandler(?string $persistent_id = null, ?array $config = null,
    /// array $options = [])`. Without servers in `$config`, `open()` reads them from
    /// `session.save_path` (`host:port[:weight],…`).
    pub fn __construct(
        persistent_id: Option<String>,
        config: Option<&Zval>,
        options: Option<&Zval>,
    ) -> PhpResult<Self> {
        crate::logging::install();
        let config = match config {
            Some(z) if !z.is_null() => Some(to_json(z)?),
            _ => None,
        };
        let mut o = SessOpts {
            prefix: KeyPrefix::new(b"memc.sess.key.".to_vec(), false),
            locking: true,
            lock_wait_min: 150,
            lock_wait_max: 150,
            lock_retries: 5,
            lock_expire: 0,
            hash_type: "ketama".into(),
            consistent: true,
        };
        if let Some(a) = options.and_then(|z| z.dereference().array()) {
            if let Some(p) = a.get("prefix").and_then(|p| p.zend_str()) {
                o.prefix.set_prefix(p.as_bytes());
            }
            o.locking = opt_bool(a, "locking", o.locking);
            o.lock_wait_min = u64::try_from(opt_long(a, "lock_wait_min", 150))
                .map_err(|_| exception("lock_wait_min must be >= 0"))?;
            o.lock_wait_max = u64::try_from(opt_long(a, "lock_wait_max", 150))
                .map_err(|_| exception("lock_wait_max must be >= 0"))?;
            o.lock_retries = opt_long(a, "lock_retries", 5);
            o.lock_expire = opt_long(a, "lock_expire", 0);
            o.consistent = opt_bool(a, "consistent_hash", true);
            if let Some(t) = a.get("consistent_hash_type").and_then(Zval::str) {
                if t != "ketama" && t != "ketama_weighted" {
                    return Err(exception("consistent_hash_type: ketama or ketama_weighted"));
                }
                o.hash_type = t.to_string();
            }
        }
        if o.prefix.prefix().len() > 128
            || o.prefix
                .prefix()
                .iter()
                .any(|&b| fae_core::key::is_forbidden_byte(b))
        {
            return Err(exception(
                "prefix: at most 128 bytes, no spaces or control characters",
            ));
        }
        Ok(FaeSessionHandler {
            persistent_id: persistent_id.filter(|p| !p.is_empty()),
            config,
            opts: o,
            core: None,
            lock: None,
            last_error: String::new(),
        })
    }

    pub fn open(&mut self, path: String, name: String) -> PhpResult<bool> {
        let _ = name;
        let cfg = self.config.clone();
        let opts = self.opts.clone();
        let make = move || -> Result<Shared, crate::values::Fail> {
            let mut s = Shared::new(cfg)?;
            if s.servers.is_empty() && !s.pools_config {
                for entry in path.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let entry = entry.replace(' ', ":");
                    let n = session_server(&entry)
                        .map_err(|e| (crate::codes::RES_INVALID_ARGUMENTS, e))?;
                    s.add_server(&n.host, n.port, n.weight, true)?;
                }
            }
            if !s.pools_config {
                if opts.hash_type == "ketama_weighted" {
                    s.set_option(opt::LIBKETAMA_COMPATIBLE, 1, b"")?;
                } else if opts.consistent {
                    s.set_option(opt::DISTRIBUTION, 1, b"")?;
                }
            }
            Ok(s)
        };
        guard(|| {
            let shared = match &self.persistent_id {
                Some(id) => {
                    crate::state::persistent(&format!("fae-session:{id}"), make).map(|(s, _)| s)
                }
                None => make().map(|s| Arc::new(parking_lot::Mutex::new(s))),
            };
            let core = shared.and_then(|s| s.lock().core());
            match core {
                Ok(c) => {
                    self.core = Some(c);
                    Ok(true)
                }
                Err(f) => {
                    self.last_error = f.1;
                    Ok(false)
                }
            }
        })
    }

    pub fn close(&mut self) -> bool {
        self.release();
        true
    }

    /// The session data ("" when absent). A lock that cannot be taken or a server error
    /// throws `Fae\Exception` (session_start() then fails) rather than returning data that a
    /// later write would use to overwrite the real session.
    pub fn read(&mut self, id: String) -> PhpResult<Binary<u8>> {
        let core = self.need_core()?;
        guard(|| {
            if self.opts.locking && self.lock.is_none() && !self.acquire(&core, id.as_bytes()) {
                return Err(exception(format!(
                    "Fae\\SessionHandler: {}",
                    self.last_error
                )));
            }
            let (k, r) = self.keys(id.as_bytes());
            match core.get_routed(&r, &k, false) {
                Ok(Some(item)) => Ok(Binary::from(item.value)),
                Ok(None) => Ok(Binary::from(Vec::new())),
                Err(e) => {
                    self.last_error = e.to_string();
                    Err(exception(format!("Fae\\SessionHandler: read failed: {e}")))
                }
            }
        })
    }

    pub fn write(&mut self, id: String, data: &Zval) -> PhpResult<bool> {
        let core = self.need_core()?;
        let bytes = data
            .zend_str()
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default();
        guard(|| {
            let (k, r) = self.keys(id.as_bytes());
            Ok(
                match core.store_routed(&r, StoreOp::Set, &k, &bytes, 0, Self::ttl()) {
                    Ok(StoreOutcome::Stored) => true,
                    Ok(_) => false,
                    Err(e) => {
                        self.last_error = e.to_string();
                        false
                    }
                },
            )
        })
    }

    pub fn destroy(&mut self, id: String) -> PhpResult<bool> {
        let core = self.need_core()?;
        guard(|| {
            let (k, r) = self.keys(id.as_bytes());
            let r = core.delete_routed(&r, &k);
            self.release();
            Ok(r.is_ok())
        })
    }

    pub fn gc(&mut self, max_lifetime: i64) -> i64 {
        // memcached expires sessions itself (TTL = gc_maxlifetime).
        let _ = max_lifetime;
        0
    }

    pub fn validate_id(&mut self, id: String) -> PhpResult<bool> {
        let core = self.need_core()?;
        guard(|| {
            let (k, r) = self.keys(id.as_bytes());
            Ok(matches!(core.get_routed(&r, &k, false), Ok(Some(_))))
        })
    }

    pub fn update_timestamp(&mut self, id: String, data: &Zval) -> PhpResult<bool> {
        let _ = data;
        let core = self.need_core()?;
        guard(|| {
            let (k, r) = self.keys(id.as_bytes());
            Ok(core.touch_routed(&r, &k, Self::ttl()).unwrap_or(false))
        })
    }

    /// Why the last operation failed (php-memcached only warns; this keeps the text).
    pub fn get_last_error(&self) -> String {
        self.last_error.clone()
    }
}

/// One save-path entry. A socket path is read as php-memcached's `memcached_servers_parse`
/// reads it: the path ends at the first `:`, then an ignored port and a weight
/// (`/run/m.sock`, `/run/m.sock:0:2`).
fn session_server(entry: &str) -> Result<fae_core::addr::Node, String> {
    if entry.starts_with('/') {
        let mut parts = entry.splitn(3, ':');
        let path = parts.next().unwrap_or(entry);
        let _port = parts.next();
        let weight = match parts.next() {
            Some(w) => w
                .parse::<u32>()
                .map_err(|_| format!("bad server \"{entry}\": weight must be a whole number"))?,
            None => 1,
        };
        let mut n = fae_core::addr::parse_server(path)?;
        n.weight = weight.max(1);
        return Ok(n);
    }
    fae_core::addr::parse_server(entry)
}
