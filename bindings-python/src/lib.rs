//! `fae._fae`: the Python binding of libfae, kept thin over `fae-core`.
//!
//! This crate converts types and nothing else: keys (`str` → UTF-8, `bytes` as is, plus the
//! client's `key_prefix`), values (the serde layouts in `serde`), exptimes, and errors
//! (`error`, mapped once). Routing, pooling, retries and fork handling are the core's. Every
//! call that can touch a socket runs inside `py.detach`, so other Python threads run while
//! this one waits on memcached. The public Python API (names, defaults, return values) is
//! documented in `python/fae/_fae.pyi` and `bindings-python/README.md`.

mod arg;
mod error;
mod lease;
mod logging;
mod serde;
mod text;

use fae_core::lease::{GetOrSetError, Lease as CoreLease};
use fae_core::protocol::StoreOp;
use fae_core::values::KeyPrefix;
use fae_core::{Config, Op, SetItem, StoreOutcome};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::arg::{Num, opt};
use crate::error::{client_error, to_py};
use crate::lease::Lease;
use crate::serde::{EncodeOpts, Payload, Serde, str_text, utf8};
use crate::text::Utf8;
use fae_core::placement::rendezvous::python_bytes_repr;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// The buffer a single get copies its value into while the GIL is released, reused by the
    /// thread's next get (taken out and put back, so a get from inside a custom serializer
    /// just finds it empty): no allocation per get, and the allocator's code off a get's path.
    static VALUE_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A value buffer up to this size is kept for the thread's next get; a larger one is freed.
const VALUE_BUF_KEEP: usize = 64 * 1024;

/// memcached reads an exptime above 30 days as a unix time; one in the past expires the item
/// at once. Negative Python exptimes (Django's "expire now") are sent as this value.
const EXPIRED: u32 = 30 * 24 * 3600 + 1;

/// A key's wire bytes: a `bytes` key itself, a `str` key's UTF-8 (borrowed from the str, see
/// `text`), or bytes made here (with a `key_prefix`).
enum KeyBuf<'py> {
    Bytes(Bound<'py, PyBytes>),
    Text(Utf8<'py>),
    Owned(Vec<u8>),
}

impl KeyBuf<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            KeyBuf::Bytes(b) => b.as_bytes(),
            KeyBuf::Text(t) => t.as_bytes(),
            KeyBuf::Owned(v) => v,
        }
    }
}

/// One key's result of a multi-key read: its value is `values[start..end]` of that read.
enum Slot {
    Miss,
    Hit {
        start: usize,
        end: usize,
        flags: u32,
        cas: u64,
    },
    Failed(fae_core::Error),
}

/// A memcached client with libfae's router inside. See `fae/_fae.pyi`.
#[pyclass(frozen, module = "fae._fae", name = "Client", subclass)]
struct Client {
    inner: fae_core::Client,
    serde: Serde,
    /// `key_prefix`, hashed with the key as pymemcache and pylibmc do.
    key_prefix: KeyPrefix,
    encode: EncodeOpts,
    ignore_exc: bool,
    /// `mode="pymemcache"` with `servers=`: keys are placed as pymemcache's `HashClient`
    /// places them, by the key without `key_prefix`, a `bytes` key by its `repr` (see
    /// [`Client::place`]). Follows `reload`.
    pymemcache_place: AtomicBool,
    /// `on_get_error`: what `get` returns (or raises) when it fails, so that a compatibility
    /// layer keeps its own miss and exception rules without a Python frame on every hit.
    on_get_error: Option<Py<PyAny>>,
}

fn seconds_to_ms(py: Python<'_>, name: &str, v: Option<f64>) -> PyResult<Option<u64>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(((s * 1000.0).ceil() as u64).max(1))),
        Some(s) => Err(client_error(
            py,
            "invalid_config",
            format!("{name} must be a positive number of seconds, not {s}"),
        )),
    }
}

