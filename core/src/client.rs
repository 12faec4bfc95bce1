//! The client facade: every memcached command, single and multi-key, thread-safe.
//!
//! One `Client` per process is the intended use; it is `Send + Sync` and every method takes
//! `&self`. A call checks its keys and values (before any I/O), makes the request's context
//! ([`Cx`]: one deadline, `timeouts.io_ms` from now) and hands both to the route tree built
//! from the config ([`crate::route`]); every route of the tree, its failovers and retries
//! included, shares that deadline. The pools at its leaves do the I/O on the caller's thread:
//! a single-key command checks out a pooled connection to the key's server, writes, and reads
//! the reply by the deadline. A multi-key command
//! groups keys by server, writes one pipelined batch per server and drives all those
//! connections at once with `poll(2)`, under one deadline: a slow or dead server delays only
//! its own keys, and its keys come back as per-key errors next to the other servers' results.
//!
//! Outcomes are values, not errors: a miss is `Ok(None)`, an `add` on an existing key is
//! `Ok(StoreOutcome::NotStored)`. Errors are [`Error`]s with a stable [`Reason`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::coalesce::Role;
use crate::config::Config;
use crate::error::{Error, Reason, Result};
use crate::export::Exporter;
use crate::item::{Item, ItemRef, OnItem};
use crate::lease::{self, Computed, GetOrSetError, Lease, Stampede};
pub use crate::op::{Cx, GetOpts, Key, Op, SetItem, StoreOutcome, Write};
use crate::op::{found, unexpected};
use crate::placement::Placement;
use crate::pool::health::{BreakerState, now_ms};
use crate::process::fork;
use crate::process::supervisor::{self, Maintain};
use crate::protocol::{Request, Response, Status, StoreOp};
use crate::route::{Router, builder};
use crate::stats::inc;

fn arith_value(resp: Response) -> Result<Option<u64>> {
    match resp {
        Response::Number(n) => Ok(Some(n)),
        Response::Value(v) => std::str::from_utf8(&v.data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::with_detail(Reason::Protocol, "arithmetic reply is not a number")
            }),
        Response::Status {
            status: Status::NotFound | Status::Miss,
            ..
        } => Ok(None),
        other => Err(unexpected(&other)),
    }
}

/// The single result of a one-key call (a reply list that lost it is a protocol error).
fn only<T>(mut results: Vec<Result<T>>) -> Result<T> {
    results
        .pop()
        .unwrap_or_else(|| Err(Error::new(Reason::Protocol)))
}

/// A memcached client with compatible placement, pooled connections and a route tree.
#[derive(Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// The route a request runs on, counted as in flight until dropped.
struct Active<'a> {
    inner: &'a Inner,
    route: arc_swap::Guard<Arc<Router>>,
}

impl std::ops::Deref for Active<'_> {
    type Target = Router;
    fn deref(&self) -> &Router {
        &self.route
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a client shares with the supervisor: the current route, swapped atomically on reload,
/// and everything that outlives a reload.
#[derive(Debug)]
struct Inner {
    route: ArcSwap<Router>,
    closed: AtomicBool,
    /// Requests between `Client::route` and their end (graceful close waits for them).
    in_flight: AtomicUsize,
    background: bool,
    exporter: Option<Exporter>,
    /// The config file to watch (`Config::from_file`), its last seen (mtime, size) stamp.
    source: Option<PathBuf>,
    source_stamp: AtomicU64,
    watch_ms: u64,
    last_watch_ms: AtomicU64,
    config_version: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// The config the route was built from, before the topology snapshot is applied.
    base: ArcSwap<Config>,
    /// One reload at a time ([`Inner::rebuild`]). A flag a forked child takes over, not a
    /// mutex: a fork() while another thread was reloading left a mutex locked in the child for
    /// good, and every later reload there failed.
    reloading: fork::TryFlag,
    /// (inode, mtime, size) stamp of the topology snapshot last applied.
    topology_stamp: AtomicU64,
    /// Coalescing tables and lease counters.
    stampede: Stampede,
    /// Idle `stats` connections ([`Client::server_stats`]), per process.
    admin: fork::PerProcess<AdminConns>,
}

/// A stamp that changes when a file is rewritten or replaced: mtime in ns, size and inode (an
/// atomic rename gives a new inode even within one mtime tick).
fn file_stamp(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as u64;
    Some(mtime ^ m.len().rotate_left(32) ^ m.ino().rotate_left(17))
}

/// The reload flag, held until dropped (on every path out of a reload, panics included).
struct Reloading<'a>(&'a fork::TryFlag);

