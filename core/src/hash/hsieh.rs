//! Paul Hsieh's SuperFastHash, libmemcached `HASHKIT_HASH_HSIEH`.
//!
//! Anchor: `awesomized/libmemcached:src/libhashkit/hsieh.cc`. libmemcached builds it only with
//! `ENABLE_HASH_HSIEH` (off by default; a build without it returns 0 from `hashkit_hsieh`), so a
//! deployment that selected HSIEH may in fact have been hashing everything to 0. We implement the
//! enabled function, verified against the `HAVE_HSIEH_HASH` row of libmemcached's fixture.

use super::signed_char;

/// SuperFastHash as libmemcached has it: `hash = 0` at the start (not the length), an empty key
/// hashes to 0. The 3-byte tail reads its last byte through `const char *`
/// (`(uint32_t) key[2] << 18`), which sign-extends on x86-64; we always sign-extend there
/// ([`signed_char`]). The 16-bit reads and the 1-byte tail are unsigned in the C code.
pub fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let get16 = |d: &[u8]| u32::from(d[0]) | u32::from(d[1]) << 8;
    let mut hash: u32 = 0;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        hash = hash.wrapping_add(get16(&block[0..2]));
        let tmp = (get16(&block[2..4]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    match blocks.remainder() {
        [b0, b1, b2] => {
            hash = hash.wrapping_add(get16(&[*b0, *b1]));
            hash ^= hash << 16;
            hash ^= signed_char(*b2) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        [b0, b1] => {
            hash = hash.wrapping_add(get16(&[*b0, *b1]));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        [b0] => {
            hash = hash.wrapping_add(u32::from(*b0));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{HSIEH, INPUTS};

    #[test]
    fn libmemcached_fixture() {
        for (input, want) in INPUTS.iter().zip(HSIEH) {
            assert_eq!(hsieh(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(hsieh(b"apple"), 3738850110);
    }

    #[test]
    fn empty_key() {
        assert_eq!(hsieh(b""), 0);
    }

    #[test]
    fn three_byte_tail_sign_extends() {
        // The x86-64 result: the third byte of a 3-byte tail enters as 0xFFFF_FF80 << 18.
        let mut h: u32 = u32::from(b'a') | u32::from(b'b') << 8;
        h ^= h << 16;
        h ^= 0xffff_ff80_u32 << 18;
        h = h.wrapping_add(h >> 11);
        h ^= h << 3;
        h = h.wrapping_add(h >> 5);
        h ^= h << 4;
        h = h.wrapping_add(h >> 17);
        h ^= h << 25;
        h = h.wrapping_add(h >> 6);
        assert_eq!(hsieh(b"ab\x80"), h);
    }
}
