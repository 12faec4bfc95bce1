//! Getting stats out of a process: an HTTP endpoint for long-lived processes and snapshot
//! files for fleets of short-lived workers (php-fpm).
//!
//! - `stats.listen = "127.0.0.1:9150"`: the supervisor thread binds it on its first tick (never
//!   at load time) and answers `GET /metrics` (Prometheus text) and `GET /stats.json`. Only the
//!   process that bound it serves: a forked child closes its inherited copy and competes for
//!   the port like every process, retrying every few seconds, so when the holder exits another
//!   takes over. With `stats.dir` set too, the holder serves the merged view of the directory,
//!   which is what a pre-fork server (gunicorn, php-fpm) needs: all its workers write
//!   snapshots, whichever holds the port serves everyone's numbers.
//! - `stats.dir = "/run/fae"`: every `stats.interval_ms` each process writes its snapshot to
//!   `fae-<pid>-<n>.json` (temp file + rename, so readers never see half a file). The file of a
//!   process that no longer exists is folded into `fae-retired.json` (its counters and latency
//!   histograms added, its gauges dropped) and then deleted, under a lock on
//!   `.fae-retired.lock`, so each dead file is counted exactly once. `fae stats --dir DIR`
//!   merges the live files with the retired totals: php-fpm recycling its workers
//!   (`pm.max_requests`) never makes a merged counter go down, which Prometheus `rate()` would
//!   read as a reset.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Map, Value, json};

use crate::pool::health::now_ms;
use crate::process::fork;
use crate::stats::{merge_latency, render_prometheus};

/// Distinguishes several clients of one process in snapshot file names.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// How often a process whose `stats.listen` port another process holds tries again: when the
/// holder exits (php-fpm recycling the worker that bound it), another takes over.
const REBIND_MS: u64 = 5_000;

/// Stats export state of one client.
#[derive(Debug)]
pub(crate) struct Exporter {
    listen: Option<String>,
    /// The bound listener and the fork generation that bound it. A swap, not a lock: a fork
    /// while another thread held a lock would leave the child unable to take it.
    listener: ArcSwapOption<Bound>,
    /// When to try binding next (ms since the epoch); `u64::MAX`: never (a hard error).
    next_bind_ms: AtomicU64,
    /// The "another process holds the port" message is logged once per process.
    in_use_logged: AtomicBool,
    /// One thread serves at a time (tick runs on request threads without a supervisor): the
    /// fork generation + 1 of the thread serving, 0 when none. A value from another generation
    /// was left by a thread that a fork did not copy, and is free.
    serving: AtomicU64,
    dir: Option<PathBuf>,
    interval_ms: u64,
    last_write_ms: AtomicU64,
    /// The fork generation + 1 that last made a request (0: none yet). A forked process that
    /// never made one writes no final snapshot: its counters would be its parent's.
    used_in: AtomicU64,
    /// The counters this process had when it made its first request, with its fork generation:
    /// a forked worker inherits its parent's counters, and its snapshot files must count only
    /// its own (a swap, not a lock: fork-safe).
    baseline: arc_swap::ArcSwapOption<(u64, Value)>,
    id: u64,
}

