//! fork() with a parked breaker probe: a probe that timed out on a SIGSTOPped server waits on
//! its socket for the late reply, and a child forked meanwhile inherits that socket. Only the
//! parent may read the reply: the child drops its copy unread (and parks its own probes),
//! so the parent's breaker still half-opens the moment the server resumes, and the child's
//! keys are served too. One test per binary: fork() copies only the calling thread.

use std::time::{Duration, Instant};

use fae_core::{Client, Config, Reason};
use fae_testkit::{Cluster, wait_until};

mod support_place;
use support_place::keys_on;

/// Until `limit`: a get of `key` that hits, measured from `from`.
fn first_hit(c: &Client, key: &str, from: Instant, limit: Duration) -> Option<Duration> {
    while from.elapsed() < limit {
        if let Ok(Some(_)) = c.get(key.as_bytes()) {
            return Some(from.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The child: its supervisor runs (and ticks over the inherited parked probe) while the
/// parent resumes the server; then the victim's keys must be served to it as well.
fn child(c: &Client, healthy: &str, victim_key: &str) -> i32 {
    let start = Instant::now();
    match c.get(healthy.as_bytes()) {
        Ok(Some(_)) => {}
        _ => return 2,
    }
    if c.stats()["supervisor"]["running"] != true {
        return 3;
    }
    // The parent resumes the server about 80 ms after the fork; the child's next scheduled
    // probe (inherited schedule) or its own parked probe finds it.
    match first_hit(c, victim_key, start, Duration::from_secs(5)) {
        Some(_) => 0,
        None => 4,
    }
}

#[test]
fn a_forked_child_never_reads_its_parents_parked_probe() {
    let cluster = Cluster::start(4);
    let list: Vec<String> = cluster.addrs().iter().map(|s| format!("\"{s}\"")).collect();
    let c = Client::new(
        &Config::from_json(&format!(r#"{{"servers": [{}]}}"#, list.join(","))).unwrap(),
    )
    .unwrap();
    let victim = cluster.addrs()[1].clone();
    let ks = keys_on(&c, &victim, 2);
    let healthy = keys_on(&c, &cluster.addrs()[0], 1).remove(0);
    for k in ks.iter().chain([&healthy]) {
        c.set(k.as_bytes(), b"v", 0, 0).unwrap();
    }
    let counter = |name: &str| c.stats()["destinations"][&victim][name].as_u64().unwrap();
    cluster[1].pause().unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        c.get(ks[0].as_bytes())
            .is_err_and(|e| e.reason() == Reason::Tko)
    }));
    // Parked after the first failed probe; fork right after the second fails, so the parent's
    // next scheduled probe is ≥ 560 ms away and only the parked one can serve it sooner.
    assert!(wait_until(Duration::from_secs(10), || counter(
        "probes_failed"
    ) >= 2));
    assert!(counter("probes_parked") >= 1);
    let wakeups = counter("probe_wakeups");

    let pid = fae_testkit::fork_child(|| child(&c, &healthy, &ks[1]));
    // The child's supervisor ticks a few times over the inherited parked socket meanwhile.
    std::thread::sleep(Duration::from_millis(80));
    let resumed = Instant::now();
    cluster[1].resume().unwrap();
    let served = first_hit(&c, &ks[0], resumed, Duration::from_secs(3));
    let codes = fae_testkit::wait_forked(&[pid], Duration::from_secs(30));
    let d = &c.stats()["destinations"][&victim];
    eprintln!("parent: SIGCONT -> first hit {served:?}; child exit {codes:?}; {d}");
    assert_eq!(codes, vec![0], "child exit code");
    let served = served.expect("the parent is served again");
    assert_eq!(
        counter("probe_wakeups"),
        wakeups + 1,
        "the parent read its parked probe's reply"
    );
    assert!(served < Duration::from_millis(300), "{served:?}");
}
