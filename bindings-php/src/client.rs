//! `Fae\Client`: php-memcached's `Memcached` API over the libfae core.
//!
//! Operational failures return false (or null where php-memcached does) and set the result
//! code and message; invalid arguments (bad `$config`, wrong types, a negative offset, an
//! unknown `routeFor` operation) throw. Every core call runs under `catch_unwind`, so a Rust
//! panic becomes a `Fae\Exception`, never an abort.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};
use fae_core::protocol::StoreOp;
use fae_core::values::KeyPrefix;
use fae_core::{Item, ItemRef, Op, StoreOutcome};
use parking_lot::Mutex;

use crate::codes::*;
use crate::convert::*;
use crate::php_ini::client_constants;
use crate::state::{Buffered, Shared, SharedRef, persistent};
use crate::values::{self, Fail, ValueOpts};

mod stampede;

/// libmemcached's refusal of append, prepend, incr and decr while an encoding key is set.
const ENCRYPTION_REFUSES: &str = "operation not allowed while an encoding key is set";

/// Run `f`, turning a Rust panic into a `Fae\Exception`.
/// Also writes the core's queued log records to PHP's error log, before and after the call.
pub fn guard<T>(f: impl FnOnce() -> PhpResult<T>) -> PhpResult<T> {
    crate::logging::drain();
    let r = guarded(f);
    crate::logging::drain();
    r
}

fn guarded<T>(f: impl FnOnce() -> PhpResult<T>) -> PhpResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(exception(format!(
                "libfae internal error (Rust panic): {msg}"
            )))
        }
    }
}

/// Everything a call needs, copied out of the shared state so no lock is held during I/O or
/// while PHP code (serializers) runs.
/// A getMulti key's result other than a hit decoded at once (or a miss).
enum Other {
    /// A value for PHP's unserializers: type, payload, CAS, flags.
    Later(u32, Vec<u8>, u64, u32),
    /// The item as read (getDelayed decodes later).
    Raw(Item),
    /// The value does not decode.
    Bad(Fail),
    /// The key's server failed.
    Failed(fae_core::Error),
}

/// A hit's zval: the value, or with `GET_EXTENDED` `["value", "cas", "flags"]`.
fn hit_zval(v: Zval, cas: u64, item_flags: u32, get_flags: i64) -> Zval {
    if get_flags & crate::GET_EXTENDED == 0 {
        return v;
    }
    let mut ht = ZendHashTable::new();
    let _ = ht.insert("value", v);
    let _ = ht.insert("cas", long_zval(cas as i64));
    let _ = ht.insert("flags", long_zval(i64::from(item_flags >> 16)));
    array_zval(ht)
}

/// A value that does not decode: php-memcached warns when unserializing failed.
fn bad_value(f: Fail) -> Fail {
    if f.1 == values::UNSERIALIZE_FAILED {
        warn(values::UNSERIALIZE_FAILED);
    }
    f
}

struct Ctx {
    core: Arc<fae_core::Client>,
    values: ValueOpts,
    prefix: KeyPrefix,
    retries: i64,
    /// `OPT_BINARY_PROTOCOL` is set: php-memcached's binary-protocol key rules.
    binary: bool,
    /// `OPT_BUFFER_WRITES` is set: set and delete go to `Shared::pending`.
    buffering: bool,
}

/// Send writes held back by `OPT_BUFFER_WRITES`, in order. Their results are dropped, as
/// libmemcached drops the replies to buffered writes.
fn send_buffered(core: &fae_core::Client, pending: Vec<Buffered>) {
    for w in pending {
        let _ = match w {
            Buffered::Set {
                stored,
                routing: Some(rk),
                payload,
                flags,
                exptime,
            } => core
                .store_routed(&rk, StoreOp::Set, &stored, &payload, flags, exptime)
                .map(drop),
            Buffered::Set {
                stored,
                routing: None,
                payload,
                flags,
                exptime,
            } => core
                .store(StoreOp::Set, &stored, &payload, flags, exptime)
                .map(drop),
            Buffered::Delete {
                stored,
                routing: Some(rk),
            } => core.delete_routed(&rk, &stored).map(drop),
            Buffered::Delete {
                stored,
                routing: None,
            } => core.delete(&stored).map(drop),
        };
    }
}

/// php-memcached's own key check (`MEMC_CHECK_KEY`, before libmemcached sees the key): 1 to
/// 250 bytes (the prefix not counted); with the text protocol printable ASCII without spaces
/// (so UTF-8 is refused, although memcached would take it), with the binary protocol anything
/// but a newline (such keys travel base64-encoded over meta: `binary_keys`).
pub fn memc_key_ok(key: &[u8], binary: bool) -> bool {
    !key.is_empty()
        && key.len() <= 250
        && if binary {
            !key.contains(&b'\n')
        } else {
            key.iter().all(u8::is_ascii_graphic)
        }
}

impl Ctx {
    /// [`memc_key_ok`] for this client's protocol.
    fn key_ok(&self, key: &[u8]) -> bool {
        memc_key_ok(key, self.binary)
    }

    /// (stored key, routing key or None when it is the stored key).
    fn keys(&self, key: &[u8], server_key: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
        self.prefix.apply(key, server_key).into_parts()
    }

    /// [`Ctx::keys`], borrowing `key` itself when there is neither a prefix nor a server key.
    fn key_parts<'k>(
        &self,
        key: &'k [u8],
        server_key: Option<&[u8]>,
    ) -> (Cow<'k, [u8]>, Option<Vec<u8>>) {
        if server_key.is_none() && self.prefix.prefix().is_empty() {
            return (Cow::Borrowed(key), None);
        }
        let (stored, routing) = self.keys(key, server_key);
        (Cow::Owned(stored), routing)
    }
}

/// The `$op` argument of `routeFor`/`bucketFor` (default `get`) as an [`Op`].
fn op_arg(method: &str, op: Option<String>) -> PhpResult<Op> {
    let name = op.unwrap_or_else(|| "get".into());
    Op::from_name(&name).ok_or_else(|| {
        exception(format!(
            "{method}(): unknown operation {name:?} (get, set, add, replace, append, prepend, cas, delete, incr, decr, touch)"
        ))
    })
}

fn exptime(e: i64) -> u32 {
    if e < 0 {
        // An absolute time in 1970: already expired (a small positive number would be relative).
        2_592_001
    } else {
        u32::try_from(e).unwrap_or(u32::MAX)
    }
}

#[php_class]
#[php(name = "Fae\\Client")]
#[php(modifier = client_constants)]
#[derive(Debug)]
pub struct FaeClient {
    shared: SharedRef,
    persistent_id: Option<String>,
    pristine: bool,
    code: i64,
    /// The last call's result text with our reason (`getLastErrorMessage()`);
    /// `getResultMessage()` is the code's text alone, as php-memcached's.
    message: String,
    /// php-memcached's on-new-object callback, run by `compat::construct` once the object
    /// exists: `($memc, $persistent_id)`.
    pending_init: Option<Zval>,
    /// `getDelayed()` results not yet taken by `fetch()`/`fetchAll()`: (key, item, with CAS),
    /// decoded when taken (as php-memcached, whose `fetch()` unserializes).
    delayed: std::collections::VecDeque<(Vec<u8>, Item, bool)>,
}

impl Drop for FaeClient {
    /// libmemcached sends its write buffer when the object goes (`memcached_free`): writes
    /// `OPT_BUFFER_WRITES` still holds back are sent now.
    fn drop(&mut self) {
        let (core, pending) = {
            let mut s = self.shared.lock();
            if s.pending.is_empty() {
                return;
            }
            (s.core(), std::mem::take(&mut s.pending))
        };
        if let Ok(core) = core {
            let _ = catch_unwind(AssertUnwindSafe(|| send_buffered(&core, pending)));
        }
    }
}

/// php-memcached's `memcached.*` defaults for a new object (declared by this extension when
/// it provides `Memcached`). A value the client cannot take is left at libfae's default.
fn ini_defaults(s: &mut Shared) {
    use crate::php_ini::{ini, ini_bool};
    use crate::state::opt;
    let serializer = match ini("memcached.serializer").as_deref().map(str::trim) {
        Some("igbinary") => values::SERIALIZER_IGBINARY,
        Some("json") => values::SERIALIZER_JSON,
        Some("json_array") => values::SERIALIZER_JSON_ARRAY,
        Some("msgpack") => values::SERIALIZER_MSGPACK,
        _ => values::SERIALIZER_PHP,
    };
    let _ = s.set_option(opt::SERIALIZER, serializer, b"");
    let ct = match ini("memcached.compression_type").as_deref().map(str::trim) {
        Some("zlib") => values::COMPRESSION_ZLIB,
        _ => values::COMPRESSION_FASTLZ,
    };
    let _ = s.set_option(opt::COMPRESSION_TYPE, ct, b"");
    if let Some(t) = ini("memcached.compression_threshold").and_then(|v| v.trim().parse().ok()) {
        s.values.compression_threshold = t;
    }
    if let Some(f) = ini("memcached.compression_factor").and_then(|v| v.trim().parse().ok()) {
        s.values.compression_factor = f;
    }
    if let Some(n) = ini("memcached.store_retry_count").and_then(|v| v.trim().parse().ok()) {
        let _ = s.set_option(opt::STORE_RETRY_COUNT, n, b"");
    }
    if ini_bool("memcached.default_consistent_hash") == Some(true) {
        let _ = s.set_option(opt::DISTRIBUTION, 1, b"");
    }
    if ini_bool("memcached.default_binary_protocol") == Some(true) {
        let _ = s.set_option(opt::BINARY_PROTOCOL, 1, b"");
    }
    if let Some(ms) = ini("memcached.default_connect_timeout")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&ms| ms > 0)
    {
        let _ = s.set_option(opt::CONNECT_TIMEOUT, ms, b"");
    }
}

/// php-memcached's TypeError for a `$persistent_id` that is not a string.
fn ctor_type_error(z: &Zval) -> PhpException {
    let (class, _) = called_method();
    type_error(format!(
        "{class}::__construct(): Argument #1 ($persistent_id) must be of type ?string, {} given",
        php_type_name(z)
    ))
}

/// Where a client's config comes from.
enum ConfigArg<'a> {
    Array(&'a Zval),
    /// A JSON file (the config file's schema).
    File(String),
}

impl FaeClient {
    fn build(persistent_id: Option<String>, config: Option<ConfigArg<'_>>) -> PhpResult<Self> {
        let config = match config {
            Some(ConfigArg::Array(z)) => Some(to_json(z)?),
            Some(ConfigArg::File(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| exception(format!("cannot read {path}: {e}")))?;
                Some(
                    serde_json::from_str(&text)
                        .map_err(|e| exception(format!("{path}: not a JSON config: {e}")))?,
                )
            }
            None => None,
        };
        let make = || {
            let mut s = Shared::new(config.clone())?;
            if crate::php_ini::provides_memcached() {
                ini_defaults(&mut s);
            }
            Ok(s)
        };
        guard(|| {
            let pid = persistent_id.filter(|p| !p.is_empty());
            let made = match &pid {
                Some(id) => persistent(id, make),
                None => make().map(|s| (Arc::new(Mutex::new(s)), true)),
            };
            let (shared, pristine) =
                made.map_err(|f| exception(format!("invalid $config: {}", f.1)))?;
            Ok(FaeClient {
                shared,
                persistent_id: pid,
                pristine,
                code: RES_SUCCESS,
                message: text(RES_SUCCESS).into(),
                pending_init: None,
                delayed: std::collections::VecDeque::new(),
            })
        })
    }

