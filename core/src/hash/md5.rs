//! MD5-based hashes: libmemcached `HASHKIT_HASH_MD5` (the key hash of weighted ketama) and the
//! ketama point function.
//!
//! Anchors: `awesomized/libmemcached:src/libhashkit/md5.cc` (`hashkit_md5`) and
//! `src/libmemcached/hosts.cc` (`ketama_server_hash`); twemproxy `src/hashkit/nc_md5.c`
//! and `nc_ketama.c` (`ketama_hash`) compute the same values.

use md5::{Digest, Md5};

/// The raw 16-byte MD5 digest of `data`.
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Little-endian `u32` number `alignment` (0..=3) of an MD5 digest: libmemcached's
/// `ketama_server_hash(key, len, alignment)` once the digest is computed. Each digest gives four
/// ketama points. `alignment` is taken modulo 4 so that no input can index out of bounds.
pub fn digest_word(digest: &[u8; 16], alignment: usize) -> u32 {
    let i = (alignment % 4) * 4;
    u32::from_le_bytes([digest[i], digest[i + 1], digest[i + 2], digest[i + 3]])
}

/// libmemcached `hashkit_md5`: the first four digest bytes as a little-endian `u32`. MD5 reads
/// unsigned bytes, so this hash does not depend on the signedness of `char`.
pub fn md5(key: &[u8]) -> u32 {
    digest_word(&md5_digest(key), 0)
}

/// The longest key MD5 hashes in one 64-byte block: 55 bytes, then the 0x80 pad byte and the
/// 8-byte bit length.
pub const ONE_BLOCK_MAX: usize = 55;

/// [`md5()`] of every key: `out[i] = md5(keys[i])`. On x86-64 the one-block keys (≤
/// [`ONE_BLOCK_MAX`] bytes, every memcached key in practice) are hashed side by side, 4 per
/// SSE2 pass or 8 per AVX2 pass when the CPU has AVX2: a multi-key get hashes all its keys
/// before grouping them by server, and one lane's share of an AVX2 pass, padding included,
/// takes about a fifth of the scalar hash's instructions. Longer keys, and other targets, take
/// [`md5()`]. Bit-identical to [`md5()`].
///
/// # Panics
///
/// If `keys` and `out` differ in length.
pub fn md5_many(keys: &[&[u8]], out: &mut [u32]) {
    assert_eq!(keys.len(), out.len(), "md5_many: one output per key");
    #[cfg(target_arch = "x86_64")]
    lanes::md5_many(keys, out);
    #[cfg(not(target_arch = "x86_64"))]
    for (key, o) in keys.iter().zip(out) {
        *o = md5(key);
    }
}

/// Multi-lane one-block MD5: each vector lane runs one key's compression, so the 64 steps are
/// the scalar ones with every `u32` operation widened to 4 (SSE2) or 8 (AVX2) lanes.
#[cfg(target_arch = "x86_64")]
mod lanes {
    use std::arch::x86_64::*;

    use super::{ONE_BLOCK_MAX, md5};

    /// MD5's initial state (RFC 1321 §3.3).
    const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