impl Exporter {
    pub(crate) fn new(
        listen: Option<String>,
        dir: Option<PathBuf>,
        interval_ms: u64,
    ) -> Option<Exporter> {
        if listen.is_none() && dir.is_none() {
            return None;
        }
        Some(Exporter {
            listen,
            listener: ArcSwapOption::empty(),
            next_bind_ms: AtomicU64::new(0),
            in_use_logged: AtomicBool::new(false),
            serving: AtomicU64::new(0),
            dir,
            interval_ms,
            last_write_ms: AtomicU64::new(0),
            used_in: AtomicU64::new(0),
            baseline: arc_swap::ArcSwapOption::empty(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A request is about to run in this process (one relaxed load per request once marked).
    /// The first one in a process takes the baseline: the counters inherited at fork (none in
    /// the process that built the client).
    pub(crate) fn mark_used(&self, snapshot: &dyn Fn() -> Value) {
        let g = fork::generation() + 1;
        if self.used_in.load(Ordering::Relaxed) != g {
            self.used_in.store(g, Ordering::Relaxed);
            if self.dir.is_some() {
                self.baseline
                    .store(Some(std::sync::Arc::new((g, snapshot()))));
            }
        }
    }

    /// This process's own counters: the snapshot less the baseline of this generation.
    fn own(&self, snapshot: Value) -> Value {
        match &*self.baseline.load() {
            Some(b) if b.0 == fork::generation() + 1 => subtract_counters(snapshot, &b.1),
            _ => snapshot,
        }
    }

    /// Does this exporter write snapshot files (`stats.dir`)?
    pub(crate) fn writes_files(&self) -> bool {
        self.dir.is_some()
    }

    /// Write the snapshot now, whatever the interval: at close, drop and process exit, so the
    /// counts of the last interval are in the file that `fae stats --dir` folds into the
    /// retired totals (php-fpm recycles a worker right after its last request).
    pub(crate) fn write_final(&self, snapshot: &dyn Fn() -> Value) {
        let Some(dir) = &self.dir else { return };
        if self.used_in.load(Ordering::Relaxed) != fork::generation() + 1 {
            return;
        }
        if let Err(e) = write_snapshot(dir, self.id, &self.own(snapshot())) {
            log::warn!(target: "fae", "stats.dir={} final write failed: {e}", dir.display());
        }
    }

    /// Write a due snapshot and serve pending HTTP requests. `snapshot` builds the JSON.
    pub(crate) fn tick(&self, snapshot: &dyn Fn() -> Value) {
        if let Some(dir) = &self.dir {
            let now = now_ms();
            let last = self.last_write_ms.load(Ordering::Relaxed);
            if last == 0 || now.saturating_sub(last) >= self.interval_ms {
                self.last_write_ms.store(now.max(1), Ordering::Relaxed);
                if let Err(e) = write_snapshot(dir, self.id, &self.own(snapshot())) {
                    log::warn!(target: "fae", "stats.dir={} write failed: {e}", dir.display());
                }
            }
        }
        let me = fork::generation() + 1;
        let holder = self.serving.load(Ordering::Relaxed);
        if let Some(addr) = &self.listen
            && holder != me
            && self
                .serving
                .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            self.serve(addr, snapshot);
            self.serving.store(0, Ordering::Release);
        }
    }

    /// What the listener serves: with `stats.dir`, the merged view of every process writing
    /// there (the workers of a pre-fork server all write to it, one of them holds the port);
    /// without, this process's own snapshot.
    fn served(&self, snapshot: &dyn Fn() -> Value) -> Value {
        let Some(dir) = &self.dir else {
            return snapshot();
        };
        aggregate_dir(dir).unwrap_or_else(|e| {
            log::warn!(target: "fae", "stats.dir={} merge failed, serving this process only: {e}", dir.display());
            snapshot()
        })
    }

    fn serve(&self, addr: &str, snapshot: &dyn Fn() -> Value) {
        let generation = fork::generation();
        if self
            .listener
            .load()
            .as_ref()
            .is_some_and(|b| b.generation != generation)
        {
            // A forked child: the socket is its parent's, and the fork already made this
            // process's copy `/dev/null` ([`fork::track`]), so the port is not held open here
            // after the parent exits (whatever handles a parent's serving thread held at the
            // fork). Forget it and compete for the port like any other process.
            self.listener.store(None);
        }
        if self.listener.load().is_none() {
            let now = now_ms();
            if now < self.next_bind_ms.load(Ordering::Relaxed) {
                return;
            }
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(l) => {
                    let what = if self.dir.is_some() {
                        "the merged stats.dir view"
                    } else {
                        "this process's stats"
                    };
                    log::info!(target: "fae", "stats.listen={addr} serving /metrics and /stats.json ({what})");
                    fork::track(l.as_raw_fd());
                    let bound = Bound {
                        generation,
                        listener: l,
                    };
                    self.listener.store(Some(Arc::new(bound)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    // A pre-fork server: another worker (or the parent) holds the port. Expected
                    // with stats.dir (that process serves everyone's numbers); without it, each
                    // worker's numbers stay unserved, which the operator should hear about.
                    self.next_bind_ms.store(now + REBIND_MS, Ordering::Relaxed);
                    if !self.in_use_logged.swap(true, Ordering::Relaxed) {
                        if self.dir.is_some() {
                            log::debug!(target: "fae", "stats.listen={addr} is held by another process, which serves the merged stats.dir view; retrying every {REBIND_MS} ms");
                        } else {
                            log::warn!(target: "fae", "stats.listen={addr} is held by another process: only its own numbers are served; set stats.dir (or run `fae stats --dir DIR --listen ADDR`) to serve every process's");
                        }
                    }
                    return;
                }
                Err(e) => {
                    self.next_bind_ms.store(u64::MAX, Ordering::Relaxed);
                    log::error!(target: "fae", "stats.listen={addr} bind failed: {e}");
                    return;
                }
            }
        }
        let Some(bound) = self.listener.load_full() else {
            return;
        };
        // Bounded: at most a handful of requests per tick, each with short socket timeouts.
        for _ in 0..16 {
            match bound.listener.accept() {
                Ok((stream, _)) => {
                    let _ = answer(stream, &|| self.served(snapshot));
                }
                Err(_) => break,
            }
        }
    }
}

/// Answer one HTTP/1.x request.
fn answer(mut stream: TcpStream, snapshot: &dyn Fn() -> Value) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render_prometheus(&snapshot()),
        ),
        (b"GET", b"/stats.json") => ("200 OK", "application/json", snapshot().to_string()),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /stats.json\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes())
}

/// Is a process with this pid alive?
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid a snapshot file name belongs to (`fae-<pid>-<n>.json`).
fn file_pid(name: &str) -> Option<i32> {
    name.strip_prefix("fae-")?
        .strip_suffix(".json")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Write this process's snapshot atomically and delete snapshots of dead processes.
pub(crate) fn write_snapshot(dir: &Path, id: u64, snapshot: &Value) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    replace(
        dir,
        &format!("fae-{}-{id}.json", std::process::id()),
        snapshot,
    )?;
    retire_dead(dir)?;
    Ok(())
}

/// Write `dir/name` through a temporary file and a rename, so readers never see half a file
/// (no fsync: snapshots are rewritten every interval and lose nothing but freshness).
fn replace(dir: &Path, name: &str, v: &Value) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, v.to_string())?;
    std::fs::rename(&tmp, dir.join(name))
}

