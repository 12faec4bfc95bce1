//! Bob Jenkins' one-at-a-time hash, libmemcached's default key hash (`HASHKIT_HASH_DEFAULT`).
//!
//! Anchor: `awesomized/libmemcached:src/libhashkit/one_at_a_time.cc` (twemproxy's
//! `src/hashkit/nc_one_at_a_time.c` is the same code).

use super::signed_char;

/// libmemcached `hashkit_one_at_a_time`.
///
/// The C code reads the key through `const char *` and widens each byte with
/// `(uint32_t) *ptr`, which sign-extends on x86-64 (where `char` is signed): byte `0x80`
/// contributes `0xFFFF_FF80`. We always sign-extend ([`signed_char`]) so that keys with bytes
/// ≥ 0x80 land where an x86-64 deployment puts them, on every platform (an aarch64 build of
/// libmemcached, where `char` is unsigned, disagrees for such keys).
pub fn one_at_a_time(key: &[u8]) -> u32 {
    let mut value: u32 = 0;
    for &b in key {
        value = value.wrapping_add(signed_char(b));
        value = value.wrapping_add(value << 10);
        value ^= value >> 6;
    }
    value = value.wrapping_add(value << 3);
    value ^= value >> 11;
    value.wrapping_add(value << 15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{INPUTS, ONE_AT_A_TIME};

    #[test]
    fn libmemcached_fixture() {
        for (input, want) in INPUTS.iter().zip(ONE_AT_A_TIME) {
            assert_eq!(one_at_a_time(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(one_at_a_time(b"apple"), 2297466611);
    }

    #[test]
    fn empty_key() {
        assert_eq!(one_at_a_time(b""), 0);
    }

    #[test]
    fn high_bytes_are_sign_extended() {
        // One-byte key, the byte already widened to 32 bits.
        let widened = |mut v: u32| {
            v = v.wrapping_add(v << 10);
            v ^= v >> 6;
            v = v.wrapping_add(v << 3);
            v ^= v >> 11;
            v.wrapping_add(v << 15)
        };
        // x86-64 widens 0x80 to 0xFFFF_FF80; an unsigned-char build (aarch64) to 0x80.
        assert_eq!(one_at_a_time(&[0x80]), widened(0xFFFF_FF80));
        assert_ne!(one_at_a_time(&[0x80]), widened(0x80));
        assert_eq!(one_at_a_time(&[0x7f]), widened(0x7f));
    }
}
