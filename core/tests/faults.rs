//! The fault-injection matrix (issue 4, item 7): 4 real memcached servers, each behind its own
//! [`FaultProxy`], and one client per case.
//!
//! Every fault the proxy can inject (a delay beyond `io_ms`, a black hole, a reset on accept, a
//! reset on data, a reply truncated mid-value, garbage, a slow drip, a refused connect) is run
//! against {single get, multi-get over the 4 servers, set} × {`on_down: fail_fast`, `eject`}.
//! Then: a memcached SIGSTOPped longer than the timeout, killed, restarted on the same port, and
//! a server that flaps; fail-open with 3 of 4 servers faulted; no connection reused after a
//! mid-reply failure.
//!
//! What every case asserts:
//! - **Bounded latency**: no call takes longer than `io_ms` + [`SLACK`], and once the breaker
//!   is open a `tko` comes back within [`FAST`] without a request reaching the server.
//! - **The right reason**: each fault has its own small set of [`Reason`]s.
//! - **No value for the wrong key**: every value embeds its key and a version and is checked
//!   byte for byte ([`check_item`]), on every call, faulted or not.
//! - **The breaker** opens within 3 failed requests (`tko_soft_threshold` 3, or one hard
//!   failure), and closes again within [`recovery_bound`] after the fault is removed.
//! - **Eject** moves only the down server's keys (`route_for` of every other key is unchanged)
//!   and moves them back after recovery.
//! - Healthy servers' keys are never affected.
//!
//! Timeouts are short to keep the file fast: `connect_ms` 100, `io_ms` 200, probes from 50 ms
//! backing off to at most 500 ms.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fae_core::pool::health::BreakerState;
use fae_core::{Client, Config, Item, Op, Reason};
use fae_testkit::{Cluster, Fault, FaultProxy, wait_until};

const CONNECT_MS: u64 = 100;
const IO_MS: u64 = 200;
const PROBE_INITIAL_MS: u64 = 50;
const PROBE_MAX_MS: u64 = 500;
/// The supervisor's wake-up period (`core/src/supervisor.rs`).
const SUPERVISOR_TICK_MS: u64 = 20;
/// Scheduling slack on top of a deadline: two shared cores, tests running in parallel.
const SLACK: Duration = Duration::from_millis(150);
/// A `tko` never waits for the network; this bounds scheduling noise only.
const FAST: Duration = Duration::from_millis(50);
/// Bytes per stored value: large enough that a truncation or a slow drip lands mid-value.
const VALUE_LEN: usize = 1000;
/// The server every matrix case faults.
const VICTIM: usize = 1;

/// The longest any call may take: its deadline plus slack.
fn latency_bound() -> Duration {
    Duration::from_millis(IO_MS) + SLACK
}

/// From removing a fault to a closed breaker: the probe delay may have backed off to
/// `probe_max` (+ 25 % jitter) while the fault was on; the supervisor wakes every tick; the
/// probe dials within `connect_ms`; then the half-open trials (3 requests) run. Plus slack.
fn recovery_bound() -> Duration {
    Duration::from_millis(PROBE_MAX_MS * 5 / 4 + SUPERVISOR_TICK_MS + CONNECT_MS + 300)
}

fn client(addrs: &[String], on_down: &str, health_extra: &str) -> Client {
    let servers: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let json = format!(
        r#"{{"servers": [{}], "on_down": "{on_down}",
            "timeouts": {{"connect_ms": {CONNECT_MS}, "io_ms": {IO_MS}}},
            "health": {{"probe_initial_ms": {PROBE_INITIAL_MS}, "probe_max_ms": {PROBE_MAX_MS}{health_extra}}}}}"#,
        servers.join(", ")
    );
    Client::new(&Config::from_json(&json).unwrap()).unwrap()
}

/// The value stored under `key` at `version`: `key#version#` then filler derived from both,
/// [`VALUE_LEN`] bytes in all. A value read for another key, another version's filler, or a
/// short value all fail [`check_item`].
fn value_for(key: &str, version: u32) -> Vec<u8> {
    let mut v = format!("{key}#{version}#").into_bytes();
    let mut x = key
        .bytes()
        .fold(0x811c_9dc5_u32 ^ version, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        })
        .max(1);
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

