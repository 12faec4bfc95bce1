//! Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm",
//! 2014), for new deployments; no existing memcached client to match.
//!
//! libfae's `jump` mode defines the key hash as **SipHash-1-3 with both keys 0** over the raw key
//! bytes (no length prefix or terminator), the 64-bit output fed to the paper's algorithm. The
//! `siphasher` crate implements the reference SipHash; CPython ≥ 3.11 computes the same value
//! as `hash(key_bytes)` under `PYTHONHASHSEED=0`, which is how the vectors below were checked.
//! This is not `std::collections::hash_map::DefaultHasher`, whose algorithm may change.

use siphasher::sip::SipHasher13;

/// The key hash of the `jump` mode: SipHash-1-3, keys `(0, 0)`, over `key`.
pub fn jump_key_hash(key: &[u8]) -> u64 {
    SipHasher13::new_with_keys(0, 0).hash(key)
}

/// The paper's `JumpConsistentHash(key, num_buckets)`: a bucket in `0..buckets` (0 when
/// `buckets == 0`).
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // `as i64` truncates toward zero like the C cast (and saturates instead of UB).
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    // b is in -1..buckets; -1 only when buckets == 0.
    u32::try_from(b).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_values() {
        // The values used by ClickHouse's `jumpConsistentHash` tests
        // (tests/queries/0_stateless/00580_consistent_hashing_functions) and the Go/Rust ports.
        assert_eq!(jump_consistent_hash(1, 1), 0);
        assert_eq!(jump_consistent_hash(42, 57), 43);
        assert_eq!(jump_consistent_hash(256, 1024), 520);
        assert_eq!(jump_consistent_hash(0xDEAD_10CC, 1), 0);
        assert_eq!(jump_consistent_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_consistent_hash(16_045_690_984_833_335_023, 255), 237);
    }

    #[test]
    fn zero_buckets() {
        assert_eq!(jump_consistent_hash(7, 0), 0);
    }

    #[test]
    fn key_hash_is_siphash13_zero_key() {
        // CPython 3.11: PYTHONHASHSEED=0 python3 -c 'print(hash(b"...") & (2**64 - 1))'
        assert_eq!(jump_key_hash(b"a"), 4_644_417_185_603_328_019);
        assert_eq!(jump_key_hash(b"key:0"), 12_860_440_548_048_329_565);
        assert_eq!(jump_key_hash(b"hello world"), 12_804_282_289_674_824_842);
        assert_eq!(
            jump_key_hash(b"The quick brown fox jumps over the lazy dog"),
            10_229_494_255_719_302_430
        );
    }

    #[test]
    fn consistent_when_growing() {
        for i in 0..2000u32 {
            let k = jump_key_hash(format!("k{i}").as_bytes());
            let mut prev = jump_consistent_hash(k, 1);
            for n in 2..40 {
                let now = jump_consistent_hash(k, n);
                assert!(now == prev || now == n - 1);
                prev = now;
            }
        }
    }
}
