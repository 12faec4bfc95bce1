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

    #[test]
    fn twemproxy_vectors() {
        // twitter/twemproxy:src/test_all.c test_hash_algorithms
        assert_eq!(md5(b"apple"), 3195025439);
        let d = md5_digest(b"server1-8");
        assert_eq!(digest_word(&d, 0), 3853726576);
        assert_eq!(digest_word(&d, 3), 2667054752);
    }
}
