//! Counters, declared once in a table: name, help. Names are public API (stats keys, log
//! fields); add rows, never rename them.
//!
//! Per destination: requests, errors by reason, breaker transitions, probes, heartbeats and
//! connection churn, plus gauges read at snapshot time (breaker state, open and idle
//! connections). [`crate::Client::stats`] returns a snapshot as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::error::Reason;

macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident: $help:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(#[doc = $help] pub $field: AtomicU64,)*
        }

        impl $name {
            /// Every counter: (name, help).
            pub const TABLE: &'static [(&'static str, &'static str)] = &[$((stringify!($field), $help),)*];

            /// Every counter's current value, in table order.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.load(Ordering::Relaxed)),)*]
            }

            /// Add every row to a stats JSON object, zeros included: stats keys are API, and a
            /// key that appears only once its counter moves breaks readers that index it.
            pub fn insert_into(&self, m: &mut Map<String, Value>) {
                for (name, n) in self.values() {
                    m.insert(name.to_string(), json!(n));
                }
            }
        }
    };
}

counters! {
    /// Counters of one destination (one server address).
    pub struct DestCounters {
        requests: "requests sent (single-key and per-server parts of multi-key calls)",
        tko_rejected: "requests failed fast with `tko` because the breaker was open",
        breaker_opened: "closed -> open transitions",
        breaker_half_opened: "open -> half-open transitions (a probe succeeded)",
        breaker_closed: "half-open -> closed transitions (the trial requests succeeded)",
        breaker_reopened: "half-open -> open transitions (a trial request failed)",
        fail_open: "failures that would have opened the breaker while the pool was failing open",
        probes_ok: "breaker probes that succeeded",
        probes_failed: "breaker probes that failed",
        probes_parked: "failed probes left waiting on a connected server's socket for its late reply (a stopped or hung server)",
        probe_wakeups: "late replies to a parked probe (the server answered the moment it ran again: the breaker half-opened at once)",
        heartbeats_ok: "idle-connection heartbeats answered",
        heartbeats_failed: "idle-connection heartbeats that failed (the connection was discarded)",
        connections_opened: "connections dialled and validated",
        connections_failed: "dials or validations that failed",
        connections_discarded: "connections closed after an error or a timeout mid-reply",
        connections_recycled: "idle connections closed for max_idle or max_age",
        ejected_lookups: "keys routed away from this destination while it was ejected",
        hits: "keys found by get-type requests",
        misses: "keys not found by get-type requests",
        bytes_sent: "bytes written to the server",
        bytes_received: "bytes read from the server",
        writes_dropped: "writes answered locally as not stored because the pool is read_only",
        tls_resumed: "TLS connections that resumed an earlier session (no full handshake)",
        checkout_wakeups: "times a request waiting for a connection (all max_connections busy) woke to look again",
    }
}

counters! {
    /// Counters of one route of the tree (pool leaves count per destination instead). Each
    /// route type uses the rows that concern it; the others stay 0.
    pub struct RouteCounters {
        requests: "keys (or commands) that entered this route",
        failovers: "keys sent to the next child after a failure listed in failover_on",
        failover_exhausted: "keys that failed on every child tried",
        ttl_capped: "writes whose TTL a gutter capped",
        replica_failures: "replica replies that were failures",
        majority_failed: "all_majority writes where no reply had a majority",
        hedges_sent: "hedged reads: second requests sent",
        hedges_won: "hedged reads answered by the second request",
        hedges_suppressed: "hedges not sent because max_hedge_ratio was spent",
        shadowed: "keys mirrored to the shadow route",
        background_dropped: "background work dropped because its queue was full",
        warm_hits: "cold misses found in the warm route",
        warm_adds: "copies added to the cold route",
        read_fallbacks: "migrate: misses in the new topology read from the old one",
        copied_forward: "migrate: old-topology hits copied to the new topology",
        local_hits: "local cache hits",
        local_misses: "local cache misses",
        negative_hits: "keys a negative cache answered as misses without I/O",
        negative_adds: "misses of the route behind a negative cache remembered as absent",
        negative_evictions: "keys a negative cache forgot early to stay within max_keys",
        negative_raced: "misses a negative cache did not remember: this process wrote, flushed or evicted the key while the read was out",
        negative_bypassed: "keys of reads a negative cache sent straight on (gets, gat, lease, TTL and by-key reads)",
    }
}

