//! The FNV hashes as libmemcached (and twemproxy) implement them, quirks included.
//!
//! Anchors: `awesomized/libmemcached:src/libhashkit/fnv_32.cc`, `fnv_64.cc`; twemproxy
//! `src/hashkit/nc_fnv.c` (same code, twemproxy's default hash is the quirky `fnv1a_64`).
//!
//! All of them read the key through `const char *` and widen each byte with a cast, which
//! sign-extends on x86-64. We always sign-extend ([`signed_char`], and `b as i8 as u64` for the
//! 64-bit FNV-1) so results equal x86-64 deployments on every platform.

use super::signed_char;

const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;
const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// libmemcached `HASHKIT_HASH_FNV1_32`: `h = h * prime; h ^= byte`.
pub fn fnv1_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |h, &b| {
        h.wrapping_mul(FNV_32_PRIME) ^ signed_char(b)
    })
}

/// libmemcached `HASHKIT_HASH_FNV1A_32`: `h ^= byte; h = h * prime`. PHP `memcache`'s
/// `hash_function=fnv` is the same function (`src/memcache_pool.c` `mmc_hash_fnv1a_combine`,
/// also through a signed `char`).
pub fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |h, &b| {
        (h ^ signed_char(b)).wrapping_mul(FNV_32_PRIME)
    })
}

/// libmemcached `HASHKIT_HASH_FNV1_64`: genuine 64-bit FNV-1 (each byte sign-extended to 64
/// bits, `(uint64_t) key[x]`), truncated to its low 32 bits by the caller
/// ([`super::HashFn::Fnv1_64`]).
pub fn fnv1_64(key: &[u8]) -> u64 {
    key.iter().fold(FNV_64_INIT, |h, &b| {
        // Sign extension to 64 bits, as `(uint64_t)(char) b` on x86-64.
        h.wrapping_mul(FNV_64_PRIME) ^ (b as i8 as i64 as u64)
    })
}

/// libmemcached `HASHKIT_HASH_FNV1A_64`, which is **not** 64-bit FNV-1a: it runs in 32 bits with
/// the 64-bit constants truncated (`init = 0x8422_2325`, `prime = 0x1b3`). twemproxy copies the
/// quirk and makes it its default hash (`fnv1a_64`), so this is the function to match.
pub fn fnv1a_64_libmemcached(key: &[u8]) -> u32 {
    key.iter().fold(FNV_64_INIT as u32, |h, &b| {
        (h ^ signed_char(b)).wrapping_mul(FNV_64_PRIME as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{FNV1_32, FNV1_64, FNV1A_32, FNV1A_64, INPUTS};

    #[test]
    fn libmemcached_fixture() {
        for (i, input) in INPUTS.iter().enumerate() {
            let k = input.as_bytes();
            assert_eq!(fnv1_64(k) as u32, FNV1_64[i], "fnv1_64 {input}");
            assert_eq!(fnv1a_64_libmemcached(k), FNV1A_64[i], "fnv1a_64 {input}");
            assert_eq!(fnv1_32(k), FNV1_32[i], "fnv1_32 {input}");
            assert_eq!(fnv1a_32(k), FNV1A_32[i], "fnv1a_32 {input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(fnv1_32(b"apple"), 67176023);
        assert_eq!(fnv1a_32(b"apple"), 280767167);
        assert_eq!(fnv1_64(b"apple") as u32, 473199127);
        assert_eq!(fnv1a_64_libmemcached(b"apple"), 1488911807);
    }

    #[test]
    fn empty_key_is_offset_basis() {
        assert_eq!(fnv1_32(b""), FNV_32_INIT);
        assert_eq!(fnv1a_32(b""), FNV_32_INIT);
        assert_eq!(fnv1_64(b""), FNV_64_INIT);
        assert_eq!(fnv1a_64_libmemcached(b""), 0x8422_2325);
    }

    #[test]
    fn high_bytes_are_sign_extended() {
        // x86-64: (uint32_t)(char)0xff == 0xffff_ffff.
        assert_eq!(
            fnv1a_32(&[0xff]),
            (FNV_32_INIT ^ 0xffff_ffff).wrapping_mul(FNV_32_PRIME)
        );
        assert_eq!(
            fnv1_64(&[0xff]),
            FNV_64_INIT.wrapping_mul(FNV_64_PRIME) ^ u64::MAX
        );
    }
}