/// A bound stats listener, listed for forked children to let go of while it is open.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The fork generation that bound it.
    generation: u64,
    listener: TcpListener,
}

impl Drop for Bound {
    /// Off the fork list before the socket closes (the fields drop after this).
    fn drop(&mut self) {
        fork::untrack(self.listener.as_raw_fd());
    }
}

/// The accumulated counters of processes that are gone.
const RETIRED: &str = "fae-retired.json";
/// Serialises folding: two processes must not fold the same dead file twice.
const RETIRE_LOCK: &str = ".fae-retired.lock";

/// A POSIX record lock on a file, held until dropped. Record locks belong to the process (a
/// forked child does not inherit them), so a fork while one is held leaves no lock behind.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn take(path: &Path) -> std::io::Result<DirLock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: zeroed is a valid flock; the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        loop {
            // SAFETY: a valid fd and a valid flock for the call's duration.
            if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) } == 0 {
                return Ok(DirLock { _file: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    crate::textfile::read(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Counters and histograms only: what a dead process contributes to the totals for good.
fn counters_only(mut v: Value) -> Value {
    if let Some(ds) = v.get_mut("destinations").and_then(Value::as_object_mut) {
        for d in ds.values_mut().filter_map(Value::as_object_mut) {
            for gauge in ["state", "states", "open_connections", "idle_connections"] {
                d.remove(gauge);
            }
        }
    }
    if let Some(rs) = v.get_mut("routes").and_then(Value::as_object_mut) {
        for r in rs.values_mut().filter_map(Value::as_object_mut) {
            r.retain(|k, _| {
                k == "type"
                    || k == "latency"
                    || crate::stats::RouteCounters::TABLE
                        .iter()
                        .any(|(c, _)| c == k)
            });
        }
    }
    if let Some(p) = v.get_mut("process").and_then(Value::as_object_mut) {
        p.retain(|k, _| k == "reloads" || k == "reload_failures");
    }
    v
}

/// The record lock excludes other processes only, not other threads of this one (a worker's
/// exit-time snapshot runs while its supervisor thread may be folding too): this flag holds
/// the fork generation + 1 of the folding thread, and a value of another generation was left
/// by a thread a fork did not copy, so it is free.
static FOLDING: AtomicU64 = AtomicU64::new(0);

struct Folding;

impl Folding {
    fn take() -> Folding {
        let me = fork::generation() + 1;
        loop {
            let cur = FOLDING.load(Ordering::Acquire);
            if cur != me
                && FOLDING
                    .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Folding;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Folding {
    fn drop(&mut self) {
        FOLDING.store(0, Ordering::Release);
    }
}

/// The live snapshot files after a fold, with the fold's locks still held: a reader must read
/// them and [`RETIRED`] before another process folds one of them (read a live file, then the
/// totals it was folded into, and that process counts twice).
struct Folded {
    live: Vec<PathBuf>,
    _folding: Folding,
    _lock: DirLock,
}

/// Fold the files of processes that are gone into [`RETIRED`] and delete them; returns the
/// live files. A file that cannot be read is deleted without being counted.
fn retire_dead(dir: &Path) -> std::io::Result<Folded> {
    let _folding = Folding::take();
    let _lock = DirLock::take(&dir.join(RETIRE_LOCK))?;
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_pid(&name) else { continue };
        if pid_alive(pid) {
            live.push(e.path());
        } else {
            dead.push(e.path());
        }
    }
    live.sort();
    let folded = Folded {
        live,
        _folding,
        _lock,
    };
    if dead.is_empty() {
        return Ok(folded);
    }
    let retired = read_json(&dir.join(RETIRED));
    let before = retired
        .as_ref()
        .and_then(|r| r["process"]["retired_processes"].as_u64())
        .unwrap_or(0);
    let mut parts: Vec<Value> = retired.into_iter().collect();
    parts.extend(dead.iter().filter_map(|p| read_json(p)));
    let mut total = counters_only(merge_snapshots(&parts));
    total["process"]["retired_processes"] = json!(before + dead.len() as u64);
    replace(dir, RETIRED, &total)?;
    for p in dead {
        let _ = std::fs::remove_file(p);
    }
    Ok(folded)
}

/// Merge the snapshots of every live process in `dir` with the retired totals of the processes
/// that are gone (see the module doc): counters and connection counts are summed, latency
/// histograms merged exactly, breaker states counted over the live processes.
pub fn aggregate_dir(dir: &Path) -> std::io::Result<Value> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let folded = retire_dead(dir)?;
    let live: Vec<Value> = folded.live.iter().filter_map(|p| read_json(p)).collect();
    let processes = live.len();
    let mut all = live;
    let retired = read_json(&dir.join(RETIRED));
    let retired_processes = retired
        .as_ref()
        .and_then(|r| r["process"]["retired_processes"].as_u64())
        .unwrap_or(0);
    all.extend(retired);
    drop(folded);
    let mut merged = merge_snapshots(&all);
    merged["process"]["processes"] = json!(processes);
    merged["process"]["retired_processes"] = json!(retired_processes);
    Ok(merged)
}

/// Merge client snapshots (see [`aggregate_dir`]).
pub fn merge_snapshots(snapshots: &[Value]) -> Value {
    let mut dests: Map<String, Value> = Map::new();
    let mut latencies: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for s in snapshots {
        let Some(ds) = s.get("destinations").and_then(Value::as_object) else {
            continue;
        };
        for (addr, d) in ds {
            let entry = dests.entry(addr.clone()).or_insert_with(|| json!({}));
            let Some(d) = d.as_object() else { continue };
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("latency", l) => {
                        latencies.entry(addr.clone()).or_default().push(l.clone());
                    }
                    ("state", Value::String(state)) => {
                        let states = &mut entry["states"];
                        let n = states[state.as_str()].as_u64().unwrap_or(0);
                        states[state.as_str()] = json!(n + 1);
                        // The worst state any process sees is the one to show.
                        let rank = |s: &str| match s {
                            "open" => 2,
                            "half_open" => 1,
                            _ => 0,
                        };
                        let cur = entry
                            .get("state")
                            .and_then(Value::as_str)
                            .unwrap_or("closed")
                            .to_string();
                        if rank(state) >= rank(&cur) {
                            entry["state"] = json!(state);
                        }
                    }
                    ("errors", Value::Object(errs)) => {
                        for (reason, n) in errs {
                            let cur = entry["errors"][reason].as_u64().unwrap_or(0);
                            entry["errors"][reason] = json!(cur + n.as_u64().unwrap_or(0));
                        }
                    }
                    (_, Value::Number(n)) => {
                        let cur = entry.get(k).and_then(Value::as_u64).unwrap_or(0);
                        entry[k.as_str()] = json!(cur + n.as_u64().unwrap_or(0));
                    }
                    _ => {}
                }
            }
        }
    }
    for (addr, ls) in latencies {
        dests[&addr]["latency"] = merge_latency(ls.iter());
    }
    let sum = |key: &str| -> u64 {
        snapshots
            .iter()
            .filter_map(|s| {
                s.get("process")
                    .and_then(|p| p.get(key))
                    .and_then(Value::as_u64)
            })
            .sum()
    };
    // Route counters: summed per config path; the type is kept (the same in every process
    // that runs the same config; a process on another config contributes its own paths).
    let mut routes: Map<String, Value> = Map::new();
    let mut route_latencies: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for s in snapshots {
        let Some(rs) = s.get("routes").and_then(Value::as_object) else {
            continue;
        };
        for (path, r) in rs {
            let entry = routes.entry(path.clone()).or_insert_with(|| json!({}));
            let Some(r) = r.as_object() else { continue };
            for (k, v) in r {
                match v {
                    _ if k == "latency" => {
                        route_latencies
                            .entry(path.clone())
                            .or_default()
                            .push(v.clone());
                    }
                    Value::Number(n) => {
                        let cur = entry.get(k).and_then(Value::as_u64).unwrap_or(0);
                        entry[k.as_str()] = json!(cur + n.as_u64().unwrap_or(0));
                    }
                    other => entry[k.as_str()] = other.clone(),
                }
            }
        }
    }
    for (path, ls) in route_latencies {
        routes[&path]["latency"] = merge_latency(ls.iter());
    }
    // Stampede counters: summed.
    let mut stampede: Map<String, Value> = Map::new();
    for st in snapshots
        .iter()
        .filter_map(|s| s.get("stampede").and_then(Value::as_object))
    {
        for (k, v) in st {
            let cur = stampede.get(k).and_then(Value::as_u64).unwrap_or(0);
            stampede.insert(k.clone(), json!(cur + v.as_u64().unwrap_or(0)));
        }
    }
    json!({
        "destinations": dests,
        "routes": routes,
        "stampede": stampede,
        "process": {
            "processes": snapshots.len(),
            "reloads": sum("reloads"),
            "reload_failures": sum("reload_failures"),
        },
    })
}

/// `snap` less `base` in every counter and latency histogram (destinations, routes, stampede,
/// reloads); gauges and names stay as `snap` has them.
fn subtract_counters(mut snap: Value, base: &Value) -> Value {
    fn minus(v: &mut Value, b: &Value) {
        if let (Some(n), Some(m)) = (v.as_u64(), b.as_u64()) {
            *v = json!(n.saturating_sub(m));
        }
    }
    fn minus_latency(v: &mut Value, b: &Value) {
        let max = v["max_us"].clone();
        if let Some(buckets) = v.get_mut("buckets").and_then(Value::as_object_mut) {
            for (k, n) in buckets.iter_mut() {
                minus(n, &b["buckets"][k]);
            }
        }
        minus(&mut v["count"], &b["count"]);
        minus(&mut v["sum_us"], &b["sum_us"]);
        let mut h = crate::stats::Histogram::from_json(v).to_json();
        h["max_us"] = max;
        *v = h;
    }
    fn minus_table(entry: &mut Value, base: &Value, counters: &[(&str, &str)]) {
        for (c, _) in counters {
            if let Some(v) = entry.get_mut(*c) {
                minus(v, &base[*c]);
            }
        }
        if let Some(l) = entry.get_mut("latency")
            && base.get("latency").is_some()
        {
            minus_latency(l, &base["latency"]);
        }
    }
    if let Some(ds) = snap.get_mut("destinations").and_then(Value::as_object_mut) {
        for (addr, d) in ds.iter_mut() {
            let b = &base["destinations"][addr];
            minus_table(d, b, crate::stats::DestCounters::TABLE);
            if let Some(errs) = d.get_mut("errors").and_then(Value::as_object_mut) {
                for (r, n) in errs.iter_mut() {
                    minus(n, &b["errors"][r]);
                }
            }
        }
    }
    if let Some(rs) = snap.get_mut("routes").and_then(Value::as_object_mut) {
        for (path, r) in rs.iter_mut() {
            minus_table(r, &base["routes"][path], crate::stats::RouteCounters::TABLE);
        }
    }
    if let Some(st) = snap.get_mut("stampede").and_then(Value::as_object_mut) {
        for (k, n) in st.iter_mut() {
            minus(n, &base["stampede"][k]);
        }
    }
    if let Some(p) = snap.get_mut("process").and_then(Value::as_object_mut) {
        for k in ["reloads", "reload_failures"] {
            if let Some(n) = p.get_mut(k) {
                minus(n, &base["process"][k]);
            }
        }
    }
    snap
}

/// A client whose final snapshot is written when the process exits.
pub(crate) trait FinalSnapshot: Send + Sync {
    /// Write it (a no-op without `stats.dir`).
    fn write_final(&self);
}

struct ExitNode {
    client: std::sync::Weak<dyn FinalSnapshot>,
    next: *mut ExitNode,
}

/// Clients to flush at exit: a push-only lock-free list (a fork at any moment leaves it usable;
/// a process has a handful of clients, so nodes are never freed).
static AT_EXIT: std::sync::atomic::AtomicPtr<ExitNode> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static INSTALL_AT_EXIT: std::sync::Once = std::sync::Once::new();

/// Write `client`'s final snapshot when the process exits (`atexit`; for the PHP extension,
/// glibc runs it when PHP unloads the module at shutdown).
pub(crate) fn write_at_exit(client: std::sync::Weak<dyn FinalSnapshot>) {
    let node = Box::into_raw(Box::new(ExitNode {
        client,
        next: std::ptr::null_mut(),
    }));
    let mut head = AT_EXIT.load(Ordering::Acquire);
    loop {
        // SAFETY: `node` is ours until the exchange below publishes it.
        unsafe { (*node).next = head };
        match AT_EXIT.compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(h) => head = h,
        }
    }
    INSTALL_AT_EXIT.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(flush_at_exit) };
    });
}