    /// The step constants `floor(|sin(i + 1)| · 2^32)` (RFC 1321 §3.4).
    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];

    /// Hash the one-block keys in passes of `lanes`, the others with [`md5`]. AVX2 only when
    /// there are more than 4 keys (a single SSE2 pass otherwise does the same work).
    pub(super) fn md5_many(keys: &[&[u8]], out: &mut [u32]) {
        run(keys, out, keys.len() > 4);
    }

    /// [`md5_many`] with AVX2 passes when `avx2` is asked and the CPU has it, else SSE2 passes.
    pub(super) fn run(keys: &[&[u8]], out: &mut [u32], avx2: bool) {
        // std caches the CPUID answer: one atomic load after the first call.
        let avx2 = avx2 && is_x86_feature_detected!("avx2");
        let lanes = if avx2 { 8 } else { 4 };
        let mut blocks = [[0u8; 64]; 8];
        let mut slots = [0usize; 8];
        let mut n = 0;
        for (i, key) in keys.iter().enumerate() {
            if key.len() > ONE_BLOCK_MAX {
                out[i] = md5(key);
                continue;
            }
            pad(key, &mut blocks[n]);
            slots[n] = i;
            n += 1;
            if n == lanes {
                pass(&blocks, &slots[..n], avx2, out);
                n = 0;
            }
        }
        // The last few keys: the unused lanes hash stale blocks, whose results are dropped;
        // one pass with idle lanes still costs less than one scalar hash per key.
        if n > 0 {
            pass(&blocks, &slots[..n], avx2 && n > 4, out);
        }
    }

    /// One pass over `blocks`: `out[slots[j]]` gets lane `j`'s hash.
    fn pass(blocks: &[[u8; 64]; 8], slots: &[usize], avx2: bool, out: &mut [u32]) {
        let mut words = [0u32; 8];
        if avx2 {
            // SAFETY: `avx2` is only true when `run` saw `is_x86_feature_detected!("avx2")`.
            words = unsafe { avx2::first_words(blocks) };
        } else {
            let [b0, b1, b2, b3, ..] = blocks;
            // SAFETY: SSE2 is part of the x86-64 baseline; every x86-64 CPU has it.
            let four = unsafe { sse2::first_words([b0, b1, b2, b3]) };
            words[..4].copy_from_slice(&four);
        }
        for (&slot, &w) in slots.iter().zip(&words) {
            out[slot] = w;
        }
    }

    /// MD5's padding of a one-block message: the key, 0x80, zeros, the bit length
    /// little-endian in bytes 56..64. Writes all 64 bytes, so a reused block needs no clearing.
    fn pad(key: &[u8], block: &mut [u8; 64]) {
        let len = key.len();
        block[..len].copy_from_slice(key);
        block[len] = 0x80;
        block[len + 1..56].fill(0);
        block[56..].copy_from_slice(&(len as u64 * 8).to_le_bytes());
    }

    /// The 16 message words of four blocks, word `i` of block `l` in lane `l` of vector `i`:
    /// four 4×4 transposes of 32-bit words (x86 is little-endian, as MD5's words are).
    #[target_feature(enable = "sse2")]
    fn transpose4(blocks: [&[u8; 64]; 4]) -> [__m128i; 16] {
        let mut w = [_mm_setzero_si128(); 16];
        for q in 0..4 {
            // SAFETY: bytes 16q..16q + 16 lie inside each 64-byte block (q < 4), and
            // `_mm_loadu_si128` has no alignment requirement.
            let [r0, r1, r2, r3] =
                blocks.map(|b| unsafe { _mm_loadu_si128(b.as_ptr().add(16 * q).cast()) });
            let t0 = _mm_unpacklo_epi32(r0, r1);
            let t1 = _mm_unpacklo_epi32(r2, r3);
            let t2 = _mm_unpackhi_epi32(r0, r1);
            let t3 = _mm_unpackhi_epi32(r2, r3);
            w[4 * q] = _mm_unpacklo_epi64(t0, t1);
            w[4 * q + 1] = _mm_unpackhi_epi64(t0, t1);
            w[4 * q + 2] = _mm_unpacklo_epi64(t2, t3);
            w[4 * q + 3] = _mm_unpackhi_epi64(t2, t3);
        }
        w
    }

    /// The 64 MD5 steps over the message words `$w` with the lane operations of module `$v`,
    /// evaluating to the state word A plus its initial value: the first four digest bytes,
    /// little-endian, which is all [`md5`] keeps. The last three steps only update B, C and D,
    /// so they are left out.
    macro_rules! first_word {
        ($v:ident, $w:expr) => {{
            let w: &[_; 16] = $w;
            let (mut a, mut b, mut c, mut d) = (
                $v::splat(INIT[0]),
                $v::splat(INIT[1]),
                $v::splat(INIT[2]),
                $v::splat(INIT[3]),
            );
            // a = b + ((a + f(b, c, d) + K[i] + w[g]) <<< s)
            macro_rules! step {
                ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $i:expr, $g:expr, $s:literal) => {
                    let f = $v::$f($b, $c, $d);
                    let sum = $v::add($v::add($a, f), $v::add($v::splat(K[$i]), w[$g]));
                    $a = $v::add($b, $v::rotl::<$s, { 32 - $s }>(sum));
                };
            }
            macro_rules! four {
                ($f:ident, $i:expr, [$g0:expr, $g1:expr, $g2:expr, $g3:expr], [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
                    step!($f, a, b, c, d, $i, $g0, $s0);
                    step!($f, d, a, b, c, $i + 1, $g1, $s1);
                    step!($f, c, d, a, b, $i + 2, $g2, $s2);
                    step!($f, b, c, d, a, $i + 3, $g3, $s3);
                };
            }
            four!(f, 0, [0, 1, 2, 3], [7, 12, 17, 22]);
            four!(f, 4, [4, 5, 6, 7], [7, 12, 17, 22]);
            four!(f, 8, [8, 9, 10, 11], [7, 12, 17, 22]);
            four!(f, 12, [12, 13, 14, 15], [7, 12, 17, 22]);
            four!(g, 16, [1, 6, 11, 0], [5, 9, 14, 20]);
            four!(g, 20, [5, 10, 15, 4], [5, 9, 14, 20]);
            four!(g, 24, [9, 14, 3, 8], [5, 9, 14, 20]);
            four!(g, 28, [13, 2, 7, 12], [5, 9, 14, 20]);
            four!(h, 32, [5, 8, 11, 14], [4, 11, 16, 23]);
            four!(h, 36, [1, 4, 7, 10], [4, 11, 16, 23]);
            four!(h, 40, [13, 0, 3, 6], [4, 11, 16, 23]);
            four!(h, 44, [9, 12, 15, 2], [4, 11, 16, 23]);
            four!(i, 48, [0, 7, 14, 5], [6, 10, 15, 21]);
            four!(i, 52, [12, 3, 10, 1], [6, 10, 15, 21]);
            four!(i, 56, [8, 15, 6, 13], [6, 10, 15, 21]);
            step!(i, a, b, c, d, 60, 4, 6);
            $v::add(a, $v::splat(INIT[0]))
        }};
    }

    /// 4 lanes of SSE2, which every x86-64 CPU has.
    mod sse2 {
        use std::arch::x86_64::*;

        use super::{INIT, K, transpose4};

        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn splat(x: u32) -> __m128i {
            _mm_set1_epi32(x as i32)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn add(x: __m128i, y: __m128i) -> __m128i {
            _mm_add_epi32(x, y)
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn rotl<const L: i32, const R: i32>(x: __m128i) -> __m128i {
            _mm_or_si128(_mm_slli_epi32::<L>(x), _mm_srli_epi32::<R>(x))
        }
        /// `(b & c) | (!b & d)`, as `d ^ (b & (c ^ d))`.
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn f(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(d, _mm_and_si128(b, _mm_xor_si128(c, d)))
        }
        /// `(b & d) | (c & !d)`, as `c ^ (d & (b ^ c))`.
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn g(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(c, _mm_and_si128(d, _mm_xor_si128(b, c)))
        }
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn h(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            _mm_xor_si128(_mm_xor_si128(b, c), d)
        }
        /// `c ^ (b | !d)`.
        #[inline]
        #[target_feature(enable = "sse2")]
        pub(super) fn i(b: __m128i, c: __m128i, d: __m128i) -> __m128i {
            let not_d = _mm_xor_si128(d, _mm_set1_epi32(-1));
            _mm_xor_si128(c, _mm_or_si128(b, not_d))
        }

        /// The hash of each of four padded blocks.
        #[target_feature(enable = "sse2")]
        pub(in super::super) fn first_words(blocks: [&[u8; 64]; 4]) -> [u32; 4] {
            let a = first_word!(self, &transpose4(blocks));
            let mut out = [0u32; 4];
            // SAFETY: `out` is 16 writable bytes; `_mm_storeu_si128` needs no alignment.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), a) };
            out
        }
    }

    /// 8 lanes of AVX2; callers check the CPU first.
    mod avx2 {
        use std::arch::x86_64::*;

        use super::{INIT, K, transpose4};

        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn splat(x: u32) -> __m256i {
            _mm256_set1_epi32(x as i32)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn add(x: __m256i, y: __m256i) -> __m256i {
            _mm256_add_epi32(x, y)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
            _mm256_or_si256(_mm256_slli_epi32::<L>(x), _mm256_srli_epi32::<R>(x))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(_mm256_xor_si256(b, c), d)
        }
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(super) fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            let not_d = _mm256_xor_si256(d, _mm256_set1_epi32(-1));
            _mm256_xor_si256(c, _mm256_or_si256(b, not_d))
        }

        /// The hash of each of eight padded blocks: two SSE2 transposes, halves joined.
        #[target_feature(enable = "avx2")]
        pub(in super::super) fn first_words(blocks: &[[u8; 64]; 8]) -> [u32; 8] {
            let [b0, b1, b2, b3, b4, b5, b6, b7] = blocks;
            let lo = transpose4([b0, b1, b2, b3]);
            let hi = transpose4([b4, b5, b6, b7]);
            let mut w = [_mm256_setzero_si256(); 16];
            for (w, (&lo, &hi)) in w.iter_mut().zip(lo.iter().zip(&hi)) {
                *w = _mm256_set_m128i(hi, lo);
            }
            let a = first_word!(self, &w);
            let mut out = [0u32; 8];
            // SAFETY: `out` is 32 writable bytes; `_mm256_storeu_si256` needs no alignment.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), a) };
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{INPUTS, MD5};

    #[test]
    fn libmemcached_fixture() {
        for (input, want) in INPUTS.iter().zip(MD5) {
            assert_eq!(md5(input.as_bytes()), want, "{input}");
        }
    }

    /// Deterministic bytes (xorshift64), so a failure names a reproducible key.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// `md5_many` (and each lane width on its own) against `md5` for `keys`.
    fn check_many(keys: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let want: Vec<u32> = refs.iter().map(|k| md5(k)).collect();
        let mut got = vec![0u32; refs.len()];
        md5_many(&refs, &mut got);
        assert_eq!(got, want, "{} keys", keys.len());
        #[cfg(target_arch = "x86_64")]
        {
            let mut avx2 = vec![false];
            if is_x86_feature_detected!("avx2") {
                avx2.push(true);
            }
            for wide in avx2 {
                let mut got = vec![0u32; refs.len()];
                lanes::run(&refs, &mut got, wide);
                assert_eq!(got, want, "{} keys, avx2 {wide}", keys.len());
            }
        }
    }

    #[test]
    fn many_equals_one_at_a_time_for_every_length() {
        // One call with every length 0..=200: one-block and multi-block keys interleaved.
        let keys: Vec<Vec<u8>> = (0..=200).map(|len| noise(len as u64, len)).collect();
        check_many(&keys);
        // The padding edges alone, in their own passes.
        for len in [0, 1, 54, 55, 56, 63, 64, 65] {
            let keys: Vec<Vec<u8>> = (0..9).map(|i| noise(i * 1000 + len as u64, len)).collect();
            check_many(&keys);
        }
    }

    #[test]
    fn many_equals_one_at_a_time_for_lane_remainders() {
        for count in [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 100, 1001] {
            let keys: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    // Mostly memcached-sized keys, every 13th longer than one block.
                    let len = if i % 13 == 12 { 56 + i % 150 } else { i % 56 };
                    noise(count as u64 * 7919 + i as u64, len)
                })
                .collect();
            check_many(&keys);
        }
        let fixture: Vec<Vec<u8>> = INPUTS.iter().map(|s| s.as_bytes().to_vec()).collect();
        check_many(&fixture);
    }

    #[test]
    #[should_panic(expected = "one output per key")]
    fn many_needs_one_output_per_key() {
        md5_many(&[b"a", b"b"], &mut [0u32; 1]);
    }

    /// ns per key, [`md5`] one by one vs [`md5_many`], in the same run (the ratio is the figure;
    /// the machine may be busy): `cargo test -p fae-core --release --lib md5_many_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run by hand"]
    fn md5_many_speed() {
        use std::hint::black_box;
        use std::time::Instant;
        let keys: Vec<String> = (0..100).map(|i| format!("bench:key:{i}")).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let mut out = vec![0u32; refs.len()];
        let rounds = 20_000;
        let per_key = |t: Instant| t.elapsed().as_nanos() as f64 / (rounds * refs.len()) as f64;
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..rounds {
                for (k, o) in black_box(&refs).iter().zip(out.iter_mut()) {
                    *o = md5(k);
                }
            }
            let scalar = per_key(t);
            let t = Instant::now();
            for _ in 0..rounds {
                md5_many(black_box(&refs), &mut out);
            }
            let many = per_key(t);
            #[cfg(target_arch = "x86_64")]
            let sse2 = {
                let t = Instant::now();
                for _ in 0..rounds {
                    lanes::run(black_box(&refs), &mut out, false);
                }
                per_key(t)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let sse2 = many;
            println!(
                "md5 {scalar:.1} ns/key, md5_many {many:.1} ns/key ({:.1}x), SSE2 only {sse2:.1} \
                 ns/key ({:.1}x)",
                scalar / many,
                scalar / sse2
            );
        }
    }

    #[test]
    fn twemproxy_vectors() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(md5(b"apple"), 3195025439);
        let d = md5_digest(b"server1-8");
        assert_eq!(digest_word(&d, 0), 3853726576);
        assert_eq!(digest_word(&d, 3), 2667054752);
    }
}