fn server_spec(item: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    if let Ok(s) = item.cast::<PyString>() {
        return Ok(str_text(s, "invalid_config")?.trim().into());
    }
    if let Ok(t) = item.cast::<PyTuple>() {
        // pymemcache's (host, port) and pylibmc's (host, port, weight) tuples.
        let bad = |_| {
            client_error(
                item.py(),
                "invalid_config",
                "a server tuple is (host: str, port: 0..65536[, weight: int])",
            )
        };
        if !(2..=3).contains(&t.len()) {
            return Err(client_error(
                item.py(),
                "invalid_config",
                format!("a server tuple has 2 or 3 items, not {}", t.len()),
            ));
        }
        let host: String = t.get_item(0)?.extract().map_err(bad)?;
        let port: u16 = t.get_item(1)?.extract().map_err(bad)?;
        let weight = match t.len() {
            3 => Some(t.get_item(2)?.extract::<u32>().map_err(bad)?),
            _ => None,
        };
        if host.starts_with('/') {
            // A Unix-domain socket ("/path", 0[, weight]): the port is only hashed.
            return Ok(serde_json::json!({
                "addr": host, "port": port, "weight": weight.unwrap_or(1)
            }));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        return Ok(match weight {
            None => format!("{host}:{port}"),
            Some(w) => format!("{host}:{port}:{w}"),
        }
        .into());
    }
    Err(client_error(
        item.py(),
        "invalid_config",
        format!(
            "a server is \"host:port[:weight]\", a socket path \"/path\" or (host, port[, weight]), not {}",
            item.get_type().name()?
        ),
    ))
}

/// The config part of the constructor's and `reload`'s arguments: exactly one source
/// (`servers` + pool options, `config` dict or `config_file`), then the overrides that apply to
/// any source. The one place a Python config becomes a core [`Config`].
struct ConfigArgs<'a, 'py> {
    servers: Option<&'a Bound<'py, PyAny>>,
    config: Option<&'a Bound<'py, PyAny>>,
    config_file: Option<&'a Bound<'py, PyAny>>,
    mode: Option<&'a str>,
    protocol: Option<&'a str>,
    max_connections: Option<usize>,
    binary_keys: Option<bool>,
    connect_timeout: Option<f64>,
    timeout: Option<f64>,
    max_value_size: Option<usize>,
}

impl ConfigArgs<'_, '_> {
    fn build(&self, py: Python<'_>) -> PyResult<Config> {
        let given = [
            self.servers.is_some(),
            self.config.is_some(),
            self.config_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(client_error(
                py,
                "invalid_config",
                "give exactly one of servers=, config= or config_file= \
                 (config={} is libfae's in-process cache, no server needed)",
            ));
        }
        let pool_opts = [
            ("mode", self.mode.is_some()),
            ("protocol", self.protocol.is_some()),
            ("max_connections", self.max_connections.is_some()),
            ("binary_keys", self.binary_keys.is_some()),
        ];
        let mut cfg = if let Some(list) = self.servers {
            let mut specs = Vec::new();
            if let Ok(s) = list.cast::<PyString>() {
                // Django's LOCATION style: "h1:p1;h2:p2" or "h1:p1,h2:p2".
                specs.extend(
                    str_text(s, "invalid_config")?
                        .split([',', ';'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(serde_json::Value::from),
                );
            } else {
                for item in list.try_iter()? {
                    specs.push(server_spec(&item?)?);
                }
            }
            let mut obj = serde_json::Map::new();
            obj.insert("servers".into(), specs.into());
            if let Some(m) = self.mode {
                obj.insert("mode".into(), m.into());
            }
            if let Some(p) = self.protocol {
                obj.insert("protocol".into(), p.into());
            }
            if let Some(n) = self.max_connections {
                obj.insert("max_connections".into(), n.into());
            }
            if let Some(b) = self.binary_keys {
                obj.insert("binary_keys".into(), b.into());
            }
            Config::from_value(serde_json::Value::Object(obj)).map_err(|e| to_py(py, &e))?
        } else {
            if let Some((name, _)) = pool_opts.iter().find(|(_, g)| *g) {
                return Err(client_error(
                    py,
                    "invalid_config",
                    format!("{name}= goes with servers=; with a config, set it in the pool"),
                ));
            }
            if let Some(c) = self.config {
                // json.dumps rejects cycles, and the core refuses nesting deeper than
                // `config::limits::MAX_DEPTH` before it parses (the limit of every config
                // document); far deeper, json.dumps itself runs out of Python stack first.
                let dumps = py.import("json")?.getattr("dumps")?;
                let text: String = dumps
                    .call1((c,))
                    .map_err(|e| {
                        let why = if e.is_instance_of::<pyo3::exceptions::PyRecursionError>(py) {
                            format!(
                                "config nests objects and arrays deeper than {} levels",
                                fae_core::config::limits::MAX_DEPTH
                            )
                        } else {
                            format!("config must be a JSON-like dict without cycles: {e}")
                        };
                        client_error(py, "invalid_config", why)
                    })?
                    .extract()
                    .map_err(|_| {
                        client_error(py, "invalid_config", "config must be a JSON-like dict")
                    })?;
                Config::from_json(&text).map_err(|e| to_py(py, &e))?
            } else {
                let path = self.config_file.expect("one source was given");
                let path: std::path::PathBuf = path.extract().map_err(|_| {
                    client_error(
                        py,
                        "invalid_config",
                        "config_file must be a str, bytes or os.PathLike the file system can encode",
                    )
                })?;
                py.detach(|| Config::from_file(&path))
                    .map_err(|e| to_py(py, &e))?
            }
        };
        if let Some(ms) = seconds_to_ms(py, "connect_timeout", self.connect_timeout)? {
            cfg.timeouts.connect_ms = ms;
        }
        if let Some(ms) = seconds_to_ms(py, "timeout", self.timeout)? {
            cfg.timeouts.io_ms = ms;
        }
        if let Some(n) = self.max_value_size {
            cfg.max_value_size = n;
        }
        Ok(cfg)
    }
}

fn exptime(py: Python<'_>, expire: Option<&Bound<'_, PyAny>>) -> PyResult<u32> {
    let Some(e) = expire else { return Ok(0) };
    if e.is_none() {
        return Ok(0);
    }
    let n: i64 = e.extract().map_err(|_| {
        client_error(
            py,
            "invalid_argument",
            format!("expire must be an int, not {}", type_name(e)),
        )
    })?;
    if n < 0 {
        return Ok(EXPIRED);
    }
    u32::try_from(n).map_err(|_| {
        client_error(
            py,
            "invalid_argument",
            format!("expire {n} does not fit memcached's 32-bit exptime"),
        )
    })
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn flags_arg(py: Python<'_>, flags: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u32>> {
    match flags {
        None => Ok(None),
        Some(f) if f.is_none() => Ok(None),
        Some(f) => f
            .extract::<u32>()
            .map(Some)
            .map_err(|_| client_error(py, "invalid_argument", "flags must be an int in 0..2**32")),
    }
}

/// Per-key placing keys: the given one, else the wire key.
fn placed<'a>(places: &'a [Option<Vec<u8>>], wire: &[&'a [u8]]) -> Vec<&'a [u8]> {
    places
        .iter()
        .zip(wire)
        .map(|(p, w)| p.as_deref().unwrap_or(w))
        .collect()
}

/// The one result of a one-key multi call.
/// gat/gats (`fetch` with `touch`), out of line: a plain get's code stays short (it spans
/// fewer instruction-cache lines, see `fae_core::Error::with_detail`).
#[inline(never)]
fn touched(
    inner: &fae_core::Client,
    kb: &[u8],
    place: Option<&[u8]>,
    cas: bool,
    ttl: u32,
) -> fae_core::Result<Option<fae_core::Item>> {
    match (cas, place) {
        (_, Some(pb)) => only(inner.get_multi_routed_opts(&[kb], &[pb], cas, Some(ttl))),
        (false, None) => inner.gat(kb, ttl),
        (true, None) => inner.gats(kb, ttl),
    }
}

fn only<T>(r: fae_core::Result<Vec<fae_core::Result<T>>>) -> fae_core::Result<T> {
    r?.pop().unwrap_or_else(|| {
        Err(fae_core::Error::with_detail(
            fae_core::Reason::Protocol,
            "a one-key call returned no result",
        ))
    })
}

impl Client {
    /// [`Client::place`] of every key; None when no key needs one.
    fn places(&self, keys: &[Bound<'_, PyAny>]) -> Option<Vec<Option<Vec<u8>>>> {
        if !self.pymemcache_place.load(Ordering::Relaxed) {
            return None;
        }
        let p: Vec<Option<Vec<u8>>> = keys.iter().map(|k| self.place(k)).collect();
        p.iter().any(Option::is_some).then_some(p)
    }

    /// The key that places `key` when it is not its wire key: in pymemcache placement, the key
    /// without `key_prefix`, and for `bytes` the `repr` pymemcache formats (the hash itself is
    /// the core's). None: the wire key places itself.
    fn place(&self, key: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
        if !self.pymemcache_place.load(Ordering::Relaxed) {
            return None;
        }
        if let Ok(b) = key.cast::<PyBytes>() {
            return Some(python_bytes_repr(b.as_bytes()));
        }
        let s = key.cast::<PyString>().ok()?;
        (!self.key_prefix.prefix().is_empty())
            .then(|| Utf8::new(s).map(|t| t.as_bytes().to_vec()))?
    }

    /// Leases and `get_or_set` place by the wire key only.
    fn unplaced(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.place(key).is_some() {
            return Err(client_error(
                key.py(),
                "invalid_argument",
                "leases and get_or_set are not available for bytes keys or with a key_prefix \
                 in pymemcache placement (they place by the stored key)",
            ));
        }
        Ok(())
    }

    fn key<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<KeyBuf<'py>> {
        let py = key.py();
        let buf = if let Ok(s) = key.cast::<PyString>() {
            match Utf8::new(s) {
                Some(t) => KeyBuf::Text(t),
                None => {
                    return Err(client_error(
                        py,
                        "invalid_key",
                        "key is a str that cannot be encoded as UTF-8 (lone surrogate)",
                    ));
                }
            }
        } else if let Ok(b) = key.cast::<PyBytes>() {
            KeyBuf::Bytes(b.clone())
        } else {
            return Err(client_error(
                py,
                "invalid_key",
                format!("key must be str or bytes, not {}", type_name(key)),
            ));
        };
        if self.key_prefix.prefix().is_empty() {
            return Ok(buf);
        }
        // pymemcache and pylibmc hash the prefixed key, so it places itself (no routing key).
        let (stored, _) = self.key_prefix.apply(buf.as_slice(), None).into_parts();
        Ok(KeyBuf::Owned(stored))
    }

    fn keys<'py>(
        &self,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<(Vec<Bound<'py, PyAny>>, Vec<KeyBuf<'py>>)> {
        let py = keys.py();
        if keys.is_instance_of::<PyString>() || keys.is_instance_of::<PyBytes>() {
            return Err(client_error(
                py,
                "invalid_argument",
                "keys must be an iterable of keys, not a single str or bytes",
            ));
        }
        // Sized up front for the usual list or tuple of keys.
        let n = match keys.cast::<PyList>() {
            Ok(l) => l.len(),
            Err(_) => keys.cast::<PyTuple>().map_or(0, |t| t.len()),
        };
        let mut objs = Vec::with_capacity(n);
        let mut bufs = Vec::with_capacity(n);
        for k in keys.try_iter()? {
            let k = k?;
            bufs.push(self.key(&k)?);
            objs.push(k);
        }
        Ok((objs, bufs))
    }

    fn value<'py>(
        &self,
        key: &[u8],
        value: &Bound<'py, PyAny>,
        flags: Option<u32>,
        min_compress_len: Option<usize>,
    ) -> PyResult<(Payload<'py>, u32)> {
        let mut opts = self.encode;
        if let Some(m) = min_compress_len {
            opts.min_compress_len = m;
        }
        let (p, f) = serde::encode(&self.serde, value.py(), key, value, opts)?;
        Ok((p, flags.unwrap_or(f)))
    }

    fn decode<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
        item: &fae_core::Item,
    ) -> PyResult<Bound<'py, PyAny>> {
        serde::decode(&self.serde, py, key, &item.value, item.flags)
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        py: Python<'_>,
        op: StoreOp,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        flags: Option<&Bound<'_, PyAny>>,
        min_compress_len: Option<usize>,
    ) -> PyResult<StoreOutcome> {
        let k = self.key(key)?;
        let exp = exptime(py, expire)?;
        let flags = flags_arg(py, flags)?;
        let (payload, f) = self.value(k.as_slice(), value, flags, min_compress_len)?;
        let (kb, vb) = (k.as_slice(), payload.as_slice());
        let place = self.place(key);
        let pb = place.as_deref().unwrap_or(kb);
        let inner = &self.inner;
        py.detach(|| inner.store_routed(pb, op, kb, vb, f, exp))
            .map_err(|e| to_py(py, &e))
    }

    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        cas: bool,
        touch: Option<u32>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, u64)>> {
        let k = self.key(key)?;
        let kb = k.as_slice();
        let inner = &self.inner;
        let place = self.place(key);
        let r = py.detach(|| match touch {
            // The value is copied out of the read buffer once, here; nothing else allocates.
            None => inner.get_with(kb, place.as_deref(), cas, |r| {
                r.map(|o| o.map(|it| it.to_item_in(VALUE_BUF.take())))
            }),
            Some(t) => touched(inner, kb, place.as_deref(), cas, t),
        });
        match r {
            Ok(Some(item)) => {
                let cas = item.cas;
                let v = self.decode(py, kb, &item);
                if item.value.capacity() <= VALUE_BUF_KEEP {
                    VALUE_BUF.set(item.value);
                }
                Ok(Some((v?, cas)))
            }
            Ok(None) => Ok(None),
            Err(e) if self.ignore_exc && e.should_failover() => Ok(None),
            Err(e) => Err(to_py(py, &e)),
        }
    }

    /// Read `keys` in one call (the GIL released once) and hand each hit to `hit` in key
    /// order: the key object passed in, the decoded value, the CAS token.
    fn fetch_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        cas: bool,
        mut hit: impl FnMut(Bound<'py, PyAny>, Bound<'py, PyAny>, u64) -> PyResult<()>,
    ) -> PyResult<()> {
        let (objs, bufs) = self.keys(keys)?;
        if bufs.is_empty() {
            return Ok(());
        }
        let slices: Vec<&[u8]> = bufs.iter().map(KeyBuf::as_slice).collect();
        let places = self.places(&objs);
        let server_keys = places.as_deref().map(|p| placed(p, &slices));
        let inner = &self.inner;
        // The core hands each hit's value from its read buffer while the GIL is released: the
        // values are copied into one buffer (no allocation per value), and become Python
        // objects once the call is back, in key order.
        let mut values: Vec<u8> = Vec::with_capacity(slices.len() * 128);
        let mut slots: Vec<Slot> = (0..slices.len()).map(|_| Slot::Miss).collect();
        py.detach(|| {
            inner.get_multi_each(&slices, server_keys.as_deref(), cas, None, &mut |i, r| {
                slots[i] = match r {
                    Ok(Some(it)) => {
                        let start = values.len();
                        values.extend_from_slice(it.value);
                        Slot::Hit {
                            start,
                            end: values.len(),
                            flags: it.flags,
                            cas: it.cas,
                        }
                    }
                    Ok(None) => Slot::Miss,
                    Err(e) => Slot::Failed(e),
                }
            })
        })
        .map_err(|e| to_py(py, &e))?;
        for ((obj, kb), slot) in objs.into_iter().zip(&slices).zip(slots) {
            match slot {
                Slot::Hit {
                    start,
                    end,
                    flags,
                    cas,
                } => {
                    let v = serde::decode(&self.serde, py, kb, &values[start..end], flags)?;
                    hit(obj, v, cas)?;
                }
                Slot::Miss => {}
                Slot::Failed(e) if self.ignore_exc && e.should_failover() => {}
                Slot::Failed(e) => return Err(to_py(py, &e)),
            }
        }
        Ok(())
    }

    fn arith(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        incr: bool,
    ) -> PyResult<Option<u64>> {
        let delta: u64 = value.extract().map_err(|_| {
            client_error(
                py,
                "invalid_argument",
                format!(
                    "delta must be an int in 0..2**64, not {}",
                    value.repr().map(|r| r.to_string()).unwrap_or_default()
                ),
            )
        })?;
        let k = self.key(key)?;
        let kb = k.as_slice();
        let place = self.place(key);
        let pb = place.as_deref().unwrap_or(kb);
        let inner = &self.inner;
        py.detach(|| inner.arith_routed(pb, kb, incr, delta))
            .map_err(|e| to_py(py, &e))
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        servers=None, *, config=None, config_file=None, mode=None, protocol=None, serde=None,
        key_prefix=None, connect_timeout=None, timeout=None, max_connections=None,
        max_value_size=None, binary_keys=None, min_compress_len=None, compress_level=Num(6),
        pickle_protocol=None, ignore_exc=false, on_get_error=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        servers: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
        config_file: Option<&Bound<'_, PyAny>>,
        mode: Option<&str>,
        protocol: Option<&str>,
        serde: Option<&Bound<'_, PyAny>>,
        key_prefix: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<Num<f64>>,
        timeout: Option<Num<f64>>,
        max_connections: Option<Num<usize>>,
        max_value_size: Option<Num<usize>>,
        binary_keys: Option<bool>,
        min_compress_len: Option<Num<usize>>,
        compress_level: Num<u32>,
        pickle_protocol: Option<Num<i32>>,
        ignore_exc: bool,
        on_get_error: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if let Some(h) = on_get_error.as_ref().filter(|h| !h.is_callable()) {
            let shown = h
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            return Err(client_error(
                py,
                "invalid_argument",
                format!("on_get_error must be callable, not {shown}"),
            ));
        }
        let cfg = ConfigArgs {
            servers,
            config,
            config_file,
            mode,
            protocol,
            max_connections: opt(max_connections),
            binary_keys,
            connect_timeout: opt(connect_timeout),
            timeout: opt(timeout),
            max_value_size: opt(max_value_size),
        }
        .build(py)?;
        let serde = match serde {
            None => Serde::Pymemcache,
            Some(s) => Serde::from_py(py, s)?,
        };
        let key_prefix = match key_prefix {
            None => Vec::new(),
            Some(p) if p.is_none() => Vec::new(),
            Some(p) => {
                if let Ok(b) = p.cast::<PyBytes>() {
                    b.as_bytes().to_vec()
                } else if let Ok(s) = p.cast::<PyString>() {
                    utf8(s, "invalid_argument")?.as_bytes().to_vec()
                } else {
                    return Err(client_error(
                        py,
                        "invalid_argument",
                        "key_prefix must be bytes or str",
                    ));
                }
            }
        };
        let encode = EncodeOpts {
            min_compress_len: opt(min_compress_len).unwrap_or(serde.default_min_compress_len()),
            compress_level: compress_level.0.min(9),
            // pickle.HIGHEST_PROTOCOL, like pymemcache's pickle_serde and pylibmc's default.
            pickle_protocol: opt(pickle_protocol).unwrap_or(-1),
        };
        logging::refresh(py);
        // Detached: building registers with the supervisor (a core lock), and a thread that
        // holds that lock may be waiting for the GIL to log.
        let inner = py
            .detach(|| fae_core::Client::new(&cfg))
            .map_err(|e| to_py(py, &e))?;
        Ok(Client {
            inner,
            serde,
            key_prefix: KeyPrefix::new(key_prefix, true),
            encode,
            ignore_exc,
            pymemcache_place: AtomicBool::new(servers.is_some() && mode == Some("pymemcache")),
            on_get_error: on_get_error.map(Bound::unbind),
        })
    }

    /// Every pool's servers (`host:port`; pools in name order, servers in config order);
    /// empty for the in-process cache (`config={}`).
    #[getter]
    fn servers(&self) -> Vec<String> {
        self.inner.servers()
    }

    /// The serde name (`"pymemcache"`, `"pylibmc"`, `"raw"`, `"interop"` or `"custom"`).
    #[getter]
    fn serde(&self) -> &'static str {
        self.serde.name()
    }

    /// The prefix added to every key.
    #[getter]
    fn key_prefix<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.key_prefix.prefix())
    }

    /// Has `close()` been called?
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Get a value; `default` on a miss. On a failure, `on_get_error(exc, key, default)` if the
    /// client has one.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.fetch(py, key, false, None) {
            Ok(Some((v, _))) => Ok(v),
            Ok(None) => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
            Err(e) => match &self.on_get_error {
                Some(h) => h.bind(py).call1((e.into_value(py), key, default)),
                None => Err(e),
            },
        }
    }

    /// `(value, cas)`; `(default, cas_default)` on a miss.
    #[pyo3(signature = (key, default=None, cas_default=None))]
    fn gets<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
        cas_default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        Ok(match self.fetch(py, key, true, None)? {
            Some((v, cas)) => (v, cas.into_pyobject(py)?.into_any()),
            None => (
                default.unwrap_or_else(|| py.None().into_bound(py)),
                cas_default.unwrap_or_else(|| py.None().into_bound(py)),
            ),
        })
    }

    /// Get a value and set its expiry (get-and-touch); `default` on a miss.
    #[pyo3(signature = (key, expire=None, default=None))]
    fn gat<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = exptime(py, expire)?;
        Ok(match self.fetch(py, key, false, Some(t))? {
            Some((v, _)) => v,
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        })
    }

    /// `(value, cas)` and set the expiry; `(default, cas_default)` on a miss.
    #[pyo3(signature = (key, expire=None, default=None, cas_default=None))]
    fn gats<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        default: Option<Bound<'py, PyAny>>,
        cas_default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let t = exptime(py, expire)?;
        Ok(match self.fetch(py, key, true, Some(t))? {
            Some((v, cas)) => (v, cas.into_pyobject(py)?.into_any()),
            None => (
                default.unwrap_or_else(|| py.None().into_bound(py)),
                cas_default.unwrap_or_else(|| py.None().into_bound(py)),
            ),
        })
    }

    /// `{key: value}` for the keys that hit, keyed by the objects passed in.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        self.fetch_many(py, keys, false, |k, v, _| d.set_item(k, v))?;
        Ok(d)
    }

    /// Alias of `get_many` (pylibmc, python-memcached, Django).
    fn get_multi<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.get_many(py, keys)
    }

    /// `{key: (value, cas)}` for the keys that hit.
    fn gets_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        self.fetch_many(py, keys, true, |k, v, cas| d.set_item(k, (v, cas)))?;
        Ok(d)
    }

    /// Store unconditionally. Returns True.
    #[pyo3(signature = (key, value, expire=None, noreply=None, flags=None, min_compress_len=None))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'_, PyAny>>,
        min_compress_len: Option<Num<usize>>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let r = self.store(
            py,
            StoreOp::Set,
            key,
            value,
            expire,
            flags,
            opt(min_compress_len),
        )?;
        Ok(r == StoreOutcome::Stored)
    }

    /// Store many; returns the keys that were not stored.
    #[pyo3(signature = (values, expire=None, noreply=None, flags=None, min_compress_len=None))]
    fn set_many<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'py, PyAny>>,
        min_compress_len: Option<Num<usize>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let _ = noreply;
        let exp = exptime(py, expire)?;
        let flags = flags_arg(py, flags)?;
        let pairs = if let Ok(d) = values.cast::<PyDict>() {
            d.items().into_any()
        } else {
            values.clone()
        };
        let mut objs = Vec::new();
        let mut keys = Vec::new();
        let mut payloads = Vec::new();
        for pair in pairs.try_iter()? {
            let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair?.extract().map_err(|_| {
                client_error(
                    py,
                    "invalid_argument",
                    "values must be a dict or (key, value) pairs",
                )
            })?;
            let kb = self.key(&k)?;
            payloads.push(self.value(kb.as_slice(), &v, flags, opt(min_compress_len))?);
            keys.push(kb);
            objs.push(k);
        }
        let failed = PyList::empty(py);
        if keys.is_empty() {
            return Ok(failed);
        }
        let items: Vec<SetItem<'_>> = keys
            .iter()
            .zip(&payloads)
            .map(|(k, (p, f))| SetItem {
                key: k.as_slice(),
                value: p.as_slice(),
                flags: *f,
                exptime: exp,
            })
            .collect();
        let places = self.places(&objs);
        let slices: Vec<&[u8]> = keys.iter().map(KeyBuf::as_slice).collect();
        let server_keys = places.as_deref().map(|p| placed(p, &slices));
        let inner = &self.inner;
        let results = py
            .detach(|| match &server_keys {
                None => inner.set_multi(&items),
                Some(p) => inner.set_multi_routed(&items, p),
            })
            .map_err(|e| to_py(py, &e))?;
        for (obj, r) in objs.into_iter().zip(results) {
            if !matches!(r, Ok(StoreOutcome::Stored)) {
                failed.append(obj)?;
            }
        }
        Ok(failed)
    }

    /// Alias of `set_many`.
    #[pyo3(signature = (values, expire=None, noreply=None, flags=None, min_compress_len=None))]
    fn set_multi<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'py, PyAny>>,
        min_compress_len: Option<Num<usize>>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.set_many(py, values, expire, noreply, flags, min_compress_len)
    }

    /// Store only if the key is absent. True if stored.
    #[pyo3(signature = (key, value, expire=None, noreply=None, flags=None, min_compress_len=None))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'_, PyAny>>,
        min_compress_len: Option<Num<usize>>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let r = self.store(
            py,
            StoreOp::Add,
            key,
            value,
            expire,
            flags,
            opt(min_compress_len),
        )?;
        Ok(r == StoreOutcome::Stored)
    }

    /// Store only if the key exists. True if stored.
    #[pyo3(signature = (key, value, expire=None, noreply=None, flags=None, min_compress_len=None))]
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'_, PyAny>>,
        min_compress_len: Option<Num<usize>>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let r = self.store(
            py,
            StoreOp::Replace,
            key,
            value,
            expire,
            flags,
            opt(min_compress_len),
        )?;
        Ok(r == StoreOutcome::Stored)
    }

    /// Append raw bytes (or UTF-8 text) to an existing value. True if stored.
    #[pyo3(signature = (key, value, expire=None, noreply=None, flags=None))]
    fn append(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (noreply, expire, flags);
        self.concat(py, key, value, true)
    }

    /// Prepend raw bytes (or UTF-8 text) to an existing value. True if stored.
    #[pyo3(signature = (key, value, expire=None, noreply=None, flags=None))]
    fn prepend(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
        flags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (noreply, expire, flags);
        self.concat(py, key, value, false)
    }

    /// Compare and swap: True stored, False the item changed (EXISTS), None it is gone.
    #[pyo3(signature = (key, value, cas, expire=None, noreply=false, flags=None))]
    #[allow(clippy::too_many_arguments)]
    fn cas<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        cas: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
        noreply: bool,
        flags: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<bool>> {
        let _ = noreply;
        // pymemcache hands out CAS tokens as bytes; pylibmc and fae as int. Take both.
        let token: u64 = if let Ok(n) = cas.extract::<u64>() {
            n
        } else if let Some(n) = cas
            .cast::<PyBytes>()
            .ok()
            .and_then(|b| std::str::from_utf8(b.as_bytes()).ok()?.parse().ok())
        {
            n
        } else {
            return Err(client_error(
                py,
                "invalid_argument",
                "cas must be the int (or decimal bytes) token from gets()",
            ));
        };
        let r = self.store(py, StoreOp::Cas(token), key, value, expire, flags, None)?;
        Ok(match r {
            StoreOutcome::Stored => Some(true),
            StoreOutcome::Exists | StoreOutcome::NotStored => Some(false),
            StoreOutcome::NotFound => None,
        })
    }

    /// Delete a key. True if it existed.
    #[pyo3(signature = (key, noreply=None))]
    fn delete(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let k = self.key(key)?;
        let kb = k.as_slice();
        let place = self.place(key);
        let pb = place.as_deref().unwrap_or(kb);
        let inner = &self.inner;
        py.detach(|| inner.delete_routed(pb, kb))
            .map_err(|e| to_py(py, &e))
    }

    /// Delete many keys (pipelined per server). Returns True.
    #[pyo3(signature = (keys, noreply=None))]
    fn delete_many(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let (objs, bufs) = self.keys(keys)?;
        if bufs.is_empty() {
            return Ok(true);
        }
        let slices: Vec<&[u8]> = bufs.iter().map(KeyBuf::as_slice).collect();
        let places = self.places(&objs);
        let inner = &self.inner;
        let results = py
            .detach(|| match &places {
                None => inner.delete_multi(&slices),
                Some(p) => inner.delete_multi_routed(&slices, &placed(p, &slices)),
            })
            .map_err(|e| to_py(py, &e))?;
        if !self.ignore_exc
            && let Some(Err(e)) = results.into_iter().find(Result::is_err)
        {
            return Err(to_py(py, &e));
        }
        Ok(true)
    }

    /// Alias of `delete_many`.
    #[pyo3(signature = (keys, noreply=None))]
    fn delete_multi(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        self.delete_many(py, keys, noreply)
    }

    /// Increment; the new value, or None if the key is missing.
    #[pyo3(signature = (key, value=None, noreply=false))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        noreply: bool,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        let one = 1u64.into_pyobject(py)?.into_any();
        self.arith(py, key, value.unwrap_or(&one), true)
    }

    /// Decrement (stops at 0); the new value, or None if the key is missing.
    #[pyo3(signature = (key, value=None, noreply=false))]
    fn decr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        noreply: bool,
    ) -> PyResult<Option<u64>> {
        let _ = noreply;
        let one = 1u64.into_pyobject(py)?.into_any();
        self.arith(py, key, value.unwrap_or(&one), false)
    }

    /// Set a key's expiry. True if the key exists.
    #[pyo3(signature = (key, expire=None, noreply=None))]
    fn touch(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
        noreply: Option<bool>,
    ) -> PyResult<bool> {
        let _ = noreply;
        let t = exptime(py, expire)?;
        let k = self.key(key)?;
        let kb = k.as_slice();
        let place = self.place(key);
        let pb = place.as_deref().unwrap_or(kb);
        let inner = &self.inner;
        py.detach(|| inner.touch_routed(pb, kb, t))
            .map_err(|e| to_py(py, &e))
    }

    // Stampede protection: the core's leases and get_or_set, converted. No lease, retry or
    // coalescing logic lives here (see `fae_core::lease`).

    /// A lease read (meta `mg <key> … N`): a `fae.Lease` whose `status` says what to do —
    /// `hit` serve `value`; `refresh` serve the stale `value`, compute, `set_with_lease` with
    /// `token`; `stale` serve `value` (someone else refreshes it); `miss` compute and
    /// `set_with_lease` with `token`; `wait` someone else is filling, read again shortly.
    fn get_or_lease(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Lease> {
        self.unplaced(key)?;
        let k = self.key(key)?;
        let kb = k.as_slice();
        let inner = &self.inner;
        let lease = py
            .detach(|| inner.get_or_lease(kb))
            .map_err(|e| to_py(py, &e))?;
        let (status, token) = (lease.status(), lease.token());
        let item = match lease {
            CoreLease::Hit(i) | CoreLease::Stale(i) | CoreLease::Refresh { item: i, .. } => Some(i),
            CoreLease::Miss { .. } | CoreLease::Wait => None,
        };
        let stale = item.as_ref().is_some_and(|i| i.stale);
        let value = match item {
            Some(i) => self.decode(py, kb, &i)?.unbind(),
            None => py.None(),
        };
        Ok(Lease::new(status, value, token, stale))
    }

    /// Fill a key with the token of `get_or_lease` (value encoded like `set`). True stored;
    /// False a delete, set or invalidate happened since the lease (the newer state wins).
    /// Token 0 (no lease could be had) stores with `add`.
    #[pyo3(signature = (key, value, token, expire=None))]
    fn set_with_lease(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        token: &Bound<'_, PyAny>,
        expire: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let token: u64 = token.extract().map_err(|_| {
            client_error(
                py,
                "invalid_argument",
                format!(
                    "token must be the int Lease.token of a \"miss\" or \"refresh\" lease, not {}",
                    type_name(token)
                ),
            )
        })?;
        self.unplaced(key)?;
        let k = self.key(key)?;
        let exp = exptime(py, expire)?;
        let (payload, f) = self.value(k.as_slice(), value, None, None)?;
        let (kb, vb) = (k.as_slice(), payload.as_slice());
        let inner = &self.inner;
        py.detach(|| inner.set_with_lease(kb, vb, f, exp, token))
            .map_err(|e| to_py(py, &e))
    }

    /// Invalidate instead of delete (meta `md <key> I T<stale_ttl>`): the value stays, marked
    /// stale, for `stale_ttl` more seconds (0: its current TTL); lease readers get it as
    /// `refresh` (the first) or `stale`, plain reads see a miss, outstanding fills fail. True
    /// if the key was there. On a text-protocol pool this is a delete.
    #[pyo3(signature = (key, stale_ttl=None))]
    fn invalidate(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        stale_ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let ttl = match stale_ttl {
            Some(t) if !t.is_none() => t.extract::<u32>().map_err(|_| {
                client_error(
                    py,
                    "invalid_argument",
                    "stale_ttl must be an int of seconds in 0..2**32",
                )
            })?,
            _ => 0,
        };
        self.unplaced(key)?;
        let k = self.key(key)?;
        let kb = k.as_slice();
        let inner = &self.inner;
        py.detach(|| inner.invalidate(kb, ttl))
            .map_err(|e| to_py(py, &e))
    }

    /// Read-through with stampede protection: the value of `key`, or `fn()`'s, stored with
    /// `expire` — `fn` runs once per expiry across the threads and processes sharing the
    /// servers. `fn` takes no arguments (as Django's callable default); its value is encoded
    /// like `set`'s and returned decoded like `get`'s. Waiting callers hold no GIL; `fn` runs
    /// on the calling thread with the GIL, and its exception propagates as raised. A bad key
    /// or a closed client raises `fae.ClientError` before `fn` is called.
    #[pyo3(signature = (key, r#fn, expire=None))]
    fn get_or_set<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        r#fn: &Bound<'py, PyAny>,
        expire: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.unplaced(key)?;
        let k = self.key(key)?;
        let exp = exptime(py, expire)?;
        if !r#fn.is_callable() {
            return Err(client_error(
                py,
                "invalid_argument",
                format!(
                    "fn must be a callable taking no arguments, not {}",
                    type_name(r#fn)
                ),
            ));
        }
        let kb = k.as_slice();
        let compute = r#fn.as_unbound();
        let inner = &self.inner;
        let r = py.detach(|| {
            inner.get_or_set(kb, exp, || {
                // The core calls this on this thread, only when this caller must compute;
                // every caller waiting for it waits with the GIL released.
                Python::attach(|py| {
                    let v = compute.bind(py).call0()?;
                    let (payload, f) = self.value(kb, &v, None, None)?;
                    Ok::<_, PyErr>((payload.into_vec(), f))
                })
            })
        });
        match r {
            Ok(item) => self.decode(py, kb, &item),
            Err(GetOrSetError::Cache(e)) => Err(to_py(py, &e)),
            // `fn`'s own exception (or the serde's), as raised.
            Err(GetOrSetError::Compute(e)) => Err(e),
        }
    }

    /// `flush_all` on every server. Returns True.
    #[pyo3(signature = (delay=Num(0), noreply=None))]
    fn flush_all(&self, py: Python<'_>, delay: Num<u32>, noreply: Option<bool>) -> PyResult<bool> {
        let _ = noreply;
        let delay = delay.0;
        let inner = &self.inner;
        py.detach(|| inner.flush_all(delay))
            .map_err(|e| to_py(py, &e))?;
        Ok(true)
    }

    /// `{server: version string}`.
    fn version<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        let all = py.detach(|| inner.version()).map_err(|e| to_py(py, &e))?;
        let d = PyDict::new(py);
        for (addr, r) in all {
            match r {
                Ok(v) => d.set_item(addr, v)?,
                Err(_) if self.ignore_exc => {}
                Err(e) => return Err(to_py(py, &e)),
            }
        }
        Ok(d)
    }

    /// memcached's `stats [args]`: `{server: {name: value}}`, values as int or float when
    /// they parse as one, else str.
    #[pyo3(signature = (*args))]
    fn stats<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut words = Vec::with_capacity(args.len());
        for a in args.iter() {
            let s = a
                .cast::<PyString>()
                .map_err(|_| client_error(py, "invalid_argument", "stats arguments are str"))?;
            words.push(str_text(s, "invalid_argument")?.into_owned());
        }
        let line = words.join(" ");
        let inner = &self.inner;
        let all = py
            .detach(|| inner.server_stats(&line))
            .map_err(|e| to_py(py, &e))?;
        let d = PyDict::new(py);
        for (addr, r) in all {
            match r {
                Ok(kv) => {
                    let s = PyDict::new(py);
                    for (k, v) in kv {
                        if let Ok(n) = v.parse::<i64>() {
                            s.set_item(k, n)?;
                        } else if let Some(x) = v.parse::<f64>().ok().filter(|_| v.contains('.')) {
                            s.set_item(k, x)?;
                        } else {
                            s.set_item(k, v)?;
                        }
                    }
                    d.set_item(addr, s)?;
                }
                Err(_) if self.ignore_exc => {}
                Err(e) => return Err(to_py(py, &e)),
            }
        }
        Ok(d)
    }

    /// libfae's own per-server view (breaker state, connections, counters, errors by reason):
    /// `{server: {...}}`, the `destinations` part of `client_stats()`.
    fn server_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let snapshot = self.inner.stats();
        let dests = snapshot
            .get("destinations")
            .cloned()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        json_to_py(py, &dests)
    }

    /// The client's whole stats snapshot (pools, destinations, routes, process, supervisor) as
    /// a dict; the same JSON every binding and the CLI expose. `routes` holds the route tree's
    /// counters by config path (`"route"`, `"route.children[1]"` …).
    fn client_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inner.stats())
    }

    /// Every destination a request of `op` for `key` could touch, without I/O: `host:port`
    /// per server, `local` for an in-process cache; for a failover every child, for a shadowed
    /// key the shadow too, for a replicated route every replica (`op`: get, set, delete, incr,
    /// touch …).
    #[pyo3(signature = (key, op=None))]
    fn route_for(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        op: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<String>> {
        let name = match op {
            None => "get".into(),
            Some(o) => match o.cast::<PyString>() {
                Ok(s) => str_text(s, "invalid_argument")?,
                Err(_) => {
                    return Err(client_error(py, "invalid_argument", "op must be a str"));
                }
            },
        };
        let op = Op::from_name(&name).ok_or_else(|| {
            client_error(
                py,
                "invalid_argument",
                format!("unknown operation {name:?}"),
            )
        })?;
        let k = self.key(key)?;
        // A pymemcache-placed client is one pool: its route is the placing key's server.
        let place = self.place(key);
        self.inner
            .route_for(op, place.as_deref().unwrap_or(k.as_slice()))
            .map_err(|e| to_py(py, &e))
    }

    /// For every pool placed by virtual buckets that a request of `op` for `key` reaches: a dict
    /// with `pool`, `bucket`, `version` and `server` (`host:port`), plus `phase` and `to` while
    /// the bucket is on the move. Without I/O.
    #[pyo3(signature = (key, op=None))]
    fn bucket_for<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        op: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let name = match op {
            None => "get".into(),
            Some(o) => match o.cast::<PyString>() {
                Ok(s) => str_text(s, "invalid_argument")?,
                Err(_) => {
                    return Err(client_error(py, "invalid_argument", "op must be a str"));
                }
            },
        };
        let op = Op::from_name(&name).ok_or_else(|| {
            client_error(
                py,
                "invalid_argument",
                format!("unknown operation {name:?}"),
            )
        })?;
        let k = self.key(key)?;
        let place = self.place(key);
        let routes = self
            .inner
            .bucket_route(op, place.as_deref().unwrap_or(k.as_slice()))
            .map_err(|e| to_py(py, &e))?;
        routes
            .into_iter()
            .map(|(pool, b)| {
                let d = PyDict::new(py);
                d.set_item("pool", pool)?;
                d.set_item("bucket", b.bucket)?;
                d.set_item("version", b.version)?;
                d.set_item("server", &b.server_addr)?;
                if let (Some(m), Some(to)) = (&b.moving, &b.to_addr) {
                    d.set_item("phase", m.phase.as_str())?;
                    d.set_item("to", to)?;
                }
                Ok(d)
            })
            .collect()
    }

    /// Replace the configuration (servers, placement, timeouts, health settings …) while
    /// requests keep flowing. Takes the config part of the constructor's arguments: exactly one
    /// of `config` (a dict), `config_file` (read once here) or `servers` (with `mode`,
    /// `protocol`, `max_connections`, `binary_keys`), and the `connect_timeout`, `timeout` and
    /// `max_value_size` overrides. The new config replaces the whole old one: constructor
    /// overrides are not carried over. `serde`, `key_prefix` and the other client options stay.
    ///
    /// The core builds the new route off to the side and swaps it in atomically (the GIL is
    /// released meanwhile); requests in flight finish on the old one, and servers whose
    /// address and settings are unchanged keep their connections and breaker state. A bad
    /// config raises `fae.ClientError` (reason `invalid_config`) and the old one stays in
    /// force. `client_stats()["process"]` counts `config_version`, `reloads` and
    /// `reload_failures`.
    #[pyo3(signature = (
        config=None, *, config_file=None, servers=None, mode=None, protocol=None,
        connect_timeout=None, timeout=None, max_connections=None, max_value_size=None,
        binary_keys=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn reload(
        &self,
        py: Python<'_>,
        config: Option<&Bound<'_, PyAny>>,
        config_file: Option<&Bound<'_, PyAny>>,
        servers: Option<&Bound<'_, PyAny>>,
        mode: Option<&str>,
        protocol: Option<&str>,
        connect_timeout: Option<Num<f64>>,
        timeout: Option<Num<f64>>,
        max_connections: Option<Num<usize>>,
        max_value_size: Option<Num<usize>>,
        binary_keys: Option<bool>,
    ) -> PyResult<()> {
        let cfg = ConfigArgs {
            servers,
            config,
            config_file,
            mode,
            protocol,
            max_connections: opt(max_connections),
            binary_keys,
            connect_timeout: opt(connect_timeout),
            timeout: opt(timeout),
            max_value_size: opt(max_value_size),
        }
        .build(py)?;
        // The reload's own record (`reload=ok ...`) should see a level set just before.
        logging::refresh(py);
        let inner = &self.inner;
        py.detach(|| inner.reload(&cfg))
            .map_err(|e| to_py(py, &e))?;
        let pymemcache = servers.is_some() && mode == Some("pymemcache");
        self.pymemcache_place.store(pymemcache, Ordering::Relaxed);
        Ok(())
    }

    /// Close idle connections now; the client stays usable (pymemcache/pylibmc
    /// `disconnect_all`).
    fn disconnect_all(&self) {
        self.inner.disconnect_idle();
    }

    /// Alias of `disconnect_all` (pymemcache `quit`).
    fn quit(&self) {
        self.inner.disconnect_idle();
    }

    /// Close the client: its connections are closed and later calls raise `fae.ClientError`
    /// (reason `closed`). Idempotent.
    fn close(&self) {
        self.inner.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.inner.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "fae.Client(servers={:?}, serde={:?}{})",
            self.inner.servers(),
            self.serde.name(),
            if self.inner.is_closed() {
                ", closed"
            } else {
                ""
            }
        )
    }
}

