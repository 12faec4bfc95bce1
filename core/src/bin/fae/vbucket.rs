//! `fae vbucket`: plan and apply bucket moves through a topology snapshot file.
//!
//! - `init` gives a pool of the snapshot its first bucket map (balanced for the weights).
//! - `plan` turns a server change (add, remove, reweight) into a target map that moves the
//!   fewest buckets ([`plan_moves`]) and writes it as a plan file.
//! - `apply` steps the snapshot toward the plan: servers joining first, then batches of
//!   buckets through from_only (the target's old copies of the batch are deleted), dual_write,
//!   dual_write_read_new, to_only and done; leaving servers last. Each step is one atomic
//!   rewrite of the snapshot with the map's version + 1, then a wait until every live process
//!   writing to `--stats-dir` reports that version (or `--settle-ms` without one).
//! - `rollback` steps every moving bucket back, phase by phase, to where it came from.
//! - `status` prints the map's version, bucket counts per server and the moves.
//!
//! The next step is computed from the snapshot and the plan alone, so `apply` is idempotent:
//! stopping it (Ctrl-C, `--steps`, a crash) leaves a valid map, and running it again resumes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use fae_core::addr::parse_server;
use fae_core::discovery::Topology;
use fae_core::hash::HashFn;
use fae_core::placement::vbucket::{
    BucketsSpec, MovePhase, MoveSpec, balanced, plan_moves, quotas,
};

/// `fae vbucket …`
#[derive(Debug, Args)]
pub struct VbucketArgs {
    #[command(subcommand)]
    cmd: VbCmd,
}

#[derive(Debug, Args)]
struct Store {
    /// the topology snapshot file clients read (`discovery.file`)
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// the pool
    #[arg(long, value_name = "NAME", default_value = "default")]
    pool: String,
}

