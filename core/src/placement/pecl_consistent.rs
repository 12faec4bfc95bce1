//! PHP `memcache` extension (pecl) `memcache.hash_strategy=consistent`.
//!
//! Anchor: `websupport-sk/pecl-memcache:src/memcache_consistent_hash.c` (4.0.5.2) with
//! `MMC_CONSISTENT_POINTS = 160`, `MMC_CONSISTENT_BUCKETS = 1024` (`src/memcache_pool.h`) and the
//! crc32 hash of `src/memcache_pool.c`:
//!
//! - each server adds `160 * weight` points, point `i` = `crc32("host:port-i")` (full 32-bit
//!   CRC, port always present, `%d` formatting);
//! - the sorted ring is sampled once into 1024 buckets: bucket `b` belongs to the first point
//!   `>= b * (0xffffffff / 1024)`, wrapping to the first point;
//! - a key goes to `buckets[crc32(key) % 1024]`.
//!
//! So only 1024 ring positions are ever consulted. pecl sorts with `qsort` on the value alone;
//! we break ties by server order, which is what glibc's (merge-sort, stable) `qsort` does.

use std::fmt::Write as _;

use super::{Node, effective_weight};
use crate::hash::crc32::crc32;

/// `MMC_CONSISTENT_POINTS`: ring points per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 160;
/// `MMC_CONSISTENT_BUCKETS`: precomputed lookup buckets.
pub const BUCKETS: usize = 1024;

/// The 1024-bucket table pecl builds from its ring.
#[derive(Clone, Debug)]
pub struct PeclConsistent {
    /// Server index per bucket; always `BUCKETS` long.
    buckets: Vec<u32>,
}

impl PeclConsistent {
    /// Build the ring for `nodes` (weights of 0 count as 1) and sample it into the buckets.
    pub fn new(nodes: &[Node]) -> PeclConsistent {
        let ring = ring(nodes);
        // `unsigned int step = 0xffffffff / MMC_CONSISTENT_BUCKETS`.
        let step = u32::MAX / BUCKETS as u32;
        let buckets = (0u32..BUCKETS as u32)
            .map(|b| {
                let point = step * b;
                // mmc_consistent_find: the first point >= `point`, wrapping to the first.
                let i = ring.partition_point(|&(value, _)| value < point);
                ring.get(i).or(ring.first()).map_or(0, |&(_, index)| index)
            })
            .collect();
        PeclConsistent { buckets }
    }

    /// The server for `key`: `buckets[crc32(key) % 1024]`.
    pub fn pick(&self, key: &[u8]) -> usize {
        let b = crc32(key) as usize % BUCKETS;
        self.buckets.get(b).map_or(0, |&i| i as usize)
    }
}

/// The sorted ring: `(crc32("host:port-i"), server index)` for `i < 160 * weight`, ordered by
/// value, then server order.
fn ring(nodes: &[Node]) -> Vec<(u32, u32)> {
    let mut ring = Vec::new();
    let mut name = String::new();
    for (index, node) in (0u32..).zip(nodes) {
        let points = u64::from(effective_weight(node)) * u64::from(POINTS_PER_WEIGHT);
        for i in 0..points {
            name.clear();
            // `sprintf("%s:%d-")` then `"%d"`; writing to a String cannot fail.
            let _ = write!(name, "{}:{}-{}", node.host, node.port, i);
            ring.push((crc32(name.as_bytes()), index));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_table_is_full_size() {
        let p = PeclConsistent::new(&[Node::new("127.0.0.1", 11211)]);
        assert_eq!(p.buckets.len(), BUCKETS);
        assert!(p.buckets.iter().all(|&i| i == 0));
    }

    #[test]
    fn weight_multiplies_points() {
        // A server with weight 3 owns roughly three times as many buckets as one with weight 1.
        let nodes = [
            Node::new("10.0.0.1", 11211),
            Node {
                host: "10.0.0.2".into(),
                port: 11211,
                weight: 3,
            },
        ];
        let p = PeclConsistent::new(&nodes);
        let heavy = p.buckets.iter().filter(|&&i| i == 1).count();
        assert!((600..900).contains(&heavy), "{heavy}");
    }

    #[test]
    fn ring_points_always_carry_the_port() {
        // Unlike libmemcached, pecl formats "%s:%d-%d" even for port 11211.
        let nodes = [
            Node::new("h1", 11211),
            Node {
                host: "h2".into(),
                port: 21212,
                weight: 2,
            },
        ];
        let r = ring(&nodes);
        assert_eq!(r.len(), 160 + 320);
        assert!(r.contains(&(crc32(b"h1:11211-0"), 0)));
        assert!(r.contains(&(crc32(b"h1:11211-159"), 0)));
        assert!(!r.contains(&(crc32(b"h1:11211-160"), 0)));
        assert!(r.contains(&(crc32(b"h2:21212-319"), 1)));
        assert!(r.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn empty_does_not_panic() {
        let p = PeclConsistent::new(&[]);
        assert_eq!(p.pick(b"k"), 0);
    }
}