    /// libmemcached's configuration string: its `--SERVER=host[:port][/?weight]` entries
    /// become servers; the other options have php-memcached `setOption` equivalents.
    fn apply_connection_str(&mut self, conn: &str) {
        let mut s = self.shared.lock();
        for tok in conn.split_whitespace() {
            let Some(spec) = tok
                .strip_prefix("--SERVER=")
                .or(tok.strip_prefix("--server="))
            else {
                continue;
            };
            let (addr, weight) = match spec.split_once("/?") {
                Some((a, w)) => (a, w.parse().unwrap_or(0)),
                None => (spec, 0),
            };
            let (host, port) = match addr.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => (h, p.parse().unwrap_or(11211)),
                _ => (addr, 11211),
            };
            let _ = s.add_server(host, port, weight, true);
        }
    }

    /// Runs php-memcached's on-new-object callback (see `compat::construct`).
    pub fn run_init_callback(obj: &mut ZendClassObject<FaeClient>) {
        let Some(cb) = obj.pending_init.take() else {
            return;
        };
        let pid = obj.persistent_id.clone();
        let mut this = Zval::new();
        this.set_object(obj.get_mut_zend_obj());
        if let Ok(f) = ext_php_rs::types::ZendCallable::new(&cb) {
            // An exception the callback throws stays pending and leaves `new` with it; the
            // persistent id stays unused, so the next `new` calls the callback again.
            let failed = f.try_call(vec![&this, &pid]).is_err()
                || ext_php_rs::zend::ExecutorGlobals::has_exception();
            if failed && let Some(id) = &pid {
                crate::state::forget_persistent(id, &obj.shared);
            }
        }
    }

    /// One `getDelayed()` result: `['key' => …, 'value' => …]` (+ `cas`, `flags` with CAS), or
    /// None when the value does not decode (the result code and warning are set).
    fn delayed_result(&mut self, key: Vec<u8>, item: Item, with_cas: bool) -> Option<Zval> {
        let vopts = self.shared.lock().values.clone();
        let (cas, flags) = (item.cas, item.flags);
        let value = match values::decode(&item.value, item.flags, &vopts) {
            Ok(v) => v,
            Err(f) => {
                if f.1 == values::UNSERIALIZE_FAILED {
                    warn(values::UNSERIALIZE_FAILED);
                }
                self.fail(f);
                return None;
            }
        };
        let mut ht = ZendHashTable::new();
        let _ = ht.insert("key", values::bytes_zval(&key));
        let _ = ht.insert("value", value);
        if with_cas {
            let _ = ht.insert("cas", long_zval(cas as i64));
            let _ = ht.insert("flags", long_zval(i64::from(flags >> 16)));
        }
        Some(array_zval(ht))
    }

    fn delayed_impl(
        obj: &mut ZendClassObject<FaeClient>,
        server_key: Option<&Zval>,
        keys: &Zval,
        with_cas: bool,
        value_cb: Option<&Zval>,
    ) -> PhpResult<bool> {
        let cb = match value_cb.filter(|c| !c.is_null()) {
            Some(c) => Some(ext_php_rs::types::ZendCallable::new(c).map_err(|_| {
                type_error(format!(
                    "getDelayed(): Argument #3 ($value_cb) must be a valid callback or null, {} given",
                    c.dereference().get_type()
                ))
            })?),
            None => None,
        };
        if keys.dereference().array().is_some_and(|a| a.is_empty()) {
            // libmemcached's mget of no keys fails; php-memcached returns false.
            obj.set_code(RES_NOTFOUND);
            return Ok(false);
        }
        let mut items = Vec::new();
        let got = obj.do_get_multi_into(
            server_key,
            keys,
            Some(crate::GET_EXTENDED),
            Some(&mut items),
        )?;
        if got.array().is_none() {
            return Ok(false);
        }
        let (code, message) = (obj.code, obj.message.clone());
        obj.delayed.clear();
        match cb {
            Some(f) => {
                let mut this = Zval::new();
                this.set_object(obj.get_mut_zend_obj());
                for (k, item) in items {
                    let Some(r) = obj.delayed_result(k, item, with_cas) else {
                        return Ok(false);
                    };
                    if f.try_call(vec![&this, &r]).is_err() {
                        if !ext_php_rs::zend::ExecutorGlobals::has_exception() {
                            warn("could not invoke result callback");
                        }
                        return Ok(false);
                    }
                }
            }
            None => obj
                .delayed
                .extend(items.into_iter().map(|(k, i)| (k, i, with_cas))),
        }
        obj.code = code;
        obj.message = message;
        Ok(true)
    }

    fn ok(&mut self) {
        self.set_code(RES_SUCCESS);
    }

    /// The message is rewritten in place: no allocation per call (or per getMulti key).
    fn set_code(&mut self, code: i64) {
        self.code = code;
        self.message.clear();
        self.message.push_str(text(code));
    }

    fn fail(&mut self, f: Fail) -> Zval {
        self.code = f.0;
        self.message = if f.1.is_empty() {
            text(f.0).into()
        } else {
            format!("{}: {}", text(f.0), f.1)
        };
        bool_zval(false)
    }

    fn core_err(&mut self, e: &fae_core::Error) -> Zval {
        let (c, m) = map(e);
        self.code = c;
        self.message = m;
        bool_zval(false)
    }

    /// The call's context. Writes held back by `OPT_BUFFER_WRITES` are sent first: any
    /// other command pushes libmemcached's write buffer out ahead of itself.
    fn ctx(&mut self) -> Result<Ctx, Fail> {
        self.ctx_with(true)
    }

    /// [`Self::ctx`]; `flush` false for a write that is itself held back.
    fn ctx_with(&mut self, flush: bool) -> Result<Ctx, Fail> {
        let mut s = self.shared.lock();
        let core = s.core()?;
        let pending = if flush && !s.pending.is_empty() {
            std::mem::take(&mut s.pending)
        } else {
            Vec::new()
        };
        let ctx = Ctx {
            core,
            values: s.values.clone(),
            prefix: s.prefix.clone(),
            retries: s.store_retry_count,
            binary: s.binary_protocol(),
            buffering: s.buffer_writes(),
        };
        drop(s);
        if !pending.is_empty() {
            send_buffered(&ctx.core, pending);
        }
        Ok(ctx)
    }

    /// Hold a write back (`OPT_BUFFER_WRITES`): true with `RES_BUFFERED`, as php-memcached.
    fn buffer(&mut self, w: Buffered) -> Zval {
        self.shared.lock().pending.push(w);
        self.set_code(RES_BUFFERED);
        bool_zval(true)
    }

    /// Whether this client holds writes back (a set or delete must not flush them).
    fn buffering(&self) -> bool {
        self.shared.lock().buffer_writes()
    }

    fn hit(&mut self, ctx: &Ctx, item: ItemRef<'_>, flags: i64) -> Zval {
        let plain = values::decode_plain(item.value, item.flags, &ctx.values);
        self.hit_plain(ctx, plain, item.cas, item.flags, flags)
    }

    /// [`Self::hit`] of a value decoded as far as it goes without PHP code
    /// ([`values::decode_plain`]); a serialized one is unserialized here.
    fn hit_plain(
        &mut self,
        ctx: &Ctx,
        plain: Result<values::Plain, Fail>,
        cas: u64,
        item_flags: u32,
        flags: i64,
    ) -> Zval {
        match plain.and_then(|p| p.into_zval(&ctx.values)) {
            Ok(v) => {
                self.ok();
                hit_zval(v, cas, item_flags, flags)
            }
            Err(f) => {
                let f = bad_value(f);
                self.fail(f)
            }
        }
    }

    fn do_get(
        &mut self,
        server_key: Option<&Zval>,
        key: &Zval,
        flags: Option<i64>,
    ) -> PhpResult<Zval> {
        let key = key_cow(key)?;
        let skey = server_key_bytes(server_key)?;
        let flags = flags.unwrap_or(0);
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            if !ctx.key_ok(&key) {
                self.set_code(RES_BAD_KEY_PROVIDED);
                return Ok(bool_zval(false));
            }
            let (stored, routing) = ctx.key_parts(&key, skey.as_deref());
            let cas = flags & crate::GET_EXTENDED != 0;
            // The value is decoded straight from the read buffer, no copy in between; PHP's
            // unserializers (user code, which may call this client) run only once the
            // connection is back in its pool.
            let r = ctx.core.get_with(&stored, routing.as_deref(), cas, |r| {
                r.map(|o| {
                    o.map(|it| {
                        let plain = values::decode_plain(it.value, it.flags, &ctx.values);
                        (plain, it.cas, it.flags)
                    })
                })
            });
            Ok(match r {
                Ok(Some((plain, cas, item_flags))) => {
                    self.hit_plain(&ctx, plain, cas, item_flags, flags)
                }
                Ok(None) => {
                    self.set_code(RES_NOTFOUND);
                    bool_zval(false)
                }
                Err(e) => self.core_err(&e),
            })
        })
    }

    fn get_with_callback(
        obj: &mut ZendClassObject<FaeClient>,
        server_key: Option<&Zval>,
        key: &Zval,
        cb: Option<&Zval>,
        flags: Option<i64>,
    ) -> PhpResult<Zval> {
        let Some(cb) = cb.filter(|c| !c.is_null()) else {
            return obj.do_get(server_key, key, flags);
        };
        // `$memc`, the callback's first argument: this very object.
        let mut this = Zval::new();
        this.set_object(obj.get_mut_zend_obj());
        let done = obj.do_read_through(this, server_key, key, cb, flags.unwrap_or(0))?;
        Ok(done.into_value())
    }

    fn do_get_multi(
        &mut self,
        server_key: Option<&Zval>,
        keys: &Zval,
        flags: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_get_multi_into(server_key, keys, flags, None)
    }

    /// `do_get_multi`; with `raw`, hits are not decoded but pushed there as (key, item) (the
    /// returned array then holds only what `GET_PRESERVE_ORDER` adds).
    fn do_get_multi_into(
        &mut self,
        server_key: Option<&Zval>,
        keys: &Zval,
        flags: Option<i64>,
        mut raw: Option<&mut Vec<(Vec<u8>, Item)>>,
    ) -> PhpResult<Zval> {
        let Some(arr) = keys.dereference().array() else {
            return Err(exception("getMulti(): $keys must be an array"));
        };
        let args: Vec<&Zval> = values(arr).collect();
        // Keys are the caller's strings; others as PHP prints them (rare), kept here.
        let mut printed: Vec<Vec<u8>> = Vec::new();
        for z in &args {
            if z.dereference().zend_str().is_none() {
                printed.push(key_bytes(z)?);
            }
        }
        let mut printed_keys = printed.iter();
        let keys: Vec<&[u8]> = args
            .iter()
            .map(|z| match z.dereference().zend_str() {
                Some(s) => s.as_bytes(),
                None => printed_keys.next().map_or(&[][..], Vec::as_slice),
            })
            .collect();
        let skey = server_key_bytes(server_key)?;
        let flags = flags.unwrap_or(0);
        if keys.is_empty() {
            // libmemcached's mget of no keys: NOTFOUND, and php-memcached returns [].
            self.set_code(RES_NOTFOUND);
            return Ok(array_zval(ZendHashTable::new()));
        }
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let cas = flags & crate::GET_EXTENDED != 0;
            // Without a prefix or a server key the keys go out as the caller's strings.
            let plain = skey.is_none() && ctx.prefix.prefix().is_empty();
            let pairs: Vec<(Vec<u8>, Option<Vec<u8>>)> = if plain {
                Vec::new()
            } else {
                keys.iter().map(|k| ctx.keys(k, skey.as_deref())).collect()
            };
            let prefixed: Vec<&[u8]> = pairs.iter().map(|p| p.0.as_slice()).collect();
            let stored: &[&[u8]] = if plain { &keys } else { &prefixed };
            // Each hit lands in its key's slot as the core hands it out, the value decoded
            // from the connection's buffer into its PHP string (or scalar) at once; a slot
            // left null is a miss, unless `other` says more (rare: what needs PHP's
            // unserializers, which waits for the core call to end; getDelayed's raw items;
            // failures).
            let want_raw = raw.is_some();
            let mut hits: Vec<Zval> = (0..keys.len()).map(|_| Zval::new()).collect();
            let mut other: Vec<(usize, Other)> = Vec::new();
            let mut on = |i: usize, r: fae_core::Result<Option<ItemRef<'_>>>| {
                let got = match r {
                    Ok(None) => return,
                    Err(e) => Other::Failed(e),
                    Ok(Some(it)) if want_raw => Other::Raw(it.to_item()),
                    Ok(Some(it)) => match values::decode_plain(it.value, it.flags, &ctx.values) {
                        Ok(values::Plain::Value(z)) => {
                            if let Some(slot) = hits.get_mut(i) {
                                *slot = hit_zval(z, it.cas, it.flags, flags);
                            }
                            return;
                        }
                        Ok(values::Plain::Serialized(ty, p)) => {
                            Other::Later(ty, p, it.cas, it.flags)
                        }
                        Err(f) => Other::Bad(f),
                    },
                };
                other.push((i, got));
            };
            let r = if pairs.iter().any(|p| p.1.is_some()) {
                let routing: Vec<&[u8]> = pairs
                    .iter()
                    .map(|p| p.1.as_deref().unwrap_or(&p.0))
                    .collect();
                ctx.core
                    .get_multi_each(stored, Some(&routing), cas, None, &mut on)
            } else {
                ctx.core.get_multi_each(stored, None, cas, None, &mut on)
            };
            if let Err(e) = r {
                return Ok(self.core_err(&e));
            }
            other.sort_by_key(|o| o.0);
            let mut other = other.into_iter().peekable();
            let mut ht = ZendHashTable::new();
            let (mut errors, mut last_err) = (0usize, None);
            let mut payload_fail = None;
            let (mut hit_count, mut undecryptable) = (0usize, None);
            for (i, ((k, arg), v)) in keys.iter().zip(&args).zip(hits).enumerate() {
                if !v.is_null() {
                    hit_count += 1;
                    insert_arg_key(&mut ht, arg, k, v);
                    continue;
                }
                let Some((_, got)) = other.next_if(|o| o.0 == i) else {
                    if flags & crate::GET_PRESERVE_ORDER != 0 {
                        insert_arg_key(&mut ht, arg, k, Zval::null());
                    }
                    continue;
                };
                match got {
                    Other::Raw(item) => {
                        if let Some(sink) = raw.as_deref_mut() {
                            sink.push((k.to_vec(), item));
                        }
                    }
                    Other::Later(ty, payload, cas, item_flags) => {
                        match values::unserialize(ty, &payload, ctx.values.serializer) {
                            Ok(v) => {
                                let v = hit_zval(v, cas, item_flags, flags);
                                hit_count += 1;
                                insert_arg_key(&mut ht, arg, k, v);
                            }
                            Err(f) => payload_fail = Some(bad_value(f)),
                        }
                    }
                    // Only an encrypted value that does not decrypt reads as NOTFOUND.
                    Other::Bad(f) if f.0 == RES_NOTFOUND => undecryptable = Some(f.1),
                    Other::Bad(f) => payload_fail = Some(bad_value(f)),
                    Other::Failed(e) => {
                        errors += 1;
                        last_err = Some(e);
                    }
                }
            }
            if let Some(e) = last_err {
                if errors == keys.len() {
                    return Ok(self.core_err(&e));
                }
                let (_, m) = map(&e);
                self.code = RES_SOME_ERRORS;
                self.message = format!("{}: {m}", text(RES_SOME_ERRORS));
            } else if let Some(f) = payload_fail {
                self.fail(f);
            } else if let Some(m) = undecryptable {
                // libmemcached's fetch stops at a value that does not decrypt: NOTFOUND (an
                // empty array) when nothing was read before it, else FAILURE (false). The
                // servers' reply order decides there; here, whether any value decrypted.
                if hit_count > 0 {
                    return Ok(self.fail((RES_FAILURE, m)));
                }
                self.code = RES_NOTFOUND;
                self.message = m;
                return Ok(array_zval(ZendHashTable::new()));
            } else {
                self.ok();
            }
            Ok(array_zval(ht))
        })
    }

    fn do_store(
        &mut self,
        op: StoreOp,
        server_key: Option<&Zval>,
        key: &Zval,
        value: &Zval,
        exp: i64,
    ) -> PhpResult<Zval> {
        let key = key_bytes(key)?;
        let skey = server_key_bytes(server_key)?;
        let vopts = self.shared.lock().values.clone();
        let raw_append = matches!(op, StoreOp::Append | StoreOp::Prepend);
        if raw_append && vopts.compression {
            // php-memcached refuses these with compression on (a compressed value cannot
            // grow in place): a warning and null.
            warn("cannot append/prepend with compression turned on");
            self.fail((
                RES_INVALID_ARGUMENTS,
                "cannot append/prepend with compression turned on".into(),
            ));
            return Ok(Zval::null());
        }
        if raw_append && vopts.encoding_key.is_some() {
            // libmemcached: an encrypted value cannot grow in place.
            return Ok(self.fail((RES_NOT_SUPPORTED, ENCRYPTION_REFUSES.into())));
        }
        let encoded = if raw_append {
            // Appended bytes join an existing payload: send them as they are.
            let s = value.dereference().coerce_to_string().unwrap_or_default();
            let bytes = value
                .dereference()
                .zend_str()
                .map(|z| z.as_bytes().to_vec())
                .unwrap_or(s.into_bytes());
            Ok((bytes, 0))
        } else {
            values::encode(value, &vopts)
        };
        let (payload, flags) = match encoded {
            Ok(p) => p,
            Err(f) => return Ok(self.fail(f)),
        };
        let held = matches!(op, StoreOp::Set) && self.buffering();
        guard(|| {
            let ctx = match self.ctx_with(!held) {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            if !ctx.key_ok(&key) {
                self.set_code(RES_BAD_KEY_PROVIDED);
                return Ok(bool_zval(false));
            }
            let (stored, routing) = ctx.keys(&key, skey.as_deref());
            if held && ctx.buffering {
                return Ok(self.buffer(Buffered::Set {
                    stored,
                    routing,
                    payload,
                    flags,
                    exptime: exptime(exp),
                }));
            }
            let mut tries = ctx.retries.max(0) + 1;
            let r = loop {
                let r = match &routing {
                    Some(rk) => {
                        ctx.core
                            .store_routed(rk, op, &stored, &payload, flags, exptime(exp))
                    }
                    None => ctx.core.store(op, &stored, &payload, flags, exptime(exp)),
                };
                tries -= 1;
                match &r {
                    Err(e) if tries > 0 && e.is_retryable() => continue,
                    _ => break r,
                }
            };
            Ok(match r {
                Ok(StoreOutcome::Stored) => {
                    self.ok();
                    bool_zval(true)
                }
                Ok(StoreOutcome::NotStored) => {
                    self.set_code(RES_NOTSTORED);
                    bool_zval(false)
                }
                Ok(StoreOutcome::Exists) => {
                    self.set_code(RES_DATA_EXISTS);
                    bool_zval(false)
                }
                Ok(StoreOutcome::NotFound) => {
                    self.set_code(RES_NOTFOUND);
                    bool_zval(false)
                }
                Err(e) => self.core_err(&e),
            })
        })
    }

    fn do_set_multi(
        &mut self,
        server_key: Option<&Zval>,
        items: &Zval,
        exp: Option<i64>,
    ) -> PhpResult<Zval> {
        let Some(arr) = items.dereference().array() else {
            return Err(exception("setMulti(): $items must be an array"));
        };
        let skey = server_key_bytes(server_key)?;
        let vopts = self.shared.lock().values.clone();
        let mut encoded = Vec::with_capacity(arr.len());
        for (k, v) in entries(arr) {
            match values::encode(v, &vopts) {
                Ok((p, f)) => encoded.push((k, p, f)),
                Err(f) => return Ok(self.fail(f)),
            }
        }
        let exp = exptime(exp.unwrap_or(0));
        let held = self.buffering();
        guard(|| {
            let ctx = match self.ctx_with(!held) {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let keyed: Vec<(Vec<u8>, Option<Vec<u8>>)> = encoded
                .iter()
                .map(|(k, _, _)| ctx.keys(k, skey.as_deref()))
                .collect();
            if held && ctx.buffering {
                let mut r = bool_zval(true);
                for ((stored, routing), (_, payload, flags)) in keyed.into_iter().zip(encoded) {
                    r = self.buffer(Buffered::Set {
                        stored,
                        routing,
                        payload,
                        flags,
                        exptime: exp,
                    });
                }
                return Ok(r);
            }
            let results: Vec<Result<StoreOutcome, fae_core::Error>> =
                if keyed.iter().any(|k| k.1.is_some()) {
                    keyed
                        .iter()
                        .zip(&encoded)
                        .map(|((stored, routing), (_, p, f))| {
                            let rk = routing.as_deref().unwrap_or(stored);
                            ctx.core.store_routed(rk, StoreOp::Set, stored, p, *f, exp)
                        })
                        .collect()
                } else {
                    let items: Vec<fae_core::SetItem<'_>> = keyed
                        .iter()
                        .zip(&encoded)
                        .map(|((stored, _), (_, p, f))| fae_core::SetItem {
                            key: stored,
                            value: p,
                            flags: *f,
                            exptime: exp,
                        })
                        .collect();
                    match ctx.core.set_multi(&items) {
                        Ok(r) => r,
                        Err(e) => return Ok(self.core_err(&e)),
                    }
                };
            for r in &results {
                match r {
                    Ok(StoreOutcome::Stored) => {}
                    Ok(_) => {
                        self.set_code(RES_NOTSTORED);
                        return Ok(bool_zval(false));
                    }
                    Err(e) => return Ok(self.core_err(e)),
                }
            }
            self.ok();
            Ok(bool_zval(true))
        })
    }

    /// `memc_check`: php-memcached checks the key of `delete` (`MEMC_CHECK_KEY`), not those
    /// of `deleteMulti` (the wire's rules still apply).
    fn do_delete(
        &mut self,
        server_key: Option<&Zval>,
        key: &Zval,
        time: Option<i64>,
        memc_check: bool,
    ) -> PhpResult<Zval> {
        let key = key_bytes(key)?;
        let skey = server_key_bytes(server_key)?;
        if time.unwrap_or(0) != 0 {
            return Ok(self.fail((
                RES_NOT_SUPPORTED,
                "delete with a hold time is not supported by memcached >= 1.4".into(),
            )));
        }
        let held = self.buffering();
        guard(|| {
            let ctx = match self.ctx_with(!held) {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            if memc_check && !ctx.key_ok(&key) {
                self.set_code(RES_BAD_KEY_PROVIDED);
                return Ok(bool_zval(false));
            }
            let (stored, routing) = ctx.keys(&key, skey.as_deref());
            if held && ctx.buffering {
                return Ok(self.buffer(Buffered::Delete { stored, routing }));
            }
            let r = match &routing {
                Some(rk) => ctx.core.delete_routed(rk, &stored),
                None => ctx.core.delete(&stored),
            };
            Ok(match r {
                Ok(true) => {
                    self.ok();
                    bool_zval(true)
                }
                Ok(false) => {
                    self.set_code(RES_NOTFOUND);
                    bool_zval(false)
                }
                Err(e) => self.core_err(&e),
            })
        })
    }

    fn do_delete_multi(
        &mut self,
        server_key: Option<&Zval>,
        keys: &Zval,
        time: Option<i64>,
    ) -> PhpResult<Zval> {
        let Some(arr) = keys.dereference().array() else {
            return Err(exception("deleteMulti(): $keys must be an array"));
        };
        let keys: Vec<Vec<u8>> = values(arr).map(key_bytes).collect::<PhpResult<_>>()?;
        let mut ht = ZendHashTable::new();
        let mut last = RES_SUCCESS;
        for k in &keys {
            let kz = values::bytes_zval(k);
            let r = self.do_delete(server_key, &kz, time, false)?;
            if r.is_true() {
                insert_bytes(&mut ht, k, bool_zval(true));
            } else {
                last = self.code;
                insert_bytes(&mut ht, k, long_zval(self.code));
            }
        }
        if last == RES_SUCCESS {
            self.ok();
        } else {
            self.set_code(last);
        }
        Ok(array_zval(ht))
    }

    #[allow(clippy::too_many_arguments)]
    fn do_arith(
        &mut self,
        incr: bool,
        server_key: Option<&Zval>,
        key: &Zval,
        offset: Option<i64>,
        initial: Option<i64>,
        expiry: Option<i64>,
    ) -> PhpResult<Zval> {
        let key = key_bytes(key)?;
        let skey = server_key_bytes(server_key)?;
        let offset = offset.unwrap_or(1);
        if offset < 0 {
            // php-memcached: a warning and false, the result code unchanged.
            warn("offset cannot be a negative value");
            return Ok(bool_zval(false));
        }
        if self.shared.lock().values.encoding_key.is_some() {
            // libmemcached refuses incr/decr while encrypting, before it checks the key.
            return Ok(self.fail((RES_NOT_SUPPORTED, ENCRYPTION_REFUSES.into())));
        }
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            if !ctx.key_ok(&key) {
                self.set_code(RES_BAD_KEY_PROVIDED);
                return Ok(bool_zval(false));
            }
            let (stored, routing) = ctx.keys(&key, skey.as_deref());
            let rk = routing.clone().unwrap_or_else(|| stored.clone());
            let arith = || ctx.core.arith_routed(&rk, &stored, incr, offset as u64);
            let mut r = arith();
            if let (Ok(None), Some(init)) = (&r, initial) {
                // Absent: create it with the initial value and expiry, as the binary
                // protocol's incr-with-initial does; a racing creator wins and we increment.
                let init = init.max(0);
                let add = ctx.core.store_routed(
                    &rk,
                    StoreOp::Add,
                    &stored,
                    init.to_string().as_bytes(),
                    0,
                    exptime(expiry.unwrap_or(0)),
                );
                r = match add {
                    Ok(StoreOutcome::Stored) => Ok(Some(init as u64)),
                    Ok(_) => arith(),
                    Err(e) => Err(e),
                };
            }
            Ok(match r {
                Ok(Some(v)) => {
                    self.ok();
                    long_zval(v as i64)
                }
                Ok(None) => {
                    self.set_code(RES_NOTFOUND);
                    bool_zval(false)
                }
                Err(e) => self.core_err(&e),
            })
        })
    }

    fn do_touch(
        &mut self,
        server_key: Option<&Zval>,
        key: &Zval,
        exp: Option<i64>,
    ) -> PhpResult<Zval> {
        let key = key_bytes(key)?;
        let skey = server_key_bytes(server_key)?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            if !ctx.key_ok(&key) {
                self.set_code(RES_BAD_KEY_PROVIDED);
                return Ok(bool_zval(false));
            }
            let (stored, routing) = ctx.keys(&key, skey.as_deref());
            let rk = routing.unwrap_or_else(|| stored.clone());
            Ok(
                match ctx
                    .core
                    .touch_routed(&rk, &stored, exptime(exp.unwrap_or(0)))
                {
                    Ok(true) => {
                        self.ok();
                        bool_zval(true)
                    }
                    Ok(false) => {
                        self.set_code(RES_NOTFOUND);
                        bool_zval(false)
                    }
                    Err(e) => self.core_err(&e),
                },
            )
        })
    }

    fn cas_token(token: &Zval) -> PhpResult<u64> {
        let t = token.dereference();
        if let Some(l) = t.long() {
            return Ok(l as u64);
        }
        if t.is_double() {
            return Ok(t.double().unwrap_or(0.0) as u64);
        }
        if let Some(s) = t.str()
            && let Ok(v) = s.trim().parse::<u64>()
        {
            return Ok(v);
        }
        if t.is_null() || t.is_bool() || t.is_string() {
            // php-memcached reads the token as a number: null, false and text are 0, a
            // token no item has (the store fails with a result code).
            return Ok(0);
        }
        Err(type_error(format!(
            "cas token must be an int, float or numeric string, {} given",
            t.get_type()
        )))
    }

    /// A server as php-memcached reports it: `getServerList()` gives host, port and type;
    /// `getServerByKey()` gives host, port and a weight of 0 (`by_key`).
    fn server_array(&self, addr: &str, by_key: bool) -> Zval {
        let s = self.shared.lock();
        let node = s.servers.iter().find(|n| n.addr() == addr);
        // A socket server as php-memcached reports it: host = the path, type SOCKET, and the
        // port libmemcached stored for it (from a `$config` pool: 0).
        let (host, port, kind) = if fae_core::addr::unix_path(addr).is_some() {
            (addr, node.map_or(0, |n| i64::from(n.port)), "SOCKET")
        } else {
            let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "0"));
            (h, p.parse().unwrap_or(0), "TCP")
        };
        let mut ht = ZendHashTable::new();
        let _ = ht.insert("host", str_zval(host));
        let _ = ht.insert("port", long_zval(port));
        if by_key {
            let _ = ht.insert("weight", long_zval(0));
        } else {
            let _ = ht.insert("type", str_zval(kind));
        }
        array_zval(ht)
    }
}