#[derive(Debug, Args)]
struct Wait {
    /// wait for every live process writing stats here to report each new map version
    #[arg(long, value_name = "DIR")]
    stats_dir: Option<PathBuf>,
    /// longest wait for the processes per step, ms; then apply pauses (exit 4)
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    wait_ms: u64,
    /// without --stats-dir: how long to let clients pick up each step, ms
    #[arg(long, value_name = "MS", default_value_t = 3_000)]
    settle_ms: u64,
    /// stop (pause) after this many steps; run again to resume
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum VbCmd {
    /// Give a pool of the snapshot its first bucket map (balanced for the weights)
    Init {
        #[command(flatten)]
        store: Store,
        /// number of buckets (a power of two)
        #[arg(long, value_name = "N", default_value_t = 1024)]
        count: u32,
        /// key hash (one_at_a_time, md5, crc, ...)
        #[arg(long, value_name = "NAME")]
        hash: Option<String>,
    },
    /// Plan a server change: the target map that moves the fewest buckets
    Plan {
        #[command(flatten)]
        store: Store,
        /// a server to add (host:port, or host:port:weight); repeatable
        #[arg(long, value_name = "H:P[:W]")]
        add: Vec<String>,
        /// a server to remove (host:port); repeatable
        #[arg(long, value_name = "H:P")]
        remove: Vec<String>,
        /// a new weight (host:port=W); repeatable
        #[arg(long, value_name = "H:P=W")]
        weight: Vec<String>,
        /// the plan file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Step the snapshot toward a plan, a batch of buckets at a time
    Apply {
        #[command(flatten)]
        store: Store,
        /// the plan file (from fae vbucket plan)
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// buckets moved together
        #[arg(long, value_name = "N", default_value_t = 16)]
        batch: usize,
        #[command(flatten)]
        wait: Wait,
    },
    /// Step every moving bucket back to its server, phase by phase
    Rollback {
        #[command(flatten)]
        store: Store,
        #[command(flatten)]
        wait: Wait,
    },
    /// Print the map's version, buckets per server and the moves
    Status {
        #[command(flatten)]
        store: Store,
    },
}

/// A plan file: where `apply` takes the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    pool: String,
    /// The server list while moving: the current servers (with their new weights), then the
    /// added ones.
    servers: Vec<String>,
    /// Addresses leaving once their buckets are gone.
    remove: Vec<String>,
    /// Server (index into `servers`) per bucket at the end.
    target: Vec<u32>,
}

pub fn vbucket_main(args: VbucketArgs) -> ExitCode {
    let r = match args.cmd {
        VbCmd::Init { store, count, hash } => init(&store, count, hash),
        VbCmd::Plan {
            store,
            add,
            remove,
            weight,
            out,
        } => plan(&store, &add, &remove, &weight, &out),
        VbCmd::Apply {
            store,
            plan,
            batch,
            wait,
        } => read_plan(&plan, &store.pool).and_then(|p| apply(&store, &p, batch.max(1), &wait)),
        VbCmd::Rollback { store, wait } => rollback(&store, &wait),
        VbCmd::Status { store } => status(&store),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fae vbucket: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_topology(store: &Store) -> Result<Topology, String> {
    Topology::read(&store.topology).map_err(|e| e.to_string())
}

/// The pool's servers and bucket map in `t`.
fn pool_state<'t>(
    t: &'t Topology,
    pool: &str,
) -> Result<(&'t Vec<String>, &'t BucketsSpec), String> {
    let servers = t
        .pools
        .get(pool)
        .ok_or_else(|| format!("pool \"{pool}\" is not in the snapshot"))?;
    let spec = t.buckets.get(pool).ok_or_else(|| {
        format!("pool \"{pool}\" has no bucket map in the snapshot (fae vbucket init)")
    })?;
    Ok((servers, spec))
}

fn addr_of(server: &str) -> Result<String, String> {
    parse_server(server).map(|n| n.addr())
}

fn weight_of(server: &str) -> Result<u32, String> {
    parse_server(server).map(|n| n.weight.max(1))
}

fn write(store: &Store, t: &Topology) -> Result<(), String> {
    t.write_atomic(&store.topology).map_err(|e| e.to_string())
}

fn init(store: &Store, count: u32, hash: Option<String>) -> Result<ExitCode, String> {
    let mut t = read_topology(store)?;
    let servers = t
        .pools
        .get(&store.pool)
        .ok_or_else(|| format!("pool \"{}\" is not in the snapshot", store.pool))?;
    if t.buckets.contains_key(&store.pool) {
        return Err(format!(
            "pool \"{}\" already has a bucket map; fae vbucket plan changes it",
            store.pool
        ));
    }
    if count == 0 || !count.is_power_of_two() {
        return Err(format!("--count {count}: a power of two is needed"));
    }
    if let Some(h) = &hash
        && HashFn::from_name(h).is_none()
    {
        return Err(format!("--hash: unknown hash \"{h}\""));
    }
    let weights = servers
        .iter()
        .map(|s| weight_of(s))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = BucketsSpec {
        count,
        version: 1,
        hash,
        map: balanced(count, &weights),
        moves: Vec::new(),
    };
    t.buckets.insert(store.pool.clone(), spec);
    t.version += 1;
    write(store, &t)?;
    println!(
        "pool {}: {count} buckets over {} servers, version 1",
        store.pool,
        weights.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn plan(
    store: &Store,
    add: &[String],
    remove: &[String],
    weight: &[String],
    out: &Path,
) -> Result<ExitCode, String> {
    let t = read_topology(store)?;
    let (current, spec) = pool_state(&t, &store.pool)?;
    if !spec.moves.is_empty() {
        return Err(format!(
            "{} buckets are on the move; finish them (fae vbucket apply) or roll them back first",
            spec.moves.len()
        ));
    }
    let mut servers: Vec<String> = current.clone();
    let addrs = |list: &[String]| -> Result<Vec<String>, String> {
        list.iter().map(|s| addr_of(s)).collect()
    };
    for (i, w) in weight.iter().enumerate() {
        let (addr, w) = w
            .rsplit_once('=')
            .ok_or_else(|| format!("--weight {w:?}: expected host:port=W"))?;
        let w: u32 = w
            .parse()
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| format!("--weight #{i}: weight must be a number ≥ 1"))?;
        let addr = addr_of(addr)?;
        let at = addrs(&servers)?
            .iter()
            .position(|a| *a == addr)
            .ok_or_else(|| format!("--weight: {addr} is not in the pool"))?;
        servers[at] = format!("{addr}:{w}");
    }
    for a in add {
        let addr = addr_of(a)?;
        if addrs(&servers)?.contains(&addr) {
            return Err(format!("--add: {addr} is already in the pool"));
        }
        servers.push(a.clone());
    }
    let mut removing = Vec::new();
    for r in remove {
        let addr = addr_of(r)?;
        if !addrs(current)?.contains(&addr) {
            return Err(format!("--remove: {addr} is not in the pool"));
        }
        removing.push(addr);
    }
    let all = addrs(&servers)?;
    let weights: Vec<u32> = servers
        .iter()
        .zip(&all)
        .map(|(s, a)| {
            if removing.contains(a) {
                Ok(0)
            } else {
                weight_of(s)
            }
        })
        .collect::<Result<_, String>>()?;
    let moves = plan_moves(&spec.map, &weights)?;
    let mut target = spec.map.clone();
    for &(b, to) in &moves {
        target[b as usize] = to;
    }
    let p = Plan {
        pool: store.pool.clone(),
        servers: servers.clone(),
        remove: removing.clone(),
        target: target.clone(),
    };
    let text = serde_json::to_string(&p).map_err(|e| e.to_string())? + "\n";
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    // The report: buckets per server against its exact share.
    let q = quotas(spec.count, &weights);
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    println!(
        "pool {}: {} of {} buckets move ({:.2} %)",
        store.pool,
        moves.len(),
        spec.count,
        100.0 * moves.len() as f64 / f64::from(spec.count)
    );
    let mut worst: f64 = 0.0;
    for (i, a) in all.iter().enumerate() {
        let have = target.iter().filter(|&&s| s as usize == i).count();
        let share = 100.0 * have as f64 / f64::from(spec.count);
        let want = 100.0 * f64::from(weights[i]) / total as f64;
        worst = worst.max((share - want).abs());
        println!(
            "  {a}: {have} buckets ({share:.2} % of keys; weight share {want:.2} %){}",
            if removing.contains(a) {
                ", leaving"
            } else {
                ""
            }
        );
        debug_assert_eq!(have as u32, q[i]);
    }
    println!("largest deviation from the weights: {worst:.2} percentage points");
    if worst > 1.0 {
        println!(
            "(more buckets would bring it under 1 point: each is {:.2} %)",
            100.0 / f64::from(spec.count)
        );
    }
    println!("plan written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn read_plan(path: &Path, pool: &str) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let p: Plan = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if p.pool != pool {
        return Err(format!(
            "the plan is for pool \"{}\", not \"{pool}\"",
            p.pool
        ));
    }
    Ok(p)
}

/// One step of `apply`/`rollback`: the new servers and map, what it does, and the buckets
/// whose old copies to delete on which server before the step is written.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    servers: Vec<String>,
    spec: BucketsSpec,
    what: String,
    /// (server index, buckets): delete every key of these buckets there first.
    purge: Vec<(u32, Vec<u32>)>,
    /// ((from, to) server indexes, buckets): copy these buckets' keys forward first.
    warm: Vec<((u32, u32), Vec<u32>)>,
}

/// The next step from (`servers`, `spec`) toward `target` over `plan_servers` (with `remove`
/// leaving at the end); `None` when there is nothing left to do.
fn next_step(
    servers: &[String],
    spec: &BucketsSpec,
    plan_servers: &[String],
    remove: &[String],
    target: &[u32],
    batch: usize,
) -> Result<Option<Step>, String> {
    let mut spec = spec.clone();
    spec.version += 1;
    // 1. Joining servers (and new weights) first: every map below indexes `plan_servers`.
    if servers != plan_servers {
        let cur: Vec<String> = servers
            .iter()
            .map(|s| addr_of(s))
            .collect::<Result<_, _>>()?;
        let want: Vec<String> = plan_servers
            .iter()
            .map(|s| addr_of(s))
            .collect::<Result<_, _>>()?;
        let leaving: Vec<&String> = want.iter().filter(|a| remove.contains(a)).collect();
        // Already shrunk (the last step done): nothing left.
        let kept: Vec<&String> = want.iter().filter(|a| !remove.contains(a)).collect();
        if cur.iter().collect::<Vec<_>>() == kept && !leaving.is_empty() {
            return Ok(None);
        }
        if want.starts_with(&cur) && !spec.moves.is_empty() {
            return Err(
                "the snapshot has moves the plan does not know; roll them back first".into(),
            );
        }
        if want.starts_with(&cur) {
            return Ok(Some(Step {
                servers: plan_servers.to_vec(),
                spec,
                what: format!("servers: {} joined or reweighted", want.len() - cur.len()),
                purge: Vec::new(),
                warm: Vec::new(),
            }));
        }
        return Err("the snapshot's servers are neither the plan's start nor its end".into());
    }
    if target.len() != spec.map.len() {
        return Err(format!(
            "the plan has {} buckets, the map {}",
            target.len(),
            spec.map.len()
        ));
    }
    // 2. Moves under way: each one phase on (toward the target) or back (away from it).
    if !spec.moves.is_empty() {
        let mut moves = Vec::new();
        let mut purge: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut warm: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        let mut done = Vec::new();
        let mut back = Vec::new();
        for m in &spec.moves {
            let forward = target[m.bucket as usize] == m.to;
            if forward {
                match m.phase.next() {
                    Some(p) => {
                        if m.phase == MovePhase::FromOnly {
                            // Every client invalidates the target now: delete what an earlier
                            // stay of the bucket there left, before anyone reads it.
                            purge.entry(m.to).or_default().push(m.bucket);
                        }
                        if m.phase == MovePhase::DualWrite {
                            // Every client writes both sides now: copy the rest forward, so
                            // that reads of the target hit from the first one on.
                            let from = spec.map[m.bucket as usize];
                            warm.entry((from, m.to)).or_default().push(m.bucket);
                        }
                        moves.push(MoveSpec { phase: p, ..*m });
                    }
                    None => {
                        spec.map[m.bucket as usize] = m.to;
                        done.push(m.bucket);
                    }
                }
            } else {
                match m.phase.prev() {
                    Some(p) => moves.push(MoveSpec { phase: p, ..*m }),
                    None => back.push(m.bucket),
                }
            }
        }
        let phases: Vec<&str> = moves.iter().map(|m| m.phase.as_str()).collect();
        let mut what = format!(
            "{} moving buckets -> {}",
            spec.moves.len(),
            phases.first().copied().unwrap_or("done")
        );
        if !done.is_empty() {
            what = format!("buckets {done:?} moved");
        }
        if !back.is_empty() {
            what = format!("buckets {back:?} rolled back");
        }
        spec.moves = moves;
        return Ok(Some(Step {
            servers: servers.to_vec(),
            spec,
            what,
            purge: purge.into_iter().collect(),
            warm: warm.into_iter().collect(),
        }));
    }
    // 3. The next batch starts, in from_only.
    let pending: Vec<u32> = (0..target.len() as u32)
        .filter(|&b| spec.map[b as usize] != target[b as usize])
        .take(batch)
        .collect();
    if !pending.is_empty() {
        spec.moves = pending
            .iter()
            .map(|&b| MoveSpec {
                bucket: b,
                from: Some(spec.map[b as usize]),
                to: target[b as usize],
                phase: MovePhase::FromOnly,
            })
            .collect();
        return Ok(Some(Step {
            servers: servers.to_vec(),
            spec,
            what: format!("batch of {} buckets starts: {pending:?}", pending.len()),
            purge: Vec::new(),
            warm: Vec::new(),
        }));
    }
    // 4. Leaving servers last, their buckets all gone: renumber the map.
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| addr_of(s))
        .collect::<Result<_, _>>()?;
    if addrs.iter().any(|a| remove.contains(a)) {
        let keep: Vec<usize> = (0..servers.len())
            .filter(|&i| !remove.contains(&addrs[i]))
            .collect();
        let index: BTreeMap<usize, u32> = keep
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new as u32))
            .collect();
        for s in spec.map.iter_mut() {
            *s = *index
                .get(&(*s as usize))
                .ok_or("a leaving server still has buckets")?;
        }
        return Ok(Some(Step {
            servers: keep.iter().map(|&i| servers[i].clone()).collect(),
            spec,
            what: format!("servers: {} left", servers.len() - keep.len()),
            purge: Vec::new(),
            warm: Vec::new(),
        }));
    }
    Ok(None)
}