extern "C" fn flush_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let mut p = AT_EXIT.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: published nodes are never freed.
            let node = unsafe { &*p };
            if let Some(c) = node.client.upgrade() {
                c.write_final();
            }
            p = node.next;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_listener_is_closed_whatever_holds_it() {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        // A handle nobody will drop (what a fork copies from a thread that was serving).
        let stuck = Arc::clone(&l);
        fork::release_inherited(&[l.as_raw_fd()]);
        let path = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        assert_eq!(path, std::path::Path::new("/dev/null"));
        // The port is free although both handles live.
        assert!(TcpListener::bind(addr).is_ok());
        drop((l, stuck)); // closes the /dev/null copy
    }

    #[test]
    fn snapshot_file_names() {
        assert_eq!(file_pid("fae-123-0.json"), Some(123));
        assert_eq!(file_pid(".fae-123-0.json.tmp"), None);
        assert_eq!(file_pid("other.json"), None);
    }

    /// A dead process's counters are folded into the retired totals exactly once and never
    /// go away; its gauges do; the live process count covers live files only.
    #[test]
    fn dead_processes_keep_their_counters_once() {
        let dir = std::env::temp_dir().join(format!("fae-retire-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        std::fs::write(
            dir.join(format!("fae-{me}-77.json")),
            r#"{"destinations": {"x:1": {"requests": 5, "open_connections": 1, "state": "closed"}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("fae-999999-0.json"),
            r#"{"destinations": {"x:1": {"requests": 1000, "open_connections": 3, "state": "open",
                 "errors": {"timeout": 2}}},
               "routes": {"route": {"type": "local", "local_hits": 4, "items": 9}},
               "process": {"reloads": 1, "config_version": 3}}"#,
        )
        .unwrap();
        for _ in 0..2 {
            let m = aggregate_dir(&dir).unwrap();
            let d = &m["destinations"]["x:1"];
            assert_eq!(d["requests"], 1005);
            assert_eq!(d["errors"]["timeout"], 2);
            assert_eq!(
                d["open_connections"], 1,
                "a dead process's gauges are dropped"
            );
            assert_eq!(d["states"], json!({"closed": 1}));
            assert_eq!(m["routes"]["route"]["local_hits"], 4);
            assert!(m["routes"]["route"].get("items").is_none());
            assert_eq!(m["process"]["processes"], 1);
            assert_eq!(m["process"]["retired_processes"], 1);
            assert_eq!(m["process"]["reloads"], 1);
            assert!(!dir.join("fae-999999-0.json").exists());
        }
        std::fs::write(
            dir.join("fae-999998-0.json"),
            r#"{"destinations": {"x:1": {"requests": 1}}}"#,
        )
        .unwrap();
        let m = aggregate_dir(&dir).unwrap();
        assert_eq!(m["destinations"]["x:1"]["requests"], 1006);
        assert_eq!(m["process"]["retired_processes"], 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merging_sums_counters_and_counts_states() {
        let a = json!({"destinations": {"h:1": {"requests": 2, "state": "closed", "errors": {"timeout": 1},
                        "latency": {"count": 1, "sum_us": 10, "max_us": 10, "buckets": {"10": 1}}}}});
        let b = json!({"destinations": {"h:1": {"requests": 3, "state": "open", "errors": {"timeout": 2}}}});
        let m = merge_snapshots(&[a, b]);
        let d = &m["destinations"]["h:1"];
        assert_eq!(d["requests"], 5);
        assert_eq!(d["errors"]["timeout"], 3);
        assert_eq!(d["state"], "open");
        assert_eq!(d["states"], json!({"closed": 1, "open": 1}));
        assert_eq!(d["latency"]["count"], 1);
        assert_eq!(m["process"]["processes"], 2);
        let a = json!({"routes": {"route": {"type": "failover", "failovers": 2}}});
        let b = json!({"routes": {"route": {"type": "failover", "failovers": 3}}});
        let m = merge_snapshots(&[a, b]);
        assert_eq!(
            m["routes"]["route"],
            json!({"type": "failover", "failovers": 5})
        );
        let lat = json!({"count": 2, "sum_us": 20, "max_us": 12, "buckets": {"8": 1, "12": 1}});
        let a = json!({"routes": {"route": {"type": "failover", "latency": lat}}});
        let b = json!({"routes": {"route": {"type": "failover", "latency": lat}}});
        let m = merge_snapshots(&[a, b]);
        assert_eq!(
            m["routes"]["route"]["latency"]["count"], 4,
            "route latency merged"
        );
        assert_eq!(
            counters_only(m)["routes"]["route"]["latency"]["count"],
            4,
            "and kept"
        );
        let a = json!({"stampede": {"computes": 1, "coalesced_gets": 4}});
        let b = json!({"stampede": {"computes": 2, "coalesced_gets": 0}});
        let m = merge_snapshots(&[a, b]);
        assert_eq!(m["stampede"], json!({"computes": 3, "coalesced_gets": 4}));
    }
}
