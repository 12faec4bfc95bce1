//! Decimal integers on the wire, without `format!` or `str::parse`: the encoders write digits
//! into a stack buffer, the decoder parses token bytes with overflow checks.
//!
//! protocol.txt writes every number "out in decimal" (flags, exptime, bytes, cas unique, delta);
//! a leading sign, a `+`, spaces or an empty token are never valid in a number we read.

/// Append the decimal form of `n` to `out`.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    if n < 10 {
        // One digit (a flag, a short TTL, a new connection's first opaques): no digit buffer.
        out.push(b'0' + n as u8);
        return;
    }
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Append the decimal form of `n` to `out`.
#[inline]
pub(crate) fn push_u32(out: &mut Vec<u8>, n: u32) {
    push_u64(out, u64::from(n));
}

/// Append the decimal form of `n` to `out`.
#[inline]
pub(crate) fn push_usize(out: &mut Vec<u8>, n: usize) {
    // usize is at most 64 bits on every target Rust supports.
    push_u64(out, n as u64);
}

/// Parse an unsigned decimal: one or more ASCII digits, no sign, no overflow.
#[inline]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Parse an unsigned decimal that must fit in 32 bits (client flags, opaque indexes).
#[inline]
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// Parse a signed decimal: an optional `-` then digits (meta `t-1` = never expires).
#[inline]
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', digits)) => {
            let n = parse_u64(digits)?;
            // -(2^63) is representable although 2^63 is not.
            0i64.checked_sub_unsigned(n)
        }
        _ => i64::try_from(parse_u64(s)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        push_u64(&mut v, n);
        v
    }

    #[test]
    fn formats_like_display() {
        for n in [0, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX - 1, u64::MAX] {
            assert_eq!(fmt(n), n.to_string().into_bytes());
        }
        let mut v = b"x".to_vec();
        push_u32(&mut v, u32::MAX);
        push_usize(&mut v, 7);
        assert_eq!(v, b"x42949672957");
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"007"), Some(7));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"--1"), None);
    }
}