fn apply(store: &Store, plan: &Plan, batch: usize, wait: &Wait) -> Result<ExitCode, String> {
    run_steps(store, wait, |servers, spec| {
        next_step(
            servers,
            spec,
            &plan.servers,
            &plan.remove,
            &plan.target,
            batch,
        )
    })
}

fn rollback(store: &Store, wait: &Wait) -> Result<ExitCode, String> {
    run_steps(store, wait, |servers, spec| {
        if spec.moves.is_empty() {
            return Ok(None);
        }
        // The target is the map as it is: every move steps back to its bucket's server.
        next_step(servers, spec, servers, &[], &spec.map, 1)
    })
}

/// Apply steps until `next` has none, `--steps` is reached, or clients do not catch up.
fn run_steps(
    store: &Store,
    wait: &Wait,
    mut next: impl FnMut(&[String], &BucketsSpec) -> Result<Option<Step>, String>,
) -> Result<ExitCode, String> {
    let mut taken = 0u64;
    loop {
        let mut t = read_topology(store)?;
        let (servers, spec) = pool_state(&t, &store.pool)?;
        // A step that was written but not yet seen by every client is waited for again.
        if let Some(code) = wait_for(wait, &store.pool, spec.version)? {
            return Ok(code);
        }
        let Some(step) = next(servers, spec)? else {
            println!("pool {}: done (map version {})", store.pool, spec.version);
            return Ok(ExitCode::SUCCESS);
        };
        if wait.steps.is_some_and(|n| taken >= n) {
            println!(
                "pool {}: paused after {taken} steps (map version {}); run again to resume",
                store.pool, spec.version
            );
            return Ok(ExitCode::SUCCESS);
        }
        for (server, buckets) in &step.purge {
            let addr = servers
                .get(*server as usize)
                .ok_or("a move names a server the pool does not have")?;
            let n = purge(addr, spec, buckets)?;
            println!("  deleted {n} old copies of buckets {buckets:?} on {addr}");
        }
        for ((from, to), buckets) in &step.warm {
            let server = |i: u32| {
                servers
                    .get(i as usize)
                    .ok_or("a move names a server the pool does not have")
            };
            let (f, t) = (server(*from)?, server(*to)?);
            let n = warm(f, t, spec, buckets)?;
            println!("  copied {n} keys of buckets {buckets:?} from {f} to {t}");
        }
        t.pools.insert(store.pool.clone(), step.servers);
        let version = step.spec.version;
        t.buckets.insert(store.pool.clone(), step.spec);
        t.version += 1;
        write(store, &t)?;
        taken += 1;
        println!("step {taken}: map version {version}: {}", step.what);
        let _ = std::io::stdout().flush();
        if let Some(code) = wait_for(wait, &store.pool, version)? {
            return Ok(code);
        }
    }
}

