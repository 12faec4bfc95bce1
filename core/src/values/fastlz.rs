//! FastLZ (Ariya Hidayat's block format, MIT), the stream php-memcached's default compression
//! (`COMPRESSION_FASTLZ`) stores after its 4-byte length prefix.
//!
//! The decoder reads both levels (level = first byte >> 5, plus one), as `fastlz_decompress`
//! does. The encoder writes level 1 (distances ≤ 8192, matches ≤ 264 bytes), which every
//! FastLZ decoder reads whatever the input size; php-memcached's compressor picks level 2 for
//! inputs ≥ 64 KiB, but its reader dispatches on the first byte, so both levels interoperate.
//!
//! ```text
//! opcode = [ 7..5 l | 4..0 d ]  (the first opcode is a literal run; its bits 7..5 hold level − 1)
//!   l = 0        literal run: the next d + 1 bytes
//!   l = 1..6     match of l + 2 bytes, d ‖ next byte = distance − 1
//!   l = 7        as above, length 9 + next byte (level 2: + more bytes while they are 255)
//!   level 2      distance byte 255 with d = 31: two more bytes give a far distance (+ 8191)
//! ```

const MAX_L1_DISTANCE: usize = 8192;
const MAX_L2_DISTANCE: usize = 8191;
const MAX_COPY: usize = 32;
const MAX_LEN: usize = 264;
const HASH_LOG: u32 = 13;

fn hash3(b: &[u8]) -> usize {
    let v = u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16);
    (v.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
}

fn flush_literals(out: &mut Vec<u8>, lit: &[u8]) {
    for chunk in lit.chunks(MAX_COPY) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

/// Compress `input` as a level-1 FastLZ block.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n + n / 16 + 16);
    if n < 4 {
        if n > 0 {
            flush_literals(&mut out, input);
        }
        return out;
    }
    let mut table = vec![usize::MAX; 1 << HASH_LOG];
    let mut lit_start = 0;
    let mut i = 0;
    // The first instruction must be a literal run (its opcode byte carries the level bits).
    // Leave the last 3 bytes as literals: a match needs 3 bytes to hash.
    while i + 3 <= n {
        let h = hash3(&input[i..]);
        let cand = table[h];
        table[h] = i;
        if i > 0
            && cand != usize::MAX
            && i - cand <= MAX_L1_DISTANCE
            && input[cand..cand + 3] == input[i..i + 3]
        {
            let mut len = 3;
            while len < MAX_LEN && i + len < n && input[cand + len] == input[i + len] {
                len += 1;
            }
            flush_literals(&mut out, &input[lit_start..i]);
            let dist = i - cand - 1; // 0..=8191
            let l = len - 2; // 1..=262
            if l < 7 {
                out.push(((l as u8) << 5) | (dist >> 8) as u8);
            } else {
                out.push((7 << 5) | (dist >> 8) as u8);
                out.push((l - 7) as u8);
            }
            out.push((dist & 0xff) as u8);
            // Index a few positions inside the match so later data finds it.
            let end = i + len;
            let mut j = i + 1;
            while j + 3 <= n && j < end {
                table[hash3(&input[j..])] = j;
                j += 1;
            }
            i = end;
            lit_start = i;
        } else {
            i += 1;
        }
    }
    flush_literals(&mut out, &input[lit_start..]);
    out
}