#[php_impl]
impl FaeClient {
    #[php(name = "OPT_COMPRESSION")]
    pub const OPT_COMPRESSION: i64 = -1001;
    #[php(name = "OPT_PREFIX_KEY")]
    pub const OPT_PREFIX_KEY: i64 = -1002;
    #[php(name = "OPT_SERIALIZER")]
    pub const OPT_SERIALIZER: i64 = -1003;
    #[php(name = "OPT_COMPRESSION_TYPE")]
    pub const OPT_COMPRESSION_TYPE: i64 = -1004;
    #[php(name = "OPT_STORE_RETRY_COUNT")]
    pub const OPT_STORE_RETRY_COUNT: i64 = -1005;
    #[php(name = "OPT_USER_FLAGS")]
    pub const OPT_USER_FLAGS: i64 = -1006;
    #[php(name = "OPT_COMPRESSION_LEVEL")]
    pub const OPT_COMPRESSION_LEVEL: i64 = -1007;
    #[php(name = "OPT_ITEM_SIZE_LIMIT")]
    pub const OPT_ITEM_SIZE_LIMIT: i64 = -1008;
    #[php(name = "OPT_NO_BLOCK")]
    pub const OPT_NO_BLOCK: i64 = 0;
    #[php(name = "OPT_TCP_NODELAY")]
    pub const OPT_TCP_NODELAY: i64 = 1;
    #[php(name = "OPT_HASH")]
    pub const OPT_HASH: i64 = 2;
    #[php(name = "OPT_SOCKET_SEND_SIZE")]
    pub const OPT_SOCKET_SEND_SIZE: i64 = 4;
    #[php(name = "OPT_SOCKET_RECV_SIZE")]
    pub const OPT_SOCKET_RECV_SIZE: i64 = 5;
    #[php(name = "OPT_CACHE_LOOKUPS")]
    pub const OPT_CACHE_LOOKUPS: i64 = 6;
    #[php(name = "OPT_POLL_TIMEOUT")]
    pub const OPT_POLL_TIMEOUT: i64 = 8;
    #[php(name = "OPT_DISTRIBUTION")]
    pub const OPT_DISTRIBUTION: i64 = 9;
    #[php(name = "OPT_BUFFER_WRITES")]
    pub const OPT_BUFFER_WRITES: i64 = 10;
    #[php(name = "OPT_SORT_HOSTS")]
    pub const OPT_SORT_HOSTS: i64 = 12;
    #[php(name = "OPT_VERIFY_KEY")]
    pub const OPT_VERIFY_KEY: i64 = 13;
    #[php(name = "OPT_CONNECT_TIMEOUT")]
    pub const OPT_CONNECT_TIMEOUT: i64 = 14;
    #[php(name = "OPT_RETRY_TIMEOUT")]
    pub const OPT_RETRY_TIMEOUT: i64 = 15;
    #[php(name = "OPT_LIBKETAMA_COMPATIBLE")]
    pub const OPT_LIBKETAMA_COMPATIBLE: i64 = 16;
    #[php(name = "OPT_LIBKETAMA_HASH")]
    pub const OPT_LIBKETAMA_HASH: i64 = 17;
    #[php(name = "OPT_BINARY_PROTOCOL")]
    pub const OPT_BINARY_PROTOCOL: i64 = 18;
    #[php(name = "OPT_SEND_TIMEOUT")]
    pub const OPT_SEND_TIMEOUT: i64 = 19;
    #[php(name = "OPT_RECV_TIMEOUT")]
    pub const OPT_RECV_TIMEOUT: i64 = 20;
    #[php(name = "OPT_SERVER_FAILURE_LIMIT")]
    pub const OPT_SERVER_FAILURE_LIMIT: i64 = 21;
    #[php(name = "OPT_HASH_WITH_PREFIX_KEY")]
    pub const OPT_HASH_WITH_PREFIX_KEY: i64 = 25;
    #[php(name = "OPT_NOREPLY")]
    pub const OPT_NOREPLY: i64 = 26;
    #[php(name = "OPT_USE_UDP")]
    pub const OPT_USE_UDP: i64 = 27;
    #[php(name = "OPT_AUTO_EJECT_HOSTS")]
    pub const OPT_AUTO_EJECT_HOSTS: i64 = 28;
    #[php(name = "OPT_NUMBER_OF_REPLICAS")]
    pub const OPT_NUMBER_OF_REPLICAS: i64 = 29;
    #[php(name = "OPT_RANDOMIZE_REPLICA_READ")]
    pub const OPT_RANDOMIZE_REPLICA_READ: i64 = 30;
    #[php(name = "OPT_TCP_KEEPALIVE")]
    pub const OPT_TCP_KEEPALIVE: i64 = 32;
    #[php(name = "OPT_REMOVE_FAILED_SERVERS")]
    pub const OPT_REMOVE_FAILED_SERVERS: i64 = 35;
    #[php(name = "OPT_DEAD_TIMEOUT")]
    pub const OPT_DEAD_TIMEOUT: i64 = 36;
    #[php(name = "OPT_SERVER_TIMEOUT_LIMIT")]
    pub const OPT_SERVER_TIMEOUT_LIMIT: i64 = 37;
    #[php(name = "HASH_DEFAULT")]
    pub const HASH_DEFAULT: i64 = 0;
    #[php(name = "HASH_MD5")]
    pub const HASH_MD5: i64 = 1;
    #[php(name = "HASH_CRC")]
    pub const HASH_CRC: i64 = 2;
    #[php(name = "HASH_FNV1_64")]
    pub const HASH_FNV1_64: i64 = 3;
    #[php(name = "HASH_FNV1A_64")]
    pub const HASH_FNV1A_64: i64 = 4;
    #[php(name = "HASH_FNV1_32")]
    pub const HASH_FNV1_32: i64 = 5;
    #[php(name = "HASH_FNV1A_32")]
    pub const HASH_FNV1A_32: i64 = 6;
    #[php(name = "HASH_HSIEH")]
    pub const HASH_HSIEH: i64 = 7;
    #[php(name = "HASH_MURMUR")]
    pub const HASH_MURMUR: i64 = 8;
    #[php(name = "DISTRIBUTION_MODULA")]
    pub const DISTRIBUTION_MODULA: i64 = 0;
    #[php(name = "DISTRIBUTION_CONSISTENT")]
    pub const DISTRIBUTION_CONSISTENT: i64 = 1;
    #[php(name = "DISTRIBUTION_VIRTUAL_BUCKET")]
    pub const DISTRIBUTION_VIRTUAL_BUCKET: i64 = 6;
    #[php(name = "SERIALIZER_PHP")]
    pub const SERIALIZER_PHP: i64 = 1;
    #[php(name = "SERIALIZER_IGBINARY")]
    pub const SERIALIZER_IGBINARY: i64 = 2;
    #[php(name = "SERIALIZER_JSON")]
    pub const SERIALIZER_JSON: i64 = 3;
    #[php(name = "SERIALIZER_JSON_ARRAY")]
    pub const SERIALIZER_JSON_ARRAY: i64 = 4;
    #[php(name = "SERIALIZER_MSGPACK")]
    pub const SERIALIZER_MSGPACK: i64 = 5;
    #[php(name = "COMPRESSION_ZLIB")]
    pub const COMPRESSION_ZLIB: i64 = 1;
    #[php(name = "COMPRESSION_FASTLZ")]
    pub const COMPRESSION_FASTLZ: i64 = 2;
    #[php(name = "GET_PRESERVE_ORDER")]
    pub const GET_PRESERVE_ORDER: i64 = 1;
    #[php(name = "GET_EXTENDED")]
    pub const GET_EXTENDED: i64 = 2;
    #[php(name = "LIBMEMCACHED_VERSION_HEX")]
    pub const LIBMEMCACHED_VERSION_HEX: i64 = 16777240;
    #[php(name = "RES_SUCCESS")]
    pub const RES_SUCCESS: i64 = 0;
    #[php(name = "RES_FAILURE")]
    pub const RES_FAILURE: i64 = 1;
    #[php(name = "RES_HOST_LOOKUP_FAILURE")]
    pub const RES_HOST_LOOKUP_FAILURE: i64 = 2;
    #[php(name = "RES_CONNECTION_FAILURE")]
    pub const RES_CONNECTION_FAILURE: i64 = 3;
    #[php(name = "RES_WRITE_FAILURE")]
    pub const RES_WRITE_FAILURE: i64 = 5;
    #[php(name = "RES_UNKNOWN_READ_FAILURE")]
    pub const RES_UNKNOWN_READ_FAILURE: i64 = 7;
    #[php(name = "RES_PROTOCOL_ERROR")]
    pub const RES_PROTOCOL_ERROR: i64 = 8;
    #[php(name = "RES_CLIENT_ERROR")]
    pub const RES_CLIENT_ERROR: i64 = 9;
    #[php(name = "RES_SERVER_ERROR")]
    pub const RES_SERVER_ERROR: i64 = 10;
    #[php(name = "RES_CONNECTION_SOCKET_CREATE_FAILURE")]
    pub const RES_CONNECTION_SOCKET_CREATE_FAILURE: i64 = 11;
    #[php(name = "RES_DATA_EXISTS")]
    pub const RES_DATA_EXISTS: i64 = 12;
    #[php(name = "RES_NOTSTORED")]
    pub const RES_NOTSTORED: i64 = 14;
    #[php(name = "RES_STORED")]
    pub const RES_STORED: i64 = 15;
    #[php(name = "RES_NOTFOUND")]
    pub const RES_NOTFOUND: i64 = 16;
    #[php(name = "RES_PARTIAL_READ")]
    pub const RES_PARTIAL_READ: i64 = 18;
    #[php(name = "RES_SOME_ERRORS")]
    pub const RES_SOME_ERRORS: i64 = 19;
    #[php(name = "RES_NO_SERVERS")]
    pub const RES_NO_SERVERS: i64 = 20;
    #[php(name = "RES_END")]
    pub const RES_END: i64 = 21;
    #[php(name = "RES_ERRNO")]
    pub const RES_ERRNO: i64 = 26;
    #[php(name = "RES_NOT_SUPPORTED")]
    pub const RES_NOT_SUPPORTED: i64 = 28;
    #[php(name = "RES_TIMEOUT")]
    pub const RES_TIMEOUT: i64 = 31;
    #[php(name = "RES_BUFFERED")]
    pub const RES_BUFFERED: i64 = 32;
    #[php(name = "RES_BAD_KEY_PROVIDED")]
    pub const RES_BAD_KEY_PROVIDED: i64 = 33;
    #[php(name = "RES_SERVER_MARKED_DEAD")]
    pub const RES_SERVER_MARKED_DEAD: i64 = 35;
    #[php(name = "RES_E2BIG")]
    pub const RES_E2BIG: i64 = 37;
    #[php(name = "RES_INVALID_ARGUMENTS")]
    pub const RES_INVALID_ARGUMENTS: i64 = 38;
    #[php(name = "RES_KEY_TOO_BIG")]
    pub const RES_KEY_TOO_BIG: i64 = 39;
    #[php(name = "RES_AUTH_PROBLEM")]
    pub const RES_AUTH_PROBLEM: i64 = 40;
    #[php(name = "RES_AUTH_FAILURE")]
    pub const RES_AUTH_FAILURE: i64 = 41;
    #[php(name = "RES_AUTH_CONTINUE")]
    pub const RES_AUTH_CONTINUE: i64 = 42;
    #[php(name = "RES_SERVER_TEMPORARILY_DISABLED")]
    pub const RES_SERVER_TEMPORARILY_DISABLED: i64 = 47;
    #[php(name = "RES_SERVER_MEMORY_ALLOCATION_FAILURE")]
    pub const RES_SERVER_MEMORY_ALLOCATION_FAILURE: i64 = 48;
    #[php(name = "RES_PAYLOAD_FAILURE")]
    pub const RES_PAYLOAD_FAILURE: i64 = -1001;
    #[php(name = "RES_CONNECTION_BIND_FAILURE")]
    pub const RES_CONNECTION_BIND_FAILURE: i64 = 4;
    #[php(name = "RES_READ_FAILURE")]
    pub const RES_READ_FAILURE: i64 = 6;
    #[php(name = "RES_DATA_DOES_NOT_EXIST")]
    pub const RES_DATA_DOES_NOT_EXIST: i64 = 13;
    #[php(name = "RES_MEMORY_ALLOCATION_FAILURE")]
    pub const RES_MEMORY_ALLOCATION_FAILURE: i64 = 17;
    #[php(name = "RES_DELETED")]
    pub const RES_DELETED: i64 = 22;
    #[php(name = "RES_VALUE")]
    pub const RES_VALUE: i64 = 23;
    #[php(name = "RES_STAT")]
    pub const RES_STAT: i64 = 24;
    #[php(name = "RES_ITEM")]
    pub const RES_ITEM: i64 = 25;
    #[php(name = "RES_FAIL_UNIX_SOCKET")]
    pub const RES_FAIL_UNIX_SOCKET: i64 = 27;
    #[php(name = "RES_NO_KEY_PROVIDED")]
    pub const RES_NO_KEY_PROVIDED: i64 = 29;
    #[php(name = "RES_FETCH_NOTFINISHED")]
    pub const RES_FETCH_NOTFINISHED: i64 = 30;
    #[php(name = "RES_INVALID_HOST_PROTOCOL")]
    pub const RES_INVALID_HOST_PROTOCOL: i64 = 34;
    #[php(name = "RES_UNKNOWN_STAT_KEY")]
    pub const RES_UNKNOWN_STAT_KEY: i64 = 36;
    #[php(name = "RES_PARSE_ERROR")]
    pub const RES_PARSE_ERROR: i64 = 43;
    #[php(name = "RES_PARSE_USER_ERROR")]
    pub const RES_PARSE_USER_ERROR: i64 = 44;
    #[php(name = "RES_DEPRECATED")]
    pub const RES_DEPRECATED: i64 = 45;
    #[php(name = "RES_IN_PROGRESS")]
    pub const RES_IN_PROGRESS: i64 = 46;
    #[php(name = "RES_MAXIMUM_RETURN")]
    pub const RES_MAXIMUM_RETURN: i64 = 49;
    #[php(name = "HAVE_JSON")]
    pub const HAVE_JSON: bool = true;
    #[php(name = "HAVE_SESSION")]
    pub const HAVE_SESSION: bool = true;
    #[php(name = "HAVE_ZSTD")]
    pub const HAVE_ZSTD: bool = false;
    #[php(name = "HAVE_ENCODING")]
    pub const HAVE_ENCODING: bool = true;
    #[php(name = "HAVE_SASL")]
    pub const HAVE_SASL: bool = false;
    #[php(name = "GET_ERROR_RETURN_VALUE")]
    pub const GET_ERROR_RETURN_VALUE: bool = false;