/// Wait until every live process in `--stats-dir` reports map `version` for `pool` (or
/// `--settle-ms` passed). `Some(code)` when they did not within `--wait-ms`: apply pauses.
fn wait_for(wait: &Wait, pool: &str, version: u64) -> Result<Option<ExitCode>, String> {
    let Some(dir) = &wait.stats_dir else {
        std::thread::sleep(Duration::from_millis(wait.settle_ms));
        return Ok(None);
    };
    let start = Instant::now();
    loop {
        let (total, behind) = versions_behind(dir, pool, version)?;
        if behind == 0 {
            return Ok(None);
        }
        if start.elapsed() >= Duration::from_millis(wait.wait_ms) {
            eprintln!(
                "fae vbucket: {behind} of {total} processes have not reported map version {version} after {} ms; paused (run again to resume, or fae vbucket rollback)",
                wait.wait_ms
            );
            return Ok(Some(ExitCode::from(4)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (live processes with the pool, those whose map is older than `version`), from the
/// snapshot files of `dir` (`fae-<pid>-<n>.json`, dead pids skipped).
fn versions_behind(dir: &Path, pool: &str, version: u64) -> Result<(usize, usize), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mut total, mut behind) = (0, 0);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("fae-")
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists; no signal is sent.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(have) = v["pools"][pool]["buckets"]["version"].as_u64() else {
            continue;
        };
        total += 1;
        if have < version {
            behind += 1;
        }
    }
    Ok((total, behind))
}

/// A plain connection to one server, for the tool's own commands.
struct Raw {
    server: String,
    reader: Box<dyn BufRead>,
    writer: Box<dyn Write>,
}

impl Raw {
    fn connect(server: &str) -> Result<Raw, String> {
        let node = parse_server(server)?;
        let err = |e: std::io::Error| format!("{server}: {e}");
        let timeout = Some(Duration::from_secs(10));
        let (reader, writer): (Box<dyn BufRead>, Box<dyn Write>) = match node.unix_path() {
            Some(path) => {
                let s = std::os::unix::net::UnixStream::connect(path).map_err(err)?;
                s.set_read_timeout(timeout).map_err(err)?;
                (
                    Box::new(BufReader::new(s.try_clone().map_err(err)?)),
                    Box::new(s),
                )
            }
            None => {
                let s =
                    std::net::TcpStream::connect((node.host.as_str(), node.port)).map_err(err)?;
                s.set_read_timeout(timeout).map_err(err)?;
                // One command per round trip: Nagle would hold each behind a delayed ACK.
                s.set_nodelay(true).map_err(err)?;
                (
                    Box::new(BufReader::new(s.try_clone().map_err(err)?)),
                    Box::new(s),
                )
            }
        };
        Ok(Raw {
            server: server.to_string(),
            reader,
            writer,
        })
    }

    /// Write one command (its parts in one write).
    fn send(&mut self, parts: &[&[u8]]) -> Result<(), String> {
        let buf: Vec<u8> = parts.concat();
        self.writer
            .write_all(&buf)
            .map_err(|e| format!("{}: {e}", self.server))
    }

    /// One reply line without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        if self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", self.server))?
            == 0
        {
            return Err(format!("{}: connection closed", self.server));
        }
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
        }
        Ok(line)
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; n + 2];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("{}: {e}", self.server))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Every key of `buckets` on this server (`lru_crawler metadump all`).
    fn keys_of(&mut self, spec: &BucketsSpec, buckets: &[u32]) -> Result<Vec<Vec<u8>>, String> {
        let hash = match &spec.hash {
            Some(h) => HashFn::from_name(h).ok_or_else(|| format!("unknown hash \"{h}\""))?,
            None => HashFn::OneAtATime,
        };
        let mask = spec.count - 1;
        self.send(&[b"lru_crawler metadump all\r\n"])?;
        let mut keys = Vec::new();
        loop {
            let l = self.line()?;
            if l == b"END" {
                return Ok(keys);
            }
            if l.starts_with(b"ERROR") || l.starts_with(b"CLIENT_ERROR") || l.starts_with(b"BUSY") {
                return Err(format!(
                    "{}: metadump refused: {}",
                    self.server,
                    String::from_utf8_lossy(&l)
                ));
            }
            let Some(k) = l
                .strip_prefix(b"key=")
                .map(|r| r.split(|&c| c == b' ').next().unwrap_or(r))
            else {
                continue;
            };
            let key = url_decode(k);
            // Keys the text and meta commands can name (binary keys are left alone).
            if !key.is_empty()
                && key.iter().all(|c| c.is_ascii_graphic())
                && buckets.contains(&(hash.hash(&key) & mask))
            {
                keys.push(key);
            }
        }
    }

    /// `mg <key> c`: the item's CAS, `None` when absent.
    fn cas(&mut self, key: &[u8]) -> Result<Option<u64>, String> {
        self.send(&[b"mg ", key, b" c\r\n"])?;
        let l = self.line()?;
        Ok(flag(&l, b'c'))
    }
}