counters! {
    /// Lease reads by outcome, `get_or_set` work and request coalescing (one set per client;
    /// see [`crate::lease`]).
    pub struct StampedeCounters {
        lease_hits: "lease reads that found a current value",
        lease_misses: "lease reads that missed and won the lease (this caller fills)",
        lease_waits: "lease reads that missed while another client held the lease",
        lease_stale: "lease reads served a stale value another client is refreshing",
        lease_refreshes: "lease reads that won the refresh of a stale or nearly expired value",
        computes: "get_or_set compute calls",
        fills_stored: "get_or_set fills stored with their lease",
        fills_lost: "get_or_set fills refused because a newer write or delete won",
        wait_timeouts: "get_or_set waits for another client's fill that ran out (computed, not stored)",
        lease_errors: "get_or_set lease reads or fills that failed (value computed without the cache)",
        coalesced_gets: "gets that shared another thread's request in flight",
        coalesced_fills: "get_or_set calls that shared another thread's fill",
    }
}

/// Sub-buckets per power of two: about 12 % relative precision.
const SUB: usize = 8;
/// Values below this many microseconds get one bucket each.
const LINEAR: u64 = 16;
const BUCKETS: usize = LINEAR as usize + (64 - 4) * SUB;

/// A lock-free latency histogram in microseconds: log-linear buckets (exact below 16 µs, then
/// 8 per power of two), plus count, sum and max. Recording is three relaxed atomic adds.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (e - 3)) & (SUB as u64 - 1)) as usize;
    LINEAR as usize + (e - 4) * SUB + sub
}

/// The largest value that falls in bucket `i` (what a percentile reports).
fn bucket_upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let e = (i - LINEAR as usize) / SUB + 4;
    let sub = ((i - LINEAR as usize) % SUB) as u64;
    let low = (1u64 << e) | (sub << (e - 3));
    low + (1u64 << (e - 3)) - 1
}

/// The `q` quantile (0..=1) of bucket counts: the upper bound of the bucket holding it; `None`
/// when they are all zero.
fn quantile_of(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper(i));
        }
    }
    None
}

impl Histogram {
    /// Record one latency.
    pub fn record(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        // `fetch_max` is a locked compare-exchange even when it changes nothing: look first.
        if us > self.max_us.load(Ordering::Relaxed) {
            self.max_us.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of all values, microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Largest value, microseconds.
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1), microseconds: the upper bound of the bucket holding it.
    pub fn quantile_us(&self, q: f64) -> u64 {
        quantile_of(&self.counts(), q).map_or(0, |us| us.min(self.max_us()))
    }

    /// Each bucket's count.
    fn counts(&self) -> Box<[u64]> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// `{"count", "sum_us", "p50_us", "p95_us", "p99_us", "max_us", "buckets": {upper_us: n}}`.
    /// The sparse buckets let snapshots of many processes be merged exactly
    /// ([`merge_latency`]).
    pub fn to_json(&self) -> Value {
        let mut buckets = Map::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            if n > 0 {
                buckets.insert(bucket_upper(i).to_string(), json!(n));
            }
        }
        json!({
            "count": self.count(),
            "sum_us": self.sum_us(),
            "p50_us": self.quantile_us(0.50),
            "p95_us": self.quantile_us(0.95),
            "p99_us": self.quantile_us(0.99),
            "max_us": self.max_us(),
            "buckets": buckets,
        })
    }