    /// `new Fae\Client(?string $persistent_id = null, array|callable|null $config_or_callback
    /// = null, ?string $connection_str = null)`: php-memcached's constructor, plus a config
    /// array in the second place (`Fae\Client::fromConfig()` is the same). A callable there is
    /// php-memcached's on-new-object callback, called with `($memc, $persistent_id)` once per
    /// new persistent id (every time without one). `$config` is the config file's schema:
    /// `servers`, or `pools` plus a `route` tree. Without servers and without a `route`,
    /// requests fail with `RES_NO_SERVERS` until `addServer()`, as php-memcached's; a
    /// `$connection_str` is libmemcached's (`--SERVER=host:port` entries are used).
    pub fn __construct(
        persistent_id: Option<&Zval>,
        config_or_callback: Option<&Zval>,
        connection_str: Option<String>,
    ) -> PhpResult<Self> {
        crate::logging::install();
        let persistent_id = match persistent_id.map(Zval::dereference) {
            None => None,
            Some(z) if z.is_null() => None,
            Some(z)
                if z.is_string()
                    || z.is_long()
                    || z.is_double()
                    || z.is_bool()
                    || z.is_object() =>
            {
                match key_bytes(z) {
                    Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    Err(_) => None,
                }
                .ok_or_else(|| ctor_type_error(z))
                .map(Some)?
            }
            Some(z) => return Err(ctor_type_error(z)),
        };
        let (config, callback) = match config_or_callback {
            Some(z) if z.is_callable() => (None, Some(z.shallow_clone())),
            Some(z) if z.dereference().is_array() => (Some(z), None),
            Some(z) if !z.is_null() => {
                return Err(type_error(format!(
                    "Memcached::__construct(): Argument #2 ($callback) must be a valid callback or a config array, {} given",
                    php_type_name(z)
                )));
            }
            _ => (None, None),
        };
        let mut c = Self::build(persistent_id, config.map(ConfigArg::Array))?;
        if let Some(conn) = connection_str.filter(|s| !s.is_empty())
            && c.pristine
        {
            c.apply_connection_str(&conn);
        }
        if c.pristine {
            c.pending_init = callback;
        }
        Ok(c)
    }