/// The numeric value of meta flag `f` in a reply line (`HD c123 t-1`).
fn flag(line: &[u8], f: u8) -> Option<u64> {
    if !(line.starts_with(b"HD") || line.starts_with(b"VA")) {
        return None;
    }
    line.split(|&c| c == b' ')
        .skip(1)
        .find(|t| t.first() == Some(&f))
        .and_then(|t| std::str::from_utf8(&t[1..]).ok()?.parse().ok())
}

/// Delete, on `server`, every key of `buckets`. Returns how many were deleted.
fn purge(server: &str, spec: &BucketsSpec, buckets: &[u32]) -> Result<usize, String> {
    let mut raw = Raw::connect(server)?;
    let keys = raw.keys_of(spec, buckets)?;
    for k in &keys {
        raw.send(&[b"md ", k, b" q\r\n"])?;
    }
    raw.send(&[b"mn\r\n"])?;
    while raw.line()? != b"MN" {}
    Ok(keys.len())
}

/// Copy every key of `buckets` from `from` to `to` with `add` (what is already there is newer:
/// every client writes both sides now), keeping flags and the remaining TTL. A key whose CAS
/// changed on `from` meanwhile (a delete or a write racing the copy) is deleted on `to`
/// again, so the copy never outlives the write. Returns how many were copied.
fn warm(from: &str, to: &str, spec: &BucketsSpec, buckets: &[u32]) -> Result<usize, String> {
    let mut src = Raw::connect(from)?;
    let mut dst = Raw::connect(to)?;
    let keys = src.keys_of(spec, buckets)?;
    let mut copied = 0;
    for k in &keys {
        src.send(&[b"mg ", k, b" v f t c\r\n"])?;
        let head = src.line()?;
        if !head.starts_with(b"VA ") {
            continue;
        }
        let len: usize = head[3..]
            .split(|&c| c == b' ')
            .next()
            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
            .ok_or_else(|| format!("{from}: bad reply {}", String::from_utf8_lossy(&head)))?;
        let data = src.exact(len)?;
        let (flags, cas) = (flag(&head, b'f').unwrap_or(0), flag(&head, b'c'));
        // t-1 is "never expires": no flag parses, TTL 0.
        let ttl = flag(&head, b't').unwrap_or(0);
        let cmd = format!(" {len} T{ttl} F{flags} ME\r\n");
        dst.send(&[b"ms ", k, cmd.as_bytes(), &data, b"\r\n"])?;
        let stored = dst.line()? == b"HD";
        if src.cas(k)? != cas {
            dst.send(&[b"md ", k, b"\r\n"])?;
            dst.line()?;
        } else if stored {
            copied += 1;
        }
    }
    Ok(copied)
}

