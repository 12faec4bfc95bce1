//! Key → u32 hash functions, pure and bit-exact with the clients libfae replaces.
//!
//! One file per function; [`HashFn`] names them with libmemcached's numbering
//! (`hashkit_hash_algorithm_t`, php-memcached `Memcached::HASH_*`), which is also the set
//! twemproxy and pylibmc offer. The placement modes in [`crate::placement`] pick one of them, or a
//! client-specific variant ([`crc32::crc32_pecl_standard`], [`murmur::murmur3_32_parts`],
//! [`murmur::murmur64a`]).
//!
//! # Signed `char`
//!
//! libmemcached and twemproxy hash through `const char *`, and one-at-a-time, the FNV family and
//! Hsieh's 3-byte tail widen a byte with a plain cast. On x86-64 `char` is signed, so byte
//! `0x80` becomes `0xFFFF_FF80`; on aarch64 `char` is unsigned and it becomes `0x80`. The two
//! builds therefore place keys containing bytes ≥ 0x80 on different servers. libfae always
//! sign-extends ([`signed_char`]: `b as i8 as u32`), so it agrees with x86-64 deployments, the
//! common case, on every platform it runs on. MD5, CRC, Jenkins and the Murmur hashes read
//! unsigned bytes and are platform-independent.

use std::fmt;

pub mod crc32;
pub mod fnv;
pub mod hsieh;
pub mod jenkins;
pub mod md5;
pub mod murmur;
pub mod one_at_a_time;

#[cfg(test)]
mod fixtures;

/// A byte widened as C's `(uint32_t)(char) b` on x86-64, where `char` is signed (see the module
/// docs): `0x00..=0x7f` unchanged, `0x80..=0xff` sign-extended to `0xFFFF_FF80..`.
pub const fn signed_char(b: u8) -> u32 {
    b as i8 as u32
}

/// A key hash, numbered as libmemcached's `hashkit_hash_algorithm_t` (0..=10).
// The FNV variant names keep libmemcached's `FNV1A_64`-style digits, which rustc's camel-case
// check rejects after a lowercase letter.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HashFn {
    /// 0, `HASHKIT_HASH_DEFAULT`: Jenkins' one-at-a-time ([`one_at_a_time::one_at_a_time`]).
    #[default]
    OneAtATime = 0,
    /// 1, `HASHKIT_HASH_MD5`: first four MD5 bytes, little-endian ([`md5::md5`]).
    Md5 = 1,
    /// 2, `HASHKIT_HASH_CRC`: 15 bits of CRC-32 ([`crc32::crc32_libmemcached`]); twemproxy calls
    /// it `crc32`.
    Crc = 2,
    /// 3, `HASHKIT_HASH_FNV1_64`: 64-bit FNV-1, low 32 bits ([`fnv::fnv1_64`]).
    Fnv1_64 = 3,
    /// 4, `HASHKIT_HASH_FNV1A_64`: libmemcached's 32-bit "FNV-1a 64" with truncated constants
    /// ([`fnv::fnv1a_64_libmemcached`]); twemproxy's default.
    Fnv1a_64 = 4,
    /// 5, `HASHKIT_HASH_FNV1_32` ([`fnv::fnv1_32`]).
    Fnv1_32 = 5,
    /// 6, `HASHKIT_HASH_FNV1A_32` ([`fnv::fnv1a_32`]).
    Fnv1a_32 = 6,
    /// 7, `HASHKIT_HASH_HSIEH`: SuperFastHash ([`hsieh::hsieh`]). Off by default in libmemcached
    /// builds, where it then returns 0.
    Hsieh = 7,
    /// 8, `HASHKIT_HASH_MURMUR`: MurmurHash2 ([`murmur::murmur2_libmemcached`]).
    Murmur = 8,
    /// 9, `HASHKIT_HASH_JENKINS`: lookup3 `hashlittle`, initval 13 ([`jenkins::jenkins`]). Not
    /// exposed by php-memcached.
    Jenkins = 9,
    /// 10, `HASHKIT_HASH_MURMUR3`: MurmurHash3_x86_32, seed `0xdeadbeef * len`
    /// ([`murmur::murmur3_libmemcached`]). Not exposed by php-memcached or pylibmc.
    Murmur3 = 10,
}

impl HashFn {
    /// Every hash, in libmemcached order (index == number).
    pub const ALL: [HashFn; 11] = [
        HashFn::OneAtATime,
        HashFn::Md5,
        HashFn::Crc,
        HashFn::Fnv1_64,
        HashFn::Fnv1a_64,
        HashFn::Fnv1_32,
        HashFn::Fnv1a_32,
        HashFn::Hsieh,
        HashFn::Murmur,
        HashFn::Jenkins,
        HashFn::Murmur3,
    ];

