//! fork() while a breaker probe runs: the child inherits the prober's claim but not the thread
//! that holds it. It must be able to probe anyway; a claim that stayed taken would keep the
//! child's breaker open for good (and a destination's maintenance claim likewise would stop
//! its probes, heartbeats and recycling). One test per binary: fork() copies only the
//! calling thread.

use std::time::Duration;

use fae_core::Reason;
use fae_core::pool::health::{BreakerSettings, Health, PoolHealth};

#[test]
fn a_child_forked_mid_probe_can_probe() {
    fae_core::process::fork::install();
    let settings = BreakerSettings {
        tko_soft_threshold: 3,
        probe_initial: Duration::ZERO,
        probe_max: Duration::from_millis(10),
        half_open_requests: 1,
        max_tko_fraction: 1.0,
    };
    let h = Health::new(settings, PoolHealth::new(2, 1.0));
    h.record_failure(Reason::ConnectRefused);
    assert!(h.claim_probe(), "due at once");
    assert!(!h.claim_probe(), "one prober per process");
    let pid = fae_testkit::fork_child(|| match (h.claim_probe(), h.claim_probe()) {
        (true, false) => 0, // taken over once, then held by this process
        (false, _) => 1,
        (true, true) => 2,
    });
    let codes = fae_testkit::wait_forked(&[pid], Duration::from_secs(10));
    assert_eq!(
        codes,
        vec![0],
        "child: 1 = the parent's claim blocked its probe"
    );
    assert!(!h.claim_probe(), "the parent's own prober still holds it");
}