/// metadump's key encoding: `%XX` escapes.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&s[i + 1..i + 3]), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn status(store: &Store) -> Result<ExitCode, String> {
    let t = read_topology(store)?;
    let (servers, spec) = pool_state(&t, &store.pool)?;
    println!(
        "pool {}: {} buckets, map version {}, hash {}",
        store.pool,
        spec.count,
        spec.version,
        spec.hash.as_deref().unwrap_or("one_at_a_time")
    );
    for (i, s) in servers.iter().enumerate() {
        let n = spec.map.iter().filter(|&&x| x as usize == i).count();
        println!("  {i} {s}: {n} buckets");
    }
    for m in &spec.moves {
        println!(
            "  bucket {}: {} -> {} {}",
            m.bucket,
            spec.map[m.bucket as usize],
            m.to,
            m.phase.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(map: Vec<u32>) -> BucketsSpec {
        BucketsSpec {
            count: map.len() as u32,
            version: 1,
            hash: None,
            map,
            moves: Vec::new(),
        }
    }

    /// Every step from (servers, spec) to the end.
    fn run(
        mut servers: Vec<String>,
        mut spec: BucketsSpec,
        plan: &[String],
        remove: &[String],
        target: &[u32],
        batch: usize,
    ) -> (Vec<String>, BucketsSpec, Vec<String>) {
        let mut log = Vec::new();
        while let Some(step) = next_step(&servers, &spec, plan, remove, target, batch).unwrap() {
            assert_eq!(
                step.spec.version,
                spec.version + 1,
                "every step is a new version"
            );
            log.push(step.what.clone());
            servers = step.servers;
            spec = step.spec;
            assert!(log.len() < 1000);
        }
        (servers, spec, log)
    }

    #[test]
    fn apply_adds_a_server_moves_batches_through_every_phase_and_is_idempotent() {
        let servers: Vec<String> = (0..2).map(|i| format!("127.0.0.1:{}", 21000 + i)).collect();
        let mut plan = servers.clone();
        plan.push("127.0.0.1:21002".into());
        let start = spec(balanced(8, &[1, 1]));
        let moves = plan_moves(&start.map, &[1, 1, 1]).unwrap();
        let mut target = start.map.clone();
        for &(b, to) in &moves {
            target[b as usize] = to;
        }
        let (end_servers, end, log) = run(servers, start, &plan, &[], &target, 2);
        assert_eq!(end_servers, plan);
        assert_eq!(end.map, target);
        assert!(end.moves.is_empty());
        // 1 servers step + per batch of 2: start, 3 phase steps, done.
        let batches = moves.len().div_ceil(2);
        assert_eq!(log.len(), 1 + batches * 5, "{log:?}");
        // Run again from the end: nothing to do.
        assert!(
            next_step(&end_servers, &end, &plan, &[], &target, 2)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_from_only_step_purges_the_target_and_removal_renumbers() {
        let servers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", 21000 + i)).collect();
        let start = spec(vec![0, 1, 2, 0, 1, 2, 0, 1]);
        let remove = vec!["127.0.0.1:21001".to_string()];
        let moves = plan_moves(&start.map, &[1, 0, 1]).unwrap();
        let mut target = start.map.clone();
        for &(b, to) in &moves {
            target[b as usize] = to;
        }
        // Start the first batch, then the next step purges its buckets on the target.
        let s1 = next_step(&servers, &start, &servers, &remove, &target, 8)
            .unwrap()
            .unwrap();
        assert!(s1.spec.moves.iter().all(|m| m.phase == MovePhase::FromOnly));
        let s2 = next_step(&servers, &s1.spec, &servers, &remove, &target, 8)
            .unwrap()
            .unwrap();
        let purged: usize = s2.purge.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(purged, moves.len());
        let plan = servers.clone();
        let (end_servers, end, _) = run(servers, start, &plan, &remove, &target, 8);
        assert_eq!(end_servers, ["127.0.0.1:21000", "127.0.0.1:21002"]);
        assert!(end.map.iter().all(|&s| s < 2));
    }

    #[test]
    fn removing_the_last_server_ends_without_it() {
        let servers: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", 21000 + i)).collect();
        let start = spec(balanced(8, &[1, 1, 1]));
        let remove = vec!["127.0.0.1:21002".to_string()];
        let moves = plan_moves(&start.map, &[1, 1, 0]).unwrap();
        let mut target = start.map.clone();
        for &(b, to) in &moves {
            target[b as usize] = to;
        }
        let (end_servers, end, _) = run(servers.clone(), start, &servers, &remove, &target, 4);
        assert_eq!(end_servers, ["127.0.0.1:21000", "127.0.0.1:21001"]);
        assert!(end.map.iter().all(|&s| s < 2));
    }

    #[test]
    fn rollback_steps_back_to_the_map() {
        let servers: Vec<String> = (0..2).map(|i| format!("127.0.0.1:{}", 21000 + i)).collect();
        let mut s = spec(vec![0, 0, 1, 1]);
        s.moves = vec![MoveSpec {
            bucket: 0,
            from: Some(0),
            to: 1,
            phase: MovePhase::DualWriteReadNew,
        }];
        let map = s.map.clone();
        let (_, end, log) = run(servers.clone(), s, &servers, &[], &map, 1);
        assert_eq!(end.map, map);
        assert!(end.moves.is_empty());
        assert_eq!(
            log.len(),
            3,
            "read_new -> dual_write -> from_only -> none: {log:?}"
        );
    }

    #[test]
    fn metadump_keys_are_url_decoded() {
        assert_eq!(url_decode(b"a%20b%2Fc"), b"a b/c");
        assert_eq!(url_decode(b"plain"), b"plain");
        assert_eq!(url_decode(b"bad%2"), b"bad%2");
    }
}
