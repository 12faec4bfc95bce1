//! mcrouter's Ch3 consistent hash, `furc_hash(key, len, m)`, the default `hash` of PoolRoute.
//!
//! Anchor: `facebook/mcrouter:mcrouter/lib/fbi/hash.c` (`furc_hash`, `furc_get_bit`,
//! `murmur_rehash_64A`); test values from `mcrouter/lib/test/Ch3HashTest.cpp`. Ch3 returns an
//! index into the pool's server list in configuration order (`Ch3HashFunc.h`).
//!
//! A binary decision tree over a pseudo-random bit stream: bit `i` is bit `i % 64` of word
//! `i / 64`, where word 0 is MurmurHash64A(key, seed 4193360111) and word `n` rehashes word
//! `n - 1`. Each try reads `d` bits spaced `FURC_SHIFT` apart; up to 32 tries, then 0.

use crate::hash::murmur::{murmur64a, murmur64a_u64};

/// `SEED`: MurmurHash64A seed chosen by mcrouter for diffusion.
const SEED: u32 = 4_193_360_111;
/// `MAX_TRIES`: tries for an in-range result before returning 0.
const MAX_TRIES: u32 = 32;
/// `FURC_SHIFT`: gap in bit index per try; limits pools to 2^23 servers.
const FURC_SHIFT: u32 = 23;

/// Largest pool mcrouter accepts (`furc_maximum_pool_size()`, 2^23); it asserts above that.
pub const MAX_POOL_SIZE: u32 = 1 << FURC_SHIFT;

/// Words the bit stream can need. The largest bit index is reached with `d = 32` (pools up to
/// `u32::MAX`, beyond mcrouter's limit but still handled without panicking): every try advances
/// `a` by `d * FURC_SHIFT` from at most `d`.
const CACHE_WORDS: usize = ((32 + MAX_TRIES * 32 * FURC_SHIFT) / 64 + 1) as usize;

/// The lazily extended word cache of `furc_get_bit`, on the stack.
struct BitStream<'a> {
    key: &'a [u8],
    words: [u64; CACHE_WORDS],
    /// Number of valid words in `words`.
    filled: usize,
}

impl BitStream<'_> {
    fn bit(&mut self, idx: u32) -> u32 {
        let ord = (idx >> 6) as usize;
        while self.filled <= ord.min(CACHE_WORDS - 1) {
            let n = self.filled;
            self.words[n] = if n == 0 {
                murmur64a(self.key, SEED)
            } else {
                murmur64a_u64(self.words[n - 1], SEED)
            };
            self.filled += 1;
        }
        // `ord` is always < CACHE_WORDS (see its definition); `get` keeps that panic-free.
        self.words
            .get(ord)
            .map_or(0, |w| ((w >> (idx & 0x3f)) & 1) as u32)
    }
}

/// `furc_hash(key, len, m)`: a server index in `0..m` (0 when `m <= 1`). Allocation-free.
pub fn furc_hash(key: &[u8], m: u32) -> u32 {
    if m <= 1 {
        return 0;
    }
    let mut bits = BitStream {
        key,
        words: [0; CACHE_WORDS],
        filled: 0,
    };
    // d = ceil(log2(m)): the smallest d with m <= 2^d.
    let mut d: u32 = 0;
    while u64::from(m) > (1u64 << d) {
        d += 1;
    }
    let mut a = d;
    for _ in 0..MAX_TRIES {
        while bits.bit(a) == 0 {
            d -= 1;
            if d == 0 {
                return 0;
            }
            a = d;
        }
        a += FURC_SHIFT;
        let mut num: u32 = 1;
        for _ in 0..d - 1 {
            num = (num << 1) | bits.bit(a);
            a += FURC_SHIFT;
        }
        if num < m {
            return num;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ch3_hash_test_basic() {
        // facebook/mcrouter:mcrouter/lib/test/Ch3HashTest.cpp TEST(Ch3Func, basic)
        assert_eq!(furc_hash(b"sample", 100), 97);
        assert_eq!(furc_hash(b"sample", 1), 0);
        assert_eq!(furc_hash(b"", 100), 72);
        assert_eq!(furc_hash(b"", 1), 0);
        assert_eq!(furc_hash(b"", MAX_POOL_SIZE), 6_173_600);
        assert_eq!(furc_hash(b"sample", MAX_POOL_SIZE), 5_167_780);
        // Bytes -128..=127 as C `char`s, i.e. 0x80..=0xff then 0x00..=0x7f.
        let mut key: Vec<u8> = (0..256).map(|i: i32| (i - 128) as i8 as u8).collect();
        assert_eq!(furc_hash(&key, 99_999), 31_015);
        key.reverse();
        assert_eq!(furc_hash(&key, 99_999), 67_101);
    }

    fn counts(m: u32, keys: u32) -> Vec<usize> {
        let mut c = vec![0; m as usize];
        for i in 0..keys {
            c[furc_hash(i.to_string().as_bytes(), m) as usize] += 1;
        }
        c
    }

    #[test]
    fn ch3_hash_test_distributions() {
        // Ch3HashTest.cpp TEST(Ch3Func, ch3_3) and TEST(Ch3HashFunc, ch3_10)
        assert_eq!(counts(3, 1000), [307, 342, 351]);
        assert_eq!(
            counts(10, 10_000),
            [995, 955, 1046, 968, 1032, 972, 1016, 1038, 1010, 968]
        );
    }

    #[test]
    fn consistent_when_growing() {
        // hash_test.cpp verify_correctness: growing the pool only moves keys to new servers.
        for i in 0..2000u32 {
            let key = format!("k{i}");
            let mut prev = furc_hash(key.as_bytes(), 1);
            for m in 2..40 {
                let now = furc_hash(key.as_bytes(), m);
                assert!(now < m);
                assert!(now == prev || now == m - 1, "{key} {m}");
                prev = now;
            }
        }
    }

    #[test]
    fn huge_pools_do_not_panic() {
        for m in [MAX_POOL_SIZE + 1, u32::MAX - 1, u32::MAX] {
            assert!(furc_hash(b"sample", m) < m);
        }
    }
}