/// Panics unless `item` is exactly some version of `key`'s value.
fn check_item(ctx: &str, key: &str, item: &Item) {
    let v = &item.value;
    let prefix = format!("{key}#");
    let shown = String::from_utf8_lossy(&v[..v.len().min(60)]).into_owned();
    assert!(
        v.starts_with(prefix.as_bytes()),
        "{ctx}: VALUE FOR THE WRONG KEY: asked {key}, got {shown:?}…"
    );
    let rest = &v[prefix.len()..];
    let end = rest
        .iter()
        .position(|&b| b == b'#')
        .unwrap_or_else(|| panic!("{ctx}: {key}: malformed value {shown:?}"));
    let version: u32 = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: {key}: malformed value {shown:?}"));
    assert!(
        *v == value_for(key, version),
        "{ctx}: {key}: corrupted value ({} bytes) {shown:?}…",
        v.len()
    );
}

/// `per_server` keys named `prefix:i` for each of `addrs`, chosen by `route_for` (ports,
/// hence the ring, differ from run to run), with each key's server.
fn spread_keys(
    c: &Client,
    addrs: &[String],
    prefix: &str,
    per_server: usize,
) -> (Vec<String>, Vec<String>) {
    let mut count = vec![0; addrs.len()];
    let (mut keys, mut home) = (Vec::new(), Vec::new());
    for i in 0.. {
        if count.iter().all(|&n| n >= per_server) {
            break;
        }
        assert!(i < 100_000, "{prefix}: cannot spread keys over the servers");
        let k = format!("{prefix}:{i}");
        let h = c.route_for(Op::Get, k.as_bytes()).unwrap().remove(0);
        let s = addrs.iter().position(|a| *a == h).unwrap();
        if count[s] < per_server {
            count[s] += 1;
            keys.push(k);
            home.push(h);
        }
    }
    (keys, home)
}

/// 4 memcached servers, each behind its own fault proxy.
struct Env {
    proxies: Vec<FaultProxy>,
    cluster: Cluster,
}

impl Env {
    fn start() -> Env {
        let cluster = Cluster::start(4);
        let proxies = cluster
            .addrs()
            .iter()
            .map(|a| FaultProxy::start(a))
            .collect();
        Env { proxies, cluster }
    }

    /// What clients connect to: the proxies.
    fn addrs(&self) -> Vec<String> {
        self.proxies.iter().map(FaultProxy::addr).collect()
    }

    fn heal(&self) {
        for p in &self.proxies {
            if p.fault() != Fault::None {
                p.set_fault(Fault::None);
            }
        }
    }
}

fn state(c: &Client, i: usize) -> BreakerState {
    c.breaker_states()[i].1
}

fn dest_stat(c: &Client, addr: &str, name: &str) -> u64 {
    c.stats()["destinations"][addr][name].as_u64().unwrap_or(0)
}

/// One fault of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inject {
    /// Every reply 400 ms late (2 × `io_ms`).
    Delay,
    BlackHole,
    /// New connections reset at once; established ones reset too (`reset_all`), as when a
    /// server's host starts rejecting connections.
    ResetOnAccept,
    ResetOnData,
    /// Gets: the reply cut after 100 bytes of a 1000-byte value. Sets: the 4-byte `HD` reply
    /// cut after 2 bytes (a set reply has no value to cut).
    Truncate,
    Garbage,
    /// One byte every 60 ms: the 4-byte `MN` validation reply outlasts `connect_ms`, a set's
    /// `HD` reply outlasts `io_ms`, a value stops mid-way.
    SlowDrip,
    /// The port refuses connects; established connections are reset (`reset_all`), as when
    /// memcached crashed.
    Refuse,
}

/// The operation a matrix case exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Get,
    /// A `get_multi` of every key of the case, over all 4 servers.
    MultiGet,
    Set,
}

impl Inject {
    fn fault(self, call: Call) -> Fault {
        match self {
            Inject::Delay => Fault::Delay(Duration::from_millis(2 * IO_MS)),
            Inject::BlackHole => Fault::BlackHole,
            Inject::ResetOnAccept => Fault::ResetOnAccept,
            Inject::ResetOnData => Fault::ResetOnData,
            Inject::Truncate => Fault::Truncate {
                after: if call == Call::Set { 2 } else { 100 },
            },
            Inject::Garbage => Fault::Garbage,
            Inject::SlowDrip => Fault::SlowDrip {
                interval: Duration::from_millis(60),
            },
            Inject::Refuse => Fault::Refuse,
        }
    }