    /// `Fae\Client::fromConfig(array|string $config, ?string $persistent_id = null)`: a client
    /// from a config array or a config file (JSON or TOML, as the other bindings read).
    pub fn from_config(config: &Zval, persistent_id: Option<String>) -> PhpResult<Self> {
        crate::logging::install();
        let d = config.dereference();
        let arg = if d.is_array() {
            ConfigArg::Array(config)
        } else if let Some(path) = d.str() {
            ConfigArg::File(path.to_string())
        } else {
            return Err(type_error(format!(
                "Fae\\Client::fromConfig(): $config must be an array or a file path, {} given",
                d.get_type()
            )));
        };
        Self::build(persistent_id, Some(arg))
    }

    pub fn get_result_code(&self) -> i64 {
        self.code
    }

    pub fn get_result_message(&self) -> String {
        text(self.code).to_string()
    }

    /// The last call's result with libfae's reason for it (php-memcached: libmemcached's
    /// last error message).
    pub fn get_last_error_message(&self) -> String {
        self.message.clone()
    }

    pub fn get_last_error_code(&self) -> i64 {
        self.code
    }

    pub fn get_last_error_errno(&self) -> i64 {
        0
    }

    /// Servers are marked down by the core's breakers, not by a last-disconnected slot.
    pub fn get_last_disconnected_server(&self) -> bool {
        false
    }