    /// Rebuild a histogram from [`Histogram::to_json`] output.
    pub fn from_json(v: &Value) -> Histogram {
        let h = Histogram::default();
        if let Some(b) = v.get("buckets").and_then(Value::as_object) {
            for (upper, n) in b {
                if let (Ok(u), Some(n)) = (upper.parse::<u64>(), n.as_u64()) {
                    h.buckets[bucket_of(u)].fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        h.count.store(get("count"), Ordering::Relaxed);
        h.sum_us.store(get("sum_us"), Ordering::Relaxed);
        h.max_us.store(get("max_us"), Ordering::Relaxed);
        h
    }
}

/// A quantile of a [`Histogram`]'s recent values (what a hedged read waits for: the lifetime
/// p95 would remember a slow hour for good, and hedge after it long after the server
/// recovered).
///
/// Recording stays three atomic adds: this keeps the histogram's counts as they stood when
/// the current window opened, and the previous window's counts, and answers from the two
/// windows. A window closes when asked after [`RecentQuantile::WINDOW_VALUES`] values, or
/// after [`RecentQuantile::WINDOW_MS`] with at least [`RecentQuantile::MIN_VALUES`]; so the
/// answer covers the last 1,000–2,000 values at high rates and the last 1–2 s at low ones.
/// The answer is recomputed at most every [`RecentQuantile::EVERY_MS`], by one caller; the
/// two windows (8 KiB) exist only once asked.
#[derive(Debug)]
pub struct RecentQuantile {
    q: f64,
    /// The last answer in µs; `u64::MAX` before there is one.
    value_us: AtomicU64,
    /// When it was computed (ms; `u64::MAX`: never); whoever moves this on recomputes.
    at_ms: AtomicU64,
    window: arc_swap::ArcSwapOption<Window>,
}

/// See [`RecentQuantile`]: replaced whole when a window closes, so readers need no lock.
#[derive(Debug)]
struct Window {
    /// The histogram's counts when this window opened.
    base: Box<[u64]>,
    /// The previous window's counts.
    prev: Box<[u64]>,
    opened_ms: u64,
}

impl RecentQuantile {
    /// Values after which a window closes.
    pub const WINDOW_VALUES: u64 = 1000;
    /// Age after which a window with [`Self::MIN_VALUES`] closes.
    pub const WINDOW_MS: u64 = 1000;
    /// Fewer values than this in the two windows give no answer.
    pub const MIN_VALUES: u64 = 100;
    /// The answer is recomputed at most this often.
    pub const EVERY_MS: u64 = 100;

    /// The `q` quantile (0..=1).
    pub fn new(q: f64) -> RecentQuantile {
        RecentQuantile {
            q,
            value_us: AtomicU64::new(u64::MAX),
            at_ms: AtomicU64::new(u64::MAX),
            window: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The quantile of `h`'s recent values at `now_ms` (a monotonic clock in ms), in µs;
    /// `None` until the windows have held [`Self::MIN_VALUES`] values.
    pub fn get(&self, h: &Histogram, now_ms: u64) -> Option<u64> {
        let at = self.at_ms.load(Ordering::Relaxed);
        if (at == u64::MAX || now_ms.saturating_sub(at) >= Self::EVERY_MS)
            && self
                .at_ms
                .compare_exchange(at, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.recompute(h, now_ms);
        }
        match self.value_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(us),
        }
    }

    fn recompute(&self, h: &Histogram, now_ms: u64) {
        let now = h.counts();
        let w = self.window.load_full();
        let base = w.as_ref().map(|w| &w.base[..]);
        // Counts since the window opened (all of them before the first window).
        let cur: Box<[u64]> = match base {
            Some(b) => now
                .iter()
                .zip(b)
                .map(|(n, b)| n.saturating_sub(*b))
                .collect(),
            None => now.clone(),
        };
        let n: u64 = cur.iter().sum();
        let opened = w.as_ref().map_or(0, |w| w.opened_ms);
        let close = n >= Self::WINDOW_VALUES
            || (n >= Self::MIN_VALUES && now_ms.saturating_sub(opened) >= Self::WINDOW_MS);
        // A window that closes answers alone; an open one together with the previous one.
        let sample: Box<[u64]> = match &w {
            Some(w) if !close => cur.iter().zip(&w.prev).map(|(c, p)| c + p).collect(),
            _ => cur,
        };
        if sample.iter().sum::<u64>() >= Self::MIN_VALUES
            && let Some(us) = quantile_of(&sample, self.q)
        {
            self.value_us.store(us.min(h.max_us()), Ordering::Relaxed);
        }
        if close {
            self.window.store(Some(Arc::new(Window {
                base: now,
                prev: sample,
                opened_ms: now_ms,
            })));
        }
    }
}

/// Merge latency objects of several snapshots into one (buckets, counts and sums added, max
/// taken), with quantiles recomputed.
pub fn merge_latency<'a>(items: impl IntoIterator<Item = &'a Value>) -> Value {
    let total = Histogram::default();
    for v in items {
        let h = Histogram::from_json(v);
        for (t, b) in total.buckets.iter().zip(h.buckets.iter()) {
            t.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        total.count.fetch_add(h.count(), Ordering::Relaxed);
        total.sum_us.fetch_add(h.sum_us(), Ordering::Relaxed);
        total.max_us.fetch_max(h.max_us(), Ordering::Relaxed);
    }
    total.to_json()
}

/// Upper bounds of the exported Prometheus histogram buckets, microseconds: 50 µs to 10 s, the
/// range a memcached round trip falls in. Fixed, so every process and host exports the same
/// `le` labels and `sum by (le)` adds them up.
pub const PROMETHEUS_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The Prometheus name of a counter row: the unit goes last, before `_total`
/// (`bytes_sent` -> `sent_bytes`), as the naming conventions ask. Stats JSON keys keep the row
/// name.
fn prometheus_counter_name(row: &str) -> std::borrow::Cow<'_, str> {
    match row.strip_prefix("bytes_") {
        Some(what) => format!("{what}_bytes").into(),
        None => row.into(),
    }
}

/// Write the `_bucket`, `_sum` and `_count` series of one latency histogram (a
/// [`Histogram::to_json`] object). A core bucket counts under the first `le` at or above its
/// upper end, so `le` counts are exact for the core's buckets (values are never counted below
/// their bound; a value at most one core bucket, 12 %, under a bound may count in the next).
fn write_histogram(out: &mut String, name: &str, labels: &str, latency: &Value) {
    use std::fmt::Write;
    let h = Histogram::from_json(latency);
    let mut cumulative = vec![0u64; PROMETHEUS_BUCKETS_US.len()];
    for (i, b) in h.buckets.iter().enumerate() {
        let n = b.load(Ordering::Relaxed);
        if n == 0 {
            continue;
        }
        let upper = bucket_upper(i);
        if let Some(j) = PROMETHEUS_BUCKETS_US.iter().position(|&le| upper <= le) {
            cumulative[j] += n;
        }
    }
    let mut running = 0;
    for (le, n) in PROMETHEUS_BUCKETS_US.iter().zip(&cumulative) {
        running += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {running}",
            *le as f64 / 1e6
        );
    }
    // +Inf is the count, so `_bucket{le="+Inf"} == _count` holds even for a snapshot whose
    // buckets were lost (an older writer).
    let count = h.count().max(running);
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// Escape a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Render a stats snapshot (the JSON of [`crate::Client::stats`], or a merge of several) in the
/// Prometheus text exposition format (version 0.0.4). Metric names and help texts come from
/// the counter table, so a new counter appears in both formats.
pub fn render_prometheus(snapshot: &Value) -> String {
    use std::fmt::Write;
    let empty = Map::new();
    let dests = snapshot
        .get("destinations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "fae_build_info",
        "gauge",
        "always 1; the libfae version that rendered these metrics",
    );
    let _ = writeln!(
        out,
        "fae_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for (counter, help) in DestCounters::TABLE {
        let name = format!("fae_destination_{}_total", prometheus_counter_name(counter));
        family(&mut out, &name, "counter", help);
        for (addr, d) in dests {
            let n = d.get(*counter).and_then(Value::as_u64).unwrap_or(0);
            let _ = writeln!(out, "{name}{{destination=\"{}\"}} {n}", label(addr));
        }
    }
    family(
        &mut out,
        "fae_destination_errors_total",
        "counter",
        "failed requests by reason",
    );
    for (addr, d) in dests {
        if let Some(errs) = d.get("errors").and_then(Value::as_object) {
            for (reason, n) in errs {
                let _ = writeln!(
                    out,
                    "fae_destination_errors_total{{destination=\"{}\",reason=\"{}\"}} {}",
                    label(addr),
                    label(reason),
                    n.as_u64().unwrap_or(0)
                );
            }
        }
    }
    family(
        &mut out,
        "fae_destination_breaker_state",
        "gauge",
        "1 for the breaker's current state",
    );
    for (addr, d) in dests {
        let state = d.get("state").and_then(Value::as_str).unwrap_or("");
        for s in ["closed", "open", "half_open"] {
            let v = u8::from(state == s);
            let _ = writeln!(
                out,
                "fae_destination_breaker_state{{destination=\"{}\",state=\"{s}\"}} {v}",
                label(addr)
            );
        }
    }
    for (gauge, help) in [
        (
            "open_connections",
            "connections open to the server (idle and in use)",
        ),
        ("idle_connections", "connections idle in the pool"),
    ] {
        let name = format!("fae_destination_{gauge}");
        family(&mut out, &name, "gauge", help);
        for (addr, d) in dests {
            let n = d.get(gauge).and_then(Value::as_u64).unwrap_or(0);
            let _ = writeln!(out, "{name}{{destination=\"{}\"}} {n}", label(addr));
        }
    }
    family(
        &mut out,
        "fae_destination_latency_seconds",
        "histogram",
        "request latency, checkout to complete reply",
    );
    for (addr, d) in dests {
        let Some(l) = d.get("latency") else { continue };
        write_histogram(
            &mut out,
            "fae_destination_latency_seconds",
            &format!("destination=\"{}\"", label(addr)),
            l,
        );
    }
    let routes = snapshot
        .get("routes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if !routes.is_empty() {
        for (counter, help) in RouteCounters::TABLE {
            let name = format!("fae_route_{counter}_total");
            let rows: Vec<(&String, u64, &str)> = routes
                .iter()
                .filter_map(|(path, r)| {
                    let n = r.get(*counter).and_then(Value::as_u64)?;
                    Some((path, n, r.get("type").and_then(Value::as_str).unwrap_or("")))
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            family(&mut out, &name, "counter", help);
            for (path, n, ty) in rows {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\",type=\"{}\"}} {n}",
                    label(path),
                    label(ty)
                );
            }
        }
    }
    if routes.values().any(|r| r.get("latency").is_some()) {
        family(
            &mut out,
            "fae_route_latency_seconds",
            "histogram",
            "request latency through a route node, its children, retries and failovers included",
        );
        for (path, r) in routes {
            let Some(l) = r.get("latency") else { continue };
            let ty = r.get("type").and_then(Value::as_str).unwrap_or("");
            write_histogram(
                &mut out,
                "fae_route_latency_seconds",
                &format!("route=\"{}\",type=\"{}\"", label(path), label(ty)),
                l,
            );
        }
    }
    if let Some(st) = snapshot.get("stampede").and_then(Value::as_object) {
        for (counter, help) in StampedeCounters::TABLE {
            if let Some(n) = st.get(*counter).and_then(Value::as_u64) {
                let name = format!("fae_stampede_{counter}_total");
                family(&mut out, &name, "counter", help);
                let _ = writeln!(out, "{name} {n}");
            }
        }
    }
    if let Some(p) = snapshot.get("process").and_then(Value::as_object) {
        for (key, kind, help) in [
            (
                "processes",
                "gauge",
                "processes whose snapshots are included",
            ),
            (
                "config_version",
                "gauge",
                "configuration version in force (reloads applied)",
            ),
            (
                "retired_processes",
                "counter",
                "processes gone whose final counters are included",
            ),
            ("reloads", "counter", "configuration reloads applied"),
            (
                "reload_failures",
                "counter",
                "configuration reloads rejected (the old one stayed)",
            ),
        ] {
            if let Some(n) = p.get(key).and_then(Value::as_u64) {
                let name = if kind == "counter" {
                    format!("fae_{key}_total")
                } else {
                    format!("fae_{key}")
                };
                family(&mut out, &name, kind, help);
                let _ = writeln!(out, "{name} {n}");
            }
        }
    }
    out
}

/// Errors by reason, indexed by [`Reason::ALL`].
#[derive(Debug, Default)]
pub struct ErrorCounters([AtomicU64; Reason::ALL.len()]);

impl ErrorCounters {
    /// Count one error.
    pub fn add(&self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Non-zero counts as a JSON object keyed by reason name.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (r, c) in Reason::ALL.iter().zip(&self.0) {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                m.insert(r.as_str().to_string(), json!(n));
            }
        }
        Value::Object(m)
    }

    /// The count for one reason.
    pub fn get(&self, reason: Reason) -> u64 {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Add one to a counter.
#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_counter_once() {
        let names: std::collections::HashSet<_> =
            DestCounters::TABLE.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), DestCounters::TABLE.len());
        let c = DestCounters::default();
        inc(&c.requests);
        assert_eq!(c.values()[0], ("requests", 1));
    }

    #[test]
    fn histogram_buckets_cover_their_values() {
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            12_345,
            1 << 30,
            u64::MAX >> 1,
        ] {
            let i = bucket_of(us);
            assert!(i < BUCKETS);
            assert!(bucket_upper(i) >= us, "{us} -> {i} -> {}", bucket_upper(i));
            assert!(i == 0 || bucket_upper(i - 1) < us, "{us}");
        }
    }

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(std::time::Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5);
        assert!((500..=570).contains(&p50), "{p50}");
        let p99 = h.quantile_us(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.max_us(), 1000);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile_us(1.0), 1000);
    }

    #[test]
    fn a_recent_quantile_forgets_a_slow_past() {
        let h = Histogram::default();
        let r = RecentQuantile::new(0.95);
        let record = |n: u64, us: u64| {
            for _ in 0..n {
                h.record(std::time::Duration::from_micros(us));
            }
        };
        assert_eq!(r.get(&h, 0), None, "nothing measured yet");
        // A slow spell: 5,000 requests at 20 ms.
        record(5000, 20_000);
        assert!((20_000..=20_479).contains(&r.get(&h, 100).unwrap()));
        // The server recovers: within two windows the answer is the new p95, though the
        // lifetime p95 is still the slow spell's.
        record(1500, 100);
        assert!(
            (20_000..=20_479).contains(&r.get(&h, 150).unwrap()),
            "recomputed too soon"
        );
        assert!(r.get(&h, 200).unwrap() <= 103);
        assert!(h.quantile_us(0.95) >= 20_000);
        // A window of 7 % slow values shows at once.
        record(930, 100);
        record(70, 20_000);
        assert!(r.get(&h, 300).unwrap() >= 20_000);
        record(1000, 100);
        assert!(r.get(&h, 400).unwrap() <= 103);
        // At a low rate a window stays open until it is a second old, and the answer comes
        // from it and the previous one.
        record(150, 5_000);
        assert!(
            r.get(&h, 500).unwrap() >= 5_000,
            "1,000 fast before, 150 slow now"
        );
        assert!(
            r.get(&h, 1_300).unwrap() >= 5_000,
            "the window is still open"
        );
        record(100, 100);
        assert!(r.get(&h, 1_400).unwrap() >= 5_000, "it closed holding both");
        record(300, 100);
        assert!(
            r.get(&h, 2_400).unwrap() <= 103,
            "closed again after a second"
        );
        assert_eq!(
            r.get(&h, 2_450),
            r.get(&h, 2_400),
            "not recomputed within 100 ms"
        );
    }

    #[test]
    fn histograms_survive_json_and_merge_exactly() {
        let a = Histogram::default();
        let b = Histogram::default();
        for us in 1..=500u64 {
            a.record(std::time::Duration::from_micros(us));
            b.record(std::time::Duration::from_micros(us + 500));
        }
        let merged = merge_latency([&a.to_json(), &b.to_json()]);
        assert_eq!(merged["count"], 1000);
        assert_eq!(merged["max_us"], 1000);
        let p50 = merged["p50_us"].as_u64().unwrap();
        assert!((500..=570).contains(&p50), "{p50}");
    }

    #[test]
    fn errors_by_reason() {
        let e = ErrorCounters::default();
        e.add(Reason::Timeout);
        e.add(Reason::Timeout);
        assert_eq!(e.to_json(), json!({"timeout": 2}));
        assert_eq!(e.get(Reason::Timeout), 2);
    }
}