    fn apply(self, proxy: &FaultProxy, call: Call) {
        proxy.set_fault(self.fault(call));
        if matches!(self, Inject::ResetOnAccept | Inject::Refuse) {
            proxy.reset_all();
        }
    }

    /// The reasons a request may fail with under this fault (before the breaker opens).
    fn allowed(self) -> &'static [Reason] {
        match self {
            // The pooled connection times out at io_ms; a new connection's validation at
            // connect_ms.
            Inject::Delay | Inject::BlackHole | Inject::SlowDrip => {
                &[Reason::Timeout, Reason::ConnectTimeout]
            }
            // A reset during connect or during a new connection's validation is a failure to
            // connect (connect_failed, hard); on a pooled connection it is a reset.
            Inject::ResetOnAccept => &[Reason::Reset, Reason::ConnectFailed],
            Inject::ResetOnData => &[Reason::Reset, Reason::ConnectFailed],
            // A short reply, then end of stream (on a new connection: during validation).
            Inject::Truncate => &[Reason::Reset, Reason::ConnectFailed],
            Inject::Garbage => &[Reason::Protocol],
            // The pooled connection was reset; the dial is refused.
            Inject::Refuse => &[Reason::Reset, Reason::ConnectRefused],
        }
    }
}

/// One client over the 4 proxies, with keys whose home servers were noted before any fault.
struct Case {
    ctx: String,
    c: Client,
    call: Call,
    keys: Vec<String>,
    /// `route_for` of each key before any fault.
    home: Vec<String>,
    /// Indices (into `keys`) of the keys whose home is the victim.
    victim_keys: Vec<usize>,
    victim: usize,
    vaddr: String,
    version: u32,
    n: usize,
}

impl Case {
    /// A fresh client with `per_server` keys on each server (chosen by `route_for`: ports,
    /// hence the ring, differ from run to run), stored at version 0, and one warm connection
    /// per server.
    fn new(env: &Env, ctx: String, on_down: &str, call: Call, per_server: usize) -> Case {
        let c = client(&env.addrs(), on_down, "");
        let (keys, home) = spread_keys(&c, &env.addrs(), &ctx, per_server);
        for k in &keys {
            c.set(k.as_bytes(), &value_for(k, 0), 0, 0)
                .unwrap_or_else(|e| panic!("{ctx}: preload {k}: {e}"));
        }
        let vaddr = env.proxies[VICTIM].addr();
        let victim_keys: Vec<usize> = (0..keys.len()).filter(|&i| home[i] == vaddr).collect();
        let case = Case {
            ctx,
            c,
            call,
            keys,
            home,
            victim_keys,
            victim: VICTIM,
            vaddr,
            version: 0,
            n: 0,
        };
        case.read_all_hits();
        case
    }

    /// Every key readable with a right-key value, in one multi-get.
    fn read_all_hits(&self) {
        let asked: Vec<&[u8]> = self.keys.iter().map(|k| k.as_bytes()).collect();
        let got = self.c.get_multi(&asked).unwrap();
        for (k, r) in self.keys.iter().zip(&got) {
            match r {
                Ok(Some(item)) => check_item(&self.ctx, k, item),
                other => panic!("{}: {k}: expected a hit, got {other:?}", self.ctx),
            }
        }
    }

    /// Every key read in one multi-get: healthy servers' keys are hits; the victim's are hits
    /// or misses (it lost its data), never another key's value.
    fn read_all_checked(&self) {
        let asked: Vec<&[u8]> = self.keys.iter().map(|k| k.as_bytes()).collect();
        let got = self.c.get_multi(&asked).unwrap();
        for (i, (k, r)) in self.keys.iter().zip(&got).enumerate() {
            match r {
                Ok(Some(item)) => check_item(&self.ctx, k, item),
                Ok(None) if self.home[i] == self.vaddr => {}
                other => panic!("{}: {k}: {other:?}", self.ctx),
            }
        }
    }

    fn state(&self) -> BreakerState {
        state(&self.c, self.victim)
    }