    /// Sends the writes `OPT_BUFFER_WRITES` held back (any other command does too).
    pub fn flush_buffers(&mut self) -> PhpResult<bool> {
        guard(|| {
            Ok(match self.ctx() {
                Ok(_) => {
                    self.ok();
                    true
                }
                Err(f) => {
                    self.fail(f);
                    false
                }
            })
        })
    }

    /// php-memcached's key check (`memc_key_ok`: with the text protocol 1..250 bytes of
    /// printable non-space ASCII, with the binary protocol no newline; the prefix is not
    /// counted). Sets `RES_BAD_KEY_PROVIDED` when it fails.
    pub fn check_key(&mut self, key: &Zval) -> PhpResult<bool> {
        let key = key_bytes(key)?;
        let ok = memc_key_ok(&key, self.shared.lock().binary_protocol());
        if ok {
            self.ok();
        } else {
            self.set_code(RES_BAD_KEY_PROVIDED);
        }
        Ok(ok)
    }

    /// libmemcached's virtual buckets (`memcached_bucket_set`): a key goes to server
    /// `$host_map[hash(key) & (count(\$host_map) - 1)]`, hashed with `OPT_HASH`; the
    /// distribution becomes `DISTRIBUTION_VIRTUAL_BUCKET`. The forward map and replicas are
    /// kept, unused, as in libmemcached. php-memcached's argument checks and warnings first;
    /// a map naming a server the client does not have fails the next command.
    pub fn set_bucket(
        &mut self,
        host_map: &Zval,
        forward_map: Option<&Zval>,
        replicas: i64,
    ) -> PhpResult<bool> {
        let Some(map) = host_map.dereference().array() else {
            return Err(type_error(format!(
                "Memcached::setBucket(): Argument #1 ($host_map) must be of type array, {} given",
                php_type_name(host_map)
            )));
        };
        let forward = forward_map.and_then(|f| f.dereference().array());
        let warned = if map.is_empty() {
            Some("server map cannot be empty")
        } else if forward.is_some_and(|f| f.len() != map.len()) {
            Some("forward_map length must match the server_map length")
        } else if replicas < 0 {
            Some("replicas must be larger than zero")
        } else if values(map)
            .chain(forward.into_iter().flat_map(values))
            .any(|v| v.dereference().coerce_to_long().unwrap_or(0) < 0)
        {
            Some("the map must contain positive integers")
        } else {
            None
        };
        if let Some(w) = warned {
            warn(w);
            self.set_code(RES_INVALID_ARGUMENTS);
            return Ok(false);
        }
        // php-memcached's `(uint32_t) zval_get_long(v)`: a non-numeric string is 0.
        let to_u32 = |a: &ZendHashTable| -> Vec<u32> {
            values(a)
                .map(|v| v.dereference().coerce_to_long().unwrap_or(0) as u32)
                .collect()
        };
        let hosts = to_u32(map);
        let fwd = forward.map(to_u32);
        let r =
            self.shared
                .lock()
                .set_bucket(hosts, fwd, u32::try_from(replicas).unwrap_or(u32::MAX));
        Ok(match r {
            Ok(()) => {
                self.ok();
                true
            }
            Err(f) => {
                self.fail(f);
                false
            }
        })
    }

    /// SASL is not supported (`HAVE_SASL` is false): php-memcached's warning, false.
    pub fn set_sasl_auth_data(&mut self, _username: String, _password: String) -> bool {
        warn("SASL support (memcached.use_sasl) isn't enabled in php.ini");
        self.fail((RES_NOT_SUPPORTED, "SASL is not supported".into()));
        false
    }

    /// libmemcached's AES encryption of every value this object (and its persistent
    /// siblings) stores and reads, from now on; the scheme is php.ini's `fae.encoding_scheme`.
    /// A value that does not decrypt reads as a miss (false, `RES_NOTFOUND`).
    pub fn set_encoding_key(&mut self, key: &Zval) -> bool {
        let key = key.dereference();
        let bytes = match key.zend_str() {
            Some(s) => s.as_bytes().to_vec(),
            None => key.coerce_to_string().unwrap_or_default().into_bytes(),
        };
        let name = crate::php_ini::ini("fae.encoding_scheme").unwrap_or_default();
        let Some(scheme) = fae_core::values::Scheme::parse(name.trim()) else {
            self.fail((
                RES_INVALID_ARGUMENTS,
                format!(
                    "fae.encoding_scheme is {name:?}, not libmemcached-1.1 or libmemcached-1.0"
                ),
            ));
            return false;
        };
        let k = fae_core::values::EncodingKey::new(&bytes, scheme);
        self.shared.lock().values.encoding_key = Some(std::sync::Arc::new(k));
        self.ok();
        true
    }

    /// Key dumps (`lru_crawler metadump`) are not supported.
    pub fn get_all_keys(&mut self) -> bool {
        self.fail((RES_NOT_SUPPORTED, "getAllKeys is not supported".into()));
        false
    }

    /// `getDelayed(array $keys, bool $with_cas = false, ?callable $value_cb = null)`: fetch
    /// now; results go to `$value_cb($memc, $result)` or wait for `fetch()`/`fetchAll()`.
    pub fn get_delayed(
        self_: &mut ZendClassObject<FaeClient>,
        keys: &Zval,
        with_cas: Option<bool>,
        value_cb: Option<&Zval>,
    ) -> PhpResult<bool> {
        Self::delayed_impl(self_, None, keys, with_cas.unwrap_or(false), value_cb)
    }

    pub fn get_delayed_by_key(
        self_: &mut ZendClassObject<FaeClient>,
        server_key: &Zval,
        keys: &Zval,
        with_cas: Option<bool>,
        value_cb: Option<&Zval>,
    ) -> PhpResult<bool> {
        Self::delayed_impl(
            self_,
            Some(server_key),
            keys,
            with_cas.unwrap_or(false),
            value_cb,
        )
    }

    /// The next `getDelayed()` result, or false with `RES_END`.
    pub fn fetch(&mut self) -> Zval {
        match self.delayed.pop_front() {
            Some((k, item, cas)) => match self.delayed_result(k, item, cas) {
                Some(r) => {
                    self.ok();
                    r
                }
                None => bool_zval(false),
            },
            None => {
                self.set_code(RES_END);
                bool_zval(false)
            }
        }
    }

    /// Every remaining `getDelayed()` result, as a list.
    pub fn fetch_all(&mut self) -> Zval {
        let mut ht = ZendHashTable::new();
        while let Some((k, item, cas)) = self.delayed.pop_front() {
            match self.delayed_result(k, item, cas) {
                Some(r) => {
                    let _ = ht.push(r);
                }
                None => {
                    self.delayed.clear();
                    if self.code == RES_NOTFOUND {
                        // A value that does not decrypt ends libmemcached's fetch: NOTFOUND
                        // and [] when it came first, FAILURE and false after a result.
                        if !ht.is_empty() {
                            self.code = RES_FAILURE;
                            self.message =
                                self.message
                                    .replacen(text(RES_NOTFOUND), text(RES_FAILURE), 1);
                        } else {
                            return array_zval(ht);
                        }
                    }
                    return bool_zval(false);
                }
            }
        }
        self.ok();
        array_zval(ht)
    }

