//! Modula distributions: `hash % n`, and the weighted form where each server owns `weight`
//! consecutive buckets.
//!
//! Anchors: libmemcached `DISTRIBUTION_MODULA` (`awesomized/libmemcached:
//! src/libmemcached/hash.cc` `dispatch_host`: `hash % memcached_server_count`, weights
//! ignored); mcrouter `Crc32` (`facebook/mcrouter:mcrouter/lib/Crc32HashFunc.h`); PHP
//! `memcache` standard strategy (`websupport-sk/pecl-memcache:src/memcache_standard_hash.c`:
//! `weight` bucket copies per server, `buckets[hash % num_buckets]`).

use super::{Node, effective_weight};

/// `hash % n` as an index. `n == 0` gives 0 instead of a division panic.
pub fn modula(hash: u32, n: usize) -> usize {
    // usize → u64 is lossless on every supported target; the result is < n, so it fits back.
    u64::from(hash).checked_rem(n as u64).unwrap_or(0) as usize
}

/// Weighted modula: the bucket list is server 0 repeated `weight₀` times, then server 1
/// `weight₁` times, …, and a hash picks bucket `hash % Σweight`. Stored as running totals so that
/// large weights cost no memory and a lookup is a binary search.
#[derive(Clone, Debug)]
pub struct WeightedModula {
    /// `ends[i]` = Σ weight of servers `0..=i`: server `i` owns buckets `ends[i-1]..ends[i]`.
    ends: Vec<u64>,
}

impl WeightedModula {
    /// Build from the nodes' weights (0 counts as 1; pecl refuses weights < 1).
    pub fn new(nodes: &[Node]) -> WeightedModula {
        let ends = nodes
            .iter()
            .scan(0u64, |sum, n| {
                *sum += u64::from(effective_weight(n));
                Some(*sum)
            })
            .collect();
        WeightedModula { ends }
    }

    /// The server owning bucket `hash % Σweight` (0 for an empty list).
    pub fn pick(&self, hash: u32) -> usize {
        let total = self.ends.last().copied().unwrap_or(0);
        let bucket = u64::from(hash).checked_rem(total).unwrap_or(0);
        self.ends.partition_point(|&end| end <= bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashFn;

    #[test]
    fn plain_modula() {
        assert_eq!(modula(10, 4), 2);
        assert_eq!(modula(u32::MAX, 7), (u32::MAX % 7) as usize);
        assert_eq!(modula(5, 0), 0);
    }

    #[test]
    fn libmemcached_generate_hash_vectors() {
        // awesomized/libmemcached:test/tests/memcached/generate_hash.cpp checks MODULA over
        // five servers with MD5 and CRC against the fixture hashes; the index is simply
        // hash % 5, so check that relation on the fixture inputs.
        for key in ["apple", "beat", "carrot"] {
            for h in [HashFn::Md5, HashFn::Crc] {
                let v = h.hash(key.as_bytes());
                assert_eq!(modula(v, 5), (v % 5) as usize);
            }
        }
    }

    #[test]
    fn weighted_buckets_in_server_order() {
        let nodes: Vec<Node> = [1, 2, 3]
            .into_iter()
            .map(|weight| Node {
                host: "h".into(),
                port: 1,
                weight,
            })
            .collect();
        let w = WeightedModula::new(&nodes);
        // Buckets: [0, 1, 1, 2, 2, 2].
        let got: Vec<usize> = (0..12).map(|h| w.pick(h)).collect();
        assert_eq!(got, [0, 1, 1, 2, 2, 2, 0, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn weight_zero_counts_as_one() {
        let nodes = [
            Node {
                host: "a".into(),
                port: 1,
                weight: 0,
            },
            Node::new("b", 1),
        ];
        let w = WeightedModula::new(&nodes);
        assert_eq!((w.pick(0), w.pick(1)), (0, 1));
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(WeightedModula::new(&[]).pick(99), 0);
    }
}