    /// Does every key still route to its home server, or (`victim_ejected`) do exactly the
    /// victim's keys route elsewhere?
    fn check_routes(&self, victim_ejected: bool) {
        for (i, k) in self.keys.iter().enumerate() {
            let now = self.c.route_for(Op::Get, k.as_bytes()).unwrap().remove(0);
            if victim_ejected && self.home[i] == self.vaddr {
                assert_ne!(
                    now, self.vaddr,
                    "{}: {k} still routes to the victim",
                    self.ctx
                );
            } else {
                assert_eq!(
                    now, self.home[i],
                    "{}: {k} of a healthy server moved",
                    self.ctx
                );
            }
        }
    }

    /// One request of the case's call for a victim key (a multi-get also reads every other
    /// key). Returns the victim key's outcome and the call's duration. Checks the latency
    /// bound, every returned value, and that healthy servers' keys are all hits.
    fn attempt(&mut self) -> (Result<(), Reason>, Duration) {
        let ctx = &self.ctx;
        let vk = &self.keys[self.victim_keys[self.n % self.victim_keys.len()]];
        self.n += 1;
        let t = Instant::now();
        let outcome = match self.call {
            Call::Get => {
                let r = self.c.get(vk.as_bytes());
                let took = t.elapsed();
                match r {
                    // A miss is possible under eject: the key's stand-in server lacks it.
                    Ok(item) => {
                        if let Some(item) = item {
                            check_item(ctx, vk, &item);
                        }
                        (Ok(()), took)
                    }
                    Err(e) => (Err(e.reason()), took),
                }
            }
            Call::Set => {
                self.version += 1;
                let r = self
                    .c
                    .set(vk.as_bytes(), &value_for(vk, self.version), 0, 0);
                (r.map_err(|e| e.reason()), t.elapsed())
            }
            Call::MultiGet => {
                let asked: Vec<&[u8]> = self.keys.iter().map(|k| k.as_bytes()).collect();
                let got = self.c.get_multi(&asked).unwrap();
                let took = t.elapsed();
                let mut victim: Option<Result<(), Reason>> = None;
                for (i, (k, r)) in self.keys.iter().zip(&got).enumerate() {
                    if let Ok(Some(item)) = r {
                        check_item(ctx, k, item);
                    }
                    if self.home[i] != self.vaddr {
                        assert!(
                            matches!(r, Ok(Some(_))),
                            "{ctx}: healthy server's key {k}: {r:?}"
                        );
                        continue;
                    }
                    let this = r.as_ref().map(|_| ()).map_err(|e| e.reason());
                    match victim {
                        None => victim = Some(this),
                        Some(first) => assert_eq!(
                            first, this,
                            "{ctx}: the victim's keys disagree in one multi-get"
                        ),
                    }
                }
                (victim.expect("victim keys"), took)
            }
        };
        assert!(
            outcome.1 <= latency_bound(),
            "{ctx}: call {} took {:?} (bound {:?}), outcome {:?}",
            self.n,
            outcome.1,
            latency_bound(),
            outcome.0
        );
        outcome
    }
}

/// An outage of the victim server: how it starts and ends, and what it looks like.
struct Outage<'f> {
    start: &'f dyn Fn(),
    end: &'f dyn Fn(),
    /// Reasons a request to the victim may fail with while its breaker is closed.
    allowed: &'f [Reason],
    /// Keep the outage on at least this long (from its start) before ending it.
    hold: Duration,
    /// The server still has its data afterwards (false for a killed and restarted one).
    keeps_data: bool,
}