    pub fn is_persistent(&self) -> bool {
        self.persistent_id.is_some()
    }

    pub fn is_pristine(&self) -> bool {
        self.pristine
    }

    pub fn add_server(&mut self, host: String, port: i64, weight: Option<i64>) -> PhpResult<bool> {
        crate::logging::drain();
        let port =
            u16::try_from(port).map_err(|_| exception(format!("port {port} is out of range")))?;
        let weight =
            u32::try_from(weight.unwrap_or(0)).map_err(|_| exception("weight must be >= 0"))?;
        let r = self.shared.lock().add_server(&host, port, weight, false);
        Ok(match r {
            Ok(()) => {
                self.ok();
                true
            }
            Err(f) => self.fail(f).is_true(),
        })
    }

    /// php-memcached's `addServers`: each entry's first, second and third values (whatever
    /// their keys) are host, port and weight; a bad entry is skipped with its warning.
    pub fn add_servers(&mut self, servers: &Zval) -> PhpResult<bool> {
        let Some(arr) = servers.dereference().array() else {
            return Err(type_error(format!(
                "addServers(): Argument #1 ($servers) must be of type array, {} given",
                php_type_name(servers)
            )));
        };
        let mut list = Vec::new();
        for (i, s) in values(arr).enumerate() {
            let n = i + 1;
            let Some(e) = s.dereference().array() else {
                warn(&format!("server list entry #{n} is not an array"));
                continue;
            };
            let vals: Vec<&Zval> = values(e).collect();
            if vals.len() < 2 {
                warn(&format!(
                    "could not add entry #{} to the server list",
                    n + 1
                ));
                continue;
            }
            let host = vals[0].dereference().coerce_to_string().unwrap_or_default();
            let port = vals[1].dereference().coerce_to_long().unwrap_or(0);
            let weight = vals
                .get(2)
                .map_or(0, |w| w.dereference().coerce_to_long().unwrap_or(0));
            match (u16::try_from(port), u32::try_from(weight)) {
                (Ok(p), Ok(w)) => list.push((host, p, w)),
                _ => warn(&format!(
                    "could not add entry #{} to the server list",
                    n + 1
                )),
            }
        }
        let mut s = self.shared.lock();
        for (h, p, w) in list {
            if let Err(f) = s.add_server(&h, p, w, true) {
                drop(s);
                return Ok(self.fail(f).is_true());
            }
        }
        drop(s);
        self.ok();
        Ok(true)
    }

    pub fn get_server_list(&self) -> Zval {
        let addrs: Vec<String> = {
            let mut s = self.shared.lock();
            if s.pools_config {
                s.core().map(|c| c.servers()).unwrap_or_default()
            } else {
                s.servers.iter().map(|n| n.addr()).collect()
            }
        };
        let mut ht = ZendHashTable::new();
        for a in addrs {
            let _ = ht.push(self.server_array(&a, false));
        }
        array_zval(ht)
    }

    pub fn reset_server_list(&mut self) -> bool {
        self.shared.lock().reset_servers();
        self.ok();
        true
    }

    pub fn set_option(&mut self, option: i64, value: &Zval) -> PhpResult<bool> {
        crate::logging::drain();
        let v = value.dereference();
        let ival = if v.is_bool() {
            i64::from(v.bool().unwrap_or(false))
        } else {
            v.coerce_to_long().unwrap_or(0)
        };
        let sval = v
            .zend_str()
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default();
        let r = self.shared.lock().set_option(option, ival, &sval);
        Ok(match r {
            Ok(()) => {
                self.ok();
                true
            }
            Err(f) => {
                // php-memcached's warnings for the same refusals.
                let code = f.0;
                self.fail(f);
                match option {
                    crate::state::opt::PREFIX_KEY => {
                        self.code = RES_INVALID_ARGUMENTS;
                        warn("bad key provided");
                    }
                    crate::state::opt::SERIALIZER => warn("invalid serializer provided"),
                    crate::state::opt::USER_FLAGS => warn("MEMC_OPT_USER_FLAGS must be < 65535"),
                    // php-memcached's own options (-1001..-1008) fail quietly; libmemcached's
                    // and unknown ones warn.
                    o if !(-1008..=-1001).contains(&o) => {
                        warn(&format!("error setting memcached option: {}", text(code)));
                    }
                    _ => {}
                }
                false
            }
        })
    }

    pub fn set_options(&mut self, options: &Zval) -> PhpResult<bool> {
        let Some(arr) = options.dereference().array() else {
            return Err(exception("setOptions(): $options must be an array"));
        };
        let mut all = true;
        let mut pairs: Vec<(i64, Zval)> = Vec::with_capacity(arr.len());
        let mut it = ext_php_rs::types::array::Iter::new(arr);
        while let Some((k, v)) = it.next_zval() {
            match k.long() {
                Some(k) => pairs.push((k, v.shallow_clone())),
                None => {
                    // php-memcached: option names are integers (the OPT_* constants).
                    warn("invalid configuration option");
                    all = false;
                }
            }
        }
        let mut first_fail: Option<(i64, String)> = None;
        for (k, v) in pairs {
            if !self.set_option(k, &v)? {
                all = false;
                first_fail.get_or_insert((self.code, self.message.clone()));
            }
        }
        if let Some((c, m)) = first_fail {
            self.code = c;
            self.message = m;
        }
        Ok(all)
    }

    pub fn get_option(&mut self, option: i64) -> Zval {
        crate::logging::drain();
        if matches!(
            option,
            crate::state::opt::SOCKET_SEND_SIZE | crate::state::opt::SOCKET_RECV_SIZE
        ) && self.get_server_list().array().is_some_and(|a| a.is_empty())
        {
            // php-memcached asks the first server's socket for these.
            warn("no servers defined");
            return Zval::null();
        }
        let v = self.shared.lock().get_option(option);
        match v {
            // Like php-memcached's, reading an option leaves the last result code alone.
            Some(v) => json_to_zval(&v),
            None => self.fail((RES_INVALID_ARGUMENTS, format!("unknown option {option}"))),
        }
    }

    /// `get($key, $cache_cb = null, $get_flags = 0)`. With `$cache_cb`, php-memcached's
    /// read-through callback on the core's `get_or_set` (see `client/stampede.rs`).
    pub fn get(
        self_: &mut ZendClassObject<FaeClient>,
        key: &Zval,
        cache_cb: Option<&Zval>,
        get_flags: Option<i64>,
    ) -> PhpResult<Zval> {
        Self::get_with_callback(self_, None, key, cache_cb, get_flags)
    }

    pub fn get_by_key(
        self_: &mut ZendClassObject<FaeClient>,
        server_key: &Zval,
        key: &Zval,
        cache_cb: Option<&Zval>,
        get_flags: Option<i64>,
    ) -> PhpResult<Zval> {
        Self::get_with_callback(self_, Some(server_key), key, cache_cb, get_flags)
    }

    pub fn get_multi(&mut self, keys: &Zval, get_flags: Option<i64>) -> PhpResult<Zval> {
        self.do_get_multi(None, keys, get_flags)
    }

    pub fn get_multi_by_key(
        &mut self,
        server_key: &Zval,
        keys: &Zval,
        get_flags: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_get_multi(Some(server_key), keys, get_flags)
    }

    pub fn set(&mut self, key: &Zval, value: &Zval, expiration: Option<i64>) -> PhpResult<Zval> {
        self.do_store(StoreOp::Set, None, key, value, expiration.unwrap_or(0))
    }

