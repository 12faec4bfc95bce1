//! CRC-32 (IEEE 802.3, reflected, the zlib/PHP `crc32()` value) and the truncated variants the
//! memcached clients derive from it.
//!
//! Anchors:
//! - libmemcached `HASHKIT_HASH_CRC`: `awesomized/libmemcached:src/libhashkit/crc32.cc` returns
//!   `((~crc) >> 16) & 0x7fff`, only 15 bits (twemproxy calls the same function `crc32`, and
//!   python-memcached's `cmemcache_hash` is identical).
//! - PHP `memcache` (pecl) `hash_strategy=standard`: `websupport-sk/pecl-memcache:
//!   src/memcache_standard_hash.c` takes `(crc32(key) >> 16) & 0x7fff` and then `hash ? hash : 1`.
//! - pecl `hash_strategy=consistent` and mcrouter `Crc32` use the full 32-bit value
//!   (`src/memcache_pool.c` `mmc_hash_crc32_*`; `facebook/mcrouter:mcrouter/lib/fbi/hash.c`
//!   `crc32_hash`). All of them mask the table index with `& 0xff`, so the signedness of `char`
//!   does not matter here.

/// The standard CRC-32 of `key` (init `0xFFFF_FFFF`, reflected polynomial `0xEDB8_8320`, final
/// complement), as PHP's `crc32()`, zlib and twemproxy's `crc32a` compute it.
pub fn crc32(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

/// libmemcached `HASHKIT_HASH_CRC`: bits 16..31 of the CRC-32, masked to 15 bits.
pub fn crc32_libmemcached(key: &[u8]) -> u32 {
    (crc32(key) >> 16) & 0x7fff
}

/// PHP `memcache` (pecl) standard strategy's key hash: libmemcached's 15-bit CRC, with 0
/// replaced by 1 (`hash ? hash : 1`), so the result is in `1..=0x7fff`.
pub fn crc32_pecl_standard(key: &[u8]) -> u32 {
    match crc32_libmemcached(key) {
        0 => 1,
        h => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{CRC, INPUTS};

    #[test]
    fn libmemcached_fixture() {
        for (input, want) in INPUTS.iter().zip(CRC) {
            assert_eq!(crc32_libmemcached(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c: crc32 (15-bit) and crc32a (full)
        assert_eq!(crc32_libmemcached(b"apple"), 10542);
        assert_eq!(crc32(b"apple"), 2838417488);
    }

    #[test]
    fn standard_check_value() {
        // The CRC-32 catalogue check value.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn pecl_standard_never_zero() {
        assert_eq!(crc32_pecl_standard(b"apple"), 10542);
        // crc32("") == 0, so the 15-bit value is 0 and pecl substitutes 1.
        assert_eq!(crc32_libmemcached(b""), 0);
        assert_eq!(crc32_pecl_standard(b""), 1);
    }
}