impl Client {
    fn concat(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        append: bool,
    ) -> PyResult<bool> {
        // append/prepend splice bytes onto the stored value, whatever its layout: only bytes
        // or text make sense, and they are never serialized or compressed.
        let data: Vec<u8> = if let Ok(b) = value.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else if let Ok(s) = value.cast::<PyString>() {
            utf8(s, "invalid_value")?.as_bytes().to_vec()
        } else {
            return Err(client_error(
                py,
                "invalid_value",
                format!("append/prepend take bytes or str, not {}", type_name(value)),
            ));
        };
        let k = self.key(key)?;
        let kb = k.as_slice();
        let place = self.place(key);
        let pb = place.as_deref().unwrap_or(kb);
        let op = if append {
            StoreOp::Append
        } else {
            StoreOp::Prepend
        };
        let inner = &self.inner;
        py.detach(|| inner.store_routed(pb, op, kb, &data, 0, 0))
            .map(|r| r == StoreOutcome::Stored)
            .map_err(|e| to_py(py, &e))
    }
}

fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let loads = py.import("json")?.getattr("loads")?;
    loads.call1((v.to_string(),))
}

/// The core's process generation (0 in the process that loaded libfae, +1 per fork since).
#[pyfunction]
fn _fork_generation() -> u64 {
    fae_core::process::fork::generation()
}

/// Called by `os.register_at_fork(after_in_child=...)`. `os.fork()` runs the core's
/// `pthread_atfork` handler, which starts a new generation so that the child's first request
/// drops the inherited sockets; this hook makes sure the handler is installed in the child
/// for its own later forks (it is otherwise installed when the first client is built).
#[pyfunction]
fn _after_fork_in_child() {
    fae_core::process::fork::install();
}

/// The libfae version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule(name = "_fae")]
fn fae_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Lease>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(_fork_generation, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(logging::_logging_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(logging::_logging_refresh, m)?)?;
    // The core's log records go to logging.getLogger("fae"); no thread is started.
    logging::install(m.py());
    Ok(())
}