impl<'a> Reloading<'a> {
    /// Take `flag`, waiting up to `limit` for the reload that holds it.
    fn take(flag: &'a fork::TryFlag, limit: Duration) -> Option<Reloading<'a>> {
        let until = Instant::now() + limit;
        while !flag.try_take() {
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(Reloading(flag))
    }
}

impl Drop for Reloading<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// `base` with the server lists of its topology snapshot applied (`discovery.file`). A missing
/// snapshot is only acceptable at client creation (`missing_ok`): later it would silently
/// revert the pools to their bootstrap lists.
fn effective_config(base: &Config, missing_ok: bool) -> Result<Config> {
    let Some(path) = &base.discovery.file else {
        return Ok(base.clone());
    };
    if missing_ok && !path.exists() {
        log::warn!(target: "fae", "discovery.file={} missing; using the config's server lists", path.display());
        return Ok(base.clone());
    }
    let topology = crate::discovery::Topology::read(path)
        .map_err(|e| Error::with_detail(Reason::InvalidConfig, format!("discovery.file: {e}")))?;
    base.with_topology(&topology)
}

/// A client never goes back to an older bucket map: `new` is refused when one of its pools has
/// a map with a lower version than the route in use (`old`), or a different map under the
/// same version (two writers, or an edit that forgot the version).
fn check_bucket_versions(old: &Router, new: &Router) -> Result<()> {
    for (name, p) in &new.pools {
        let (Some(n), Some(o)) = (
            p.bucket_map(),
            old.pools.get(name).and_then(|p| p.bucket_map()),
        ) else {
            continue;
        };
        let (nv, ov) = (n.version(), o.version());
        let why = if nv < ov {
            format!(
                "version {nv} is older than version {ov} in use; a client never goes back to an older map"
            )
        } else if nv == ov && n != o {
            format!(
                "the map differs from the one in use under the same version {nv}; a changed map needs a higher version"
            )
        } else {
            continue;
        };
        return Err(Error::with_detail(
            Reason::InvalidConfig,
            format!("pools.{name}.buckets.{why}"),
        ));
    }
    Ok(())
}

impl Inner {
    fn reload(&self, config: &Config) -> Result<()> {
        self.rebuild(Some(config))
    }

    /// Build a route from `new_base` (or the current base, when the topology changed) and swap
    /// it in; on any error the old route stays and the failure is counted.
    fn rebuild(&self, new_base: Option<&Config>) -> Result<()> {
        let Some(_reloading) = Reloading::take(&self.reloading, Duration::from_secs(2)) else {
            inc(&self.reload_failures);
            return Err(Error::with_detail(
                Reason::InvalidConfig,
                "another reload is still running",
            ));
        };
        let base = self.base.load_full();
        let old = self.route.load_full();
        let built = effective_config(new_base.unwrap_or(&base), false)
            .and_then(|effective| builder::build(&effective, Some(&old), None))
            .and_then(|route| check_bucket_versions(&old, &route).map(|()| route));
        let outcome = match built {
            Ok(route) => {
                let kept = route
                    .dests
                    .iter()
                    .filter(|d| old.dests.iter().any(|o| Arc::ptr_eq(o, d)))
                    .count();
                self.route.store(Arc::new(route));
                // Keys may live elsewhere now: no read begun before joins one after.
                self.stampede.flights.wrote_all();
                if let Some(nb) = new_base {
                    self.base.store(Arc::new(nb.clone()));
                }
                inc(&self.reloads);
                Ok((self.config_version.fetch_add(1, Ordering::AcqRel) + 1, kept))
            }
            Err(e) => {
                inc(&self.reload_failures);
                Err(e)
            }
        };
        // Log after the flag is given back: a logger may take locks of its own (the GIL).
        drop(_reloading);
        match outcome {
            Ok((v, kept)) => {
                log::info!(target: "fae", "reload=ok config_version={v} destinations_kept={kept}");
                Ok(())
            }
            Err(e) => {
                log::warn!(
                    target: "fae",
                    "reload=failed reason={} detail=\"{}\"; the old config stays in force",
                    e.reason(),
                    e.detail().unwrap_or("")
                );
                Err(e)
            }
        }
    }

    /// Re-apply the topology snapshot when it changed (checked with the config file).
    fn watch_topology(&self) {
        let Some(path) = self.base.load().discovery.file.clone() else {
            return;
        };
        let Some(stamp) = file_stamp(&path) else {
            return;
        };
        if self.topology_stamp.swap(stamp, Ordering::AcqRel) != stamp {
            let _ = self.rebuild(None);
        }
    }

    /// Reload from the watched config file, and re-apply the topology snapshot, when they
    /// changed (checked every `watch_ms`).
    fn watch_source(&self) {
        if self.watch_ms == 0 {
            return;
        }
        let now = now_ms();
        if now.saturating_sub(self.last_watch_ms.load(Ordering::Relaxed)) < self.watch_ms {
            return;
        }
        self.last_watch_ms.store(now, Ordering::Relaxed);
        self.watch_topology();
        let Some(path) = &self.source else { return };
        let Some(stamp) = file_stamp(path) else {
            return;
        };
        if self.source_stamp.swap(stamp, Ordering::AcqRel) == stamp {
            return;
        }
        match Config::from_file(path) {
            Ok(c) => {
                let _ = self.reload(&c);
            }
            Err(e) => {
                inc(&self.reload_failures);
                log::warn!(
                    target: "fae",
                    "reload=failed source={} detail=\"{}\"; the old config stays in force",
                    path.display(),
                    e.detail().unwrap_or("")
                );
            }
        }
    }

    fn stats(&self) -> Value {
        let router = self.route.load();
        let mut pools = serde_json::Map::new();
        for (name, p) in &router.pools {
            pools.insert(name.clone(), p.stats());
        }
        let mut dests = serde_json::Map::new();
        for d in &router.dests {
            dests.insert(d.addr().to_string(), d.stats_json());
        }
        json!({
            "pools": Value::Object(pools),
            "destinations": Value::Object(dests),
            "routes": router.route_stats(),
            "stampede": self.stampede.json(),
            "process": {
                "pid": std::process::id(),
                "config_version": self.config_version.load(Ordering::Relaxed),
                "reloads": self.reloads.load(Ordering::Relaxed),
                "reload_failures": self.reload_failures.load(Ordering::Relaxed),
            },
            "supervisor": {
                "background": router.background,
                "running": supervisor::is_running(),
                "threads_started": supervisor::threads_started(),
            },
        })
    }
}

impl crate::export::FinalSnapshot for Inner {
    fn write_final(&self) {
        if let Some(e) = &self.exporter {
            e.write_final(&|| self.stats());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        crate::export::FinalSnapshot::write_final(self);
    }
}

impl Maintain for Inner {
    fn maintain(&self) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        for d in &self.route.load().dests {
            d.maintain();
        }
        if let Some(e) = &self.exporter {
            e.tick(&|| self.stats());
        }
        self.watch_source();
        true
    }

    fn wake_fds(&self, fds: &mut Vec<i32>) {
        for d in &self.route.load().dests {
            fds.extend(d.parked_probe_fd());
            d.heartbeat_fds(fds);
        }
    }
}
impl Client {
    /// Build a client. Dials nothing: connections are made on first use, and no thread starts
    /// before the first request. A client built from [`Config::from_file`] watches that file
    /// (`reload.watch_ms`) and reloads when it changes.
    pub fn new(config: &Config) -> Result<Client> {
        fork::install();
        let route = builder::build(&effective_config(config, true)?, None, None)?;
        let background = config.health.background;
        let inner = Arc::new(Inner {
            route: ArcSwap::from_pointee(route),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            background,
            exporter: Exporter::new(
                config.stats.listen.clone(),
                config.stats.dir.clone(),
                config.stats.interval_ms,
            ),
            source_stamp: AtomicU64::new(
                config.source.as_deref().and_then(file_stamp).unwrap_or(0),
            ),
            source: config.source.clone(),
            watch_ms: config.reload.watch_ms,
            last_watch_ms: AtomicU64::new(now_ms()),
            config_version: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            base: ArcSwap::from_pointee(config.clone()),
            reloading: fork::TryFlag::new(),
            topology_stamp: AtomicU64::new(
                config
                    .discovery
                    .file
                    .as_deref()
                    .and_then(file_stamp)
                    .unwrap_or(0),
            ),
            stampede: Stampede::new(),
            admin: fork::PerProcess::new(AdminConns::new(fork::generation())),
        });
        if background {
            let weak: std::sync::Weak<dyn Maintain> = Arc::downgrade(&inner) as _;
            supervisor::register(weak);
        }
        if inner.exporter.as_ref().is_some_and(Exporter::writes_files) {
            let weak: std::sync::Weak<dyn crate::export::FinalSnapshot> =
                Arc::downgrade(&inner) as _;
            crate::export::write_at_exit(weak);
        }
        Ok(Client { inner })
    }

    /// Replace the configuration: the new route is built off to the side and swapped in
    /// atomically; requests in flight finish on the old one. Destinations whose address and
    /// settings are unchanged keep their warm connections and breaker state. A config that
    /// fails to build is rejected with its error, the old one stays in force, and the failure
    /// is counted (`process.reload_failures` in [`Client::stats`]). Settings of `stats` and
    /// `health.background` apply from client creation and are not changed by a reload.
    pub fn reload(&self, config: &Config) -> Result<()> {
        self.inner.reload(config)
    }

    fn route(&self) -> Result<Active<'_>> {
        let inner = &*self.inner;
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let active = Active {
            inner,
            route: inner.route.load(),
        };
        // Checked after counting: a close() that saw no request in flight has already set it.
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::with_detail(Reason::Closed, "the client is closed"));
        }
        if let Some(e) = &inner.exporter {
            e.mark_used(&|| inner.stats());
        }
        if inner.background {
            supervisor::ensure_running();
        } else {
            for d in &active.route.dests {
                d.maintain_if_due();
            }
            if let Some(e) = &inner.exporter {
                e.tick(&|| inner.stats());
            }
            inner.watch_source();
        }
        Ok(active)
    }
    /// A snapshot of the client's health and counters, as JSON:
    /// `{"pools": {name: {...}}, "destinations": {"host:port": {"state": "closed", "requests": n,
    /// "errors": {"timeout": n}, "latency": {...}, "open_connections": n, ...}},
    /// "routes": {"route.children[1]": {"type": "failover", "failovers": n, ...}},
    /// "process": {"config_version": n, "reloads": n, "reload_failures": n}, "supervisor": {...}}`.
    /// Counter names are listed in [`crate::stats::DestCounters::TABLE`] and
    /// [`crate::stats::RouteCounters::TABLE`].
    pub fn stats(&self) -> Value {
        self.inner.stats()
    }

    /// [`Client::stats`] in the Prometheus text exposition format.
    pub fn stats_prometheus(&self) -> String {
        crate::stats::render_prometheus(&self.stats())
    }

    /// Close the client: [`Client::close_within`] with a grace of twice `io_ms`. Later calls
    /// fail with `closed`.
    pub fn close(&self) {
        self.close_within(self.inner.route.load().io_timeout * 2);
    }

    /// Close gracefully: new requests fail with `closed` at once; requests in flight may
    /// finish, for at most `grace`; then every connection is closed (idle ones now, those of
    /// requests still running as they come back), and the supervisor forgets this client (its
    /// thread exits when no client is left). Returns true if no request was still running.
    pub fn close_within(&self, grace: Duration) -> bool {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let drained = inner.in_flight.load(Ordering::Acquire) == 0;
        for d in &inner.route.load().dests {
            d.shut();
        }
        inner.admin.current(AdminConns::new).idle.lock().clear();
        crate::export::FinalSnapshot::write_final(inner);
        drained
    }
    /// Has [`Client::close`] been called?
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Read `keys` through the route tree, after checking them: one request, one deadline.
    fn read(&self, keys: &[Key<'_>], opts: GetOpts) -> Result<Vec<Result<Option<Item>>>> {
        let route = self.route()?;
        route.read(&route.cx(), keys, opts)
    }

    fn read_one(&self, key: Key<'_>, opts: GetOpts) -> Result<Option<Item>> {
        only(self.read(&[key], opts)?)
    }

    /// Run `reqs` through the route tree, after checking keys and values.
    fn run(&self, reqs: &[Write<'_>]) -> Result<Vec<Result<Response>>> {
        let route = self.route()?;
        let out = route.write(&route.cx(), reqs)?;
        // After the replies: a get that starts from now on must not join a flight that began
        // before these writes landed (read-your-writes, see `coalesce`).
        for w in reqs {
            self.inner.stampede.flights.wrote(w.key());
        }
        Ok(out)
    }

    fn run_one<T>(&self, w: Write<'_>, map: impl FnOnce(Response) -> Result<T>) -> Result<T> {
        only(self.run(&[w])?).and_then(map)
    }

    /// Get a value. `Ok(None)` on a miss. Concurrent gets of the same key from threads of
    /// this process share one request (`stampede.coalesce`), except across a write of this
    /// process: a get never returns a value older than a write that completed before it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        let route = self.route()?;
        let cx = route.cx();
        let one = || only(route.read(&cx, &[Key::new(key)], GetOpts::default())?);
        if !self.may_share(&route) {
            return one();
        }
        route.check_key(key)?;
        match self.inner.stampede.flights.join_get(key, cx.deadline) {
            Role::Leader(lead) => {
                let r = one();
                lead.finish(&r);
                r
            }
            // The leader's whole request ends by its deadline, however many servers its tree
            // tries; if it failed to answer by then, ask ourselves (in what is left of ours).
            Role::Follower(f) => {
                inc(&self.inner.stampede.counters.coalesced_gets);
                f.wait(f.deadline()).unwrap_or_else(one)
            }
        }
    }

    /// Whether a get through `route` may share a flight with another request: coalescing is
    /// on, and another request is running in this client. Without servers every read is
    /// in-process already: nothing to share. Alone in this client (a php-fpm worker, a
    /// single-threaded program, a quiet moment) there is nobody to share with either: the
    /// table's two locks, two hashes and three allocations are about a sixth of a get's client
    /// CPU. A caller arriving while this request runs leads a flight of its own, and those
    /// after it follow that one.
    fn may_share(&self, route: &Router) -> bool {
        route.stampede.coalesce
            && !route.pools.is_empty()
            && self.inner.in_flight.load(Ordering::Acquire) > 1
    }

    /// [`Client::get`] (with `cas`: [`Client::gets`]; with `place`: [`Client::get_routed`]),
    /// the answer handed to `f` with the hit's value borrowed from the connection's read
    /// buffer: no copy of the value and no allocation for the request, where `get` returns an
    /// owned [`Item`]. For bindings that turn the value into their own object at once. `f`
    /// runs before the connection goes back to its pool: it must not call this client.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        place: Option<&[u8]>,
        cas: bool,
        f: impl FnOnce(Result<Option<ItemRef<'_>>>) -> R,
    ) -> R {
        let route = match self.route() {
            Ok(r) => r,
            Err(e) => return f(Err(e)),
        };
        if !cas && place.is_none() && self.may_share(&route) {
            // `get` shares the flight (the value is then owned; lent to `f` from there).
            drop(route);
            return match self.get(key) {
                Ok(Some(it)) => f(Ok(Some(it.borrowed()))),
                Ok(None) => f(Ok(None)),
                Err(e) => f(Err(e)),
            };
        }
        let k = Key {
            key,
            place: place.unwrap_or(key),
        };
        let opts = GetOpts {
            cas,
            ..GetOpts::default()
        };
        let mut f = Some(f);
        let mut out = None;
        let read = route.read_each(&route.cx(), std::slice::from_ref(&k), opts, &mut |_, r| {
            if let Some(f) = f.take() {
                out = Some(f(r));
            }
        });
        match (out, f) {
            (Some(r), _) => r,
            (None, Some(f)) => f(Err(read
                .err()
                .unwrap_or_else(|| Error::new(Reason::Protocol)))),
            (None, None) => unreachable!("`f` ran, so `out` is set"),
        }
    }

    /// Lease read (see [`crate::lease`]): a value, a stale value (and perhaps the right to
    /// refresh it), or a miss with a lease token (fill it with [`Client::set_with_lease`]) or
    /// "another client is filling, wait". Never coalesced: every caller gets its own answer.
    pub fn get_or_lease(&self, key: &[u8]) -> Result<Lease> {
        let route = self.route()?;
        lease::read(&route, &route.cx(), &self.inner.stampede, key).map(|(lease, _)| lease)
    }

    /// Fill a key with the token of [`Client::get_or_lease`]: stored only if nothing was
    /// written to, deleted or invalidated since the lease (`Ok(false)`: a newer write won,
    /// the value was not stored). Token `0` ("no lease could be had") stores with `add`.
    pub fn set_with_lease(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        token: u64,
    ) -> Result<bool> {
        let route = self.route()?;
        let set = (key, value, flags, exptime);
        lease::fill(&route, &route.cx(), &self.inner.stampede, set, token)
    }

    /// Hand back a lease without filling it (the compute failed): the key is marked stale
    /// again (meta `md C<token> I`), which lets the next lease reader win at once instead of
    /// everyone waiting for the stub to expire. Only if nothing was written since the lease
    /// (`Ok(false)` otherwise, or for token 0). Use it for a `miss` lease or the refresh of a
    /// stale value; an early-recache refresh of a current value simply lapses.
    pub fn release_lease(&self, key: &[u8], token: u64) -> Result<bool> {
        if token == 0 {
            return Ok(false);
        }
        let route = self.route()?;
        lease::release(&route, &route.cx(), &self.inner.stampede, key, token)
    }

    /// Invalidate a key instead of deleting it (meta `md I`): it stays readable as stale for
    /// `stale_ttl` more seconds (0: its current TTL), lease readers are served the stale
    /// value while one of them refreshes it, and outstanding fills fail. Plain reads see a
    /// miss. On a text-protocol pool this is a `delete`. `Ok(false)` if the key was not there.
    pub fn invalidate(&self, key: &[u8], stale_ttl: u32) -> Result<bool> {
        let req = Request::Delete {
            key,
            noreply: false,
            invalidate: Some(stale_ttl),
            cas: None,
        };
        self.run_one(Write::new(req), found)
    }

    /// Read-through with stampede protection: the value of `key`, or `compute()`'s, stored
    /// with `exptime` — computed once per expiry across every thread and process that shares
    /// the servers, with the others served the new (or the stale) value after at most
    /// `stampede.wait_ms`. See [`crate::lease`]. Cache failures do not fail the call: the
    /// value is computed and returned without being stored.
    pub fn get_or_set<E>(
        &self,
        key: &[u8],
        exptime: u32,
        compute: impl FnOnce() -> std::result::Result<Computed, E>,
    ) -> std::result::Result<Item, GetOrSetError<E>> {
        lease::get_or_set(
            &|| self.route(),
            &self.inner.stampede,
            key,
            exptime,
            compute,
        )
    }

    /// Get a value and its CAS token.
    pub fn gets(&self, key: &[u8]) -> Result<Option<Item>> {
        let opts = GetOpts {
            cas: true,
            ..GetOpts::default()
        };
        self.read_one(Key::new(key), opts)
    }

    /// Get a value and set its expiry (get-and-touch).
    pub fn gat(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        let opts = GetOpts {
            touch: Some(exptime),
            ..GetOpts::default()
        };
        self.read_one(Key::new(key), opts)
    }

    /// Get a value with its CAS token and set its expiry.
    pub fn gats(&self, key: &[u8], exptime: u32) -> Result<Option<Item>> {
        let opts = GetOpts {
            cas: true,
            touch: Some(exptime),
            ..GetOpts::default()
        };
        self.read_one(Key::new(key), opts)
    }

    /// Any storage command. `exptime`: 0 = never, ≤ 30 days = seconds from now, larger = unix
    /// time.
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<StoreOutcome> {
        self.store_routed(key, op, key, value, flags, exptime)
    }

    /// Store unconditionally.
    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<()> {
        match self.store(StoreOp::Set, key, value, flags, exptime)? {
            StoreOutcome::Stored => Ok(()),
            // memcached never refuses a plain set with NOT_STORED; a read_only pool does (and a
            // local cache refusing a value larger than its shard).
            StoreOutcome::NotStored => Err(Error::with_detail(
                Reason::ReadOnly,
                "the set was not stored: a read_only pool (or a full local cache) dropped it",
            )),
            other => Err(Error::with_detail(
                Reason::Protocol,
                format!("set answered {other:?}"),
            )),
        }
    }

    /// Store only if absent. `Ok(false)` if the key exists.
    pub fn add(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Add, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// Store only if present. `Ok(false)` if the key is missing.
    pub fn replace(&self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Replace, key, value, flags, exptime)? == StoreOutcome::Stored)
    }

    /// Append to an existing value. `Ok(false)` if the key is missing.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Append, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// Prepend to an existing value. `Ok(false)` if the key is missing.
    pub fn prepend(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Prepend, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// Compare and swap: store only if the item's CAS is still `cas`.
    pub fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
    ) -> Result<StoreOutcome> {
        self.store(StoreOp::Cas(cas), key, value, flags, exptime)
    }

    /// Delete a key. `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.delete_routed(key, key)
    }

    /// Increment a decimal value by `delta` (wraps at 2^64). `Ok(None)` if the key is missing.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.arith_routed(key, key, true, delta)
    }

    /// Decrement a decimal value by `delta` (stops at 0). `Ok(None)` if the key is missing.
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.arith_routed(key, key, false, delta)
    }

    /// Set a key's expiry. `Ok(false)` if the key is missing.
    pub fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        self.touch_routed(key, key, exptime)
    }

    /// Get many keys. The result is aligned with `keys`: `Ok(Some(item))` hit, `Ok(None)` miss,
    /// `Err` when that key's server failed. The outer `Err` is for caller errors (an invalid
    /// key, a closed client), detected before any I/O.
    pub fn get_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<Option<Item>>>> {
        self.get_multi_opts(keys, false, None)
    }

    /// [`Client::get_multi`] with CAS tokens (`cas`) and/or a new expiry for hits (`touch`).
    pub fn get_multi_opts(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        let keys: Vec<Key<'_>> = keys.iter().map(|k| Key::new(k)).collect();
        let opts = GetOpts {
            cas,
            touch,
            ..GetOpts::default()
        };
        self.read(&keys, opts)
    }

    /// Get many keys, each result handed to `on` instead of collected: `on(i, r)` for the
    /// `i`-th key, every index once, in no particular order (each server's keys when its
    /// whole reply has been read). A hit's [`ItemRef::value`](crate::ItemRef) borrows the
    /// connection's read buffer: no allocation or copy per value, and valid only during that
    /// call of `on`. `server_keys[i]`, when given, places `keys[i]` (same length); `cas` asks
    /// for CAS tokens and `touch` sets a new expiry on hits, as in
    /// [`Client::get_multi_routed_opts`]. The outer `Err` is for caller errors, before any
    /// I/O; a failed server's keys get `Err` in `on`. `on` runs while this call holds
    /// connections: it must not call this client (a nested call may wait for one of them).
    pub fn get_multi_each(
        &self,
        keys: &[&[u8]],
        server_keys: Option<&[&[u8]]>,
        cas: bool,
        touch: Option<u32>,
        on: &mut OnItem<'_>,
    ) -> Result<()> {
        let keys: Vec<Key<'_>> = match server_keys {
            None => keys.iter().map(|k| Key::new(k)).collect(),
            Some(places) => {
                same_len("get_multi_each", keys.len(), places.len())?;
                keys.iter()
                    .zip(places)
                    .map(|(k, s)| Key { key: k, place: s })
                    .collect()
            }
        };
        let opts = GetOpts {
            cas,
            touch,
            ..GetOpts::default()
        };
        let route = self.route()?;
        route.read_each(&route.cx(), &keys, opts, on)
    }

    /// Store many items, pipelined per server. Aligned with `items`.
    pub fn set_multi(&self, items: &[SetItem<'_>]) -> Result<Vec<Result<StoreOutcome>>> {
        self.set_placed(items, items.iter().map(|it| it.key))
    }

    /// `set` of every item, item `i` placed by the `i`-th key of `places`.
    fn set_placed<'a>(
        &self,
        items: &[SetItem<'a>],
        places: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<Result<StoreOutcome>>> {
        let reqs: Vec<Write<'_>> = items
            .iter()
            .zip(places)
            .map(|(it, place)| Write {
                place,
                req: Request::Store {
                    op: StoreOp::Set,
                    key: it.key,
                    value: it.value,
                    flags: it.flags,
                    exptime: it.exptime,
                    noreply: false,
                },
            })
            .collect();
        Ok(self
            .run(&reqs)?
            .into_iter()
            .map(|r| r.and_then(StoreOutcome::from_reply))
            .collect())
    }

    /// Delete many keys, pipelined per server. Aligned with `keys`: `Ok(true)` deleted,
    /// `Ok(false)` was not there.
    pub fn delete_multi(&self, keys: &[&[u8]]) -> Result<Vec<Result<bool>>> {
        self.delete_placed(keys, keys.iter().copied())
    }

    /// `delete` of every key, key `i` placed by the `i`-th key of `places`.
    fn delete_placed<'a>(
        &self,
        keys: &[&'a [u8]],
        places: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<Result<bool>>> {
        let reqs: Vec<Write<'_>> = keys
            .iter()
            .zip(places)
            .map(|(key, place)| Write {
                place,
                req: Request::Delete {
                    key,
                    noreply: false,
                    invalidate: None,
                    cas: None,
                },
            })
            .collect();
        Ok(self
            .run(&reqs)?
            .into_iter()
            .map(|r| r.and_then(found))
            .collect())
    }

    /// `flush_all` on every server (after `delay` seconds), and every local cache emptied.
    /// Fails with the first server error, after every server was asked. `delay` follows
    /// memcached's exptime rule, except that an absolute time in the past flushes now and one
    /// more than 30 days ahead is `invalid_argument` ([`crate::op::flush_delay`]): memcached
    /// would otherwise bring back items an earlier flush removed.
    pub fn flush_all(&self, delay: u32) -> Result<()> {
        let delay = crate::op::flush_delay(delay)?;
        let route = self.route()?;
        route.root.flush_local();
        let req = Request::FlushAll {
            delay,
            noreply: false,
        };
        let replies = route.all_servers(&route.cx(), req);
        self.inner.stampede.flights.wrote_all();
        for (_, r) in replies {
            match r? {
                Response::Status {
                    status: Status::Success,
                    ..
                } => {}
                other => return Err(unexpected(&other)),
            }
        }
        Ok(())
    }

    /// Each server's version string, every pool's servers once, in config order.
    pub fn version(&self) -> Result<Vec<(String, Result<String>)>> {
        let route = self.route()?;
        Ok(route
            .all_servers(&route.cx(), Request::Version)
            .into_iter()
            .map(|(addr, r)| {
                let v = r.and_then(|resp| match resp {
                    Response::Version(v) => Ok(v),
                    other => Err(unexpected(&other)),
                });
                (addr, v)
            })
            .collect())
    }

    /// The servers (`host:port`, or `local` for an in-process cache) a request of `op` for
    /// `key` could touch, without any I/O: for a failover its every child, for a shadowed key
    /// the shadow too. Each once, in route order.
    pub fn route_for(&self, op: Op, key: &[u8]) -> Result<Vec<String>> {
        let route = self.route()?;
        route.check_key(key)?;
        let mut out: Vec<String> = Vec::new();
        for (_, addr) in route.route_for(op, key) {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        Ok(out)
    }

    /// For every pool placed by virtual buckets that a request of `op` for `key` reaches: the
    /// pool, the key's bucket, the bucket's server and its move, if any (see
    /// [`crate::route::pool::BucketRoute`]). Empty when no such pool is reached.
    pub fn bucket_route(
        &self,
        op: Op,
        key: &[u8],
    ) -> Result<Vec<(String, crate::route::pool::BucketRoute)>> {
        let route = self.route()?;
        route.check_key(key)?;
        let mut out: Vec<(String, crate::route::pool::BucketRoute)> = Vec::new();
        for (pool, _) in route.route_for(op, key) {
            if out.iter().any(|(p, _)| *p == pool) {
                continue;
            }
            if let Some(b) = route.pools.get(&pool).and_then(|p| p.bucket_route(key)) {
                out.push((pool, b));
            }
        }
        Ok(out)
    }

    /// [`Client::bucket_route`] as text, as `fae route --bucket` prints it and the C ABI's
    /// `fae_client_bucket_for` returns it: `pool/bucket@version` per bucket-placed pool
    /// (`;`-joined), a move appended as ` phase:from->to` (server indexes). Empty when the
    /// request reaches no such pool.
    pub fn bucket_text(&self, op: Op, key: &[u8]) -> Result<String> {
        Ok(self
            .bucket_route(op, key)?
            .iter()
            .map(|(pool, b)| {
                let mut s = format!("{pool}/{}@{}", b.bucket, b.version);
                if let Some(m) = &b.moving {
                    s.push_str(&format!(" {}:{}->{}", m.phase.as_str(), b.server, m.to));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(";"))
    }

    /// [`Client::route_for`] with the pool of each destination: `(pool, addr)`.
    pub fn route_for_pools(&self, op: Op, key: &[u8]) -> Result<Vec<(String, String)>> {
        let route = self.route()?;
        route.check_key(key)?;
        Ok(route.route_for(op, key))
    }

    /// Every destination's address, pools in name order, servers in config order.
    pub fn servers(&self) -> Vec<String> {
        let r = self.inner.route.load();
        r.dests.iter().map(|d| d.addr().to_string()).collect()
    }

    /// Open and idle connections per destination: `(addr, open, idle)`.
    pub fn connection_counts(&self) -> Vec<(String, usize, usize)> {
        let r = self.inner.route.load();
        r.dests
            .iter()
            .map(|d| {
                (
                    d.addr().to_string(),
                    d.open_connections(),
                    d.idle_connections(),
                )
            })
            .collect()
    }

    /// Local addresses of the idle pooled connections (diagnostics; the fork tests use it to
    /// prove a child never reuses its parent's sockets).
    pub fn idle_local_addrs(&self) -> Vec<std::net::SocketAddr> {
        let r = self.inner.route.load();
        r.dests.iter().flat_map(|d| d.idle_local_addrs()).collect()
    }

    /// Each destination's breaker state: `(addr, state)`.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        let r = self.inner.route.load();
        r.dests
            .iter()
            .map(|d| (d.addr().to_string(), d.health.state()))
            .collect()
    }

    /// Close every idle connection (and [`Client::server_stats`]' kept ones) now and keep the
    /// client usable: the next request dials
    /// again. This is pymemcache's and pylibmc's `disconnect_all()`, which frameworks call at the
    /// end of a request; unlike [`Client::close`] it does not make later calls fail.
    pub fn disconnect_idle(&self) {
        for d in &self.inner.route.load().dests {
            d.close_idle();
        }
        // The kept `stats` connections too.
        self.inner
            .admin
            .current(AdminConns::new)
            .idle
            .lock()
            .clear();
    }

    /// memcached's `stats [args]` on every server: `(addr, [(name, value)])`
    /// in the server's order. An admin command, so it uses its own connection per server
    /// (dialled and answered within `io_ms` each) and never a pooled one: `stats` replies are
    /// multi-line and have no place in the request codec. That connection is kept for the
    /// next call (as libmemcached keeps its one connection per server), dropped on any error,
    /// by [`Client::close`] and in a forked child. `args` must be printable ASCII words (`""`,
    /// `"settings"`, `"slabs"`, `"items"` …).
    pub fn server_stats(&self, args: &str) -> Result<Vec<(String, Result<ServerStats>)>> {
        let route = self.route()?;
        if !args.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(Error::with_detail(
                Reason::InvalidArgument,
                "stats arguments must be printable ASCII words",
            ));
        }
        let line = if args.trim().is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {}\r\n", args.trim())
        };
        let admin = self.inner.admin.current(AdminConns::new);
        admin
            .idle
            .lock()
            .retain(|(a, _)| route.dests.iter().any(|d| &**d.addr() == a.as_str()));
        let io = route.io_timeout;
        Ok(route
            .dests
            .iter()
            .map(|d| {
                let addr = d.addr();
                let fresh = || -> Result<_> {
                    let mut conn = d.admin_conn(io, Instant::now() + io)?;
                    let kv = admin_stats(&mut conn, &line, io)?;
                    Ok((kv, conn))
                };
                let r = match admin.take(addr) {
                    Some(mut conn) => match admin_stats(&mut conn, &line, io) {
                        Ok(kv) => Ok((kv, conn)),
                        // An idle connection the server closed meanwhile: dial once more.
                        Err(e) if matches!(e.reason(), Reason::Reset | Reason::Io) => fresh(),
                        Err(e) => Err(e),
                    },
                    None => fresh(),
                };
                let r = r.map(|(kv, conn)| {
                    admin.idle.lock().push((addr.to_string(), conn));
                    kv
                });
                (addr.to_string(), r.map_err(|e| e.at(addr)))
            })
            .collect())
    }
}

/// Idle `stats` connections, at most one per server, of one process generation (a forked
/// child starts without any: [`fork::PerProcess`]). The lock is held only to take or put one.
struct AdminConns {
    generation: u64,
    idle: parking_lot::Mutex<Vec<(String, Box<crate::pool::conn::Conn>)>>,
}

impl fork::Generational for AdminConns {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn unlocked(&self) -> bool {
        self.idle.try_lock().is_some()
    }
}

impl AdminConns {
    fn new(generation: u64) -> AdminConns {
        AdminConns {
            generation,
            idle: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn take(&self, addr: &str) -> Option<Box<crate::pool::conn::Conn>> {
        let mut idle = self.idle.lock();
        let i = idle.iter().position(|(a, _)| a == addr)?;
        Some(idle.swap_remove(i).1)
    }
}

/// One server's `stats` reply: `(name, value)` pairs in the server's order.
pub type ServerStats = Vec<(String, String)>;

/// One `stats` exchange on `conn` (dialled like the pool's own: TLS, login, but outside the
/// pool), which is left at the end of the reply when it succeeds.
fn admin_stats(
    conn: &mut crate::pool::conn::Conn,
    line: &str,
    io_timeout: Duration,
) -> Result<Vec<(String, String)>> {
    let deadline = Instant::now() + io_timeout;
    conn.wbuf.extend_from_slice(line.as_bytes());
    conn.send(deadline)?;
    loop {
        conn.read_some(deadline).map_err(|e| {
            let what = if e.reason() == Reason::Timeout {
                "stats: no complete reply".to_string()
            } else {
                format!("stats: {}", e.detail().unwrap_or(e.reason().as_str()))
            };
            Error::with_detail(e.reason(), what)
        })?;
        let text = String::from_utf8_lossy(conn.unread());
        let first = text.split("\r\n").next().unwrap_or("");
        if first.starts_with("SERVER_ERROR") {
            return Err(Error::with_detail(Reason::ServerError, first.to_string()));
        }
        if first.starts_with("CLIENT_ERROR") || first == "ERROR" {
            return Err(Error::with_detail(Reason::ClientError, first.to_string()));
        }
        if text == "END\r\n" || text.ends_with("\r\nEND\r\n") {
            let kv = text
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("STAT "))
                .map(|l| match l.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                })
                .collect();
            conn.consume_unread();
            return Ok(kv);
        }
    }
}

/// Additive API for bindings that mirror libmemcached (the PHP extension): commands placed by a
/// server key other than the stored key, and a placement from libmemcached's option state.
impl Client {
    /// Build a client whose keys are placed by `placement` instead of the pool's mode (for a
    /// binding that mirrors libmemcached's option state, see
    /// [`Placement::libmemcached_behavior`]). The config's route must be a plain pool, and
    /// `placement` must have been built from its servers, in config order. A later
    /// [`Client::reload`] (or a watched file or topology change) places keys by the config's
    /// mode again; `on_down: eject` rebuilds its ring of live servers with the pool's mode.
    pub fn with_placement(config: &Config, placement: Placement) -> Result<Client> {
        let client = Client::new(config)?;
        let current = client.inner.route.load_full();
        let route = builder::build(
            &effective_config(config, true)?,
            Some(&current),
            Some(placement),
        )?;
        client.inner.route.store(Arc::new(route));
        Ok(client)
    }

    /// [`Client::get`] / [`Client::gets`] on the server `server_key` maps to, which may differ
    /// from the server of `key` (libmemcached's `*_by_key`, php-memcached's `getByKey`, and a
    /// namespace prefix that is not hashed).
    pub fn get_routed(&self, server_key: &[u8], key: &[u8], cas: bool) -> Result<Option<Item>> {
        let opts = GetOpts {
            cas,
            ..GetOpts::default()
        };
        self.read_one(
            Key {
                key,
                place: server_key,
            },
            opts,
        )
    }

    /// [`Client::store`] on the server `server_key` maps to.
    pub fn store_routed(
        &self,
        server_key: &[u8],
        op: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<StoreOutcome> {
        let req = Request::Store {
            op,
            key,
            value,
            flags,
            exptime,
            noreply: false,
        };
        self.run_one(
            Write {
                place: server_key,
                req,
            },
            StoreOutcome::from_reply,
        )
    }

    /// [`Client::delete`] on the server `server_key` maps to.
    pub fn delete_routed(&self, server_key: &[u8], key: &[u8]) -> Result<bool> {
        let req = Request::Delete {
            key,
            noreply: false,
            invalidate: None,
            cas: None,
        };
        self.run_one(
            Write {
                place: server_key,
                req,
            },
            found,
        )
    }

    /// [`Client::incr`] (`incr = true`) or [`Client::decr`] on the server `server_key` maps to.
    pub fn arith_routed(
        &self,
        server_key: &[u8],
        key: &[u8],
        incr: bool,
        delta: u64,
    ) -> Result<Option<u64>> {
        let req = Request::Arith {
            key,
            incr,
            delta,
            noreply: false,
        };
        self.run_one(
            Write {
                place: server_key,
                req,
            },
            arith_value,
        )
    }

    /// [`Client::touch`] on the server `server_key` maps to.
    pub fn touch_routed(&self, server_key: &[u8], key: &[u8], exptime: u32) -> Result<bool> {
        let req = Request::Touch {
            key,
            exptime,
            noreply: false,
        };
        self.run_one(
            Write {
                place: server_key,
                req,
            },
            found,
        )
    }

    /// [`Client::get_multi_opts`] where `keys[i]` is placed by `server_keys[i]`. The two slices
    /// must have the same length.
    pub fn get_multi_routed(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
    ) -> Result<Vec<Result<Option<Item>>>> {
        self.get_multi_routed_opts(keys, server_keys, cas, None)
    }

    /// [`Client::get_multi_opts`] where `keys[i]` is placed by `server_keys[i]` (a `touch`
    /// makes it get-and-touch). The two slices must have the same length.
    pub fn get_multi_routed_opts(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
        cas: bool,
        touch: Option<u32>,
    ) -> Result<Vec<Result<Option<Item>>>> {
        same_len("get_multi_routed", keys.len(), server_keys.len())?;
        let keys: Vec<Key<'_>> = keys
            .iter()
            .zip(server_keys)
            .map(|(k, s)| Key { key: k, place: s })
            .collect();
        let opts = GetOpts {
            cas,
            touch,
            ..GetOpts::default()
        };
        self.read(&keys, opts)
    }

    /// [`Client::set_multi`] where `items[i]` is placed by `server_keys[i]`.
    pub fn set_multi_routed(
        &self,
        items: &[SetItem<'_>],
        server_keys: &[&[u8]],
    ) -> Result<Vec<Result<StoreOutcome>>> {
        same_len("set_multi_routed", items.len(), server_keys.len())?;
        self.set_placed(items, server_keys.iter().copied())
    }

    /// [`Client::delete_multi`] where `keys[i]` is placed by `server_keys[i]`.
    pub fn delete_multi_routed(
        &self,
        keys: &[&[u8]],
        server_keys: &[&[u8]],
    ) -> Result<Vec<Result<bool>>> {
        same_len("delete_multi_routed", keys.len(), server_keys.len())?;
        self.delete_placed(keys, server_keys.iter().copied())
    }
}

fn same_len(what: &str, keys: usize, server_keys: usize) -> Result<()> {
    if keys == server_keys {
        return Ok(());
    }
    Err(Error::with_detail(
        Reason::InvalidArgument,
        format!("{what}: {keys} keys but {server_keys} server keys"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn client_is_send_and_sync() {
        assert_send_sync::<Client>();
    }

    #[test]
    fn op_names() {
        assert_eq!(Op::from_name("gets"), Some(Op::Get));
        assert_eq!(Op::from_name("cas"), Some(Op::Set));
        assert_eq!(Op::from_name("nope"), None);
    }
}