/// One outage against a fresh client. Start it, drive requests until the victim's breaker
/// opens (≤ 3 failures, each with an allowed reason, each within the deadline), check
/// fail-fast or eject behaviour while it is open, end the outage and check recovery.
fn run_outage(env: &Env, ctx: &str, call: Call, on_down: &str, outage: &Outage<'_>) {
    env.heal();
    let mut case = Case::new(env, ctx.to_string(), on_down, call, 8);
    let eject = on_down == "eject";
    let started = Instant::now();
    (outage.start)();

    // Phase A: the breaker is closed; every request to the victim fails.
    let mut failures = Vec::new();
    while case.state() != BreakerState::Open {
        assert!(
            failures.len() < 3,
            "{ctx}: breaker not open after 3 failed requests: {failures:?}, state {:?}",
            case.state()
        );
        let (r, took) = case.attempt();
        match r {
            Err(reason) => {
                assert!(
                    outage.allowed.contains(&reason),
                    "{ctx}: reason {reason:?} after {took:?}; allowed {:?}",
                    outage.allowed
                );
                failures.push(reason);
            }
            Ok(()) => panic!("{ctx}: a request succeeded during the outage (after {failures:?})"),
        }
    }
    let opened_at = Instant::now();
    assert!(!failures.is_empty(), "{ctx}");

    // Phase B: open. fail_fast: `tko` at once, nothing sent. eject: the victim's keys are
    // served by the other servers, every other key stays put.
    let requests_before = dest_stat(&case.c, &case.vaddr, "requests");
    let mut checked = 0;
    for _ in 0..3 {
        // No probe runs before probe_initial; past that a probe may half-open the breaker (a
        // truncating proxy still answers the probe's `mn`), so the strict checks stop there.
        if opened_at.elapsed() >= Duration::from_millis(PROBE_INITIAL_MS)
            || case.state() != BreakerState::Open
        {
            break;
        }
        let (r, took) = case.attempt();
        if eject {
            case.check_routes(true);
            assert_eq!(r, Ok(()), "{ctx}: an ejected server's key failed");
        } else {
            assert_eq!(r, Err(Reason::Tko), "{ctx}: open breaker");
            assert!(took <= FAST, "{ctx}: tko took {took:?}");
        }
        checked += 1;
    }
    if checked > 0 && case.state() == BreakerState::Open {
        assert_eq!(
            dest_stat(&case.c, &case.vaddr, "requests"),
            requests_before,
            "{ctx}: a request reached the victim while its breaker was open"
        );
    }
    // A long outage: requests keep failing fast (or, half-open, as a trial), never slowly.
    while started.elapsed() < outage.hold {
        let (r, _) = case.attempt();
        if let Err(reason) = r {
            assert!(
                reason == Reason::Tko || outage.allowed.contains(&reason),
                "{ctx}: {reason:?} during the outage"
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    for (i, (addr, st)) in case.c.breaker_states().into_iter().enumerate() {
        if i != case.victim {
            assert_eq!(st, BreakerState::Closed, "{ctx}: healthy {addr}");
        }
    }

    // Phase C: end the outage; the victim serves its keys again.
    (outage.end)();
    let t = Instant::now();
    let recovered = wait_until(recovery_bound(), || {
        let (r, _) = case.attempt();
        r.is_ok() && case.state() == BreakerState::Closed
    });
    assert!(
        recovered,
        "{ctx}: not recovered {:?} after the outage ended: state {:?}, stats {}",
        t.elapsed(),
        case.state(),
        case.c.stats()["destinations"][&case.vaddr]
    );
    case.check_routes(false);
    if outage.keeps_data {
        case.read_all_hits();
    } else {
        case.read_all_checked();
    }
    let s = case.c.stats();
    for (addr, d) in s["destinations"].as_object().unwrap() {
        if *addr == case.vaddr {
            assert!(d["breaker_opened"].as_u64().unwrap() >= 1, "{ctx}: {d}");
            assert!(d["breaker_closed"].as_u64().unwrap() >= 1, "{ctx}: {d}");
        } else {
            assert_eq!(d["breaker_opened"], 0, "{ctx}: healthy {addr}: {d}");
            assert_eq!(
                d["errors"],
                serde_json::json!({}),
                "{ctx}: healthy {addr}: {d}"
            );
        }
    }
}

/// One cell of the matrix: `inject` on the victim's proxy.
fn run_case(env: &Env, inject: Inject, call: Call, on_down: &str) {
    let proxy = &env.proxies[VICTIM];
    let outage = Outage {
        start: &|| inject.apply(proxy, call),
        end: &|| env.heal(),
        allowed: inject.allowed(),
        hold: Duration::ZERO,
        keeps_data: true,
    };
    run_outage(
        env,
        &format!("{inject:?}/{call:?}/{on_down}"),
        call,
        on_down,
        &outage,
    );
}

fn matrix(inject: Inject) {
    let env = Env::start();
    for on_down in ["fail_fast", "eject"] {
        for call in [Call::Get, Call::MultiGet, Call::Set] {
            run_case(&env, inject, call, on_down);
        }
    }
}

#[test]
fn matrix_delay_beyond_io_ms() {
    matrix(Inject::Delay);
}

#[test]
fn matrix_black_hole() {
    matrix(Inject::BlackHole);
}

#[test]
fn matrix_reset_on_accept() {
    matrix(Inject::ResetOnAccept);
}

#[test]
fn matrix_reset_on_data() {
    matrix(Inject::ResetOnData);
}

#[test]
fn matrix_truncate_mid_value() {
    matrix(Inject::Truncate);
}

#[test]
fn matrix_garbage() {
    matrix(Inject::Garbage);
}

#[test]
fn matrix_slow_drip() {
    matrix(Inject::SlowDrip);
}

#[test]
fn matrix_refuse() {
    matrix(Inject::Refuse);
}

/// memcached SIGSTOPped for 3 × `io_ms` (a GC pause, a swapped-out host): its kernel still
/// completes handshakes, nothing answers. Its keys time out until the breaker opens, then
/// fail fast (or move, with eject); after SIGCONT they are served again, with their data.
#[test]
fn sigstopped_longer_than_the_timeout() {
    let env = Env::start();
    let mc = &env.cluster[VICTIM];
    let outage = Outage {
        start: &|| mc.pause().unwrap(),
        end: &|| mc.resume().unwrap(),
        allowed: &[Reason::Timeout, Reason::ConnectTimeout],
        hold: Duration::from_millis(3 * IO_MS),
        keeps_data: true,
    };
    for on_down in ["fail_fast", "eject"] {
        for call in [Call::Get, Call::MultiGet, Call::Set] {
            run_outage(
                &env,
                &format!("sigstop/{call:?}/{on_down}"),
                call,
                on_down,
                &outage,
            );
        }
    }
}

/// memcached killed behind its proxy, then restarted on the same port (empty). The pooled
/// connection ends (reset); new connections are reset by the proxy, which cannot reach it.
/// After the restart the breaker closes and the keys are misses, never another key's value.
#[test]
fn killed_then_restarted_on_the_same_port() {
    let env = Env::start();
    let mc = &env.cluster[VICTIM];
    let outage = Outage {
        start: &|| mc.kill().unwrap(),
        end: &|| mc.restart().unwrap(),
        allowed: &[Reason::Reset, Reason::ConnectFailed],
        hold: Duration::from_millis(2 * IO_MS),
        keeps_data: false,
    };
    for on_down in ["fail_fast", "eject"] {
        for call in [Call::Get, Call::MultiGet, Call::Set] {
            run_outage(
                &env,
                &format!("kill/{call:?}/{on_down}"),
                call,
                on_down,
                &outage,
            );
        }
    }
}

/// A quick restart on the same port (kill + start, no outage to speak of): only the request
/// on the dead pooled connection fails (reset, soft), the breaker stays closed, and the new,
/// empty server answers misses from then on.
#[test]
fn restarted_on_the_same_port() {
    let env = Env::start();
    for on_down in ["fail_fast", "eject"] {
        for call in [Call::Get, Call::MultiGet, Call::Set] {
            let ctx = format!("restart/{call:?}/{on_down}");
            let mut case = Case::new(&env, ctx.clone(), on_down, call, 8);
            env.cluster[VICTIM].restart().unwrap();
            let mut failures = Vec::new();
            for _ in 0..6 {
                if let (Err(reason), _) = case.attempt() {
                    failures.push(reason);
                }
            }
            assert!(
                failures.len() <= 1 && failures.iter().all(|r| *r == Reason::Reset),
                "{ctx}: {failures:?}"
            );
            assert_eq!(case.state(), BreakerState::Closed, "{ctx}");
            case.check_routes(false);
            case.read_all_checked();
            if call != Call::Set {
                let k = &case.keys[case.victim_keys[0]];
                assert_eq!(
                    case.c.get(k.as_bytes()).unwrap(),
                    None,
                    "{ctx}: data is gone"
                );
            }
        }
    }
}

/// A server that flaps: black-holed for 300 ms, fine for 300 ms, four times, while one thread
/// reads and writes. Every call stays within its deadline, healthy servers' keys are never
/// affected, values are always right, each outage costs at most 3 timed-out requests, and
/// once the flapping stops the breaker closes within the recovery bound.
#[test]
fn a_flapping_server() {
    let env = Env::start();
    for on_down in ["fail_fast", "eject"] {
        let ctx = format!("flap/{on_down}");
        let mut case = Case::new(&env, ctx.clone(), on_down, Call::Get, 8);
        let proxy = &env.proxies[VICTIM];
        let done = AtomicBool::new(false);
        let outages = AtomicUsize::new(0);
        let (mut ok, mut tko, mut failed) = (0, 0, 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..4 {
                    proxy.set_fault(Fault::BlackHole);
                    outages.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    proxy.set_fault(Fault::None);
                    std::thread::sleep(Duration::from_millis(300));
                }
                done.store(true, Ordering::SeqCst);
            });
            let calls = [Call::Get, Call::MultiGet, Call::Set];
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                case.call = calls[i % calls.len()];
                i += 1;
                match case.attempt().0 {
                    Ok(()) => ok += 1,
                    Err(Reason::Tko) => tko += 1,
                    Err(r) => {
                        assert!(
                            matches!(r, Reason::Timeout | Reason::ConnectTimeout),
                            "{ctx}: {r:?}"
                        );
                        failed += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let outages = outages.load(Ordering::SeqCst);
        assert!(
            failed <= 3 * outages,
            "{ctx}: {failed} timed-out requests over {outages} outages (ok {ok}, tko {tko})"
        );
        assert!(ok > 0, "{ctx}");
        case.call = Call::Get;
        let t = Instant::now();
        assert!(
            wait_until(recovery_bound(), || case.attempt().0.is_ok()
                && case.state() == BreakerState::Closed),
            "{ctx}: not recovered after {:?}: {}",
            t.elapsed(),
            case.c.stats()["destinations"][&case.vaddr]
        );
        case.check_routes(false);
        case.read_all_hits();
    }
}

/// Fail-open: with `max_tko_fraction` 0.5 and 3 of 4 servers refusing connections, at most 2
/// breakers open; the third server's requests go out and fail on their own (quickly: refused),
/// counted as `fail_open`. The healthy server is unaffected; everything recovers.
#[test]
fn fail_open_with_three_of_four_servers_down() {
    let env = Env::start();
    for on_down in ["fail_fast", "eject"] {
        env.heal();
        let ctx = format!("fail-open/{on_down}");
        let c = client(&env.addrs(), on_down, r#", "max_tko_fraction": 0.5"#);
        let (keys, home) = spread_keys(&c, &env.addrs(), &ctx, 16);
        for k in &keys {
            c.set(k.as_bytes(), &value_for(k, 0), 0, 0).unwrap();
        }
        let healthy = env.addrs()[3].clone();
        for p in &env.proxies[..3] {
            Inject::Refuse.apply(p, Call::Get);
        }
        let asked: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        for round in 0..8 {
            let t = Instant::now();
            let got = c.get_multi(&asked).unwrap();
            assert!(t.elapsed() <= latency_bound(), "{ctx}: {:?}", t.elapsed());
            for (i, (k, r)) in keys.iter().zip(&got).enumerate() {
                match r {
                    Ok(Some(item)) => check_item(&ctx, k, item),
                    _ if home[i] == healthy => panic!("{ctx}: healthy {k}: {r:?}"),
                    Ok(None) => assert!(on_down == "eject", "{ctx}: {k}: miss"),
                    Err(e) => assert!(
                        matches!(
                            e.reason(),
                            Reason::Tko | Reason::Reset | Reason::ConnectRefused
                        ),
                        "{ctx}: round {round}: {k}: {e}"
                    ),
                }
            }
            let not_closed = c
                .breaker_states()
                .iter()
                .filter(|(_, s)| *s != BreakerState::Closed)
                .count();
            assert!(not_closed <= 2, "{ctx}: {:?}", c.breaker_states());
        }
        let states = c.breaker_states();
        let open = states
            .iter()
            .filter(|(_, s)| *s == BreakerState::Open)
            .count();
        assert_eq!(open, 2, "{ctx}: {states:?}");
        let s = c.stats();
        assert_eq!(
            s["pools"]["default"]["breakers_not_closed"], 2,
            "{ctx}: {s}"
        );
        let fail_open: u64 = s["destinations"]
            .as_object()
            .unwrap()
            .values()
            .map(|d| d["fail_open"].as_u64().unwrap())
            .sum();
        assert!(fail_open >= 1, "{ctx}: {s}");
        // The faulted server whose breaker stayed closed: its requests go out and are refused.
        let (third, _) = states
            .iter()
            .find(|(a, st)| *st == BreakerState::Closed && *a != healthy)
            .unwrap();
        let d = &s["destinations"][third];
        assert!(d["fail_open"].as_u64().unwrap() >= 1, "{ctx}: {d}");
        assert!(
            d["errors"]["connect_refused"].as_u64().unwrap() >= 1,
            "{ctx}: {d}"
        );
        assert_eq!(s["destinations"][&healthy]["errors"], serde_json::json!({}));

        env.heal();
        let t = Instant::now();
        let back = wait_until(recovery_bound(), || {
            let got = c.get_multi(&asked).unwrap();
            let all = keys.iter().zip(&got).all(|(k, r)| match r {
                Ok(Some(item)) => {
                    check_item(&ctx, k, item);
                    true
                }
                _ => false,
            });
            all && c
                .breaker_states()
                .iter()
                .all(|(_, s)| *s == BreakerState::Closed)
        });
        assert!(
            back,
            "{ctx}: not recovered after {:?}: {}",
            t.elapsed(),
            c.stats()
        );
    }
}

/// After a request fails mid-reply (a timeout with bytes still in flight, a cut reply,
/// garbage), its connection is discarded: the next request to that server makes exactly one
/// new connection (proxy `accepted()`), gets its own key's value, and the late bytes of the
/// old reply never reach anyone.
#[test]
fn no_connection_is_reused_after_a_mid_reply_failure() {
    let env = Env::start();
    for inject in [
        Inject::SlowDrip,
        Inject::Delay,
        Inject::BlackHole,
        Inject::Truncate,
        Inject::Garbage,
    ] {
        for call in [Call::Get, Call::MultiGet, Call::Set] {
            env.heal();
            let ctx = format!("no-reuse/{inject:?}/{call:?}");
            let mut case = Case::new(&env, ctx.clone(), "fail_fast", call, 8);
            let before: Vec<usize> = env.proxies.iter().map(FaultProxy::accepted).collect();
            inject.apply(&env.proxies[VICTIM], call);
            let (r, _) = case.attempt();
            let reason = r.expect_err(&ctx);
            assert!(inject.allowed().contains(&reason), "{ctx}: {reason:?}");
            assert_eq!(
                case.state(),
                BreakerState::Closed,
                "{ctx}: one soft failure"
            );
            env.heal();
            // A delayed reply is still on its way; let it land mid-way through the next call.
            std::thread::sleep(Duration::from_millis(IO_MS / 2));
            let (r, _) = case.attempt();
            assert_eq!(r, Ok(()), "{ctx}: the next request");
            // A multi-get uses all 4 servers again: only the victim needed a new connection.
            let after: Vec<usize> = env.proxies.iter().map(FaultProxy::accepted).collect();
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                let want = b + usize::from(i == VICTIM);
                assert_eq!(*a, want, "{ctx}: connections accepted by proxy {i}");
            }
            assert_eq!(
                dest_stat(&case.c, &case.vaddr, "connections_discarded"),
                1,
                "{ctx}"
            );
            case.read_all_hits();
        }
    }
}

/// Issue 4 item 3: "one hard failure (refused, reset on connect, unreachable)" opens the
/// breaker. A server that resets every new connection is down, not slow.
#[test]
fn a_reset_on_connect_opens_the_breaker_at_once() {
    let env = Env::start();
    env.proxies[VICTIM].set_fault(Fault::ResetOnAccept);
    let vaddr = env.proxies[VICTIM].addr();
    let mut seen = Vec::new();
    for attempt in 0..10 {
        // A cold client: its first request to the victim must dial.
        let c = client(&env.addrs(), "fail_fast", "");
        let k = (0..)
            .map(|i| format!("reset-on-connect:{i}"))
            .find(|k| c.route_for(Op::Get, k.as_bytes()).unwrap()[0] == vaddr)
            .unwrap();
        let e = c.get(k.as_bytes()).unwrap_err();
        seen.push(e.reason());
        assert_eq!(
            state(&c, VICTIM),
            BreakerState::Open,
            "attempt {attempt}: one connection reset on connect ({e}) must open the breaker; \
             reasons so far {seen:?}"
        );
    }
}
