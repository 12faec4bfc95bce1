//! Bob Jenkins' lookup3 `hashlittle`, libmemcached `HASHKIT_HASH_JENKINS`.
//!
//! Anchor: `awesomized/libmemcached:src/libhashkit/jenkins.cc` (`hashkit_jenkins`, initval
//! `JENKINS_INITVAL = 13`). The C code has three read paths (aligned 32-bit, aligned 16-bit,
//! bytes) that give the same result on little-endian hosts; we implement the byte path, which
//! is also what big-endian hosts run. Bytes are read unsigned.

const INITVAL: u32 = 13;

/// lookup3 `hashlittle(key, len, 13)`: `a = b = c = 0xdeadbeef + len + 13`, 12-byte blocks,
/// returns `c`. A zero-length key returns `c` without the final mix.
pub fn jenkins(key: &[u8]) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(INITVAL);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut rest = key;
    // All but the last block (which may be a full 12 bytes) go through `mix`.
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    // Last block: missing bytes count as zero.
    let mut last = [0u8; 12];
    last[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(word(&last[0..4]));
    b = b.wrapping_add(word(&last[4..8]));
    c = c.wrapping_add(word(&last[8..12]));
    final_mix(&mut a, &mut b, &mut c);
    c
}

fn word(b: &[u8]) -> u32 {
    b.iter()
        .enumerate()
        .fold(0, |w, (i, &x)| w | u32::from(x) << (8 * i))
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fixtures::{INPUTS, JENKINS};

    #[test]
    fn libmemcached_fixture() {
        for (input, want) in INPUTS.iter().zip(JENKINS) {
            assert_eq!(jenkins(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn twemproxy_apple() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(jenkins(b"apple"), 1442444624);
    }

    #[test]
    fn empty_key_skips_final_mix() {
        assert_eq!(jenkins(b""), 0xdead_beef_u32.wrapping_add(13));
    }
}
