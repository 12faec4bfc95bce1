//! The MurmurHash family (Austin Appleby) in the flavours the anchors use.
//!
//! - [`murmur2_libmemcached`]: libmemcached `HASHKIT_HASH_MURMUR`
//!   (`awesomized/libmemcached:src/libhashkit/murmur.cc`), MurmurHash2 with a length-derived
//!   seed.
//! - [`murmur3_32`]: MurmurHash3_x86_32. libmemcached `HASHKIT_HASH_MURMUR3` uses it with seed
//!   `0xdeadbeef * len` (`src/libhashkit/murmur3_api.cc`, see [`murmur3_libmemcached`]);
//!   pymemcache's rendezvous hashing uses seed 0 (`pinterest/pymemcache:
//!   pymemcache/client/murmur3.py`), through [`murmur3_32_parts`].
//! - [`murmur64a`]: MurmurHash64A, the bit source of mcrouter's Ch3 (`facebook/mcrouter:
//!   mcrouter/lib/fbi/hash.c` `murmur_hash_64A`).
//!
//! All read bytes as unsigned and assemble words little-endian (the C code byte-swaps on
//! big-endian hosts, or reads bytes explicitly), so none depends on the platform.

const M2: u32 = 0x5bd1_e995;
const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;
const M64: u64 = 0xc6a4_a793_5bd1_e995;

/// libmemcached `HASHKIT_HASH_MURMUR`: MurmurHash2 with `seed = 0xdeadbeef * len` and
/// `h = seed ^ len`, 4-byte little-endian blocks, the tail xor-ed in as a little-endian word.
pub fn murmur2_libmemcached(key: &[u8]) -> u32 {
    // The C code computes in uint32_t: the length is truncated to 32 bits.
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut h = seed ^ len;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M2);
        k ^= k >> 24;
        k = k.wrapping_mul(M2);
        h = h.wrapping_mul(M2);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        h ^= le_tail(tail);
        h = h.wrapping_mul(M2);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M2);
    h ^ (h >> 15)
}

/// Little-endian value of up to three trailing bytes (`memcpy` into a zeroed `uint32_t`).
fn le_tail(tail: &[u8]) -> u32 {
    tail.iter()
        .enumerate()
        .fold(0, |k, (i, &b)| k | u32::from(b) << (8 * i))
}

/// MurmurHash3_x86_32 of `key` with `seed`.
pub fn murmur3_32(key: &[u8], seed: u32) -> u32 {
    murmur3_32_parts(&[key], seed)
}

/// MurmurHash3_x86_32 of the concatenation of `parts`, without building it: rendezvous hashing
/// scores `"{node}-{key}"` for every node on every lookup, and this keeps that allocation-free.
pub fn murmur3_32_parts(parts: &[&[u8]], seed: u32) -> u32 {
    let mut m = Murmur3::new(seed);
    for part in parts {
        m.feed(part);
    }
    m.finish()
}

/// MurmurHash3_x86_32 fed in pieces. A copy taken after a fixed first piece (rendezvous
/// hashing's `"{node}-"`) is the midstate every lookup continues from, so the node name is
/// hashed once, not per key.
#[derive(Clone, Copy, Debug)]
pub struct Murmur3 {
    h: u32,
    /// Bytes of the current, unfinished 4-byte block (little-endian, `filled` of them).
    word: u32,
    filled: u32,
    len: usize,
}

impl Murmur3 {
    /// An empty hash with `seed`.
    pub fn new(seed: u32) -> Murmur3 {
        Murmur3 {
            h: seed,
            word: 0,
            filled: 0,
            len: 0,
        }
    }

    fn block(&mut self, k: u32) {
        self.h ^= murmur3_scramble(k);
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Append `bytes`: byte by byte until a block boundary, then whole 4-byte blocks.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len());
        while self.filled != 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return;
            };
            self.word |= u32::from(b) << (8 * self.filled);
            self.filled += 1;
            bytes = rest;
            if self.filled == 4 {
                let w = self.word;
                self.block(w);
                self.word = 0;
                self.filled = 0;
            }
        }
        let mut blocks = bytes.chunks_exact(4);
        for b in &mut blocks {
            self.block(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        for &b in blocks.remainder() {
            self.word |= u32::from(b) << (8 * self.filled);
            self.filled += 1;
        }
    }

    /// The hash of everything fed.
    pub fn finish(self) -> u32 {
        let mut h = self.h;
        if self.filled > 0 {
            h ^= murmur3_scramble(self.word);
        }
        // `h1 ^= len` with an `int`/`uint32_t` length in C; pymemcache masks to 32 bits at the end.
        h ^= self.len as u32;
        fmix32(h)
    }
}

