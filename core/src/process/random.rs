//! Per-process random numbers for spreading load (random replica reads, retry and recycle
//! jitter): not for anything that needs unpredictability.
//!
//! A generator seeded once and copied by `fork()` gives every php-fpm or gunicorn worker the
//! same sequence, so all workers would pick the same replica and retry in lockstep. The state
//! here is thread-local and tagged with the [`fork::generation`] it was seeded in: the first
//! call in a forked child (or a new thread) reseeds from the pid, the thread and the clock.
//! The hot path is a thread-local read, one relaxed atomic load and a splitmix64 step.

use std::cell::Cell;
use std::hash::{BuildHasher, Hash, Hasher};

use crate::process::fork;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

thread_local! {
    /// (generation seeded in, state); `u64::MAX`: not seeded yet.
    static STATE: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed no other process or thread starts from: std's `RandomState` keys (from the OS), the
/// pid (a forked child inherits the keys, not the pid), the thread and the time.
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut h);
    std::thread::current().id().hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The next random number of this thread in this process.
pub fn next_u64() -> u64 {
    let generation = fork::generation();
    STATE.with(|s| {
        let (seeded_in, mut x) = s.get();
        if seeded_in != generation {
            x = seed();
        }
        x = x.wrapping_add(GOLDEN);
        s.set((generation, x));
        mix(x)
    })
}

/// A random fraction in `[0, 1)`.
pub fn fraction() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_stay_in_range_and_vary() {
        let xs: Vec<f64> = (0..1000).map(|_| fraction()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn threads_get_different_sequences() {
        let a: Vec<u64> = (0..4).map(|_| next_u64()).collect();
        let b = std::thread::spawn(|| (0..4).map(|_| next_u64()).collect::<Vec<u64>>())
            .join()
            .unwrap();
        assert_ne!(a, b);
    }
}