    /// Hash `key`.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashFn::OneAtATime => one_at_a_time::one_at_a_time(key),
            HashFn::Md5 => md5::md5(key),
            HashFn::Crc => crc32::crc32_libmemcached(key),
            // libmemcached returns `(uint32_t) hash`: the low 32 bits.
            HashFn::Fnv1_64 => fnv::fnv1_64(key) as u32,
            HashFn::Fnv1a_64 => fnv::fnv1a_64_libmemcached(key),
            HashFn::Fnv1_32 => fnv::fnv1_32(key),
            HashFn::Fnv1a_32 => fnv::fnv1a_32(key),
            HashFn::Hsieh => hsieh::hsieh(key),
            HashFn::Murmur => murmur::murmur2_libmemcached(key),
            HashFn::Jenkins => jenkins::jenkins(key),
            HashFn::Murmur3 => murmur::murmur3_libmemcached(key),
        }
    }

    /// Hash every key: `out[i] = self.hash(keys[i])`. MD5 hashes several keys at once
    /// ([`md5::md5_many`]); the others are cheap enough one by one.
    ///
    /// # Panics
    ///
    /// If `keys` and `out` differ in length.
    pub fn hash_many(self, keys: &[&[u8]], out: &mut [u32]) {
        assert_eq!(keys.len(), out.len(), "hash_many: one output per key");
        match self {
            HashFn::Md5 => md5::md5_many(keys, out),
            _ => {
                for (key, o) in keys.iter().zip(out) {
                    *o = self.hash(key);
                }
            }
        }
    }

    /// libmemcached's number for this hash (`MEMCACHED_BEHAVIOR_HASH` value).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The hash with libmemcached number `n`, if any.
    pub fn from_number(n: u32) -> Option<HashFn> {
        HashFn::ALL.get(usize::try_from(n).ok()?).copied()
    }

    /// Stable config name: pylibmc's `hash` behavior names (`one_at_a_time` instead of
    /// `default`), which are also twemproxy's, except twemproxy's `crc32` (see
    /// [`HashFn::from_name`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            HashFn::OneAtATime => "one_at_a_time",
            HashFn::Md5 => "md5",
            HashFn::Crc => "crc",
            HashFn::Fnv1_64 => "fnv1_64",
            HashFn::Fnv1a_64 => "fnv1a_64",
            HashFn::Fnv1_32 => "fnv1_32",
            HashFn::Fnv1a_32 => "fnv1a_32",
            HashFn::Hsieh => "hsieh",
            HashFn::Murmur => "murmur",
            HashFn::Jenkins => "jenkins",
            HashFn::Murmur3 => "murmur3",
        }
    }

    /// Parse a hash name, ASCII case-insensitively. Accepts [`HashFn::as_str`] names plus the
    /// aliases users bring from their old config: `default` (libmemcached/pylibmc for
    /// one-at-a-time) and `crc32` (twemproxy's name for libmemcached's 15-bit CRC; twemproxy's
    /// full CRC-32, `crc32a`, is not a libmemcached hash and is not accepted).
    pub fn from_name(name: &str) -> Option<HashFn> {
        if name.eq_ignore_ascii_case("default") {
            return Some(HashFn::OneAtATime);
        }
        if name.eq_ignore_ascii_case("crc32") {
            return Some(HashFn::Crc);
        }
        HashFn::ALL
            .into_iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for HashFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_matches_libmemcached() {
        for (i, h) in HashFn::ALL.into_iter().enumerate() {
            assert_eq!(h.number() as usize, i);
            assert_eq!(HashFn::from_number(i as u32), Some(h));
        }
        assert_eq!(HashFn::from_number(11), None);
        assert_eq!(HashFn::from_number(u32::MAX), None);
    }

    #[test]
    fn names_round_trip() {
        for h in HashFn::ALL {
            assert_eq!(HashFn::from_name(h.as_str()), Some(h));
            assert_eq!(HashFn::from_name(&h.as_str().to_uppercase()), Some(h));
        }
        assert_eq!(HashFn::from_name("default"), Some(HashFn::OneAtATime));
        assert_eq!(HashFn::from_name("crc32"), Some(HashFn::Crc));
        assert_eq!(HashFn::from_name("crc32a"), None);
        assert_eq!(HashFn::from_name(""), None);
    }

    #[test]
    fn dispatch_matches_fixture_rows() {
        // Each file checks its function against its whole row of test/fixtures/hashes.hpp;
        // here only that each number dispatches to the right row (libmemcached order).
        let rows: [[u32; 26]; 11] = [
            fixtures::ONE_AT_A_TIME,
            fixtures::MD5,
            fixtures::CRC,
            fixtures::FNV1_64,
            fixtures::FNV1A_64,
            fixtures::FNV1_32,
            fixtures::FNV1A_32,
            fixtures::HSIEH,
            fixtures::MURMUR,
            fixtures::JENKINS,
            fixtures::MURMUR3,
        ];
        for (h, row) in HashFn::ALL.into_iter().zip(rows) {
            for i in [0, 25] {
                let input = fixtures::INPUTS[i];
                assert_eq!(h.hash(input.as_bytes()), row[i], "{h} {input}");
            }
        }
    }

    #[test]
    fn hash_many_equals_hash() {
        let keys: Vec<String> = (0..37)
            .map(|i| format!("key:{i}:{}", "x".repeat(i)))
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        for h in HashFn::ALL {
            let mut out = vec![0u32; refs.len()];
            h.hash_many(&refs, &mut out);
            let want: Vec<u32> = refs.iter().map(|k| h.hash(k)).collect();
            assert_eq!(out, want, "{h}");
        }
    }

    #[test]
    fn signed_char_widening() {
        assert_eq!(signed_char(0x00), 0);
        assert_eq!(signed_char(0x7f), 0x7f);
        assert_eq!(signed_char(0x80), 0xffff_ff80);
        assert_eq!(signed_char(0xff), 0xffff_ffff);
    }
}