/// libmemcached `HASHKIT_HASH_MURMUR3`: [`murmur3_32`] with `seed = 0xdeadbeef * len`.
pub fn murmur3_libmemcached(key: &[u8]) -> u32 {
    murmur3_32(key, 0xdead_beef_u32.wrapping_mul(key.len() as u32))
}

fn murmur3_scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MurmurHash64A of `key` with a 32-bit `seed` (`h = seed ^ (len * m)`), 8-byte little-endian
/// blocks, as in mcrouter's `murmur_hash_64A`.
pub fn murmur64a(key: &[u8], seed: u32) -> u64 {
    let mut h = u64::from(seed) ^ (key.len() as u64).wrapping_mul(M64);
    let mut blocks = key.chunks_exact(8);
    for block in &mut blocks {
        let mut b = [0u8; 8];
        b.copy_from_slice(block);
        h ^= murmur64a_scramble(u64::from_le_bytes(b));
        h = h.wrapping_mul(M64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        h ^= tail
            .iter()
            .enumerate()
            .fold(0u64, |k, (i, &b)| k | u64::from(b) << (8 * i));
        h = h.wrapping_mul(M64);
    }
    murmur64a_finish(h)
}

/// MurmurHash64A of one `u64` (as its 8 little-endian bytes) with `seed`: mcrouter's
/// `murmur_rehash_64A`, which generates further Ch3 bits by rehashing the previous word.
pub fn murmur64a_u64(k: u64, seed: u32) -> u64 {
    let mut h = u64::from(seed) ^ 8u64.wrapping_mul(M64);
    h ^= murmur64a_scramble(k);
    h = h.wrapping_mul(M64);
    murmur64a_finish(h)
}

fn murmur64a_scramble(mut k: u64) -> u64 {
    k = k.wrapping_mul(M64);
    k ^= k >> 47;
    k.wrapping_mul(M64)
}

fn murmur64a_finish(mut h: u64) -> u64 {
    h ^= h >> 47;
    h = h.wrapping_mul(M64);
    h ^ (h >> 47)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{INPUTS, MURMUR, MURMUR3};

    #[test]
    fn libmemcached_fixture() {
        for (i, input) in INPUTS.iter().enumerate() {
            let k = input.as_bytes();
            assert_eq!(murmur2_libmemcached(k), MURMUR[i], "murmur {input}");
            assert_eq!(murmur3_libmemcached(k), MURMUR3[i], "murmur3 {input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(murmur2_libmemcached(b"apple"), 4142305122);
    }

    #[test]
    fn murmur3_reference_values() {
        // Widely published MurmurHash3_x86_32 values (SMHasher verification inputs).
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_32(b"\xff\xff\xff\xff", 0), 0x7629_3b50);
        assert_eq!(murmur3_32(b"!Ce\x87", 0), 0xf55b_516b);
        assert_eq!(murmur3_32(b"!Ce", 0), 0x7e4a_8634);
        assert_eq!(murmur3_32(b"!C", 0), 0xa0f7_b07a);
        assert_eq!(murmur3_32(b"!", 0), 0x7266_1cf4);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
    }

    #[test]
    fn murmur3_parts_equal_concatenation() {
        let whole = b"127.0.0.1:21211-some key of odd length";
        for split in 0..=whole.len() {
            let (a, b) = whole.split_at(split);
            for seed in [0, 1, 0xdead_beef] {
                assert_eq!(murmur3_32_parts(&[a, b], seed), murmur3_32(whole, seed));
            }
        }
    }

    #[test]
    fn murmur3_midstate_continues_from_any_split() {
        // Three pieces split anywhere (a midstate reused for two different tails): the same
        // hash as the whole input, whatever the block alignment of each piece.
        let whole = b"127.0.0.1:21211-some key of odd length";
        for i in 0..=whole.len() {
            let mut mid = Murmur3::new(7);
            mid.feed(&whole[..i]);
            for j in i..=whole.len() {
                let mut m = mid;
                m.feed(&whole[i..j]);
                m.feed(&whole[j..]);
                assert_eq!(m.finish(), murmur3_32(whole, 7), "{i} {j}");
            }
        }
    }

    #[test]
    fn murmur64a_rehash_equals_bytes() {
        // murmur_rehash_64A(k) is murmur_hash_64A over k's 8 bytes (little-endian host).
        for k in [0u64, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(
                murmur64a_u64(k, 4_193_360_111),
                murmur64a(&k.to_le_bytes(), 4_193_360_111)
            );
        }
    }
}
