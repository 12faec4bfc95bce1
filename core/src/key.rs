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

/// Does the key need base64 to travel (meta protocol, binary keys)?
#[inline]
pub fn needs_base64(key: &[u8]) -> bool {
    key.iter().any(|&b| is_forbidden_byte(b))
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
    if let Some(pos) = key.iter().position(|&b| is_forbidden_byte(b)) {
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