/// Decompress a FastLZ block (level 1 or 2) that must expand to exactly `expected` bytes.
pub fn decompress(input: &[u8], expected: usize) -> Result<Vec<u8>, &'static str> {
    const BAD: &str = "corrupt fastlz stream";
    if input.is_empty() {
        return if expected == 0 {
            Ok(Vec::new())
        } else {
            Err(BAD)
        };
    }
    let level = (input[0] >> 5) + 1;
    if level > 2 {
        return Err("unknown fastlz level");
    }
    let mut out: Vec<u8> = Vec::with_capacity(expected);
    let mut ip = 1;
    let mut ctrl = usize::from(input[0] & 31);
    loop {
        if ctrl >= 32 {
            let mut len = (ctrl >> 5) - 1;
            let mut ofs = (ctrl & 31) << 8;
            if len == 6 {
                if level == 1 {
                    len += usize::from(*input.get(ip).ok_or(BAD)?);
                    ip += 1;
                } else {
                    loop {
                        let code = *input.get(ip).ok_or(BAD)?;
                        ip += 1;
                        len += usize::from(code);
                        if code != 255 {
                            break;
                        }
                    }
                }
            }
            let code = usize::from(*input.get(ip).ok_or(BAD)?);
            ip += 1;
            let mut back = ofs + code + 1;
            if level == 2 && code == 255 && ofs == (31 << 8) {
                let hi = usize::from(*input.get(ip).ok_or(BAD)?);
                let lo = usize::from(*input.get(ip + 1).ok_or(BAD)?);
                ip += 2;
                ofs = (hi << 8) + lo;
                back = ofs + MAX_L2_DISTANCE + 1;
            }
            len += 3;
            if back > out.len() || out.len() + len > expected {
                return Err(BAD);
            }
            let start = out.len() - back;
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        } else {
            let run = ctrl + 1;
            let lit = input.get(ip..ip + run).ok_or(BAD)?;
            if out.len() + run > expected {
                return Err(BAD);
            }
            out.extend_from_slice(lit);
            ip += run;
        }
        if ip >= input.len() {
            break;
        }
        ctrl = usize::from(input[ip]);
        ip += 1;
    }
    if out.len() != expected {
        return Err("fastlz length mismatch");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(input: &[u8]) {
        let packed = compress(input);
        assert_eq!(
            decompress(&packed, input.len()).as_deref(),
            Ok(input),
            "{} bytes",
            input.len()
        );
    }

    #[test]
    fn round_trips_short_repetitive_and_long_inputs() {
        for n in 0..8 {
            round_trip(&b"abcdefgh"[..n]);
        }
        round_trip(&[b'a'; 10_000]); // matches capped at 264 bytes, chained
        round_trip(&b"0123456789".repeat(3000));
        // A match exactly 8192 bytes back (the longest level-1 distance) and one beyond it.
        let mut v: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        v.copy_within(0..64, 8192);
        v.copy_within(100..164, 8293 + 8192);
        round_trip(&v);
    }

    #[test]
    fn compresses_what_repeats() {
        let text = b"hello fastlz ".repeat(200);
        assert!(compress(&text).len() < text.len() / 10);
        assert_eq!(compress(&text)[0] >> 5, 0, "level 1 marker");
    }

    /// Bytes php-memcached 3.2 (its bundled fastlz) stored for
    /// `str_repeat("hello fastlz ", 4) . "end"`, after the length prefix.
    #[test]
    fn reads_a_level_1_stream_written_by_php_memcached() {
        let stream = [
            0x0c, b'h', b'e', b'l', b'l', b'o', b' ', b'f', b'a', b's', b't', b'l', b'z', b' ',
            0xe0, 0x1e, 0x0c, 0x02, b'e', b'n', b'd',
        ];
        let want = [b"hello fastlz ".repeat(4), b"end".to_vec()].concat();
        assert_eq!(decompress(&stream, 55).unwrap(), want);
    }

    /// php-memcached's level 2 (inputs ≥ 64 KiB): a match length chained through 263 × 0xff.
    /// The bytes it stored for `str_repeat("0123456789abcdef", 4200) . "tail"`.
    #[test]
    fn reads_a_level_2_stream_written_by_php_memcached() {
        let mut stream = vec![0x2f];
        stream.extend_from_slice(b"0123456789abcdef");
        stream.push(0xe0);
        stream.extend_from_slice(&[0xff; 263]);
        stream.extend_from_slice(&[0x6e, 0x0f, 0x03]);
        stream.extend_from_slice(b"tail");
        let want = [b"0123456789abcdef".repeat(4200), b"tail".to_vec()].concat();
        assert_eq!(decompress(&stream, want.len()).unwrap(), want);
        // A level-2 far match: 9000 bytes back (beyond 8191) takes two extra distance bytes.
        let lit: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut far = Vec::new();
        for (i, c) in lit.chunks(32).enumerate() {
            // The first opcode carries the level: 001 = level 2.
            far.push(((c.len() - 1) as u8) | if i == 0 { 0x20 } else { 0 });
            far.extend_from_slice(c);
        }
        // Copy 3 bytes from 9000 back: ofs = 9000 - 8191 - 1 = 808 = 0x0328.
        far.extend_from_slice(&[0x1f | (1 << 5), 0xff, 0x03, 0x28]);
        let mut want = lit.clone();
        let from = want.len() - 9000;
        want.extend_from_within(from..from + 3);
        assert_eq!(decompress(&far, want.len()).unwrap(), want);
    }

    #[test]
    fn rejects_corrupt_streams_without_panicking() {
        let good = compress(&b"abcabcabcabcabcabc".repeat(10));
        assert!(decompress(&good, 179).is_err(), "length mismatch");
        assert!(decompress(&good, 181).is_err(), "length mismatch");
        assert!(
            decompress(&good[..good.len() - 1], 180).is_err(),
            "truncated"
        );
        assert!(decompress(&[0x00], 1).is_err(), "literal past the end");
        assert!(
            decompress(&[0x00, b'a', 0x20, 0x05], 4).is_err(),
            "match before the start"
        );
        assert!(decompress(&[0x60, b'a'], 1).is_err(), "level 4");
        assert!(decompress(b"", 1).is_err());
        assert_eq!(decompress(b"", 0), Ok(Vec::new()));
    }

    proptest! {
        #[test]
        fn any_input_round_trips(v in proptest::collection::vec(0u8..4, 0..5000)) {
            let packed = compress(&v);
            prop_assert_eq!(decompress(&packed, v.len()), Ok(v));
        }

        #[test]
        fn any_garbage_is_an_error_or_the_expected_length(
            v in proptest::collection::vec(any::<u8>(), 0..300),
            n in 0usize..2000,
        ) {
            if let Ok(out) = decompress(&v, n) {
                prop_assert_eq!(out.len(), n);
            }
        }
    }
}