    pub fn set_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_store(
            StoreOp::Set,
            Some(server_key),
            key,
            value,
            expiration.unwrap_or(0),
        )
    }

    pub fn set_multi(&mut self, items: &Zval, expiration: Option<i64>) -> PhpResult<Zval> {
        self.do_set_multi(None, items, expiration)
    }

    pub fn set_multi_by_key(
        &mut self,
        server_key: &Zval,
        items: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_set_multi(Some(server_key), items, expiration)
    }

    pub fn add(&mut self, key: &Zval, value: &Zval, expiration: Option<i64>) -> PhpResult<Zval> {
        self.do_store(StoreOp::Add, None, key, value, expiration.unwrap_or(0))
    }

    pub fn add_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_store(
            StoreOp::Add,
            Some(server_key),
            key,
            value,
            expiration.unwrap_or(0),
        )
    }

    pub fn replace(
        &mut self,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_store(StoreOp::Replace, None, key, value, expiration.unwrap_or(0))
    }

    pub fn replace_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_store(
            StoreOp::Replace,
            Some(server_key),
            key,
            value,
            expiration.unwrap_or(0),
        )
    }

    pub fn append(&mut self, key: &Zval, value: &Zval) -> PhpResult<Zval> {
        self.do_store(StoreOp::Append, None, key, value, 0)
    }

    pub fn append_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
    ) -> PhpResult<Zval> {
        self.do_store(StoreOp::Append, Some(server_key), key, value, 0)
    }

    pub fn prepend(&mut self, key: &Zval, value: &Zval) -> PhpResult<Zval> {
        self.do_store(StoreOp::Prepend, None, key, value, 0)
    }

    pub fn prepend_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
    ) -> PhpResult<Zval> {
        self.do_store(StoreOp::Prepend, Some(server_key), key, value, 0)
    }

    pub fn cas(
        &mut self,
        cas_token: &Zval,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        let t = Self::cas_token(cas_token)?;
        self.do_store(StoreOp::Cas(t), None, key, value, expiration.unwrap_or(0))
    }

    pub fn cas_by_key(
        &mut self,
        cas_token: &Zval,
        server_key: &Zval,
        key: &Zval,
        value: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        let t = Self::cas_token(cas_token)?;
        self.do_store(
            StoreOp::Cas(t),
            Some(server_key),
            key,
            value,
            expiration.unwrap_or(0),
        )
    }

    pub fn delete(&mut self, key: &Zval, time: Option<i64>) -> PhpResult<Zval> {
        self.do_delete(None, key, time, true)
    }

    pub fn delete_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        time: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_delete(Some(server_key), key, time, true)
    }

    pub fn delete_multi(&mut self, keys: &Zval, time: Option<i64>) -> PhpResult<Zval> {
        self.do_delete_multi(None, keys, time)
    }

    pub fn delete_multi_by_key(
        &mut self,
        server_key: &Zval,
        keys: &Zval,
        time: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_delete_multi(Some(server_key), keys, time)
    }

    pub fn increment(
        &mut self,
        key: &Zval,
        offset: Option<i64>,
        initial_value: Option<i64>,
        expiry: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_arith(true, None, key, offset, initial_value, expiry)
    }

    pub fn decrement(
        &mut self,
        key: &Zval,
        offset: Option<i64>,
        initial_value: Option<i64>,
        expiry: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_arith(false, None, key, offset, initial_value, expiry)
    }

    pub fn increment_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        offset: Option<i64>,
        initial_value: Option<i64>,
        expiry: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_arith(true, Some(server_key), key, offset, initial_value, expiry)
    }

    pub fn decrement_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        offset: Option<i64>,
        initial_value: Option<i64>,
        expiry: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_arith(false, Some(server_key), key, offset, initial_value, expiry)
    }

    pub fn touch(&mut self, key: &Zval, expiration: Option<i64>) -> PhpResult<Zval> {
        self.do_touch(None, key, expiration)
    }

    pub fn touch_by_key(
        &mut self,
        server_key: &Zval,
        key: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        self.do_touch(Some(server_key), key, expiration)
    }

    /// `getOrLease($key)`: a lease read, `['status' => 'hit'|'refresh'|'stale'|'miss'|'wait',
    /// 'value' => mixed|null, 'token' => int|null]` (value decoded like `get`; a token for
    /// `refresh` and `miss`: compute, then `setWithLease`). False with the result code set
    /// when the read fails.
    pub fn get_or_lease(&mut self, key: &Zval) -> PhpResult<Zval> {
        self.do_get_or_lease(key)
    }

    /// `setWithLease($key, $value, $token, $expiration = 0)`: fill with the token of
    /// `getOrLease`; false (`RES_NOTSTORED`) when the key was written, deleted or invalidated
    /// since (the newer state wins).
    pub fn set_with_lease(
        &mut self,
        key: &Zval,
        value: &Zval,
        token: i64,
        expiration: Option<i64>,
    ) -> PhpResult<bool> {
        self.do_set_with_lease(key, value, token, expiration.unwrap_or(0))
    }

    /// `invalidate($key, $stale_ttl = 0)`: keep the value as stale for `$stale_ttl` seconds
    /// (0: its current TTL); lease readers get `refresh` (one of them) or `stale`, plain gets
    /// a miss, outstanding fills fail. False (`RES_NOTFOUND`) if the key was not there.
    pub fn invalidate(&mut self, key: &Zval, stale_ttl: Option<i64>) -> PhpResult<bool> {
        self.do_invalidate(key, stale_ttl.unwrap_or(0))
    }

    /// `getOrSet($key, $compute, $expiration = 0)`: the cached value, or `$compute($key)`'s,
    /// stored with `$expiration`, computed once across the processes sharing the servers.
    /// An exception `$compute` throws reaches the caller unchanged.
    pub fn get_or_set(
        &mut self,
        key: &Zval,
        compute: &Zval,
        expiration: Option<i64>,
    ) -> PhpResult<Zval> {
        let done = self.do_get_or_set(key, compute, expiration.unwrap_or(0))?;
        Ok(done.into_value())
    }

    pub fn get_server_by_key(&mut self, server_key: &Zval) -> PhpResult<Zval> {
        let k = key_bytes(server_key)?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let routing = ctx.prefix.placing(&k);
            // The first server a get would ask: an in-process cache (`local`) is not a server.
            Ok(match ctx.core.route_for(Op::Get, &routing) {
                Ok(v) => match v.iter().find(|a| a.as_str() != "local") {
                    Some(addr) => {
                        self.ok();
                        self.server_array(addr, true)
                    }
                    None => self.fail((
                        RES_NO_SERVERS,
                        "the key lives in the in-process cache only".into(),
                    )),
                },
                Err(e) => self.core_err(&e),
            })
        })
    }

    /// `bucketFor($key, $op = 'get')`: for every pool placed by virtual buckets that a request
    /// of `$op` for `$key` reaches, `['pool', 'bucket', 'version', 'server']`, plus `'phase'`
    /// and `'to'` while the bucket is on the move. No I/O.
    pub fn bucket_for(&mut self, key: &Zval, op: Option<String>) -> PhpResult<Zval> {
        let k = key_bytes(key)?;
        let op = op_arg("bucketFor", op)?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let (stored, routing) = ctx.keys(&k, None);
            Ok(
                match ctx
                    .core
                    .bucket_route(op, routing.as_deref().unwrap_or(&stored))
                {
                    Ok(v) => {
                        self.ok();
                        let mut list = ZendHashTable::new();
                        for (pool, b) in v {
                            let mut ht = ZendHashTable::new();
                            let _ = ht.insert("pool", str_zval(&pool));
                            let _ = ht.insert("bucket", i64::from(b.bucket));
                            let _ = ht.insert("version", b.version as i64);
                            let _ = ht.insert("server", str_zval(&b.server_addr));
                            if let (Some(m), Some(to)) = (&b.moving, &b.to_addr) {
                                let _ = ht.insert("phase", str_zval(m.phase.as_str()));
                                let _ = ht.insert("to", str_zval(to));
                            }
                            let _ = list.push(array_zval(ht));
                        }
                        array_zval(list)
                    }
                    Err(e) => self.core_err(&e),
                },
            )
        })
    }

    /// `routeFor($key, $op = 'get')`: every destination a request of `$op` for `$key` could
    /// touch, without I/O: `host:port` per server, `local` for an in-process cache; for a
    /// failover every child, for a shadowed key the shadow too, for a replicated route every
    /// replica.
    pub fn route_for(&mut self, key: &Zval, op: Option<String>) -> PhpResult<Zval> {
        let k = key_bytes(key)?;
        let op = op_arg("routeFor", op)?;
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let (stored, routing) = ctx.keys(&k, None);
            Ok(
                match ctx
                    .core
                    .route_for(op, routing.as_deref().unwrap_or(&stored))
                {
                    Ok(v) => {
                        self.ok();
                        let mut ht = ZendHashTable::new();
                        for a in v {
                            let _ = ht.push(str_zval(&a));
                        }
                        array_zval(ht)
                    }
                    Err(e) => self.core_err(&e),
                },
            )
        })
    }

    pub fn get_stats(&mut self, r#type: Option<String>) -> PhpResult<Zval> {
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            let stats = match ctx.core.server_stats(r#type.as_deref().unwrap_or("")) {
                Ok(s) => s,
                Err(e) => return Ok(self.core_err(&e)),
            };
            // php-memcached turns OPT_NO_BLOCK off around `stats` when the binary protocol
            // is on too, and libmemcached closes every connection on each switch: the next
            // call dials again. Elsewhere the stats connection is kept, as there.
            let reconnects = {
                let s = self.shared.lock();
                s.no_block() && s.binary_protocol()
            };
            if reconnects {
                ctx.core.disconnect_idle();
            }
            let mut ht = ZendHashTable::new();
            let mut failed = 0;
            for (addr, r) in &stats {
                match r {
                    Ok(kv) => {
                        let mut s = ZendHashTable::new();
                        for (k, v) in kv {
                            let z = v
                                .parse::<i64>()
                                .map(long_zval)
                                .unwrap_or_else(|_| str_zval(v));
                            let _ = s.insert(k.as_str(), z);
                        }
                        let _ = ht.insert(addr.as_str(), array_zval(s));
                    }
                    Err(e) => {
                        failed += 1;
                        let (c, m) = map(e);
                        self.code = c;
                        self.message = m;
                    }
                }
            }
            if failed == stats.len() && failed > 0 {
                return Ok(bool_zval(false));
            }
            if failed == 0 {
                self.ok();
            } else {
                self.code = RES_SOME_ERRORS;
            }
            Ok(array_zval(ht))
        })
    }

    pub fn get_version(&mut self) -> PhpResult<Zval> {
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            Ok(match ctx.core.version() {
                Ok(list) => {
                    let mut ht = ZendHashTable::new();
                    let mut failed = 0;
                    for (addr, r) in &list {
                        match r {
                            Ok(v) => {
                                let _ = ht.insert(addr.as_str(), str_zval(v));
                            }
                            Err(e) => {
                                failed += 1;
                                let (c, m) = map(e);
                                self.code = c;
                                self.message = m;
                                let _ = ht.insert(addr.as_str(), str_zval("255.255.255"));
                            }
                        }
                    }
                    if failed == list.len() && failed > 0 {
                        return Ok(bool_zval(false));
                    }
                    if failed == 0 {
                        self.ok();
                    }
                    array_zval(ht)
                }
                Err(e) => self.core_err(&e),
            })
        })
    }

    pub fn flush(&mut self, delay: Option<i64>) -> PhpResult<bool> {
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f).is_true()),
            };
            // A negative delay is refused (php-memcached's server answers CLIENT_ERROR), and
            // one past u32 is one more than 30 days ahead, which the core refuses too.
            let delay = delay.unwrap_or(0);
            let Ok(delay) = u32::try_from(delay) else {
                return Ok(self
                    .fail((
                        RES_INVALID_ARGUMENTS,
                        format!("flush delay {delay} is out of range"),
                    ))
                    .is_true());
            };
            Ok(match ctx.core.flush_all(delay) {
                Ok(()) => {
                    self.ok();
                    true
                }
                Err(e) => self.core_err(&e).is_true(),
            })
        })
    }

    /// `reload(array $config): bool`: replace the configuration (the constructor's `$config`
    /// schema) without dropping warm connections to servers that stay. A config that does not
    /// validate or build returns false with the result code and message set, and the old one
    /// stays in force. On a persistent client this reloads this process's shared client only.
    pub fn reload(&mut self, config: &Zval) -> PhpResult<bool> {
        if !config.dereference().is_array() {
            return Err(type_error(format!(
                "reload(): $config must be an array, {} given",
                config.dereference().get_type()
            )));
        }
        let config = to_json(config)?;
        guard(|| {
            let r = self.shared.lock().reload(config);
            Ok(match r {
                Ok(()) => {
                    self.ok();
                    true
                }
                Err(f) => self.fail(f).is_true(),
            })
        })
    }

    /// `clientStats(): array|false`: libfae's own counters and health (the core's `stats()`):
    /// `pools`, `destinations` (breaker state, requests, errors, latency, connections),
    /// `routes` (the route tree's counters by config path: `route`, `route.children[1]` …),
    /// `process` (`pid`, `config_version`, `reloads`, `reload_failures`), `supervisor`.
    pub fn client_stats(&mut self) -> PhpResult<Zval> {
        guard(|| {
            let ctx = match self.ctx() {
                Ok(c) => c,
                Err(f) => return Ok(self.fail(f)),
            };
            self.ok();
            Ok(json_to_zval(&ctx.core.stats()))
        })
    }

    /// Close this client's connections (the next call reconnects).
    pub fn quit(&mut self) -> bool {
        crate::logging::drain();
        self.shared.lock().quit();
        self.ok();
        true
    }

    /// Open and idle connections per server: `['host:port' => ['open' => n, 'idle' => n]]`.
    pub fn connection_counts(&mut self) -> Zval {
        crate::logging::drain();
        let core = self.shared.lock().core().ok();
        let mut ht = ZendHashTable::new();
        if let Some(c) = core {
            for (addr, open, idle) in c.connection_counts() {
                let mut e = ZendHashTable::new();
                let _ = e.insert("open", long_zval(open as i64));
                let _ = e.insert("idle", long_zval(idle as i64));
                let _ = ht.insert(addr.as_str(), array_zval(e));
            }
        }
        array_zval(ht)
    }
}
