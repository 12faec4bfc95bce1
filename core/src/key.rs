//! Key validation: the one place that decides whether a key may go on the wire.
//!
//! memcached's text protocol separates tokens with spaces and ends commands with `\r\n`, so a key
//! holding a space, a control byte or DEL could smuggle a second command onto the connection
//! (`"a\r\nset evil 0 0 1\r\nx"`). Every key is checked here before any I/O. In the meta protocol a
//! client may opt in to binary keys (`binary_keys: true`), which travel base64-encoded with the
//! `b` flag; the 250-byte limit then applies to the encoded form, as memcached checks it.

use crate::error::{Error, Reason, Result};

/// memcached's `KEY_MAX_LENGTH`.
pub const MAX_KEY_LEN: usize = 250;

/// Is `b` a byte the text protocol cannot carry inside a key?
#[inline]
pub const fn is_forbidden_byte(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// Does the key need base64 to travel (meta protocol, binary keys)? Every key of every
/// request is scanned (here and in [`check`]), so eight bytes at a time: a word holds a
/// forbidden byte iff one of its bytes is below 0x21 or equals 0x7f ("hasless" and
/// "haszero" from Bit Twiddling Hacks, both exact as a yes/no).
#[inline]
pub fn needs_base64(key: &[u8]) -> bool {
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        if forbidden_in_word(u64::from_le_bytes(b)) {
            return true;
        }
    }
    // The tail, padded with a byte that is allowed.
    let rest = words.remainder();
    let mut b = [b'a'; 8];
    b[..rest.len()].copy_from_slice(rest);
    forbidden_in_word(u64::from_le_bytes(b))
}

#[inline]
fn forbidden_in_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_0x21 = w.wrapping_sub(ONES * 0x21) & !w & HIGH;
    let x = w ^ (ONES * 0x7f);
    let del = x.wrapping_sub(ONES) & !x & HIGH;
    below_0x21 | del != 0
}

/// Length of `n` bytes once base64-encoded with padding.
#[inline]
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Check a key. `binary_ok` is true only for a meta-protocol client configured with
/// `binary_keys`; such keys are sent base64-encoded.
pub fn check(key: &[u8], binary_ok: bool) -> Result<()> {
    if key.is_empty() {
        return Err(Error::with_detail(Reason::InvalidKey, "empty key"));
    }
    if needs_base64(key) {
        let pos = key
            .iter()
            .position(|&b| is_forbidden_byte(b))
            .unwrap_or_default();
        if !binary_ok {
            return Err(Error::with_detail(
                Reason::InvalidKey,
                format!(
                    "key holds byte 0x{:02x} at offset {pos}; spaces, control characters and DEL are not allowed",
                    key[pos]
                ),
            ));
        }
        let encoded = base64_len(key.len());
        if encoded > MAX_KEY_LEN {
            return Err(Error::with_detail(
                Reason::InvalidKey,
                format!(
                    "binary key of {} bytes is {encoded} bytes in base64; the limit is {MAX_KEY_LEN}",
                    key.len()
                ),
            ));
        }
        return Ok(());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::with_detail(
            Reason::InvalidKey,
            format!("key is {} bytes; the limit is {MAX_KEY_LEN}", key.len()),
        ));
    }
    Ok(())
}

/// Check a placing key (the `*ByKey` server key that picks the server for another key). It
/// is only hashed, never sent, so any bytes are fine; it must not be empty or longer than a
/// key (libmemcached's limit for its group keys).
pub fn check_place(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::with_detail(Reason::InvalidKey, "empty server key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::with_detail(
            Reason::InvalidKey,
            format!(
                "server key is {} bytes; the limit is {MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_scan_finds_exactly_the_forbidden_bytes() {
        // Every byte value, at every offset of keys of 1 to 24 bytes, among allowed bytes of
        // both halves (0x21 and 0xff sit next to the forbidden ranges).
        for len in 1..=24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'!', b'~', 0x80, 0xff] {
                        let mut k = vec![fill; len];
                        k[at] = b;
                        assert_eq!(
                            needs_base64(&k),
                            is_forbidden_byte(b),
                            "byte {b:#04x} at {at} of {len}, fill {fill:#04x}"
                        );
                    }
                }
            }
        }
        assert!(!needs_base64(b""));
    }

    #[test]
    fn placing_keys_take_any_byte_but_not_empty_or_long() {
        assert!(check_place(b" a b\r\n\xff").is_ok(), "never on the wire");
        assert!(check_place(&[b'x'; 250]).is_ok());
        assert!(check_place(b"").is_err());
        assert!(check_place(&[b'x'; 251]).is_err());
    }

    #[test]
    fn accepts_printable_keys_up_to_250_bytes() {
        assert!(check(b"a", false).is_ok());
        assert!(check(&[b'x'; 250], false).is_ok());
        assert!(
            check("ключ".as_bytes(), false).is_ok(),
            "UTF-8 bytes >= 0x80 are fine"
        );
    }

    #[test]
    fn rejects_the_hostile_set() {
        let long = [b'x'; 251];
        let hostile: [&[u8]; 8] = [
            b"",
            b"a b",
            b"a\r\nset evil 0 0 1\r\nx",
            b"a\0b",
            b"a\x7fb",
            b"tab\there",
            b"\n",
            &long,
        ];
        for k in hostile {
            let e = check(k, false).unwrap_err();
            assert_eq!(e.reason(), Reason::InvalidKey, "{k:?}");
        }
    }

    #[test]
    fn binary_keys_are_limited_by_their_base64_length() {
        assert!(check(b"a b", true).is_ok());
        assert!(check(&[0u8; 186], true).is_ok()); // 248 bytes encoded
        assert!(check(&[0u8; 188], true).is_err()); // 252 bytes encoded
        // A printable key is sent as is, so the plain limit applies.
        assert!(check(&[b'x'; 251], true).is_err());
    }
}
